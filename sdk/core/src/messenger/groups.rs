//! Groups (PROTOCOL §13.3): their epochs (a relay channel, its tokens and a group key each),
//! the channel entry layout, distribution ids, invites, the admin's signed changes (§13.3.1)
//! and the sender keys of member devices, including those that arrive before the invite of
//! their epoch.

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use haven_protocol::content::{ContentError, GroupInvite};
use haven_protocol::group_change::{GroupChangeBody, GroupChangeFormatError};
use haven_sdk::groups::{
    DistributionId, GroupAdminKey, GroupChangeError, GroupSenderSession,
    SenderKeyDistributionMessage, SignedGroupChange, group_key_commitment,
};
use haven_sdk::store::DeviceAddress;
use haven_sdk::store::sender_keys::{SenderKeyName, SenderKeyStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::records::{
    GROUP_PENDING, GROUPS, PENDING_SENDER_KEYS, all_json, b64bytes, b64vec, get_json, hex16,
    hex16_vec, put_json, random,
};
use super::tasks::{Task, add_task};
use super::types::{Applied, Event, GroupChangeRefusal, GroupInfo, StateError, invalid};
use crate::store::{Backend, EncryptedStore};

/// Most early sender keys kept (all groups together).
pub const MAX_PENDING_SENDER_KEYS: usize = 1024;
/// Most early sender keys kept from one contact account (all its devices and groups together),
/// so one contact cannot take the room of [`MAX_PENDING_SENDER_KEYS`] from the others.
pub const MAX_PENDING_SENDER_KEYS_PER_CONTACT: usize = 16;
/// Most channel entries kept per group while their sender's key has not arrived.
pub const MAX_PENDING_PER_GROUP: usize = 512;
/// Epochs before the current one whose channels are still read (entries posted before a
/// switch are not lost).
const OLD_EPOCHS_KEPT: usize = 2;
/// AAD label of group channel entries.
const ENTRY_LABEL: &[u8] = b"haven/group-entry/v1";
/// Label of a group epoch's distribution id.
const DISTRIBUTION_LABEL: &[u8] = b"haven/group-distribution/v1";
/// `nonce [24]` · AEAD tag `[16]` · sender account `[16]` · sender device `u32`.
const MIN_ENTRY_LEN: usize = 24 + 16 + 20;

/// A relay channel the driver created for a new epoch (§11.15): its id and capabilities.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Channel {
    /// The channel id.
    pub id: [u8; 16],
    /// Its read capability.
    pub read_token: [u8; 32],
    /// Its write capability.
    pub write_token: [u8; 32],
}

/// The keys and position of one group epoch (stored inside its group's record).
#[derive(Clone, Serialize, Deserialize)]
pub struct Epoch {
    epoch: u32,
    #[serde(with = "hex16")]
    channel_id: [u8; 16],
    #[serde(
        serialize_with = "b64bytes::serialize",
        deserialize_with = "b64bytes::deserialize"
    )]
    read_token: [u8; 32],
    #[serde(
        serialize_with = "b64bytes::serialize",
        deserialize_with = "b64bytes::deserialize"
    )]
    write_token: [u8; 32],
    #[serde(
        serialize_with = "b64bytes::serialize",
        deserialize_with = "b64bytes::deserialize"
    )]
    group_key: [u8; 32],
    /// Last channel seq processed.
    cursor: u64,
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.read_token.zeroize();
        self.write_token.zeroize();
        self.group_key.zeroize();
    }
}

impl Epoch {
    /// An epoch from its parts, cursor 0 (the published vectors seal entries under one).
    #[cfg(any(test, feature = "test-vectors"))]
    pub(crate) fn from_parts(
        epoch: u32,
        channel_id: [u8; 16],
        read_token: [u8; 32],
        write_token: [u8; 32],
        group_key: [u8; 32],
    ) -> Self {
        Self {
            epoch,
            channel_id,
            read_token,
            write_token,
            group_key,
            cursor: 0,
        }
    }

    /// The epoch number (1 at creation, +1 per member change).
    #[must_use]
    pub fn number(&self) -> u32 {
        self.epoch
    }

    /// Its channel.
    #[must_use]
    pub fn channel_id(&self) -> &[u8; 16] {
        &self.channel_id
    }

    /// The channel's read capability.
    #[must_use]
    pub fn read_token(&self) -> &[u8; 32] {
        &self.read_token
    }

    /// The channel's write capability.
    #[must_use]
    pub fn write_token(&self) -> &[u8; 32] {
        &self.write_token
    }

    /// The last channel seq processed: read (or subscribe) after it.
    #[must_use]
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    pub(super) fn set_cursor(&mut self, seq: u64) {
        self.cursor = seq;
    }

    fn from_invite(epoch: u32, invite: &GroupInvite) -> Self {
        Self {
            epoch,
            channel_id: invite.channel_id,
            read_token: invite.read_token,
            write_token: invite.write_token,
            group_key: invite.group_key,
            cursor: invite.after,
        }
    }
}

/// The seed of a group's admin key, kept on the admin account's devices.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub(super) struct AdminSeed(
    #[serde(
        serialize_with = "b64bytes::serialize",
        deserialize_with = "b64bytes::deserialize"
    )]
    [u8; 32],
);

/// A signed change prepared for the next epoch, waiting for its channel
/// ([`GroupState::start_epoch`]).
#[derive(Clone)]
struct NextEpoch {
    change: Vec<u8>,
    group_key: Zeroizing<[u8; 32]>,
}

/// What a verified change is to a group ([`check_change`]).
pub(super) enum Verdict {
    /// The change of the current epoch again (byte for byte): nothing to do.
    Current,
    /// The next epoch's change.
    Next(SignedGroupChange),
}

/// A group as this device knows it (stored as JSON under its id, PROTOCOL §13.6).
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupState {
    #[serde(with = "hex16")]
    pub(super) id: [u8; 16],
    pub(super) name: String,
    #[serde(with = "hex16_vec")]
    pub(super) members: Vec<[u8; 16]>,
    pub(super) current: Epoch,
    /// Earlier epochs whose channels may still hold unread entries, newest first.
    pub(super) old: Vec<Epoch>,
    /// False once this account was removed.
    pub(super) active: bool,
    /// The admin's signed change that started the current epoch (§13.3.1); empty for a group
    /// stored before signed changes (legacy: readable, its membership frozen).
    #[serde(default, with = "b64vec")]
    pub(super) change: Vec<u8>,
    /// The admin key's seed, on the admin account's devices only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin_seed: Option<AdminSeed>,
    /// A change prepared by [`Self::prepare_change`] (never stored).
    #[serde(skip)]
    next: Option<NextEpoch>,
}

/// A change's own errors as the messenger's: a name or member list beyond the limits is a
/// content limit, as it was for the unsigned invite.
fn change_error(e: GroupChangeError) -> StateError {
    match e {
        GroupChangeError::Format(GroupChangeFormatError::NameTooLong) => {
            StateError::Content(ContentError("group name too long"))
        }
        GroupChangeError::Format(GroupChangeFormatError::Members) => {
            StateError::Content(ContentError("member count"))
        }
        other => invalid(other.to_string()),
    }
}

impl GroupState {
    /// A new group at epoch 1 over `channel`, with a random group key and a new admin key
    /// held by `admin` (this account), and its first signed change.
    pub(super) fn create<R: rand_core::CryptoRng + ?Sized>(
        id: [u8; 16],
        name: String,
        members: Vec<[u8; 16]>,
        admin: [u8; 16],
        channel: &Channel,
        rng: &mut R,
    ) -> Result<Self, StateError> {
        let key = GroupAdminKey::generate(rng);
        let group_key = Zeroizing::new(random::<32, R>(rng));
        let change = sign_change(&key, &id, 1, admin, &name, &members, &group_key)?;
        Ok(Self {
            id,
            name,
            members,
            current: Epoch {
                epoch: 1,
                channel_id: channel.id,
                read_token: channel.read_token,
                write_token: channel.write_token,
                group_key: *group_key,
                cursor: 0,
            },
            old: Vec::new(),
            active: true,
            change,
            admin_seed: Some(AdminSeed(*key.seed())),
            next: None,
        })
    }

    /// What the current epoch's change states; `None` for a legacy group.
    pub(super) fn pinned(&self) -> Option<GroupChangeBody> {
        GroupChangeBody::decode(&self.change)
            .ok()
            .map(|(body, _)| body)
    }

    /// The admin key, when this device holds it and it is the pinned one.
    fn admin_key(&self) -> Option<GroupAdminKey> {
        let seed = self.admin_seed.as_ref()?;
        let key = GroupAdminKey::from_seed(&seed.0);
        (self.pinned()?.admin_key == key.public()).then_some(key)
    }

    /// The admin key's seed, to copy to the admin account's other devices.
    pub(super) fn admin_seed(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.admin_key().map(|k| k.seed())
    }

    /// Sets `members` and signs the change to the next epoch, with a fresh group key that
    /// [`Self::start_epoch`] uses; returns the signed change.
    ///
    /// # Errors
    /// [`StateError::Invalid`] for a legacy group, a device without the admin key, or used-up
    /// epochs; [`StateError::Content`] beyond the limits.
    pub(super) fn prepare_change<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        members: Vec<[u8; 16]>,
        rng: &mut R,
    ) -> Result<Vec<u8>, StateError> {
        let pinned = self.pinned().ok_or_else(|| {
            invalid("this group was made before signed changes: re-create it to change its members")
        })?;
        let key = self
            .admin_key()
            .ok_or_else(|| invalid("only the group's admin can change its members"))?;
        let epoch = self.next_epoch()?;
        let group_key = Zeroizing::new(random::<32, R>(rng));
        let change = sign_change(
            &key,
            &self.id,
            epoch,
            pinned.admin_account,
            &self.name,
            &members,
            &group_key,
        )?;
        self.members = members;
        self.next = Some(NextEpoch {
            change: change.clone(),
            group_key,
        });
        Ok(change)
    }

    /// The group id.
    #[must_use]
    pub fn id(&self) -> &[u8; 16] {
        &self.id
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its member accounts.
    #[must_use]
    pub fn members(&self) -> &[[u8; 16]] {
        &self.members
    }

    /// The current epoch.
    #[must_use]
    pub fn current(&self) -> &Epoch {
        &self.current
    }

    /// Whether this account is still a member.
    #[must_use]
    pub fn active(&self) -> bool {
        self.active
    }

    /// The epochs whose channels are still read: the kept earlier ones (newest first), then
    /// the current one while this account is a member.
    #[must_use]
    pub fn readable_epochs(&self) -> Vec<&Epoch> {
        let mut epochs: Vec<&Epoch> = self.old.iter().collect();
        if self.active {
            epochs.push(&self.current);
        }
        epochs
    }

    /// The public view.
    #[must_use]
    pub fn info(&self) -> GroupInfo {
        GroupInfo {
            id: self.id,
            name: self.name.clone(),
            members: self.members.clone(),
            epoch: self.current.epoch,
            active: self.active,
            admin: self.admin_key().is_some(),
        }
    }

    /// The invite to the current epoch, reading from channel position `after` (PROTOCOL
    /// §13.1 kind `0x10`).
    #[must_use]
    pub fn invite(&self, after: u64) -> GroupInvite {
        GroupInvite {
            change: self.change.clone(),
            channel_id: self.current.channel_id,
            read_token: self.current.read_token,
            write_token: self.current.write_token,
            group_key: self.current.group_key,
            after,
        }
    }

    /// Starts the next epoch over `channel` with the change and group key a member change
    /// prepared (`outgoing::add_member`, `outgoing::remove_member`); the current epoch is kept
    /// for reading.
    ///
    /// # Errors
    /// [`StateError::Invalid`] without a prepared change, or when the epoch numbers are used
    /// up: an epoch number is never reused (its distribution id would be the old epoch's).
    pub fn start_epoch(&mut self, channel: &Channel) -> Result<(), StateError> {
        let epoch = self.next_epoch()?;
        let prepared = self
            .next
            .take()
            .ok_or_else(|| invalid("no member change prepared for a new epoch"))?;
        let next = Epoch {
            epoch,
            channel_id: channel.id,
            read_token: channel.read_token,
            write_token: channel.write_token,
            group_key: *prepared.group_key,
            cursor: 0,
        };
        self.advance(next);
        self.change.clone_from(&prepared.change);
        Ok(())
    }

    /// The number the next epoch gets.
    pub(super) fn next_epoch(&self) -> Result<u32, StateError> {
        self.current
            .epoch
            .checked_add(1)
            .ok_or_else(|| invalid("the group's epochs are used up: create a new group"))
    }

    fn advance(&mut self, next: Epoch) {
        let previous = std::mem::replace(&mut self.current, next);
        self.old.insert(0, previous);
        self.old.truncate(OLD_EPOCHS_KEPT);
    }

    pub(super) fn epoch_mut(&mut self, epoch: u32) -> Option<&mut Epoch> {
        if self.current.epoch == epoch {
            return Some(&mut self.current);
        }
        self.old.iter_mut().find(|e| e.epoch == epoch)
    }

    fn knows_epoch(&self, epoch: u32) -> bool {
        self.current.epoch == epoch || self.old.iter().any(|e| e.epoch == epoch)
    }

    /// The [`Event::GroupUpdated`] of its current name and members.
    #[must_use]
    pub fn updated_event(&self) -> Event {
        Event::GroupUpdated {
            group_id: self.id,
            name: self.name.clone(),
            members: self.members.clone(),
        }
    }
}

/// Signs the change starting `epoch` of group `id` with `members`, committing to `group_key`.
fn sign_change(
    key: &GroupAdminKey,
    id: &[u8; 16],
    epoch: u32,
    admin_account: [u8; 16],
    name: &str,
    members: &[[u8; 16]],
    group_key: &[u8; 32],
) -> Result<Vec<u8>, StateError> {
    let body = GroupChangeBody {
        group_id: *id,
        epoch,
        admin_account,
        admin_key: key.public(),
        key_commitment: group_key_commitment(id, epoch, group_key),
        name: name.to_owned(),
        members: members.to_vec(),
    };
    Ok(key.sign(&body).map_err(change_error)?.to_bytes().to_vec())
}

/// What the signed change `bytes` is to `state` (PROTOCOL §13.3.1): verified under the pinned
/// admin key, for this group, and either the current epoch's change byte for byte or the next
/// epoch's (exactly one more; a member removed earlier accepts any later epoch, to be re-added).
///
/// # Errors
/// The [`GroupChangeRefusal`].
pub(super) fn check_change(
    state: &GroupState,
    bytes: &[u8],
) -> Result<Verdict, GroupChangeRefusal> {
    let pinned = state.pinned().ok_or(GroupChangeRefusal::LegacyGroup)?;
    let change = SignedGroupChange::verify(bytes).map_err(GroupChangeRefusal::Invalid)?;
    let body = change.body();
    if body.group_id != state.id {
        return Err(GroupChangeRefusal::WrongGroup);
    }
    if body.admin_key != pinned.admin_key || body.admin_account != pinned.admin_account {
        return Err(GroupChangeRefusal::NotAdmin);
    }
    let (current, got) = (state.current.epoch, body.epoch);
    if got == current {
        return if bytes == state.change.as_slice() {
            Ok(Verdict::Current)
        } else {
            Err(GroupChangeRefusal::Conflict(current))
        };
    }
    if got < current {
        return Err(GroupChangeRefusal::Stale { current, got });
    }
    if got - current != 1 && state.active {
        return Err(GroupChangeRefusal::EpochGap { current, got });
    }
    Ok(Verdict::Next(change))
}

/// The distribution id of a group epoch: the first 16 bytes of
/// `SHA-256("haven/group-distribution/v1" || group_id || epoch u32)`.
#[must_use]
pub fn distribution_id(group: &[u8; 16], epoch: u32) -> DistributionId {
    let mut h = Sha256::new();
    h.update(DISTRIBUTION_LABEL);
    h.update(group);
    h.update(epoch.to_be_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    DistributionId(id)
}

fn entry_aad(group: &[u8; 16], epoch: u32, channel: &[u8; 16]) -> Vec<u8> {
    let mut aad = ENTRY_LABEL.to_vec();
    aad.extend_from_slice(group);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(channel);
    aad
}

/// Seals a group channel entry (PROTOCOL §13.3):
///
/// ```text
/// entry = nonce [24] · XChaCha20-Poly1305(group_key, nonce,
///           aad = "haven/group-entry/v1" || group_id || u32be(epoch) || channel_id,
///           plaintext = sender_account [16] · sender_device u32 · sender-key message)
/// ```
///
/// # Errors
/// [`StateError::EntrySealing`] (the AEAD refused: a message beyond its size limit).
pub fn seal_entry<R: rand_core::CryptoRng + ?Sized>(
    group: &[u8; 16],
    epoch: &Epoch,
    sender: &DeviceAddress,
    message: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, StateError> {
    let cipher = XChaCha20Poly1305::new((&epoch.group_key).into());
    let nonce: [u8; 24] = random(rng);
    let mut plain = Zeroizing::new(Vec::with_capacity(20 + message.len()));
    plain.extend_from_slice(&sender.account_id);
    plain.extend_from_slice(&sender.device_id.to_be_bytes());
    plain.extend_from_slice(message);
    let aad = entry_aad(group, epoch.epoch, &epoch.channel_id);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| StateError::EntrySealing)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a channel entry of `epoch`: its sender and sender-key message, or `None` when it is
/// too short or does not authenticate (tampered, or another group's or epoch's).
#[must_use]
pub fn open_entry(
    group: &[u8; 16],
    epoch: &Epoch,
    entry: &[u8],
) -> Option<(DeviceAddress, Vec<u8>)> {
    if entry.len() < MIN_ENTRY_LEN {
        return None;
    }
    let (nonce, ct) = entry.split_at_checked(24)?;
    let nonce = XNonce::from(<[u8; 24]>::try_from(nonce).ok()?);
    let cipher = XChaCha20Poly1305::new((&epoch.group_key).into());
    let aad = entry_aad(group, epoch.epoch, &epoch.channel_id);
    let plain = Zeroizing::new(
        cipher
            .decrypt(&nonce, Payload { msg: ct, aad: &aad })
            .ok()?,
    );
    let (account, rest) = plain.split_at_checked(16)?;
    let (device, message) = rest.split_at_checked(4)?;
    let account: [u8; 16] = account.try_into().ok()?;
    let device = u32::from_be_bytes(device.try_into().ok()?);
    Some((DeviceAddress::new(account, device), message.to_vec()))
}

/// One group.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn group<B: Backend>(
    store: &EncryptedStore<B>,
    id: &[u8; 16],
) -> Result<Option<GroupState>, StateError> {
    get_json(store, GROUPS, id, "group")
}

/// A group this account is still a member of (what sending and changing members need).
///
/// # Errors
/// [`StateError::Invalid`] for an unknown group or one this account was removed from; store
/// errors.
pub fn active_group<B: Backend>(
    store: &EncryptedStore<B>,
    id: &[u8; 16],
) -> Result<GroupState, StateError> {
    let state = group(store, id)?.ok_or_else(|| invalid("unknown group"))?;
    if !state.active {
        return Err(invalid("this account is no longer a member of the group"));
    }
    Ok(state)
}

/// Every group this device knows.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn group_states<B: Backend>(store: &EncryptedStore<B>) -> Result<Vec<GroupState>, StateError> {
    all_json(store, GROUPS, "group")
}

/// The public view of every group this device knows.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn groups<B: Backend>(store: &EncryptedStore<B>) -> Result<Vec<GroupInfo>, StateError> {
    Ok(group_states(store)?.iter().map(GroupState::info).collect())
}

/// Stores a group's state.
///
/// # Errors
/// Store errors.
pub fn save_group<B: Backend>(
    store: &EncryptedStore<B>,
    state: &GroupState,
) -> Result<(), StateError> {
    put_json(store, GROUPS, &state.id, state)
}

/// Channel id → (group id, epoch number).
pub type ChannelIndex = HashMap<[u8; 16], ([u8; 16], u32)>;

/// Which group and epoch each known channel belongs to (current and kept epochs).
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn channel_index<B: Backend>(store: &EncryptedStore<B>) -> Result<ChannelIndex, StateError> {
    let mut out = HashMap::new();
    for g in group_states(store)? {
        for e in g.old.iter().chain(std::iter::once(&g.current)) {
            out.insert(e.channel_id, (g.id, e.epoch));
        }
    }
    Ok(out)
}

/// Whether this device has its sending session for the group epoch (it was distributed when
/// the session was made).
#[must_use]
pub fn has_own_sender_session<B: Backend>(
    store: &EncryptedStore<B>,
    group: &[u8; 16],
    epoch: u32,
) -> bool {
    matches!(
        store.load_own_sender_session(&distribution_id(group, epoch)),
        Ok(Some(_))
    )
}

/// This device's sender-key distribution message for the group epoch, creating its sending
/// session first if needed.
///
/// # Errors
/// Store errors.
pub fn own_distribution<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    group: &[u8; 16],
    epoch: u32,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, StateError> {
    let dist = distribution_id(group, epoch);
    let session = match store.load_own_sender_session(&dist)? {
        Some(s) => s,
        None => {
            let s = GroupSenderSession::new(dist, rng);
            store.store_own_sender_session(&s)?;
            s
        }
    };
    Ok(session.distribution_message().to_bytes())
}

/// Stores (or merges) a member device's sender key; `false` if it does not fit the record.
pub(super) fn store_sender_key<B: Backend>(
    store: &mut EncryptedStore<B>,
    sender: &DeviceAddress,
    skdm: &SenderKeyDistributionMessage,
) -> Result<bool, StateError> {
    let name = SenderKeyName {
        distribution_id: skdm.distribution_id(),
        sender_account: sender.account_id.to_vec(),
        device_id: sender.device_id,
    };
    let record = match store.load_sender_key(&name) {
        Ok(Some(mut r)) => {
            if r.process_distribution(skdm).is_err() {
                return Ok(false);
            }
            r
        }
        _ => haven_sdk::SenderKeyRecord::new(skdm),
    };
    store.store_sender_key(&name, &record)?;
    Ok(true)
}

/// Whether the key of `sender` for the group epoch is known.
pub(super) fn has_sender_key<B: Backend>(
    store: &EncryptedStore<B>,
    group: &[u8; 16],
    epoch: u32,
    sender: &DeviceAddress,
) -> bool {
    let name = SenderKeyName {
        distribution_id: distribution_id(group, epoch),
        sender_account: sender.account_id.to_vec(),
        device_id: sender.device_id,
    };
    store.load_sender_key(&name).ok().flatten().is_some()
}

/// Applies a group invite received 1:1 (PROTOCOL §13.3 "Join", §13.3.1): a new group, or the
/// next epoch of a known one, signed by its admin key and sent by its admin account.
pub(super) fn accept_invite<B: Backend, R: rand_core::CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    own: &[u8; 16],
    sender: &DeviceAddress,
    group: [u8; 16],
    invite: &GroupInvite,
    rng: &mut R,
) -> Result<Applied, StateError> {
    let existing = self::group(store, &group)?;
    let verdict = match &existing {
        // A group this device does not know yet: the change names its admin key (pinned now).
        None => SignedGroupChange::verify(&invite.change)
            .map(Verdict::Next)
            .map_err(GroupChangeRefusal::Invalid),
        Some(state) => check_change(state, &invite.change),
    };
    let change = match verdict {
        Ok(Verdict::Current) => return Ok(Applied::default()),
        Ok(Verdict::Next(change)) => change,
        Err(reason) => return Ok(change_refused(group, reason)),
    };
    let body = change.body();
    let refusal = if body.group_id != group {
        Some(GroupChangeRefusal::WrongGroup)
    } else if body.admin_account != sender.account_id {
        Some(GroupChangeRefusal::NotFromAdmin)
    } else if !body.members.contains(own) {
        Some(GroupChangeRefusal::NotListed)
    } else if !change.commits_to(&invite.group_key) {
        Some(GroupChangeRefusal::KeyMismatch)
    } else {
        None
    };
    if let Some(reason) = refusal {
        return Ok(change_refused(group, reason));
    }
    let epoch = Epoch::from_invite(body.epoch, invite);
    let state = match existing {
        None => GroupState {
            id: group,
            name: body.name.clone(),
            members: body.members.clone(),
            current: epoch,
            old: Vec::new(),
            active: true,
            change: invite.change.clone(),
            admin_seed: None,
            next: None,
        },
        Some(mut state) => {
            state.advance(epoch);
            state.name.clone_from(&body.name);
            state.members.clone_from(&body.members);
            state.change.clone_from(&invite.change);
            state.active = true;
            state
        }
    };
    save_group(store, &state)?;
    apply_early_sender_keys(store, &state)?;
    // Every member device needs this device's sender key for the epoch (own other devices
    // included; the creator of the epoch distributes its own).
    for m in &state.members {
        add_task(
            store,
            &Task::SenderKey {
                group,
                epoch: state.current.epoch,
                account: *m,
            },
            rng,
        )?;
    }
    Ok(Applied {
        events: vec![state.updated_event()],
        retry_groups: vec![group],
        subscribe: vec![group],
        tasks_added: true,
    })
}

/// An [`Event::GroupChangeRefused`].
pub(super) fn change_refused(group_id: [u8; 16], reason: GroupChangeRefusal) -> Applied {
    Applied::events(vec![Event::GroupChangeRefused { group_id, reason }])
}

/// Applies a copy of a group's admin key from another device of this account (`own`): kept
/// when it is the group's pinned admin key and this account is the group's admin.
pub(super) fn receive_admin_key<B: Backend>(
    store: &mut EncryptedStore<B>,
    own: &[u8; 16],
    sender: &DeviceAddress,
    group: [u8; 16],
    seed: &[u8; 32],
) -> Result<Applied, StateError> {
    if sender.account_id != *own {
        return Ok(change_refused(group, GroupChangeRefusal::NotFromAdmin));
    }
    let Some(mut state) = self::group(store, &group)? else {
        return Ok(change_refused(group, GroupChangeRefusal::UnknownGroup));
    };
    let Some(pinned) = state.pinned() else {
        return Ok(change_refused(group, GroupChangeRefusal::LegacyGroup));
    };
    if pinned.admin_account != *own {
        return Ok(change_refused(group, GroupChangeRefusal::NotFromAdmin));
    }
    if GroupAdminKey::from_seed(seed).public() != pinned.admin_key {
        return Ok(change_refused(group, GroupChangeRefusal::NotAdmin));
    }
    state.admin_seed = Some(AdminSeed(*seed));
    save_group(store, &state)?;
    Ok(Applied::events(vec![state.updated_event()]))
}

/// Applies a member device's sender key received 1:1; kept for later when it belongs to an
/// epoch whose invite has not arrived yet.
pub(super) fn receive_sender_key<B: Backend>(
    store: &mut EncryptedStore<B>,
    own: &[u8; 16],
    sender: &DeviceAddress,
    group: [u8; 16],
    epoch: u32,
    distribution: &[u8],
) -> Result<Applied, StateError> {
    let Ok(skdm) = SenderKeyDistributionMessage::from_bytes(distribution) else {
        return Ok(Applied::malformed("malformed sender key"));
    };
    if skdm.distribution_id() != distribution_id(&group, epoch) {
        return Ok(Applied::malformed("sender key for another group"));
    }
    let existing = self::group(store, &group)?;
    // Invites and sender keys come from different senders through different queues: a
    // member's key can arrive before the invite that makes this device a member of the group
    // (or of its new epoch). Keep it until then.
    if !existing.as_ref().is_some_and(|st| st.knows_epoch(epoch)) {
        let later = existing.as_ref().is_none_or(|st| epoch > st.current.epoch);
        if !later {
            return Ok(Applied::malformed("sender key for an old epoch"));
        }
        let key = early_key(&group, epoch, sender);
        let pending = store.entries(PENDING_SENDER_KEYS)?;
        // A key replacing one already kept takes no more room.
        let others = || pending.iter().filter(|(k, _)| *k != key);
        if others().count() >= MAX_PENDING_SENDER_KEYS {
            return Ok(Applied::malformed("too many early sender keys"));
        }
        if others()
            .filter(|(k, _)| early_key_sender(k) == Some(sender.account_id))
            .count()
            >= MAX_PENDING_SENDER_KEYS_PER_CONTACT
        {
            return Ok(Applied::malformed(
                "too many early sender keys from this contact",
            ));
        }
        store.put(PENDING_SENDER_KEYS, &key, distribution)?;
        return Ok(Applied::default());
    }
    let Some(state) = existing else {
        return Ok(Applied::default());
    };
    if !state.members.contains(&sender.account_id) && sender.account_id != *own {
        return Ok(Applied::malformed("sender key from a non-member"));
    }
    if !store_sender_key(store, sender, &skdm)? {
        return Ok(Applied::malformed("sender key mismatch"));
    }
    Ok(Applied {
        retry_groups: vec![group],
        ..Applied::default()
    })
}

/// Natural key of an early sender key: `group_id · u32be(epoch) · sender_account ·
/// u32be(sender_device)` (40 bytes).
fn early_key(group: &[u8; 16], epoch: u32, sender: &DeviceAddress) -> Vec<u8> {
    let mut key = group.to_vec();
    key.extend_from_slice(&epoch.to_be_bytes());
    key.extend_from_slice(&sender.account_id);
    key.extend_from_slice(&sender.device_id.to_be_bytes());
    key
}

/// The sender account of an early key (any group); `None` for a malformed key.
fn early_key_sender(key: &[u8]) -> Option<[u8; 16]> {
    key.get(20..36)?.try_into().ok()
}

/// Applies the sender keys of `state`'s current epoch that arrived before its invite (from
/// members only) and drops every early key of the group for this or an older epoch.
fn apply_early_sender_keys<B: Backend>(
    store: &mut EncryptedStore<B>,
    state: &GroupState,
) -> Result<(), StateError> {
    for (key, value) in store.entries(PENDING_SENDER_KEYS)? {
        let Some((epoch, sender)) = parse_early_key(&key, &state.id) else {
            continue;
        };
        if epoch > state.current.epoch {
            continue;
        }
        store.delete(PENDING_SENDER_KEYS, &key)?;
        if epoch < state.current.epoch || !state.members.contains(&sender.account_id) {
            continue;
        }
        if let Ok(skdm) = SenderKeyDistributionMessage::from_bytes(&value)
            && skdm.distribution_id() == distribution_id(&state.id, epoch)
        {
            store_sender_key(store, &sender, &skdm)?;
        }
    }
    Ok(())
}

/// The epoch and sender of an early key of `group`; `None` for another group's (or a
/// malformed) key.
fn parse_early_key(key: &[u8], group: &[u8; 16]) -> Option<(u32, DeviceAddress)> {
    let key: &[u8; 40] = key.try_into().ok()?;
    let (g, rest) = key.split_at(16);
    if g != group {
        return None;
    }
    let (epoch, rest) = rest.split_at(4);
    let (account, device) = rest.split_at(16);
    let epoch = u32::from_be_bytes(epoch.try_into().ok()?);
    let account: [u8; 16] = account.try_into().ok()?;
    let device = u32::from_be_bytes(device.try_into().ok()?);
    Some((epoch, DeviceAddress::new(account, device)))
}

/// Natural key of an entry kept for its sender's key: `group_id · u32be(epoch) · u64be(seq)`
/// (28 bytes).
pub(super) fn pending_key(group: &[u8; 16], epoch: u32, seq: u64) -> Vec<u8> {
    let mut k = group.to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The epoch and seq of a pending entry of `group`; `None` for another group's.
pub(super) fn parse_pending_key(key: &[u8], group: &[u8; 16]) -> Option<(u32, u64)> {
    let key: &[u8; 28] = key.try_into().ok()?;
    let (g, rest) = key.split_at(16);
    if g != group {
        return None;
    }
    let (epoch, seq) = rest.split_at(4);
    Some((
        u32::from_be_bytes(epoch.try_into().ok()?),
        u64::from_be_bytes(seq.try_into().ok()?),
    ))
}

/// How many entries of `group` wait for their sender's key.
pub(super) fn pending_count<B: Backend>(
    store: &EncryptedStore<B>,
    group: &[u8; 16],
) -> Result<usize, StateError> {
    Ok(store
        .entries(GROUP_PENDING)?
        .iter()
        .filter(|(k, _)| parse_pending_key(k, group).is_some())
        .count())
}

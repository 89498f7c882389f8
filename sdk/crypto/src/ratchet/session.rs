//! The Double Ratchet state machine and the per-peer [`SessionRecord`].

use std::collections::VecDeque;

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::RatchetError;
use super::chain_key::ChainKey;
use super::message::{
    HEADER_LEN, MAX_PLAINTEXT_LEN, PreKeyMessage, RatchetMessage, SessionMessage, encode_header,
};
use super::message_key::MessageKey;
use super::root_key::RootKey;
use crate::identity::{IDENTITY_KEY_LEN, IdentityKey, dh};
use crate::prekeys::KEM_CIPHERTEXT_LEN;
use haven_protocol::encoding::Reader;

/// Most message keys one message may make us skip in one chain (and for `PN` in the previous one).
pub const MAX_SKIP_PER_CHAIN: u32 = 1000;
/// Most skipped message keys stored per session; the oldest is evicted beyond it.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// Longest a skipped message key is kept (seconds, 30 days): a message withheld longer (by the
/// relay, or lost) no longer decrypts, and its key leaves the device at the next decrypt.
pub const MAX_SKIPPED_KEY_AGE: u64 = 30 * 24 * 60 * 60;
/// Most receiving chains kept per session (the current one and a few previous ones).
pub const MAX_RECEIVER_CHAINS: usize = 5;
/// Most previous sessions a [`SessionRecord`] keeps besides the current one.
pub const MAX_ARCHIVED_SESSIONS: usize = 5;
/// Length of the session associated data `IK_initiator || IK_responder`.
pub const SESSION_AD_LEN: usize = 2 * IDENTITY_KEY_LEN;

/// Session pickle version 1: skipped keys without a creation time (still read).
const SESSION_VERSION_V1: u8 = 0x01;
/// Session pickle version 2 (written): each skipped key carries its creation time.
const SESSION_VERSION: u8 = 0x02;
const SESSION_TYPE: u8 = 0x30;
const RECORD_VERSION: u8 = 0x01;
/// Creation time of a skipped key read from a version-1 pickle: unknown until the session's
/// next decrypt stamps it with that decrypt's `now`.
const UNKNOWN_TIME: u64 = 0;
const RECORD_TYPE: u8 = 0x31;

#[derive(Clone)]
struct SenderChain {
    secret: StaticSecret,
    public: PublicKey,
    chain: Option<ChainKey>,
}

#[derive(Clone)]
struct ReceiverChain {
    public: PublicKey,
    chain: ChainKey,
}

#[derive(Clone)]
struct SkippedKey {
    ratchet: PublicKey,
    key: MessageKey,
    /// Unix seconds when the key was skipped ([`UNKNOWN_TIME`] for a key from a v1 pickle).
    created: u64,
}

/// What an initiator repeats in every message until the responder answers.
#[derive(Clone)]
pub(crate) struct PendingPreKey {
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
    pub(crate) kem_prekey_id: u32,
    pub(crate) kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
}

/// One Double Ratchet session with one peer device. Secret: persist only through
/// [`Session::to_bytes`] + [`crate::snapshot::seal`]. `Debug` is redacted.
#[derive(Clone)]
pub struct Session {
    local_identity: IdentityKey,
    remote_identity: IdentityKey,
    ad: [u8; SESSION_AD_LEN],
    base_key: PublicKey,
    root_key: RootKey,
    sender: SenderChain,
    previous_counter: u32,
    receivers: VecDeque<ReceiverChain>,
    skipped: VecDeque<SkippedKey>,
    pending_prekey: Option<PendingPreKey>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("remote_identity", &self.remote_identity)
            .field("receiver_chains", &self.receivers.len())
            .field("skipped_keys", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// `AD = IK_initiator || IK_responder` (PQXDH §3.3), the same on both sides.
#[must_use]
pub fn session_ad(initiator: &IdentityKey, responder: &IdentityKey) -> [u8; SESSION_AD_LEN] {
    let mut ad = [0u8; SESSION_AD_LEN];
    ad[..IDENTITY_KEY_LEN].copy_from_slice(&initiator.to_bytes());
    ad[IDENTITY_KEY_LEN..].copy_from_slice(&responder.to_bytes());
    ad
}

impl Session {
    /// Initiator ("Alice") state: `RK, CKs = KDF_RK(SK, DH(ratchet, SPK_B))`.
    pub(crate) fn initiator(
        local_identity: IdentityKey,
        remote_identity: IdentityKey,
        sk: &[u8; 32],
        their_signed_prekey: &PublicKey,
        base_key: PublicKey,
        ratchet_secret: StaticSecret,
        pending: PendingPreKey,
    ) -> Result<Self, RatchetError> {
        let dh_out =
            dh(&ratchet_secret, their_signed_prekey).ok_or(RatchetError::InvalidRatchetKey)?;
        let (root_key, chain) = RootKey::new(*sk).kdf(&dh_out);
        Ok(Self {
            local_identity,
            remote_identity,
            ad: session_ad(&local_identity, &remote_identity),
            base_key,
            root_key,
            sender: SenderChain {
                public: PublicKey::from(&ratchet_secret),
                secret: ratchet_secret,
                chain: Some(chain),
            },
            previous_counter: 0,
            receivers: VecDeque::new(),
            skipped: VecDeque::new(),
            pending_prekey: Some(pending),
        })
    }

    /// Responder ("Bob") state: `RK = SK`, ratchet key pair = the signed prekey, no sending chain
    /// until the first message is received. The prekey's public half is passed in (the record
    /// holds it) rather than recomputed: a scalar multiplication per handshake.
    pub(crate) fn responder(
        local_identity: IdentityKey,
        remote_identity: IdentityKey,
        sk: &[u8; 32],
        signed_prekey: StaticSecret,
        signed_prekey_public: PublicKey,
        base_key: PublicKey,
    ) -> Self {
        Self {
            local_identity,
            remote_identity,
            ad: session_ad(&remote_identity, &local_identity),
            base_key,
            root_key: RootKey::new(*sk),
            sender: SenderChain {
                public: signed_prekey_public,
                secret: signed_prekey,
                chain: None,
            },
            previous_counter: 0,
            receivers: VecDeque::new(),
            skipped: VecDeque::new(),
            pending_prekey: None,
        }
    }

    /// The peer's identity key.
    #[must_use]
    pub fn remote_identity(&self) -> &IdentityKey {
        &self.remote_identity
    }

    /// The initiator's base key `EK_A` that created this session.
    #[must_use]
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// Whether outgoing messages still carry the PQXDH prekey parameters.
    #[must_use]
    pub fn has_unacknowledged_prekey(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// Number of skipped message keys currently stored.
    #[must_use]
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// Encrypts one message: a [`PreKeyMessage`] until the peer has answered, then a
    /// [`RatchetMessage`].
    ///
    /// # Errors
    /// [`RatchetError::MessageTooLarge`], [`RatchetError::NoSendingChain`],
    /// [`RatchetError::ChainExhausted`].
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<SessionMessage, RatchetError> {
        let message = self.ratchet_encrypt(plaintext)?;
        Ok(match &self.pending_prekey {
            None => SessionMessage::Ratchet(message),
            Some(p) => SessionMessage::PreKey(Box::new(PreKeyMessage {
                identity_key: self.local_identity,
                base_key: self.base_key,
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                kem_prekey_id: p.kem_prekey_id,
                kem_ciphertext: p.kem_ciphertext.clone(),
                message,
            })),
        })
    }

    /// `RatchetEncrypt`: `CKs, mk = KDF_CK(CKs)`; `AEAD(mk, plaintext, AD || header)`.
    ///
    /// # Errors
    /// As [`Self::encrypt`].
    pub fn ratchet_encrypt(&mut self, plaintext: &[u8]) -> Result<RatchetMessage, RatchetError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(RatchetError::MessageTooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let chain = self
            .sender
            .chain
            .as_ref()
            .ok_or(RatchetError::NoSendingChain)?;
        let (mk, next) = chain.step();
        let next = next.ok_or(RatchetError::ChainExhausted)?;
        let header = encode_header(&self.sender.public, self.previous_counter, mk.index());
        let ciphertext =
            mk.encrypt(plaintext, &self.full_ad(&header))
                .ok_or(RatchetError::MessageTooLarge {
                    len: plaintext.len(),
                    max: MAX_PLAINTEXT_LEN,
                })?;
        self.sender.chain = Some(next);
        Ok(RatchetMessage {
            ratchet_key: self.sender.public,
            previous_counter: self.previous_counter,
            counter: mk.index(),
            ciphertext,
        })
    }

    fn full_ad(&self, header: &[u8; HEADER_LEN]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(SESSION_AD_LEN + HEADER_LEN);
        ad.extend_from_slice(&self.ad);
        ad.extend_from_slice(header);
        ad
    }

    /// `RatchetDecrypt`. Works on a copy: `self` changes only if authentication succeeds.
    /// `now` (Unix seconds, from the caller's clock) first drops skipped keys older than
    /// [`MAX_SKIPPED_KEY_AGE`] and stamps the keys it skips. `rng` provides the new ratchet key
    /// pair when the peer's ratchet key is new.
    ///
    /// # Errors
    /// [`RatchetError::DuplicateMessage`] (also for a message whose skipped key expired),
    /// [`RatchetError::TooFarInFuture`], [`RatchetError::DecryptionFailed`],
    /// [`RatchetError::InvalidRatchetKey`], [`RatchetError::ChainExhausted`].
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        message: &RatchetMessage,
        now: u64,
        rng: &mut R,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let mut next = self.clone();
        next.expire_skipped(now);
        let plaintext = next.decrypt_in_place(message, now, rng)?;
        *self = next;
        Ok(plaintext)
    }

    /// Drops the skipped keys whose age at `now` (Unix seconds) reached
    /// [`MAX_SKIPPED_KEY_AGE`]; a key of unknown age (read from a version-1 pickle) is stamped
    /// with `now`, so it lives the full age from the first use after the upgrade. A clock that
    /// went backwards ages nothing.
    pub fn expire_skipped(&mut self, now: u64) {
        self.skipped.retain_mut(|k| {
            if k.created == UNKNOWN_TIME {
                k.created = now;
            }
            now.saturating_sub(k.created) < MAX_SKIPPED_KEY_AGE
        });
    }

    fn decrypt_in_place<R: CryptoRng + ?Sized>(
        &mut self,
        msg: &RatchetMessage,
        now: u64,
        rng: &mut R,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let ad = self.full_ad(&msg.header_bytes());
        if let Some(pos) = self
            .skipped
            .iter()
            .position(|k| k.ratchet == msg.ratchet_key && k.key.index() == msg.counter)
        {
            let key = self
                .skipped
                .remove(pos)
                .ok_or(RatchetError::DecryptionFailed)?
                .key;
            return self.finish(key.decrypt(&msg.ciphertext, &ad));
        }
        let idx = match self
            .receivers
            .iter()
            .position(|c| c.public == msg.ratchet_key)
        {
            Some(idx) => idx,
            None => {
                self.dh_ratchet(msg, now, rng)?;
                self.receivers.len().saturating_sub(1)
            }
        };
        let mut chain = self
            .receivers
            .get(idx)
            .map(|c| c.chain.clone())
            .ok_or(RatchetError::DecryptionFailed)?;
        if msg.counter < chain.index() {
            return Err(RatchetError::DuplicateMessage { index: msg.counter });
        }
        check_gap(chain.index(), msg.counter)?;
        chain = self.skip_until(&msg.ratchet_key, chain, msg.counter, now)?;
        let (mk, after) = chain.step();
        let after = after.ok_or(RatchetError::ChainExhausted)?;
        if let Some(c) = self.receivers.get_mut(idx) {
            c.chain = after;
        }
        self.finish(mk.decrypt(&msg.ciphertext, &ad))
    }

    fn finish(&mut self, plaintext: Option<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let plaintext = plaintext.ok_or(RatchetError::DecryptionFailed)?;
        // The peer has this session: stop attaching the prekey parameters.
        self.pending_prekey = None;
        Ok(Zeroizing::new(plaintext))
    }

    /// `SkipMessageKeys` on `chain` up to (excluding) `until`, storing the keys stamped `now`.
    fn skip_until(
        &mut self,
        ratchet: &PublicKey,
        mut chain: ChainKey,
        until: u32,
        now: u64,
    ) -> Result<ChainKey, RatchetError> {
        while chain.index() < until {
            let (key, next) = chain.step();
            self.skipped.push_back(SkippedKey {
                ratchet: *ratchet,
                key,
                created: now,
            });
            if self.skipped.len() > MAX_SKIPPED_KEYS {
                self.skipped.pop_front();
            }
            chain = next.ok_or(RatchetError::ChainExhausted)?;
        }
        Ok(chain)
    }

    /// `DHRatchet`: finish the current receiving chain up to `PN`, derive the new receiving chain
    /// and a new sending chain from a fresh ratchet key pair.
    fn dh_ratchet<R: CryptoRng + ?Sized>(
        &mut self,
        msg: &RatchetMessage,
        now: u64,
        rng: &mut R,
    ) -> Result<(), RatchetError> {
        if let Some(current) = self.receivers.back().cloned()
            && msg.previous_counter > current.chain.index()
        {
            check_gap(current.chain.index(), msg.previous_counter)?;
            let done =
                self.skip_until(&current.public, current.chain, msg.previous_counter, now)?;
            if let Some(c) = self.receivers.back_mut() {
                c.chain = done;
            }
        }
        check_gap(0, msg.counter)?;
        // The peer's new ratchet key takes part in both key agreements: prepared once.
        let their = msg.ratchet_key;
        let dh_recv = dh(&self.sender.secret, &their).ok_or(RatchetError::InvalidRatchetKey)?;
        let (root, receiving) = self.root_key.kdf(&dh_recv);
        let secret = StaticSecret::random_from_rng(rng);
        let dh_send = dh(&secret, &their).ok_or(RatchetError::InvalidRatchetKey)?;
        let (root, sending) = root.kdf(&dh_send);
        self.previous_counter = self.sender.chain.as_ref().map_or(0, ChainKey::index);
        self.sender = SenderChain {
            public: PublicKey::from(&secret),
            secret,
            chain: Some(sending),
        };
        self.root_key = root;
        self.receivers.push_back(ReceiverChain {
            public: msg.ratchet_key,
            chain: receiving,
        });
        while self.receivers.len() > MAX_RECEIVER_CHAINS {
            self.receivers.pop_front();
        }
        Ok(())
    }

    /// Pickle (secret; PROTOCOL.md §4.7).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut o = Zeroizing::new(Vec::with_capacity(512 + self.skipped.len() * 76));
        o.extend_from_slice(&[SESSION_VERSION, SESSION_TYPE]);
        o.extend_from_slice(&self.local_identity.to_bytes());
        o.extend_from_slice(&self.remote_identity.to_bytes());
        o.extend_from_slice(&self.ad);
        o.extend_from_slice(self.base_key.as_bytes());
        o.extend_from_slice(self.root_key.as_bytes());
        o.extend_from_slice(self.sender.secret.as_bytes());
        match &self.sender.chain {
            None => o.push(0),
            Some(c) => {
                o.push(1);
                o.extend_from_slice(c.as_bytes());
                o.extend_from_slice(&c.index().to_be_bytes());
            }
        }
        o.extend_from_slice(&self.previous_counter.to_be_bytes());
        o.push(u8::try_from(self.receivers.len()).unwrap_or(u8::MAX));
        for r in &self.receivers {
            o.extend_from_slice(r.public.as_bytes());
            o.extend_from_slice(r.chain.as_bytes());
            o.extend_from_slice(&r.chain.index().to_be_bytes());
        }
        o.extend_from_slice(
            &u32::try_from(self.skipped.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for s in &self.skipped {
            o.extend_from_slice(s.ratchet.as_bytes());
            o.extend_from_slice(&s.key.index().to_be_bytes());
            o.extend_from_slice(s.key.as_bytes());
            o.extend_from_slice(&s.created.to_be_bytes());
        }
        match &self.pending_prekey {
            None => o.push(0),
            Some(p) => {
                o.push(1);
                o.extend_from_slice(&p.signed_prekey_id.to_be_bytes());
                match p.one_time_prekey_id {
                    None => o.push(0),
                    Some(id) => {
                        o.push(1);
                        o.extend_from_slice(&id.to_be_bytes());
                    }
                }
                o.extend_from_slice(&p.kem_prekey_id.to_be_bytes());
                o.extend_from_slice(p.kem_ciphertext.as_slice());
            }
        }
        o
    }

    /// Parses [`Self::to_bytes`] (version 2) or a version-1 pickle (its skipped keys get an
    /// unknown creation time, see [`Self::expire_skipped`]), enforcing every limit.
    ///
    /// # Errors
    /// [`RatchetError::Malformed`] / [`RatchetError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RatchetError> {
        let mut r = Reader::new(bytes);
        let timed = match (r.u8(), r.u8()) {
            (Some(SESSION_VERSION), Some(SESSION_TYPE)) => true,
            (Some(SESSION_VERSION_V1), Some(SESSION_TYPE)) => false,
            (Some(_), Some(_)) => return Err(RatchetError::UnsupportedVersion),
            _ => return Err(RatchetError::Malformed),
        };
        let s = Self::read(&mut r, timed).ok_or(RatchetError::Malformed)?;
        r.finish().ok_or(RatchetError::Malformed)?;
        Ok(s)
    }

    fn read(r: &mut Reader<'_>, timed: bool) -> Option<Self> {
        let local_identity = IdentityKey::from_bytes(r.take(IDENTITY_KEY_LEN)?).ok()?;
        let remote_identity = IdentityKey::from_bytes(r.take(IDENTITY_KEY_LEN)?).ok()?;
        let ad = r.array()?;
        let base_key = PublicKey::from(r.array::<32>()?);
        let root_key = RootKey::new(*Zeroizing::new(r.array::<32>()?));
        let secret = StaticSecret::from(r.array::<32>()?);
        let chain = match r.u8()? {
            0 => None,
            1 => {
                let key = Zeroizing::new(r.array::<32>()?);
                Some(ChainKey::new(*key, r.u32()?))
            }
            _ => return None,
        };
        let previous_counter = r.u32()?;
        let n = usize::from(r.u8()?);
        if n > MAX_RECEIVER_CHAINS {
            return None;
        }
        let mut receivers = VecDeque::with_capacity(n);
        for _ in 0..n {
            let public = PublicKey::from(r.array::<32>()?);
            let key = Zeroizing::new(r.array::<32>()?);
            receivers.push_back(ReceiverChain {
                public,
                chain: ChainKey::new(*key, r.u32()?),
            });
        }
        let n = usize::try_from(r.u32()?).ok()?;
        if n > MAX_SKIPPED_KEYS {
            return None;
        }
        let mut skipped = VecDeque::with_capacity(n);
        for _ in 0..n {
            let ratchet = PublicKey::from(r.array::<32>()?);
            let index = r.u32()?;
            let seed = Zeroizing::new(r.array::<32>()?);
            let created = if timed { r.u64()? } else { UNKNOWN_TIME };
            skipped.push_back(SkippedKey {
                ratchet,
                key: MessageKey::new(*seed, index),
                created,
            });
        }
        let pending_prekey = match r.u8()? {
            0 => None,
            1 => Some(PendingPreKey {
                signed_prekey_id: r.u32()?,
                one_time_prekey_id: match r.u8()? {
                    0 => None,
                    1 => Some(r.u32()?),
                    _ => return None,
                },
                kem_prekey_id: r.u32()?,
                kem_ciphertext: Box::new(r.array()?),
            }),
            _ => return None,
        };
        Some(Self {
            local_identity,
            remote_identity,
            ad,
            base_key,
            root_key,
            sender: SenderChain {
                public: PublicKey::from(&secret),
                secret,
                chain,
            },
            previous_counter,
            receivers,
            skipped,
            pending_prekey,
        })
    }
}

fn check_gap(from: u32, to: u32) -> Result<(), RatchetError> {
    let gap = u64::from(to).saturating_sub(u64::from(from));
    if gap > u64::from(MAX_SKIP_PER_CHAIN) {
        return Err(RatchetError::TooFarInFuture {
            gap,
            max: MAX_SKIP_PER_CHAIN,
        });
    }
    Ok(())
}

/// All sessions with one peer device: the current one and up to [`MAX_ARCHIVED_SESSIONS`]
/// previous ones (a simultaneous initiation or a re-install leaves two live sessions for a while).
#[derive(Clone, Default)]
pub struct SessionRecord {
    current: Option<Session>,
    previous: VecDeque<Session>,
}

impl core::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("has_current", &self.current.is_some())
            .field("previous", &self.previous.len())
            .finish()
    }
}

impl SessionRecord {
    /// An empty record.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The current session.
    #[must_use]
    pub fn current(&self) -> Option<&Session> {
        self.current.as_ref()
    }

    /// Mutable access to the current session.
    pub fn current_mut(&mut self) -> Option<&mut Session> {
        self.current.as_mut()
    }

    /// Number of archived sessions.
    #[must_use]
    pub fn previous_count(&self) -> usize {
        self.previous.len()
    }

    /// Makes `session` current, archiving the old current one (oldest archived evicted).
    pub fn promote(&mut self, session: Session) {
        if let Some(old) = self.current.replace(session) {
            self.previous.push_front(old);
            self.previous.truncate(MAX_ARCHIVED_SESSIONS);
        }
    }

    /// Index (0 = current, i+1 = previous\[i\]) of the session created by `base_key`.
    pub(crate) fn find_by_base_key(&self, base_key: &PublicKey) -> Option<usize> {
        self.sessions().position(|s| s.base_key == *base_key)
    }

    fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.current.iter().chain(self.previous.iter())
    }

    /// Decrypts with the current session, then each previous one; the session that succeeds is
    /// promoted to current. Only the succeeding session is modified.
    ///
    /// # Errors
    /// The current session's error if none succeeds ([`RatchetError::DecryptionFailed`] if there
    /// is no session at all).
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        message: &RatchetMessage,
        now: u64,
        rng: &mut R,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        self.decrypt_at(None, message, now, rng)
    }

    /// As [`Self::decrypt`], but only with the session at `only` when given. On success every
    /// session of the record drops its expired skipped keys ([`Session::expire_skipped`]).
    pub(crate) fn decrypt_at<R: CryptoRng + ?Sized>(
        &mut self,
        only: Option<usize>,
        message: &RatchetMessage,
        now: u64,
        rng: &mut R,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let mut first_err = None;
        let count = usize::from(self.current.is_some()) + self.previous.len();
        for i in 0..count {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let Some(mut s) = self.session_at(i).cloned() else {
                continue;
            };
            match s.decrypt(message, now, rng) {
                Ok(pt) => {
                    self.replace_and_promote(i, s);
                    self.expire_skipped(now);
                    return Ok(pt);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(RatchetError::DecryptionFailed))
    }

    /// Drops expired skipped keys in every session of the record ([`Session::expire_skipped`]).
    pub fn expire_skipped(&mut self, now: u64) {
        for s in self.current.iter_mut().chain(self.previous.iter_mut()) {
            s.expire_skipped(now);
        }
    }

    fn session_at(&self, i: usize) -> Option<&Session> {
        self.sessions().nth(i)
    }

    fn replace_and_promote(&mut self, i: usize, s: Session) {
        if i == 0 && self.current.is_some() {
            self.current = Some(s);
        } else {
            let prev_idx = i - usize::from(self.current.is_some());
            if prev_idx < self.previous.len() {
                self.previous.remove(prev_idx);
            }
            self.promote(s);
        }
    }

    /// Pickle: `0x01 || 0x31 || has_current u8 || n_previous u8 || (len u32 || session)*`,
    /// current first.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut o = Zeroizing::new(vec![RECORD_VERSION, RECORD_TYPE]);
        o.push(u8::from(self.current.is_some()));
        o.push(u8::try_from(self.previous.len()).unwrap_or(u8::MAX));
        for s in self.sessions() {
            haven_protocol::encoding::put_bytes_u32(&mut o, &s.to_bytes());
        }
        o
    }

    /// Parses [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`RatchetError::Malformed`] / [`RatchetError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RatchetError> {
        let m = RatchetError::Malformed;
        let mut r = Reader::new(bytes);
        match (r.u8(), r.u8()) {
            (Some(RECORD_VERSION), Some(RECORD_TYPE)) => {}
            (Some(_), Some(_)) => return Err(RatchetError::UnsupportedVersion),
            _ => return Err(m),
        }
        let has_current = match r.u8() {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(m),
        };
        let n_prev = usize::from(r.u8().ok_or(m.clone())?);
        if n_prev > MAX_ARCHIVED_SESSIONS {
            return Err(m);
        }
        let mut read =
            || Session::from_bytes(r.bytes_u32(usize::MAX).ok_or(RatchetError::Malformed)?);
        let current = if has_current { Some(read()?) } else { None };
        let mut previous = VecDeque::with_capacity(n_prev);
        for _ in 0..n_prev {
            previous.push_back(read()?);
        }
        r.finish().ok_or(m)?;
        Ok(Self { current, previous })
    }
}

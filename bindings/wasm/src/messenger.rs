//! The messenger for the web: the client core's messenger (`haven_client_core::messenger`, the
//! state `haven_client::Messenger` drives natively) over the same store as the [`DeviceCore`]
//! it is made for, as steps the page drives (`js/haven-client.js`, `HavenMessenger`):
//! contacts and contact cards, texts, receipts, typing, reactions, edits, deletes, timers,
//! groups with their epochs, channels and sender keys, received envelopes and channel entries
//! as events, the durable follow-ups, safety numbers.
//!
//! Nothing about contents is decided here: each step calls the core and converts ids, JSON and
//! events at the boundary. What the binding keeps is what the native driver keeps across its
//! awaits: the user actions whose content is being delivered ([`Outgoing`], applied locally or
//! taken back by [`MessengerCore::action_done`]), the member changes waiting for the relay's
//! answer, the follow-up tasks being run, a request id counter for subscriptions. A content to
//! deliver 1:1 is prepared in the device ([`DeviceCore::prepare_content`]); the page delivers
//! it with the device's steps (`claimPaths`, `encryptPrepared`, `repairDevices`,
//! `finishSend`), to the contact and then, as a sync copy, to this account
//! (`ownDevicesDue`/`setOwnDevices` first), exactly as `haven_client::Messenger` does.
//!
//! ```text
//! send        sendText / markRead / typing / react / edit / deleteMessage / setTimer
//!             ─► Action {direct: {account, messageId}} | {group: {senderKey?, post}}
//!             direct: cardFor(account) ─► deliver ─► cardSent · deliver(messageId) to the
//!             contact, then to this account · group: deliver the sender key to the members,
//!             POST post.body to post.path (bearer post.token) ─► actionDone(actionId, ok)
//! groups      POST /v1/channels ─► createGroup(answer) ─► invite, senderKey deliveries
//!             (and adminKey, to this account's other devices)
//!             addMember ─► post ─► POST /v1/channels ─► addMemberPosted(answer) ─► …
//!             removeMember ─► post ─► POST /v1/channels ─► removeMemberPosted(answer) ─► …
//! receive     envelope frame / GET /v1/messages ─► receiveEnvelope ─► ack
//!             channel entry frame ─► receiveChannelEntry · channelReads ─► GET ─►
//!             receiveChannelPage · subscribeFrames(group) on the socket
//!             each: {events, subscribe: [group ids], tasksAdded}
//! follow-ups  followUps(nowMs) ─► followUp(taskId) ─► deliver ─► taskDone(taskId)
//!             nextTaskDueMs(nowMs) ─► setTimeout ─► followUps(…) (delayed receipts, §13.4.1)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_client_core::device::Opened;
use haven_client_core::messenger::channels::ChannelItem;
use haven_client_core::messenger::{
    self as core, Applied, Channel, FollowUp, GroupState, Outgoing, RejectReason, WakeSummary,
    channels, outgoing,
};
use haven_protocol::api::channels::{CreateChannelResponse, EntriesPage};
use haven_protocol::content::{Content, Conversation};
use haven_sdk::IdentityKey;
use haven_sdk::store::{DeviceAddress, IdentityStore};

use crate::device::{DeviceCore, parse_reply, request_json};
use crate::error::{ErrorCode, WebError, WebResult, bad_response, invalid};
use crate::frames::parse_id;
use haven_client_core::device::DeliveredFranking;

/// Actions and member changes a page may have in flight at once; the oldest is forgotten
/// beyond this (an action forgotten unresolved keeps what it stored, as if it went out).
pub const MAX_PENDING_ACTIONS: usize = 64;

mod views;
// wasm-bindgen's macros expand to `unsafe` FFI glue; no `unsafe` is written by hand here.
#[allow(unsafe_code)]
mod web;

pub use views::{
    Action, ChannelPage, ChannelPost, ChannelRead, ContactView, ConversationView, Delivery,
    DirectSend, EventView, GroupInvites, GroupSend, GroupView, MemberChange, MessageView,
    ReactionView, ReceiptPolicyView, Received, SafetyNumberView, WakeSummaryView, conversation,
    receipt_policy,
};
pub use web::WebMessenger;

use views::hexes;

/// What the messenger keeps between the page's requests.
enum Pending {
    /// A user action being delivered.
    Action(Outgoing),
    /// A member added or removed: the signed next epoch starts once its update is posted and
    /// its channel created.
    Change { state: GroupState },
}

/// The messenger's steps over a [`DeviceCore`] (which holds the state): what the page calls,
/// as plain Rust (tested natively); `WebMessenger` is its JavaScript face.
#[derive(Default)]
pub struct MessengerCore {
    pending: Vec<(String, Pending)>,
    tasks: Vec<(String, FollowUp)>,
    request_id: u32,
    /// What a wake-up in progress processed ([`Self::begin_wake`]).
    wake: Option<WakeSummary>,
}

impl std::fmt::Debug for MessengerCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessengerCore")
            .field("pending", &self.pending.len())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

fn handle() -> String {
    let mut id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    hex::encode(id)
}

fn account_arg(text: &str) -> WebResult<[u8; 16]> {
    parse_id(text)
}

fn ids_arg(texts: &[String]) -> WebResult<Vec<[u8; 16]>> {
    texts.iter().map(|t| parse_id(t)).collect()
}

fn me(dev: &DeviceCore) -> WebResult<DeviceAddress> {
    Ok(dev.local()?.address())
}

fn identity_key(b64_key: &str) -> WebResult<IdentityKey> {
    let bytes = STANDARD
        .decode(b64_key.trim())
        .map_err(|_| invalid("an identity key is base64"))?;
    IdentityKey::from_bytes(&bytes).map_err(|e| invalid(format!("identity key: {e}")))
}

/// A channel from the relay's answer to `POST /v1/channels` (a malformed one is the relay's
/// fault, not the caller's).
fn channel_from(answer: &str) -> WebResult<Channel> {
    let reply: CreateChannelResponse = parse_reply(answer, "channel answer")?;
    Channel::from_reply(&reply).map_err(|e| bad_response(e.to_string()))
}

impl MessengerCore {
    /// A messenger with nothing in flight.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn keep(&mut self, pending: Pending) -> String {
        if self.pending.len() >= MAX_PENDING_ACTIONS {
            self.pending.remove(0);
        }
        let id = handle();
        self.pending.push((id.clone(), pending));
        id
    }

    fn take(&mut self, id: &str) -> WebResult<Pending> {
        parse_id(id)?;
        let at = self
            .pending
            .iter()
            .position(|(h, _)| h == id)
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no such action in flight"))?;
        Ok(self.pending.remove(at).1)
    }

    // ---------------------------------------------------------------- contacts

    /// Adds `account` as a contact (with the `username` it was looked up by, trimmed and
    /// lowercased as the relay does); its contact card goes out with [`Self::card_for`].
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed id or this account.
    pub fn add_contact(
        &mut self,
        dev: &mut DeviceCore,
        account: &str,
        username: Option<&str>,
    ) -> WebResult<ContactView> {
        let account = account_arg(account)?;
        let own = dev.local()?.account();
        let username = username.map(|u| u.trim().to_lowercase());
        Ok(core::add_contact(dev.store(), &own, &account, username)?.into())
    }

    /// Blocks (`true`) or unblocks `account`: its messages are dropped on receipt (1:1 and in
    /// groups) and nothing is sent to it 1:1; the relay is not told.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed id or this account.
    pub fn set_blocked(
        &mut self,
        dev: &mut DeviceCore,
        account: &str,
        blocked: bool,
    ) -> WebResult<ContactView> {
        let account = account_arg(account)?;
        let own = dev.local()?.account();
        Ok(core::set_blocked(dev.store(), &own, &account, blocked)?.into())
    }

    /// One contact, if it is one.
    ///
    /// # Errors
    /// A malformed id, a corrupt state.
    pub fn contact(&self, dev: &DeviceCore, account: &str) -> WebResult<Option<ContactView>> {
        Ok(core::contact(dev.store(), &account_arg(account)?)?.map(Into::into))
    }

    /// Every contact.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn contacts(&self, dev: &DeviceCore) -> WebResult<Vec<ContactView>> {
        Ok(core::contacts(dev.store())?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// This account's contact card for `account`, prepared for delivery (to `account` and the
    /// own other devices), when it still has to go out before anything else is sent to it;
    /// `None` when it went out already, or for this account. Then [`Self::card_sent`].
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] when this device does not hold the account's access key
    /// (a device that logged in to an existing account learns it from another own device).
    pub fn card_for(
        &mut self,
        dev: &mut DeviceCore,
        account: &str,
        now_ms: u64,
    ) -> WebResult<Option<String>> {
        let account = account_arg(account)?;
        if account == dev.local()?.account() || !core::needs_card(dev.store(), &account)? {
            return Ok(None);
        }
        let key =
            haven_client_core::device::state::own_access_key(dev.store())?.ok_or_else(|| {
                WebError::new(
                    ErrorCode::InvalidState,
                    "this device does not hold the account's access key",
                )
            })?;
        let card = core::contact_card(&account, key, now_ms);
        dev.prepare_content(&card, false).map(Some)
    }

    /// Records that the contact card went out to `account` (making it a contact).
    ///
    /// # Errors
    /// A malformed id, a corrupt state.
    pub fn card_sent(&mut self, dev: &mut DeviceCore, account: &str) -> WebResult<ContactView> {
        Ok(core::card_sent(dev.store(), &account_arg(account)?)?.into())
    }

    /// The safety numbers with each known device of `account` (compare them out of band).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] when no device of the contact is known yet.
    pub fn safety_numbers(
        &self,
        dev: &DeviceCore,
        account: &str,
    ) -> WebResult<Vec<SafetyNumberView>> {
        let account = account_arg(account)?;
        let out = dev.local()?.safety_numbers(dev.store(), &account)?;
        if out.is_empty() {
            return Err(invalid("no device of this contact is known yet"));
        }
        Ok(out
            .into_iter()
            .map(|s| SafetyNumberView {
                device: s.device,
                digits: s.digits,
            })
            .collect())
    }

    /// The safety number this device would have with `account` if its device used
    /// `identity_key` (base64, e.g. the `identity_key` of its bundle): what the user compares
    /// before [`Self::accept_identity`].
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed id or key.
    pub fn safety_number_with(
        &self,
        dev: &DeviceCore,
        account: &str,
        identity: &str,
    ) -> WebResult<String> {
        let account = account_arg(account)?;
        let key = identity_key(identity)?;
        let own = dev.local()?.account();
        let own_key = *dev.store().identity_key_pair()?.public();
        Ok(haven_sdk::safety_number(&own, &own_key, &account, &key))
    }

    /// Accepts a contact device's new identity key (base64) after the user compared the safety
    /// number: the old session is dropped and the next message starts a new one.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed id or key.
    pub fn accept_identity(
        &mut self,
        dev: &mut DeviceCore,
        account: &str,
        device: u32,
        identity: &str,
    ) -> WebResult<()> {
        let account = account_arg(account)?;
        let key = identity_key(identity)?;
        let local = dev.local()?;
        Ok(local.accept_identity(dev.store_mut(), &DeviceAddress::new(account, device), &key)?)
    }

    // ---------------------------------------------------------------- actions

    /// Prepares the delivery of an action's content and keeps the action until
    /// [`Self::action_done`]; a failure takes back what the action stored.
    fn start(
        &mut self,
        dev: &mut DeviceCore,
        out: Outgoing,
        content_id: Option<[u8; 16]>,
        ephemeral: bool,
        now_ms: u64,
    ) -> WebResult<Action> {
        let prepared = match out.content().conversation {
            Conversation::Direct(account) => {
                dev.prepare_content(out.content(), ephemeral)
                    .map(|message_id| {
                        (
                            Some(DirectSend {
                                account: hex::encode(account),
                                message_id,
                                ephemeral,
                            }),
                            None,
                        )
                    })
            }
            Conversation::Group(group) => self
                .group_send(dev, &group, out.content(), now_ms)
                .map(|send| (None, Some(send))),
        };
        match prepared {
            Ok((direct, group)) => Ok(Action {
                action_id: self.keep(Pending::Action(out)),
                content_id: content_id.map(hex::encode),
                direct,
                group,
            }),
            Err(e) => {
                out.failed(dev.store())?;
                Err(e)
            }
        }
    }

    /// A content for an active group: this device's sender key when it has no sending session
    /// for the epoch yet (made now), then the content sealed as a channel entry.
    fn group_send(
        &mut self,
        dev: &mut DeviceCore,
        group: &[u8; 16],
        content: &Content,
        now_ms: u64,
    ) -> WebResult<GroupSend> {
        let me = me(dev)?;
        let state = core::active_group(dev.store(), group)?;
        let epoch = state.current().number();
        let sender_key = if core::has_own_sender_session(dev.store(), group, epoch) {
            None
        } else {
            let key =
                outgoing::sender_key(dev.store_mut(), group, epoch, now_ms, &mut rand::rng())?;
            Some(Delivery {
                message_id: dev.prepare_content(&key, false)?,
                accounts: hexes(state.members()),
            })
        };
        // Franked for the channel with the relay's key once it offered one (the page asks for
        // it first, `needsFrankingKey`).
        let franking_key = dev.franking_key()?;
        let entry = outgoing::group_entry(
            dev.store_mut(),
            &me,
            &state,
            content,
            franking_key.as_ref(),
            &mut rand::rng(),
        )?;
        let current = state.current();
        Ok(GroupSend {
            group_id: hex::encode(group),
            sender_key,
            post: ChannelPost {
                channel_id: hex::encode(current.channel_id()),
                path: current.append_path(),
                token: current.write_bearer().to_string(),
                body: request_json(&channels::append_body(
                    &entry.entry,
                    entry.commitment.as_ref(),
                ))?,
            },
        })
    }

    /// Sends a text (and an encoded attachment pointer, may be empty) to a conversation,
    /// carrying its timer; stored as outgoing at once.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (empty message, unknown group), [`ErrorCode::Limit`].
    pub fn send_text(
        &mut self,
        dev: &mut DeviceCore,
        conversation: Conversation,
        text: &str,
        attachment: Vec<u8>,
        now_ms: u64,
    ) -> WebResult<Action> {
        let me = me(dev)?;
        let (id, out) = outgoing::message(
            dev.store(),
            &me,
            conversation,
            text,
            attachment,
            now_ms,
            &mut rand::rng(),
        )?;
        self.start(dev, out, Some(id), false, now_ms)
    }

    /// A read receipt for messages of the conversation (`None` for none).
    ///
    /// # Errors
    /// Malformed ids, an unknown group.
    pub fn mark_read(
        &mut self,
        dev: &mut DeviceCore,
        conversation: Conversation,
        message_ids: &[String],
        now_ms: u64,
    ) -> WebResult<Option<Action>> {
        let ids = ids_arg(message_ids)?;
        match outgoing::read_receipt(conversation, &ids, now_ms) {
            Some(out) => self.start(dev, out, None, false, now_ms).map(Some),
            None => Ok(None),
        }
    }

    /// A typing indicator (1:1 only; ephemeral).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a group.
    pub fn typing(
        &mut self,
        dev: &mut DeviceCore,
        conversation: Conversation,
        started: bool,
        now_ms: u64,
    ) -> WebResult<Action> {
        let out = outgoing::typing(conversation, started, now_ms)?;
        self.start(dev, out, None, true, now_ms)
    }

    /// This account's reaction to a message, or its removal.
    ///
    /// # Errors
    /// [`ErrorCode::Limit`] for an empty or too long reaction, a malformed id.
    pub fn react(
        &mut self,
        dev: &mut DeviceCore,
        conversation: Conversation,
        target: &str,
        emoji: &str,
        remove: bool,
        now_ms: u64,
    ) -> WebResult<Action> {
        let target = parse_id(target)?;
        let own = dev.local()?.account();
        let out = outgoing::reaction(&own, conversation, target, emoji, remove, now_ms)?;
        self.start(dev, out, None, false, now_ms)
    }

    /// New text for one of this account's messages.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] when the message is unknown, not this account's or
    /// deleted.
    pub fn edit(
        &mut self,
        dev: &mut DeviceCore,
        conversation: Conversation,
        target: &str,
        text: &str,
        now_ms: u64,
    ) -> WebResult<Action> {
        let target = parse_id(target)?;
        let out = outgoing::edit(dev.store(), conversation, target, text, now_ms)?;
        self.start(dev, out, None, false, now_ms)
    }

    /// Deletes one of this account's messages for everyone.
    ///
    /// # Errors
    /// As [`Self::edit`].
    pub fn delete(
        &mut self,
        dev: &mut DeviceCore,
        conversation: Conversation,
        target: &str,
        now_ms: u64,
    ) -> WebResult<Action> {
        let target = parse_id(target)?;
        let out = outgoing::delete(dev.store(), conversation, target, now_ms)?;
        self.start(dev, out, None, false, now_ms)
    }

    /// Sets the conversation's disappearing timer (0 = off) for both sides.
    ///
    /// # Errors
    /// An unknown group.
    pub fn set_timer(
        &mut self,
        dev: &mut DeviceCore,
        conversation: Conversation,
        expire_secs: u32,
        now_ms: u64,
    ) -> WebResult<Action> {
        let out = outgoing::timer(conversation, expire_secs, now_ms);
        self.start(dev, out, None, false, now_ms)
    }

    /// The action went out (`ok`: applies it locally) or did not (takes a text back out). A
    /// member change given up is forgotten.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] for an unknown action (or a member change reported done:
    /// finish it with its own step).
    pub fn action_done(
        &mut self,
        dev: &mut DeviceCore,
        action_id: &str,
        ok: bool,
    ) -> WebResult<()> {
        match (self.take(action_id)?, ok) {
            (Pending::Action(out), true) => Ok(out.sent(dev.store())?),
            (Pending::Action(out), false) => Ok(out.failed(dev.store())?),
            (_, false) => Ok(()),
            (_, true) => Err(WebError::new(
                ErrorCode::InvalidState,
                "a member change is finished by addMemberPosted / removeMemberPosted",
            )),
        }
    }

    // ---------------------------------------------------------------- queries

    /// The messages of a conversation, oldest first (disappeared ones are deleted first).
    ///
    /// # Errors
    /// A corrupt state.
    pub fn history(
        &self,
        dev: &DeviceCore,
        conversation: Conversation,
        now_ms: u64,
    ) -> WebResult<Vec<MessageView>> {
        Ok(core::history(dev.store(), conversation, now_ms)?
            .iter()
            .map(Into::into)
            .collect())
    }

    /// The body of `POST /v1/reports` (bearer; PROTOCOL §16.9) reporting message `message_id`
    /// of `conversation`, from the report material kept when it arrived, completed with the
    /// franking key this device holds if it knew none then. Nothing changes.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] (unknown message), [`ErrorCode::NotReportable`],
    /// [`ErrorCode::InvalidArgument`].
    pub fn report_request(
        &self,
        dev: &DeviceCore,
        conversation: Conversation,
        message_id: &str,
        now_ms: u64,
    ) -> WebResult<String> {
        let id = parse_id(message_id)?;
        let current = dev.franking_key()?;
        let body = core::report_request(
            dev.store(),
            &conversation,
            &id,
            current.as_ref(),
            now_ms / 1000,
        )?;
        request_json(&body)
    }

    /// The conversations with stored messages.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn conversations(&self, dev: &DeviceCore) -> WebResult<Vec<ConversationView>> {
        Ok(core::conversations(dev.store())?
            .iter()
            .map(Into::into)
            .collect())
    }

    /// The conversation's disappearing timer in seconds (0 = off).
    ///
    /// # Errors
    /// A corrupt state.
    pub fn timer(&self, dev: &DeviceCore, conversation: Conversation) -> WebResult<u32> {
        Ok(core::timer(dev.store(), &conversation)?)
    }

    /// Every group this device knows.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn groups(&self, dev: &DeviceCore) -> WebResult<Vec<GroupView>> {
        Ok(core::groups(dev.store())?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    // ---------------------------------------------------------------- groups

    /// Invites `to` to `state`'s current epoch (reading after `after`) and makes this device's
    /// sender key for it.
    fn invites(
        &mut self,
        dev: &mut DeviceCore,
        state: &GroupState,
        to: &[[u8; 16]],
        after: u64,
        now_ms: u64,
    ) -> WebResult<GroupInvites> {
        let invite = outgoing::group_invite(state, after, now_ms);
        let invite = dev.prepare_content(&invite, false)?;
        let key = outgoing::sender_key(
            dev.store_mut(),
            state.id(),
            state.current().number(),
            now_ms,
            &mut rand::rng(),
        )?;
        let key = dev.prepare_content(&key, false)?;
        Ok(GroupInvites {
            group_id: hex::encode(state.id()),
            invite: Delivery {
                message_id: invite,
                accounts: hexes(to),
            },
            sender_key: Delivery {
                message_id: key,
                accounts: hexes(to),
            },
            event: (&state.updated_event()).into(),
            admin_key: None,
        })
    }

    /// Creates a group of this account and `members` over the channel of `channel_answer`
    /// (the relay's answer to `POST /v1/channels`); stored at once. Deliver the invite to every
    /// member (this account included, for its other devices), then the sender key.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidResponse`] for a malformed answer, [`ErrorCode::InvalidArgument`]
    /// for malformed ids, [`ErrorCode::Limit`] for a too long name or too many members.
    pub fn create_group(
        &mut self,
        dev: &mut DeviceCore,
        name: &str,
        members: &[String],
        channel_answer: &str,
        now_ms: u64,
    ) -> WebResult<GroupInvites> {
        let members = ids_arg(members)?;
        let channel = channel_from(channel_answer)?;
        let own = dev.local()?.account();
        let state = outgoing::create_group(
            dev.store(),
            &own,
            name,
            &members,
            &channel,
            &mut rand::rng(),
        )?;
        let all = state.members().to_vec();
        let mut invites = self.invites(dev, &state, &all, 0, now_ms)?;
        if let Some(copy) = outgoing::admin_key(&state, now_ms) {
            invites.admin_key = Some(Delivery {
                message_id: dev.prepare_content(&copy, false)?,
                accounts: hexes(&[own]),
            });
        }
        Ok(invites)
    }

    /// Adds `account` to a group (this device must hold its admin key): post the signed
    /// update, create a channel, then [`Self::add_member_posted`].
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an unknown or left group, an existing member, a
    /// device that is not the group's admin; [`ErrorCode::Limit`] for a full group.
    pub fn add_member(
        &mut self,
        dev: &mut DeviceCore,
        group: &str,
        account: &str,
        now_ms: u64,
    ) -> WebResult<MemberChange> {
        let (group, account) = (parse_id(group)?, account_arg(account)?);
        let change = outgoing::add_member(dev.store(), &group, &account, now_ms, &mut rand::rng())?;
        self.member_change(dev, &group, change, now_ms)
    }

    /// The update of [`Self::add_member`] was posted and the next epoch's channel created
    /// (`channel_answer`): the epoch starts with a new group key; deliver the invite and then
    /// the sender key to every member, the new one included.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] for an unknown change, [`ErrorCode::InvalidResponse`].
    pub fn add_member_posted(
        &mut self,
        dev: &mut DeviceCore,
        change_id: &str,
        channel_answer: &str,
        now_ms: u64,
    ) -> WebResult<GroupInvites> {
        self.member_change_posted(dev, change_id, channel_answer, now_ms)
    }

    /// Removes `account` from a group (this device must hold its admin key): post the signed
    /// update (on the current channel, where the removed member learns it), create a channel,
    /// then [`Self::remove_member_posted`].
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an unknown or left group, a non-member or this
    /// account, a device that is not the group's admin, a group whose epochs are used up.
    pub fn remove_member(
        &mut self,
        dev: &mut DeviceCore,
        group: &str,
        account: &str,
        now_ms: u64,
    ) -> WebResult<MemberChange> {
        let (group, account) = (parse_id(group)?, account_arg(account)?);
        let own = dev.local()?.account();
        let change = outgoing::remove_member(
            dev.store(),
            &own,
            &group,
            &account,
            now_ms,
            &mut rand::rng(),
        )?;
        self.member_change(dev, &group, change, now_ms)
    }

    /// The update of [`Self::remove_member`] was posted and the next epoch's channel created
    /// (`channel_answer`): the epoch starts with a new group key; deliver the invite and then
    /// the sender key to the remaining members only.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] for an unknown change, [`ErrorCode::InvalidResponse`].
    pub fn remove_member_posted(
        &mut self,
        dev: &mut DeviceCore,
        change_id: &str,
        channel_answer: &str,
        now_ms: u64,
    ) -> WebResult<GroupInvites> {
        self.member_change_posted(dev, change_id, channel_answer, now_ms)
    }

    fn member_change(
        &mut self,
        dev: &mut DeviceCore,
        group: &[u8; 16],
        change: outgoing::MemberChange,
        now_ms: u64,
    ) -> WebResult<MemberChange> {
        let update = self.group_send(dev, group, &change.update, now_ms)?;
        let change_id = self.keep(Pending::Change {
            state: change.state,
        });
        Ok(MemberChange { change_id, update })
    }

    fn member_change_posted(
        &mut self,
        dev: &mut DeviceCore,
        change_id: &str,
        channel_answer: &str,
        now_ms: u64,
    ) -> WebResult<GroupInvites> {
        let channel = channel_from(channel_answer)?;
        let Pending::Change { mut state } = self.take(change_id)? else {
            return Err(WebError::new(
                ErrorCode::InvalidState,
                "not a member change",
            ));
        };
        state.start_epoch(&channel)?;
        core::save_group(dev.store(), &state)?;
        let members = state.members().to_vec();
        self.invites(dev, &state, &members, 0, now_ms)
    }

    /// The WebSocket frames subscribing to the channels `group` reads (every group's when
    /// `None`), each after its cursor.
    ///
    /// # Errors
    /// A malformed id, a corrupt state.
    pub fn subscribe_frames(
        &mut self,
        dev: &DeviceCore,
        group: Option<&str>,
    ) -> WebResult<Vec<Vec<u8>>> {
        let group = group.map(parse_id).transpose()?;
        let mut out = Vec::new();
        for state in core::group_states(dev.store())? {
            if group.is_some_and(|g| g != *state.id()) {
                continue;
            }
            for epoch in state.readable_epochs() {
                self.request_id = self.request_id.wrapping_add(1);
                out.push(epoch.subscribe_frame(self.request_id).to_vec());
            }
        }
        Ok(out)
    }

    /// The channels to read over REST (every readable epoch of every group, after its cursor).
    ///
    /// # Errors
    /// A corrupt state.
    pub fn channel_reads(&self, dev: &DeviceCore) -> WebResult<Vec<ChannelRead>> {
        let mut out = Vec::new();
        for state in core::group_states(dev.store())? {
            for epoch in state.readable_epochs() {
                out.push(ChannelRead {
                    group_id: hex::encode(state.id()),
                    epoch: epoch.number(),
                    channel_id: hex::encode(epoch.channel_id()),
                    path: epoch.entries_path(epoch.cursor()),
                    token: epoch.read_bearer().to_string(),
                });
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- receiving

    /// The events of `applied` with those of the entries its sender keys released.
    fn finish(
        &mut self,
        dev: &mut DeviceCore,
        status: &'static str,
        applied: Applied,
        now_ms: u64,
    ) -> WebResult<Received> {
        let mut events = applied.events;
        if !applied.retry_groups.is_empty() {
            let me = me(dev)?;
            for g in &applied.retry_groups {
                events.extend(core::retry_pending(
                    dev.store_mut(),
                    &me,
                    g,
                    now_ms,
                    &mut rand::rng(),
                )?);
            }
        }
        if let Some(wake) = &mut self.wake {
            wake.add_events(&events);
        }
        let mut subscribe: Vec<String> = Vec::new();
        for g in &applied.subscribe {
            let g = hex::encode(g);
            if !subscribe.contains(&g) {
                subscribe.push(g);
            }
        }
        Ok(Received {
            status,
            account: None,
            events: events.iter().map(Into::into).collect(),
            subscribe,
            tasks_added: applied.tasks_added,
        })
    }

    /// Processes one envelope (`content` base64, from a WebSocket frame or `GET
    /// /v1/messages`; `ephemeral` for an ephemeral frame): opened exactly once and its content
    /// applied in one store transaction. `franking_json` is the envelope's franking as the
    /// relay delivered it (see [`FrankingArg`]); a franked envelope without it is refused. Ack
    /// it afterwards whatever the outcome (not an ephemeral one).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed message id, [`ErrorCode::InvalidState`]
    /// before login; a bad envelope is a `rejected` event, not an error.
    #[allow(clippy::too_many_arguments)] // one envelope and its delivery
    pub fn receive_envelope(
        &mut self,
        dev: &mut DeviceCore,
        message_id: &str,
        content_b64: &str,
        franking_json: Option<&str>,
        ephemeral: bool,
        list_fresh: bool,
        now_ms: u64,
    ) -> WebResult<Received> {
        parse_id(message_id)?;
        let Ok(content) = STANDARD.decode(content_b64) else {
            let reason = RejectReason::Malformed("envelope is not base64".into());
            return self.finish(dev, "rejected", Applied::rejected(reason), now_ms);
        };
        let delivered = match franking_json.map(FrankingArg::parse).transpose() {
            Ok(d) => d,
            Err(why) => {
                let reason = RejectReason::Malformed(why.into());
                return self.finish(dev, "rejected", Applied::rejected(reason), now_ms);
            }
        };
        let me = me(dev)?;
        let opened = dev.open_envelope(
            message_id,
            &content,
            delivered.as_ref(),
            ephemeral,
            now_ms / 1000,
            |s, sender, plain, franking| {
                Ok(core::apply_direct(
                    s,
                    &me,
                    sender,
                    plain,
                    franking,
                    ephemeral,
                    now_ms,
                    &mut rand::rng(),
                )?)
            },
        )?;
        let opened = if list_fresh {
            opened.unlisted()
        } else {
            opened
        };
        let (status, applied) = match opened {
            Opened::NeedDeviceList { account, .. } => {
                let mut received =
                    self.finish(dev, "need_device_list", Applied::default(), now_ms)?;
                received.account = Some(hex::encode(account));
                return Ok(received);
            }
            Opened::Duplicate => ("duplicate", Applied::default()),
            Opened::Rejected(reason) => ("rejected", Applied::envelope_rejected(reason)),
            Opened::Accepted { value, .. } => ("accepted", value),
        };
        if !ephemeral && let Some(wake) = &mut self.wake {
            wake.add_envelope();
        }
        self.finish(dev, status, applied, now_ms)
    }

    /// Starts counting what is processed for a push wake-up (PROTOCOL §13.4.2): every envelope
    /// and channel entry received until [`Self::end_wake`], by whichever path (each is
    /// processed once, so counted once).
    pub fn begin_wake(&mut self) {
        self.wake = Some(WakeSummary::default());
    }

    /// Ends the wake-up's count: what it processed, `complete` when everything waiting was
    /// fetched within its budget, and when the next delayed follow-up is due.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn end_wake(
        &mut self,
        dev: &DeviceCore,
        complete: bool,
        now_ms: u64,
    ) -> WebResult<WakeSummaryView> {
        let mut summary = self.wake.take().unwrap_or_default();
        summary.complete = complete;
        summary.next_task_due_ms = core::next_due(dev.store(), now_ms)?;
        Ok(WakeSummaryView::from(&summary))
    }

    fn entries(
        &mut self,
        dev: &mut DeviceCore,
        channel: &[u8; 16],
        entries: &[ChannelItem],
        now_ms: u64,
    ) -> WebResult<Received> {
        let index = core::channel_index(dev.store())?;
        let Some((group, epoch)) = index.get(channel).copied() else {
            // A channel this device does not read (any more).
            return self.finish(dev, "accepted", Applied::default(), now_ms);
        };
        let me = me(dev)?;
        let applied = core::apply_entries(
            dev.store_mut(),
            &me,
            &group,
            epoch,
            entries,
            now_ms,
            &mut rand::rng(),
        )?;
        self.finish(dev, "accepted", applied, now_ms)
    }

    /// Processes one entry of a channel subscription (a `channel_entry` frame: its channel,
    /// seq and base64 entry, and `franking_json`, its franking as a [`FrankingArg`] with the
    /// entry's `createdAt`, when the frame carries one). Entries processed before are skipped.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed id, entry or franking.
    pub fn receive_channel_entry(
        &mut self,
        dev: &mut DeviceCore,
        channel_id: &str,
        seq: u64,
        entry_b64: &str,
        franking_json: Option<&str>,
        now_ms: u64,
    ) -> WebResult<Received> {
        let channel = parse_id(channel_id)?;
        let entry = STANDARD
            .decode(entry_b64)
            .map_err(|_| invalid("a channel entry is base64"))?;
        let franking = franking_json
            .map(FrankingArg::parse)
            .transpose()
            .map_err(invalid)?;
        let item = ChannelItem {
            seq,
            entry,
            franking,
        };
        self.entries(dev, &channel, &[item], now_ms)
    }

    /// Processes a page of `GET /v1/channels/{channel_id}/entries`; `next` is the path of the
    /// following page, if any.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a malformed id, [`ErrorCode::InvalidResponse`] for
    /// a malformed page.
    pub fn receive_channel_page(
        &mut self,
        dev: &mut DeviceCore,
        channel_id: &str,
        answer: &str,
        now_ms: u64,
    ) -> WebResult<ChannelPage> {
        let channel = parse_id(channel_id)?;
        let page: EntriesPage = parse_reply(answer, "channel page")?;
        let entries = channels::page_entries(&page).map_err(|e| bad_response(e.to_string()))?;
        let received = self.entries(dev, &channel, &entries, now_ms)?;
        let next = match entries.last() {
            Some(ChannelItem { seq: last, .. }) if page.more => core::group_states(dev.store())?
                .iter()
                .flat_map(|g| {
                    g.readable_epochs()
                        .into_iter()
                        .filter(|e| *e.channel_id() == channel)
                        .map(|e| e.entries_path(*last))
                        .collect::<Vec<_>>()
                })
                .next(),
            _ => None,
        };
        Ok(ChannelPage { received, next })
    }

    // ---------------------------------------------------------------- follow-ups

    /// The follow-ups due at `now_ms` (sender-key distribution, delivery receipts: those owed
    /// to one account as one), as handles to run one by one with [`Self::follow_up`].
    ///
    /// # Errors
    /// A corrupt state.
    pub fn follow_ups(&mut self, dev: &DeviceCore, now_ms: u64) -> WebResult<Vec<String>> {
        self.tasks = core::due_follow_ups(dev.store(), now_ms)?
            .into_iter()
            .map(|t| (handle(), t))
            .collect();
        Ok(self.tasks.iter().map(|(h, _)| h.clone()).collect())
    }

    /// When (Unix ms) the next follow-up that is not due at `now_ms` becomes due (a delayed
    /// delivery receipt): run [`Self::follow_ups`] then. `None` when nothing waits.
    ///
    /// # Errors
    /// A corrupt state.
    pub fn next_task_due(&self, dev: &DeviceCore, now_ms: u64) -> WebResult<Option<u64>> {
        Ok(core::next_due(dev.store(), now_ms)?)
    }

    /// When this device sends the delivery receipts it owes (§13.4.1).
    ///
    /// # Errors
    /// A corrupt state.
    pub fn receipt_policy(&self, dev: &DeviceCore) -> WebResult<ReceiptPolicyView> {
        Ok(ReceiptPolicyView::of(core::receipt_policy(dev.store())?))
    }

    /// Sets the receipt policy: `mode` `"immediate"`, `"delayed"` (with both delays, in
    /// seconds, at most 3600) or `"off"`.
    ///
    /// # Errors
    /// `invalid_argument` for an unknown mode or delays outside the limits.
    pub fn set_receipt_policy(
        &mut self,
        dev: &mut DeviceCore,
        mode: &str,
        min_secs: Option<u32>,
        max_secs: Option<u32>,
    ) -> WebResult<ReceiptPolicyView> {
        let policy = receipt_policy(mode, min_secs, max_secs)?;
        core::set_receipt_policy(dev.store(), policy)?;
        Ok(ReceiptPolicyView::of(policy))
    }

    /// What the follow-up sends now, prepared for delivery to its account only; `None` when
    /// it no longer needs to (it is done then). After delivering: [`Self::task_done`]; a task
    /// whose delivery failed stays queued for the next run (also when the recipient's identity
    /// changed or it no longer exists: then `taskDone` too, as the native client does).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] for an unknown task.
    pub fn follow_up(
        &mut self,
        dev: &mut DeviceCore,
        task_id: &str,
        now_ms: u64,
    ) -> WebResult<Option<Delivery>> {
        parse_id(task_id)?;
        let task = self
            .tasks
            .iter()
            .find(|(h, _)| h == task_id)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no such follow-up"))?;
        match core::follow_up(dev.store_mut(), &task, now_ms, &mut rand::rng())? {
            Some(send) => Ok(Some(Delivery {
                message_id: dev.prepare_content(&send.content, false)?,
                accounts: vec![hex::encode(send.to)],
            })),
            None => {
                self.task_done(dev, task_id)?;
                Ok(None)
            }
        }
    }

    /// Removes a follow-up: done (or dropped for good).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidState`] for an unknown task.
    pub fn task_done(&mut self, dev: &mut DeviceCore, task_id: &str) -> WebResult<()> {
        parse_id(task_id)?;
        let at = self
            .tasks
            .iter()
            .position(|(h, _)| h == task_id)
            .ok_or_else(|| WebError::new(ErrorCode::InvalidState, "no such follow-up"))?;
        let (_, task) = self.tasks.remove(at);
        Ok(core::follow_up_done(dev.store(), &task)?)
    }
}

/// The body of `POST /v1/channels` for a group epoch (the relay's default when it refuses this
/// lifetime with `invalid_ttl`: `{}`).
///
/// # Errors
/// None expected.
pub fn channel_request() -> WebResult<String> {
    request_json(&channels::create_request())
}

#[cfg(test)]
mod tests;

/// The franking of a delivered envelope or channel entry as the page hands it to
/// `receiveEnvelope` / `receiveChannelEntry` (JSON):
/// `{"commitment": b64, "stamp": b64, "seq": n, "receivedAt": n}`, from `GET /v1/messages`
/// (`franking`, `seq`, `received_at`) or an envelope frame (`franking`, `seq`, `receivedAt`);
/// for a channel entry frame the time is its `createdAt` (either name is taken).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FrankingArg {
    commitment: String,
    stamp: String,
    seq: u64,
    #[serde(alias = "createdAt")]
    received_at: u64,
}

impl FrankingArg {
    fn parse(json: &str) -> Result<DeliveredFranking, &'static str> {
        let arg: Self = serde_json::from_str(json).map_err(|_| "franking is not valid JSON")?;
        let bytes32 = |s: &str| {
            STANDARD
                .decode(s)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or("franking is not base64 of 32 bytes")
        };
        Ok(DeliveredFranking {
            commitment: bytes32(&arg.commitment)?,
            stamp: bytes32(&arg.stamp)?,
            seq: arg.seq,
            time: arg.received_at,
        })
    }
}

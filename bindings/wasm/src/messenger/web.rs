//! The messenger's JavaScript face (`#[wasm_bindgen]` exports): `WebMessenger` checks its
//! arguments, calls [`MessengerCore`] with the device's state and turns results into JS values
//! and failures into `HavenError`s.

use std::cell::RefCell;
use std::rc::Rc;

use haven_protocol::content::Conversation;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use super::MessengerCore;
use crate::api::{
    JsResult, WebDevice, bytes_arg, closed, js_error, lift, number_arg, opt_string_arg, secret_arg,
    string_arg, strings_arg, to_js, u32_arg,
};
use crate::device::DeviceCore;
use crate::error::{ErrorCode, WebError, WebResult, invalid};

#[wasm_bindgen(typescript_custom_section)]
const TS_MESSENGER: &'static str = r#"
/** A conversation: with a contact account, or a group. */
export interface Conversation { kind: "direct" | "group"; id: string; }
export interface Contact { account: string; username: string | null; cardSent: boolean; blocked: boolean; }
export interface Reaction { from: string; emoji: string; }
export interface Message {
  conversation: Conversation; messageId: string; sender: string; senderDevice: number;
  outgoing: boolean; sentAt: number; text: string; attachment: string | null; edited: boolean;
  deleted: boolean; reactions: Reaction[]; deliveredTo: string[]; readBy: string[];
  expiresAt: number | null;
}
export interface Group { id: string; name: string; members: string[]; epoch: number; active: boolean; admin: boolean; }
export interface SafetyNumber { device: number; digits: string; }
export type HavenEvent =
  | { type: "message"; message: Message }
  | { type: "receipt"; conversation: Conversation; from: string; receipt: "delivered" | "read"; messageIds: string[] }
  | { type: "typing"; conversation: Conversation; from: string; started: boolean }
  | { type: "reaction"; conversation: Conversation; target: string; from: string; emoji: string; removed: boolean }
  | { type: "edited"; conversation: Conversation; target: string; text: string }
  | { type: "deleted"; conversation: Conversation; target: string }
  | { type: "timer"; conversation: Conversation; expireSecs: number }
  | { type: "group_updated"; groupId: string; name: string; members: string[] }
  | { type: "removed_from_group"; groupId: string }
  | { type: "identity_changed"; account: string; device: number }
  | { type: "rejected"; reason: string }
  | { type: "connection"; state: "connecting" | "connected" | "caught_up" | "disconnected" | "stopped"; reason: string | null };
/** A content prepared in the device: deliver it to every device of each account, in order. */
export interface Delivery { messageId: string; accounts: string[]; }
export interface DirectSend { account: string; messageId: string; ephemeral: boolean; }
export interface ChannelPost { channelId: string; path: string; token: string; body: string; }
export interface GroupSend { groupId: string; senderKey: Delivery | null; post: ChannelPost; }
export interface Action { actionId: string; contentId: string | null; direct: DirectSend | null; group: GroupSend | null; }
export interface MemberChange { changeId: string; update: GroupSend; }
export interface GroupInvites { groupId: string; invite: Delivery; senderKey: Delivery; event: HavenEvent; adminKey: Delivery | null; }
export interface Received {
  status: "accepted" | "duplicate" | "rejected"; events: HavenEvent[]; subscribe: string[]; tasksAdded: boolean;
}
export interface ChannelPage extends Received { next: string | null; }
/** What a push wake-up processed (PROTOCOL §13.4.2), for a local notification. */
export interface WakeSummary {
  envelopes: number; messages: number; conversations: Conversation[]; complete: boolean;
  nextTaskDueMs: number | null;
}
/** When delivery receipts go out (PROTOCOL §13.4.1); seconds only with "delayed". */
export interface ReceiptPolicy { mode: "immediate" | "delayed" | "off"; minSecs?: number; maxSecs?: number; }
export interface ChannelRead { groupId: string; epoch: number; channelId: string; path: string; token: string; }
"#;

fn reentrant() -> JsValue {
    js_error(WebError::new(ErrorCode::InvalidState, "re-entrant call"))
}

/// A conversation argument: `{kind: "direct" | "group", id}`.
fn conversation_arg(v: &JsValue) -> WebResult<Conversation> {
    if !v.is_object() {
        return Err(invalid(
            "conversation must be an object {kind: \"direct\" | \"group\", id}",
        ));
    }
    let field = |name: &str| {
        Reflect::get(v, &name.into())
            .map_err(|_| invalid("conversation is not readable"))
            .and_then(|f| string_arg(&f, &format!("conversation.{name}")))
    };
    super::conversation(&field("kind")?, &field("id")?)
}

/// `nowMs`, or the page's clock when it is left out.
fn now_or_clock(v: &JsValue) -> WebResult<u64> {
    if v.is_undefined() {
        return number_arg(&JsValue::from_f64(js_sys::Date::now()), "nowMs");
    }
    number_arg(v, "nowMs")
}

/// A receipt policy argument: `{mode, minSecs?, maxSecs?}`.
fn receipt_policy_arg(v: &JsValue) -> WebResult<(String, Option<u32>, Option<u32>)> {
    if !v.is_object() {
        return Err(invalid(
            "receipt policy must be an object {mode, minSecs?, maxSecs?}",
        ));
    }
    let field = |name: &str| {
        Reflect::get(v, &name.into()).map_err(|_| invalid("receipt policy is not readable"))
    };
    let mode = string_arg(&field("mode")?, "policy.mode")?;
    let secs = |name: &str| -> WebResult<Option<u32>> {
        let f = field(name)?;
        if f.is_undefined() || f.is_null() {
            Ok(None)
        } else {
            u32_arg(&f, &format!("policy.{name}")).map(Some)
        }
    };
    Ok((mode, secs("minSecs")?, secs("maxSecs")?))
}

/// A boolean argument.
fn bool_arg(v: &JsValue, what: &str) -> WebResult<bool> {
    v.as_bool()
        .ok_or_else(|| invalid(format!("{what} must be a boolean")))
}

/// The messenger of one `WebDevice`: contacts, 1:1 and group conversations over the
/// device's state (exported with it), as steps the page drives; see `haven-client.js`'s
/// `HavenMessenger` for the I/O around them.
#[wasm_bindgen]
pub struct WebMessenger {
    device: Rc<RefCell<Option<DeviceCore>>>,
    inner: RefCell<Option<MessengerCore>>,
}

impl std::fmt::Debug for WebMessenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebMessenger").finish_non_exhaustive()
    }
}

impl WebMessenger {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut MessengerCore, &mut DeviceCore) -> WebResult<T>,
    ) -> JsResult<T> {
        let mut messenger = self.inner.try_borrow_mut().map_err(|_| reentrant())?;
        let messenger = messenger.as_mut().ok_or_else(|| js_error(closed()))?;
        let mut device = self.device.try_borrow_mut().map_err(|_| reentrant())?;
        let device = device.as_mut().ok_or_else(|| js_error(closed()))?;
        lift(f(messenger, device))
    }

    /// The messenger of `device` (what `create` resolves to).
    ///
    /// # Errors
    /// `closed` for a closed device.
    pub fn of(device: &WebDevice) -> JsResult<Self> {
        let shared = device.shared();
        let open = shared.try_borrow().map(|d| d.is_some()).unwrap_or(false);
        if !open {
            return Err(js_error(closed()));
        }
        Ok(Self {
            device: shared,
            inner: RefCell::new(Some(MessengerCore::new())),
        })
    }

    fn json<T: serde::Serialize>(
        &self,
        f: impl FnOnce(&mut MessengerCore, &mut DeviceCore) -> WebResult<T>,
    ) -> JsResult<JsValue> {
        to_js(&self.with(f)?)
    }
}

#[wasm_bindgen]
impl WebMessenger {
    /// The messenger of `device`, over its state (which `exportState` includes).
    #[wasm_bindgen(unchecked_return_type = "Promise<WebMessenger>")]
    pub fn create(device: &WebDevice) -> js_sys::Promise {
        match Self::of(device) {
            Ok(messenger) => js_sys::Promise::resolve(&JsValue::from(messenger)),
            Err(e) => js_sys::Promise::reject(&e),
        }
    }

    /// Forgets what is in flight; later calls throw `closed` (the device stays open).
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }

    /// The body of `POST /v1/channels` for a group epoch (on `invalid_ttl`, send `{}`).
    #[wasm_bindgen(js_name = channelRequest)]
    pub fn channel_request(&self) -> JsResult<String> {
        self.with(|_, _| super::channel_request())
    }

    // ---- contacts

    /// Adds a contact by account id (with the username it was looked up by, if any);
    /// `cardFor` then tells whether its contact card still has to go out.
    #[wasm_bindgen(js_name = addContact, unchecked_return_type = "Contact")]
    pub fn add_contact(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] username: JsValue,
    ) -> JsResult<JsValue> {
        let account = lift(string_arg(&account, "account"))?;
        let username = lift(opt_string_arg(&username, "username"))?;
        self.json(|m, d| m.add_contact(d, &account, username.as_deref()))
    }

    /// Blocks (`true`) or unblocks an account: its messages are dropped on receipt (1:1 and in
    /// groups) and nothing is sent to it 1:1; the relay is not told.
    #[wasm_bindgen(js_name = setBlocked, unchecked_return_type = "Contact")]
    pub fn set_blocked(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        blocked: bool,
    ) -> JsResult<JsValue> {
        let account = lift(string_arg(&account, "account"))?;
        self.json(|m, d| m.set_blocked(d, &account, blocked))
    }

    /// One contact, or `null`.
    #[wasm_bindgen(unchecked_return_type = "Contact | null")]
    pub fn contact(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<JsValue> {
        let account = lift(string_arg(&account, "account"))?;
        self.json(|m, d| m.contact(d, &account))
    }

    /// Every contact.
    #[wasm_bindgen(unchecked_return_type = "Contact[]")]
    pub fn contacts(&self) -> JsResult<JsValue> {
        self.json(|m, d| m.contacts(d))
    }

    /// The relay message id of this account's contact card for `account`, prepared for
    /// delivery (to it, then the own other devices), or `undefined` when it went out
    /// already; then `cardSent(account)`.
    #[wasm_bindgen(js_name = cardFor)]
    pub fn card_for(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<Option<String>> {
        let account = lift(string_arg(&account, "account"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.with(|m, d| m.card_for(d, &account, now))
    }

    /// The contact card went out to `account`.
    #[wasm_bindgen(js_name = cardSent, unchecked_return_type = "Contact")]
    pub fn card_sent(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<JsValue> {
        let account = lift(string_arg(&account, "account"))?;
        self.json(|m, d| m.card_sent(d, &account))
    }

    /// The safety numbers with each known device of `account`.
    #[wasm_bindgen(js_name = safetyNumbers, unchecked_return_type = "SafetyNumber[]")]
    pub fn safety_numbers(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
    ) -> JsResult<JsValue> {
        let account = lift(string_arg(&account, "account"))?;
        self.json(|m, d| m.safety_numbers(d, &account))
    }

    /// The safety number with `account` if its device had `identityKey` (base64): compare
    /// it before `acceptIdentity`.
    #[wasm_bindgen(js_name = safetyNumberWith)]
    pub fn safety_number_with(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = identityKey, unchecked_param_type = "string")]
        identity_key: JsValue,
    ) -> JsResult<String> {
        let account = lift(string_arg(&account, "account"))?;
        let key = lift(string_arg(&identity_key, "identityKey"))?;
        self.with(|m, d| m.safety_number_with(d, &account, &key))
    }

    /// Accepts a contact device's new identity key (base64) after the user compared the
    /// safety number.
    #[wasm_bindgen(js_name = acceptIdentity)]
    pub fn accept_identity(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] device: JsValue,
        #[wasm_bindgen(js_name = identityKey, unchecked_param_type = "string")]
        identity_key: JsValue,
    ) -> JsResult<()> {
        let account = lift(string_arg(&account, "account"))?;
        let device = lift(u32_arg(&device, "device"))?;
        let key = lift(string_arg(&identity_key, "identityKey"))?;
        self.with(|m, d| m.accept_identity(d, &account, device, &key))
    }

    // ---- actions

    /// Sends a text (with an encoded attachment pointer, optionally) to a conversation.
    #[wasm_bindgen(js_name = sendText, unchecked_return_type = "Action")]
    pub fn send_text(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | undefined")] attachment: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let text = lift(secret_arg(&text, "text"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        let attachment = if attachment.is_undefined() || attachment.is_null() {
            Vec::new()
        } else {
            lift(bytes_arg(&attachment, "attachment"))?
        };
        self.json(|m, d| m.send_text(d, conversation, &text, attachment, now))
    }

    /// A read receipt for messages of the conversation, or `null` for none.
    #[wasm_bindgen(js_name = markRead, unchecked_return_type = "Action | null")]
    pub fn mark_read(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(js_name = messageIds, unchecked_param_type = "string[]")]
        message_ids: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let ids = lift(strings_arg(&message_ids, "messageIds"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.mark_read(d, conversation, &ids, now))
    }

    /// A typing indicator (1:1 only, ephemeral).
    #[wasm_bindgen(unchecked_return_type = "Action")]
    pub fn typing(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(unchecked_param_type = "boolean")] started: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let started = lift(bool_arg(&started, "started"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.typing(d, conversation, started, now))
    }

    /// This account's reaction to a message (`remove`: takes it back).
    #[wasm_bindgen(unchecked_return_type = "Action")]
    pub fn react(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] target: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] emoji: JsValue,
        #[wasm_bindgen(unchecked_param_type = "boolean")] remove: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let target = lift(string_arg(&target, "target"))?;
        let emoji = lift(string_arg(&emoji, "emoji"))?;
        let remove = lift(bool_arg(&remove, "remove"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.react(d, conversation, &target, &emoji, remove, now))
    }

    /// New text for one of this account's messages.
    #[wasm_bindgen(unchecked_return_type = "Action")]
    pub fn edit(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] target: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let target = lift(string_arg(&target, "target"))?;
        let text = lift(secret_arg(&text, "text"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.edit(d, conversation, &target, &text, now))
    }

    /// Deletes one of this account's messages for everyone.
    #[wasm_bindgen(js_name = deleteMessage, unchecked_return_type = "Action")]
    pub fn delete_message(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] target: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let target = lift(string_arg(&target, "target"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.delete(d, conversation, &target, now))
    }

    /// Sets the conversation's disappearing timer (seconds, 0 = off) for both sides.
    #[wasm_bindgen(js_name = setTimer, unchecked_return_type = "Action")]
    pub fn set_timer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(js_name = expireSecs, unchecked_param_type = "number")] expire_secs: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let secs = lift(u32_arg(&expire_secs, "expireSecs"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.set_timer(d, conversation, secs, now))
    }

    /// The action's content was delivered (`ok`) or not: applies it locally, or takes a
    /// text back out.
    #[wasm_bindgen(js_name = actionDone)]
    pub fn action_done(
        &self,
        #[wasm_bindgen(js_name = actionId, unchecked_param_type = "string")] action_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "boolean")] ok: JsValue,
    ) -> JsResult<()> {
        let id = lift(string_arg(&action_id, "actionId"))?;
        let ok = lift(bool_arg(&ok, "ok"))?;
        self.with(|m, d| m.action_done(d, &id, ok))
    }

    // ---- queries

    /// The messages of a conversation, oldest first (disappeared ones are deleted).
    #[wasm_bindgen(unchecked_return_type = "Message[]")]
    pub fn history(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let conversation = lift(conversation_arg(&conversation))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.history(d, conversation, now))
    }

    /// The conversations with stored messages.
    #[wasm_bindgen(unchecked_return_type = "Conversation[]")]
    pub fn conversations(&self) -> JsResult<JsValue> {
        self.json(|m, d| m.conversations(d))
    }

    /// The conversation's disappearing timer (seconds, 0 = off).
    pub fn timer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
    ) -> JsResult<u32> {
        let conversation = lift(conversation_arg(&conversation))?;
        self.with(|m, d| m.timer(d, conversation))
    }

    /// Every group this device knows.
    #[wasm_bindgen(unchecked_return_type = "Group[]")]
    pub fn groups(&self) -> JsResult<JsValue> {
        self.json(|m, d| m.groups(d))
    }

    // ---- groups

    /// Creates a group of this account and `members` over the channel of
    /// `channelAnswer` (the relay's answer to `POST /v1/channels`).
    #[wasm_bindgen(js_name = createGroup, unchecked_return_type = "GroupInvites")]
    pub fn create_group(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string[]")] members: JsValue,
        #[wasm_bindgen(js_name = channelAnswer, unchecked_param_type = "string")]
        channel_answer: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let name = lift(secret_arg(&name, "name"))?;
        let members = lift(strings_arg(&members, "members"))?;
        let answer = lift(secret_arg(&channel_answer, "channelAnswer"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.create_group(d, &name, &members, &answer, now))
    }

    /// Adds a member: post `update`, create a channel, then `addMemberPosted`.
    #[wasm_bindgen(js_name = addMember, unchecked_return_type = "MemberChange")]
    pub fn add_member(
        &self,
        #[wasm_bindgen(js_name = groupId, unchecked_param_type = "string")] group: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let group = lift(string_arg(&group, "groupId"))?;
        let account = lift(string_arg(&account, "account"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.add_member(d, &group, &account, now))
    }

    /// The added member's update was posted and the next epoch's channel created
    /// (`channelAnswer`): the new epoch starts.
    #[wasm_bindgen(js_name = addMemberPosted, unchecked_return_type = "GroupInvites")]
    pub fn add_member_posted(
        &self,
        #[wasm_bindgen(js_name = changeId, unchecked_param_type = "string")] change_id: JsValue,
        #[wasm_bindgen(js_name = channelAnswer, unchecked_param_type = "string")]
        channel_answer: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let id = lift(string_arg(&change_id, "changeId"))?;
        let answer = lift(secret_arg(&channel_answer, "channelAnswer"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.add_member_posted(d, &id, &answer, now))
    }

    /// Removes a member: post `update`, create a channel, then `removeMemberPosted`.
    #[wasm_bindgen(js_name = removeMember, unchecked_return_type = "MemberChange")]
    pub fn remove_member(
        &self,
        #[wasm_bindgen(js_name = groupId, unchecked_param_type = "string")] group: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] account: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let group = lift(string_arg(&group, "groupId"))?;
        let account = lift(string_arg(&account, "account"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.remove_member(d, &group, &account, now))
    }

    /// The removal's update was posted and the next epoch's channel created
    /// (`channelAnswer`): the new epoch starts.
    #[wasm_bindgen(js_name = removeMemberPosted, unchecked_return_type = "GroupInvites")]
    pub fn remove_member_posted(
        &self,
        #[wasm_bindgen(js_name = changeId, unchecked_param_type = "string")] change_id: JsValue,
        #[wasm_bindgen(js_name = channelAnswer, unchecked_param_type = "string")]
        channel_answer: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let id = lift(string_arg(&change_id, "changeId"))?;
        let answer = lift(secret_arg(&channel_answer, "channelAnswer"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.remove_member_posted(d, &id, &answer, now))
    }

    /// The WebSocket frames subscribing to the channels of `groupId` (of every group when
    /// omitted), each after its cursor.
    #[wasm_bindgen(js_name = subscribeFrames, unchecked_return_type = "Uint8Array[]")]
    pub fn subscribe_frames(
        &self,
        #[wasm_bindgen(js_name = groupId, unchecked_param_type = "string | undefined")]
        group: JsValue,
    ) -> JsResult<JsValue> {
        let group = lift(opt_string_arg(&group, "groupId"))?;
        let frames = self.with(|m, d| m.subscribe_frames(d, group.as_deref()))?;
        Ok(frames
            .iter()
            .map(|f| JsValue::from(Uint8Array::from(f.as_slice())))
            .collect::<js_sys::Array>()
            .into())
    }

    /// The channels to read over REST, after their cursors.
    #[wasm_bindgen(js_name = channelReads, unchecked_return_type = "ChannelRead[]")]
    pub fn channel_reads(&self) -> JsResult<JsValue> {
        self.json(|m, d| m.channel_reads(d))
    }

    // ---- receiving

    /// Processes an envelope (`content` base64; `ephemeral` for an ephemeral frame); ack it
    /// afterwards (unless ephemeral). `franking`: the envelope's franking as JSON
    /// `{"commitment", "stamp", "seq", "receivedAt"}` when the relay delivered one (PROTOCOL
    /// §16.4; a franked envelope without it is refused).
    #[wasm_bindgen(js_name = receiveEnvelope, unchecked_return_type = "Received")]
    pub fn receive_envelope(
        &self,
        #[wasm_bindgen(js_name = messageId, unchecked_param_type = "string")] message_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] content: JsValue,
        #[wasm_bindgen(unchecked_param_type = "boolean")] ephemeral: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
        #[wasm_bindgen(js_name = listFresh, unchecked_param_type = "boolean | undefined")]
        list_fresh: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] franking: JsValue,
    ) -> JsResult<JsValue> {
        let id = lift(string_arg(&message_id, "messageId"))?;
        let content = lift(string_arg(&content, "content"))?;
        let ephemeral = lift(bool_arg(&ephemeral, "ephemeral"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        let list_fresh = list_fresh.as_bool().unwrap_or(false);
        let franking = franking.as_string();
        self.json(|m, d| {
            m.receive_envelope(
                d,
                &id,
                &content,
                franking.as_deref(),
                ephemeral,
                list_fresh,
                now,
            )
        })
    }

    /// The JSON body of `POST /v1/reports` (send it with the bearer token) reporting a message
    /// received in `conversation` (PROTOCOL §16.9); errors `not_found`, `not_reportable`.
    #[wasm_bindgen(js_name = reportMessage)]
    pub fn report_message(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conversation")] conversation: JsValue,
        #[wasm_bindgen(js_name = messageId, unchecked_param_type = "string")] message_id: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<String> {
        let conversation = lift(conversation_arg(&conversation))?;
        let id = lift(string_arg(&message_id, "messageId"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.with(|m, d| m.report_request(d, conversation, &id, now))
    }

    /// Processes one entry of a channel subscription (a `channel_entry` frame); `franking`:
    /// the frame's franking with its `seq` and `createdAt` as JSON
    /// (`{"commitment", "stamp", "seq", "createdAt"}`) when it carries one.
    #[wasm_bindgen(js_name = receiveChannelEntry, unchecked_return_type = "Received")]
    pub fn receive_channel_entry(
        &self,
        #[wasm_bindgen(js_name = channelId, unchecked_param_type = "string")] channel_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] seq: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] entry: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] franking: JsValue,
    ) -> JsResult<JsValue> {
        let channel = lift(string_arg(&channel_id, "channelId"))?;
        let seq = lift(number_arg(&seq, "seq"))?;
        let entry = lift(string_arg(&entry, "entry"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        let franking = franking.as_string();
        self.json(|m, d| {
            m.receive_channel_entry(d, &channel, seq, &entry, franking.as_deref(), now)
        })
    }

    /// Processes a page of `GET /v1/channels/{channelId}/entries`.
    #[wasm_bindgen(js_name = receiveChannelPage, unchecked_return_type = "ChannelPage")]
    pub fn receive_channel_page(
        &self,
        #[wasm_bindgen(js_name = channelId, unchecked_param_type = "string")] channel_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let channel = lift(string_arg(&channel_id, "channelId"))?;
        let answer = lift(string_arg(&answer, "answer"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.receive_channel_page(d, &channel, &answer, now))
    }

    // ---- follow-ups

    /// The follow-ups due at `nowMs` (sender keys, delivery receipts: those owed to one
    /// account as one), as task ids; `nowMs` left out: now.
    #[wasm_bindgen(js_name = followUps)]
    pub fn follow_ups(
        &self,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number | undefined")]
        now_ms: JsValue,
    ) -> JsResult<Vec<String>> {
        let now = lift(now_or_clock(&now_ms))?;
        self.with(|m, d| m.follow_ups(d, now))
    }

    /// When (Unix ms) the next follow-up not due at `nowMs` becomes due (a delayed delivery
    /// receipt): call `followUps` then. `null` when nothing waits.
    #[wasm_bindgen(js_name = nextTaskDueMs, unchecked_return_type = "number | null")]
    pub fn next_task_due_ms(
        &self,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.next_task_due(d, now))
    }

    /// When this device sends the delivery receipts it owes.
    #[wasm_bindgen(js_name = receiptPolicy, unchecked_return_type = "ReceiptPolicy")]
    pub fn receipt_policy(&self) -> JsResult<JsValue> {
        self.json(|m, d| m.receipt_policy(d))
    }

    /// Sets the receipt policy (kept in the device's state): `{mode: "immediate"}`,
    /// `{mode: "delayed", minSecs, maxSecs}` (at most 3600 seconds) or `{mode: "off"}`.
    #[wasm_bindgen(js_name = setReceiptPolicy, unchecked_return_type = "ReceiptPolicy")]
    pub fn set_receipt_policy(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ReceiptPolicy")] policy: JsValue,
    ) -> JsResult<JsValue> {
        let (mode, min, max) = lift(receipt_policy_arg(&policy))?;
        self.json(|m, d| m.set_receipt_policy(d, &mode, min, max))
    }

    /// What follow-up `taskId` sends now, prepared for delivery to its one account; `null`
    /// when nothing is to be sent any more (the task is done).
    #[wasm_bindgen(js_name = followUp, unchecked_return_type = "Delivery | null")]
    pub fn follow_up(
        &self,
        #[wasm_bindgen(js_name = taskId, unchecked_param_type = "string")] task_id: JsValue,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let id = lift(string_arg(&task_id, "taskId"))?;
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.follow_up(d, &id, now))
    }

    // ---- push wake-ups (PROTOCOL §13.4.2)

    /// Starts counting what is processed for a push wake-up: every envelope and channel entry
    /// received until `endWake`.
    #[wasm_bindgen(js_name = beginWake)]
    pub fn begin_wake(&self) -> JsResult<()> {
        self.with(|m, _| {
            m.begin_wake();
            Ok(())
        })
    }

    /// Ends the wake-up's count: what it processed (new messages from other accounts and their
    /// conversations), whether it was `complete` (everything waiting fetched within the
    /// budget), and when the next delayed receipt is due.
    #[wasm_bindgen(js_name = endWake, unchecked_return_type = "WakeSummary")]
    pub fn end_wake(
        &self,
        complete: bool,
        #[wasm_bindgen(js_name = nowMs, unchecked_param_type = "number")] now_ms: JsValue,
    ) -> JsResult<JsValue> {
        let now = lift(number_arg(&now_ms, "nowMs"))?;
        self.json(|m, d| m.end_wake(d, complete, now))
    }

    /// Follow-up `taskId` is done (or dropped for good).
    #[wasm_bindgen(js_name = taskDone)]
    pub fn task_done(
        &self,
        #[wasm_bindgen(js_name = taskId, unchecked_param_type = "string")] task_id: JsValue,
    ) -> JsResult<()> {
        let id = lift(string_arg(&task_id, "taskId"))?;
        self.with(|m, d| m.task_done(d, &id))
    }
}

//! Messenger content: what travels, padded (§7), inside a 1:1 Double Ratchet message or a group
//! sender-key message. The relay never sees any of it. Byte layout: `docs/PROTOCOL.md` §13.
//!
//! ```text
//! content = version u8 (0x01) · kind u8 · sent_at u64 (ms) · conv_kind u8 · conv_id [16] · body
//! ```
//!
//! Every decoder checks lengths and limits and refuses trailing bytes, so a hostile peer can at
//! worst get its message refused.

/// Content format version.
pub const CONTENT_VERSION: u8 = 0x01;
/// Longest text (bytes of UTF-8) of a message or an edit.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Longest attachment pointer carried by a message (room for a 64 KiB thumbnail; a group
/// message must also fit the relay's channel entry limit).
pub const MAX_ATTACHMENT_BYTES: usize = 72 * 1024;
/// Longest reaction (bytes of UTF-8, e.g. one emoji with modifiers).
pub const MAX_REACTION_BYTES: usize = 32;
/// Longest group name (bytes of UTF-8).
pub const MAX_GROUP_NAME_BYTES: usize = 256;
/// Most members of a group.
pub const MAX_GROUP_MEMBERS: usize = 256;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 256;
/// Longest sender-key distribution message carried.
pub const MAX_SKDM_BYTES: usize = 512;
/// Longest signed group change carried (PROTOCOL §13.3.1).
pub const MAX_GROUP_CHANGE_BYTES: usize = crate::group_change::MAX_CHANGE_LEN;

const K_TEXT: u8 = 0x01;
const K_RECEIPT: u8 = 0x02;
const K_TYPING: u8 = 0x03;
const K_REACTION: u8 = 0x04;
const K_EDIT: u8 = 0x05;
const K_DELETE: u8 = 0x06;
const K_TIMER: u8 = 0x07;
const K_CONTACT_CARD: u8 = 0x08;
/// The unsigned group invite of earlier versions: refused.
const K_LEGACY_GROUP_INVITE: u8 = 0x10;
const K_SENDER_KEY: u8 = 0x11;
/// The unsigned group update of earlier versions: refused.
const K_LEGACY_GROUP_UPDATE: u8 = 0x12;
const K_GROUP_INVITE: u8 = 0x13;
const K_GROUP_CHANGE: u8 = 0x14;
const K_GROUP_ADMIN_KEY: u8 = 0x15;

/// Which conversation a content belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// A 1:1 conversation. On the wire the id is the *recipient* account as the sender sees
    /// it; the receiver maps it to the sender's account (or, for a copy synced to the sender's
    /// own devices, keeps it).
    Direct([u8; 16]),
    /// A group, by its random id.
    Group([u8; 16]),
}

impl Conversation {
    /// `0x00` direct, `0x01` group.
    #[must_use]
    pub fn tag(&self) -> u8 {
        match self {
            Self::Direct(_) => 0,
            Self::Group(_) => 1,
        }
    }

    /// The 16-byte id.
    #[must_use]
    pub fn id(&self) -> &[u8; 16] {
        match self {
            Self::Direct(id) | Self::Group(id) => id,
        }
    }

    /// `tag · id`, 17 bytes (the store's key prefix).
    #[must_use]
    pub fn key(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = self.tag();
        out[1..].copy_from_slice(self.id());
        out
    }
}

/// Delivery or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The message reached a device of the recipient.
    Delivered,
    /// The recipient displayed it.
    Read,
}

/// A group's shared secrets at one epoch and the admin's signed change that started it (sent
/// 1:1 only). Epoch, name and members are the change's.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupInvite {
    /// The signed group change of the epoch (PROTOCOL §13.3.1), verified by the receiver.
    pub change: Vec<u8>,
    /// The epoch's channel.
    pub channel_id: [u8; 16],
    /// Its read capability.
    pub read_token: [u8; 32],
    /// Its write capability.
    pub write_token: [u8; 32],
    /// Key of the channel entries' outer layer.
    pub group_key: [u8; 32],
    /// Channel position from which the invitee reads (history before it is not shared).
    pub after: u64,
}

impl std::fmt::Debug for GroupInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupInvite")
            .field("change_len", &self.change.len())
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// The body of one content. `Debug` redacts the access key of a contact card and the chain key
/// inside a sender-key distribution.
#[derive(Clone, PartialEq, Eq)]
pub enum Body {
    /// A message.
    Text {
        /// Sender-chosen id, referenced by receipts, reactions, edits and deletes.
        message_id: [u8; 16],
        /// Disappearing timer in seconds (0 = keep).
        expire_secs: u32,
        /// The text.
        text: String,
        /// An encoded attachment pointer (empty when none).
        attachment: Vec<u8>,
    },
    /// Delivery or read receipt for messages of the conversation.
    Receipt {
        /// Which.
        kind: ReceiptKind,
        /// The messages.
        message_ids: Vec<[u8; 16]>,
    },
    /// Typing started (`true`) or stopped.
    Typing(bool),
    /// A reaction to a message, or its removal.
    Reaction {
        /// The message.
        target: [u8; 16],
        /// The reaction text.
        emoji: String,
        /// Removes the sender's reaction instead.
        remove: bool,
    },
    /// New text for one of the sender's messages.
    Edit {
        /// The message.
        target: [u8; 16],
        /// Its new text.
        text: String,
    },
    /// Deletes one of the sender's messages for everyone.
    Delete {
        /// The message.
        target: [u8; 16],
    },
    /// Sets the conversation's disappearing timer (0 = off).
    Timer(u32),
    /// The sender account's unidentified-access key, so the receiver can send sealed.
    ContactCard {
        /// The key.
        access_key: [u8; 16],
    },
    /// Membership in a group at an epoch, with its channel secrets (1:1 only).
    GroupInvite(GroupInvite),
    /// The sender device's sender-key distribution message for a group epoch (1:1 only).
    SenderKey {
        /// The group epoch it belongs to.
        epoch: u32,
        /// `SenderKeyDistributionMessage` bytes (§8).
        distribution: Vec<u8>,
    },
    /// The admin's signed change starting the next epoch, posted to the current channel so
    /// that a removed member learns of its removal (group channel only).
    GroupChange {
        /// The signed group change (PROTOCOL §13.3.1).
        change: Vec<u8>,
    },
    /// The group's admin key, for the admin account's other devices (1:1 to the own account
    /// only, `conv_kind` group).
    GroupAdminKey {
        /// The Ed25519 seed.
        seed: [u8; 32],
    },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text {
                message_id,
                expire_secs,
                text,
                attachment,
            } => f
                .debug_struct("Text")
                .field("message_id", message_id)
                .field("expire_secs", expire_secs)
                .field("text_len", &text.len())
                .field("attachment_len", &attachment.len())
                .finish(),
            Self::Receipt { kind, message_ids } => f
                .debug_struct("Receipt")
                .field("kind", kind)
                .field("count", &message_ids.len())
                .finish(),
            Self::Typing(started) => f.debug_tuple("Typing").field(started).finish(),
            Self::Reaction { target, remove, .. } => f
                .debug_struct("Reaction")
                .field("target", target)
                .field("remove", remove)
                .finish_non_exhaustive(),
            Self::Edit { target, .. } => f
                .debug_struct("Edit")
                .field("target", target)
                .finish_non_exhaustive(),
            Self::Delete { target } => f.debug_struct("Delete").field("target", target).finish(),
            Self::Timer(secs) => f.debug_tuple("Timer").field(secs).finish(),
            Self::ContactCard { .. } => f.debug_struct("ContactCard").finish_non_exhaustive(),
            Self::GroupInvite(g) => f.debug_tuple("GroupInvite").field(g).finish(),
            Self::SenderKey { epoch, .. } => f
                .debug_struct("SenderKey")
                .field("epoch", epoch)
                .finish_non_exhaustive(),
            Self::GroupChange { change } => f
                .debug_struct("GroupChange")
                .field("len", &change.len())
                .finish(),
            Self::GroupAdminKey { .. } => f.debug_struct("GroupAdminKey").finish_non_exhaustive(),
        }
    }
}

/// One decoded content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Sender's clock, milliseconds since the Unix epoch.
    pub sent_at: u64,
    /// The conversation.
    pub conversation: Conversation,
    /// What it says.
    pub body: Body,
}

/// Content that does not follow §13.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed content: {0}")]
pub struct ContentError(pub &'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ContentError> {
        if self.0.len() < n {
            return Err(ContentError("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ContentError> {
        self.take(N)?
            .try_into()
            .map_err(|_| ContentError("truncated"))
    }
    fn u8(&mut self) -> Result<u8, ContentError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ContentError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, ContentError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ContentError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn bytes32(&mut self, max: usize) -> Result<&'a [u8], ContentError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(ContentError("field too long"));
        }
        self.take(len)
    }
    fn text(&mut self, len: usize, max: usize) -> Result<String, ContentError> {
        if len > max {
            return Err(ContentError("text too long"));
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| ContentError("text not UTF-8"))
    }
    fn bytes16(&mut self, max: usize) -> Result<&'a [u8], ContentError> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(ContentError("field too long"));
        }
        self.take(len)
    }
    fn finish(&self) -> Result<(), ContentError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ContentError("trailing bytes"))
        }
    }
}

fn put_text32(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_bytes16(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Content {
    /// Encodes (§13). Checks the limits so that what is sent always decodes.
    ///
    /// # Errors
    /// [`ContentError`] when a field exceeds its limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ContentError> {
        let mut out = Vec::with_capacity(64);
        let kind = match &self.body {
            Body::Text { .. } => K_TEXT,
            Body::Receipt { .. } => K_RECEIPT,
            Body::Typing(_) => K_TYPING,
            Body::Reaction { .. } => K_REACTION,
            Body::Edit { .. } => K_EDIT,
            Body::Delete { .. } => K_DELETE,
            Body::Timer(_) => K_TIMER,
            Body::ContactCard { .. } => K_CONTACT_CARD,
            Body::GroupInvite(_) => K_GROUP_INVITE,
            Body::SenderKey { .. } => K_SENDER_KEY,
            Body::GroupChange { .. } => K_GROUP_CHANGE,
            Body::GroupAdminKey { .. } => K_GROUP_ADMIN_KEY,
        };
        out.push(CONTENT_VERSION);
        out.push(kind);
        out.extend_from_slice(&self.sent_at.to_be_bytes());
        out.push(self.conversation.tag());
        out.extend_from_slice(self.conversation.id());
        let check = |ok: bool, what: &'static str| {
            if ok { Ok(()) } else { Err(ContentError(what)) }
        };
        match &self.body {
            Body::Text {
                message_id,
                expire_secs,
                text,
                attachment,
            } => {
                check(text.len() <= MAX_TEXT_BYTES, "text too long")?;
                check(
                    attachment.len() <= MAX_ATTACHMENT_BYTES,
                    "attachment too long",
                )?;
                out.extend_from_slice(message_id);
                out.extend_from_slice(&expire_secs.to_be_bytes());
                put_text32(&mut out, text);
                out.extend_from_slice(&(attachment.len() as u32).to_be_bytes());
                out.extend_from_slice(attachment);
            }
            Body::Receipt { kind, message_ids } => {
                check(
                    !message_ids.is_empty() && message_ids.len() <= MAX_RECEIPT_IDS,
                    "receipt count",
                )?;
                out.push(match kind {
                    ReceiptKind::Delivered => 1,
                    ReceiptKind::Read => 2,
                });
                out.extend_from_slice(&(message_ids.len() as u16).to_be_bytes());
                for id in message_ids {
                    out.extend_from_slice(id);
                }
            }
            Body::Typing(started) => out.push(u8::from(*started)),
            Body::Reaction {
                target,
                emoji,
                remove,
            } => {
                check(
                    !emoji.is_empty() && emoji.len() <= MAX_REACTION_BYTES,
                    "reaction length",
                )?;
                out.extend_from_slice(target);
                out.push(u8::from(*remove));
                out.push(emoji.len() as u8);
                out.extend_from_slice(emoji.as_bytes());
            }
            Body::Edit { target, text } => {
                check(text.len() <= MAX_TEXT_BYTES, "text too long")?;
                out.extend_from_slice(target);
                put_text32(&mut out, text);
            }
            Body::Delete { target } => out.extend_from_slice(target),
            Body::Timer(secs) => out.extend_from_slice(&secs.to_be_bytes()),
            Body::ContactCard { access_key } => out.extend_from_slice(access_key),
            Body::GroupInvite(g) => {
                check(
                    g.change.len() <= MAX_GROUP_CHANGE_BYTES,
                    "group change too long",
                )?;
                out.extend_from_slice(&g.channel_id);
                out.extend_from_slice(&g.read_token);
                out.extend_from_slice(&g.write_token);
                out.extend_from_slice(&g.group_key);
                out.extend_from_slice(&g.after.to_be_bytes());
                put_bytes16(&mut out, &g.change);
            }
            Body::SenderKey {
                epoch,
                distribution,
            } => {
                check(
                    distribution.len() <= MAX_SKDM_BYTES,
                    "distribution too long",
                )?;
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(&(distribution.len() as u16).to_be_bytes());
                out.extend_from_slice(distribution);
            }
            Body::GroupChange { change } => {
                check(
                    change.len() <= MAX_GROUP_CHANGE_BYTES,
                    "group change too long",
                )?;
                put_bytes16(&mut out, change);
            }
            Body::GroupAdminKey { seed } => out.extend_from_slice(seed),
        }
        Ok(out)
    }

    /// Decodes (§13).
    ///
    /// # Errors
    /// [`ContentError`] for anything that does not follow the layout or its limits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ContentError> {
        let mut r = Reader(bytes);
        if r.u8()? != CONTENT_VERSION {
            return Err(ContentError("unsupported version"));
        }
        let kind = r.u8()?;
        let sent_at = r.u64()?;
        let conversation = match r.u8()? {
            0 => Conversation::Direct(r.array()?),
            1 => Conversation::Group(r.array()?),
            _ => return Err(ContentError("conversation kind")),
        };
        let body = match kind {
            K_TEXT => {
                let message_id = r.array()?;
                let expire_secs = r.u32()?;
                let len = r.u32()? as usize;
                let text = r.text(len, MAX_TEXT_BYTES)?;
                let attachment = r.bytes32(MAX_ATTACHMENT_BYTES)?.to_vec();
                Body::Text {
                    message_id,
                    expire_secs,
                    text,
                    attachment,
                }
            }
            K_RECEIPT => {
                let kind = match r.u8()? {
                    1 => ReceiptKind::Delivered,
                    2 => ReceiptKind::Read,
                    _ => return Err(ContentError("receipt kind")),
                };
                let n = r.u16()? as usize;
                if n == 0 || n > MAX_RECEIPT_IDS {
                    return Err(ContentError("receipt count"));
                }
                let mut message_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    message_ids.push(r.array()?);
                }
                Body::Receipt { kind, message_ids }
            }
            K_TYPING => match r.u8()? {
                0 => Body::Typing(false),
                1 => Body::Typing(true),
                _ => return Err(ContentError("typing state")),
            },
            K_REACTION => {
                let target = r.array()?;
                let remove = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(ContentError("reaction flag")),
                };
                let len = r.u8()? as usize;
                if len == 0 {
                    return Err(ContentError("empty reaction"));
                }
                let emoji = r.text(len, MAX_REACTION_BYTES)?;
                Body::Reaction {
                    target,
                    emoji,
                    remove,
                }
            }
            K_EDIT => {
                let target = r.array()?;
                let len = r.u32()? as usize;
                Body::Edit {
                    target,
                    text: r.text(len, MAX_TEXT_BYTES)?,
                }
            }
            K_DELETE => Body::Delete { target: r.array()? },
            K_TIMER => Body::Timer(r.u32()?),
            K_CONTACT_CARD => Body::ContactCard {
                access_key: r.array()?,
            },
            K_GROUP_INVITE => {
                let channel_id = r.array()?;
                let read_token = r.array()?;
                let write_token = r.array()?;
                let group_key = r.array()?;
                let after = r.u64()?;
                let change = r.bytes16(MAX_GROUP_CHANGE_BYTES)?.to_vec();
                Body::GroupInvite(GroupInvite {
                    change,
                    channel_id,
                    read_token,
                    write_token,
                    group_key,
                    after,
                })
            }
            K_SENDER_KEY => {
                let epoch = r.u32()?;
                let len = r.u16()? as usize;
                if len > MAX_SKDM_BYTES {
                    return Err(ContentError("distribution too long"));
                }
                Body::SenderKey {
                    epoch,
                    distribution: r.take(len)?.to_vec(),
                }
            }
            K_GROUP_CHANGE => Body::GroupChange {
                change: r.bytes16(MAX_GROUP_CHANGE_BYTES)?.to_vec(),
            },
            K_GROUP_ADMIN_KEY => Body::GroupAdminKey { seed: r.array()? },
            K_LEGACY_GROUP_INVITE | K_LEGACY_GROUP_UPDATE => {
                return Err(ContentError("unsigned group change of an earlier version"));
            }
            _ => return Err(ContentError("unknown kind")),
        };
        r.finish()?;
        Ok(Self {
            sent_at,
            conversation,
            body,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn samples() -> Vec<Content> {
        let conv = Conversation::Direct([7; 16]);
        let group = Conversation::Group([8; 16]);
        let bodies = vec![
            (
                conv,
                Body::Text {
                    message_id: [1; 16],
                    expire_secs: 60,
                    text: "héllo".into(),
                    attachment: vec![],
                },
            ),
            (
                conv,
                Body::Receipt {
                    kind: ReceiptKind::Read,
                    message_ids: vec![[1; 16], [2; 16]],
                },
            ),
            (conv, Body::Typing(true)),
            (
                conv,
                Body::Reaction {
                    target: [1; 16],
                    emoji: "👍".into(),
                    remove: false,
                },
            ),
            (
                conv,
                Body::Edit {
                    target: [1; 16],
                    text: "fixed".into(),
                },
            ),
            (conv, Body::Delete { target: [1; 16] }),
            (conv, Body::Timer(3600)),
            (
                conv,
                Body::ContactCard {
                    access_key: [9; 16],
                },
            ),
            (
                group,
                Body::GroupInvite(GroupInvite {
                    change: b"climbing".to_vec(),
                    channel_id: [3; 16],
                    read_token: [4; 32],
                    write_token: [5; 32],
                    group_key: [6; 32],
                    after: 17,
                }),
            ),
            (
                group,
                Body::SenderKey {
                    epoch: 2,
                    distribution: vec![1, 2, 3],
                },
            ),
            (
                group,
                Body::GroupChange {
                    change: vec![1, 2, 3],
                },
            ),
            (group, Body::GroupAdminKey { seed: [9; 32] }),
        ];
        bodies
            .into_iter()
            .map(|(conversation, body)| Content {
                sent_at: 1_790_000_000_123,
                conversation,
                body,
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips_and_every_truncation_is_refused() {
        for c in samples() {
            let bytes = c.to_bytes().unwrap();
            assert_eq!(Content::from_bytes(&bytes).unwrap(), c);
            for n in 0..bytes.len() {
                assert!(Content::from_bytes(&bytes[..n]).is_err(), "{c:?} at {n}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Content::from_bytes(&longer).is_err());
        }
    }

    #[test]
    fn debug_shows_no_keys_or_text() {
        for c in samples() {
            let shown = format!("{c:?}");
            assert!(
                !shown.contains("héllo") && !shown.contains("climbing"),
                "{shown}"
            );
            // Access key [9; 16] and tokens/keys of the invite never appear as byte lists.
            assert!(!shown.contains("9, 9, 9"), "{shown}");
            assert!(!shown.contains("6, 6, 6"), "{shown}");
        }
    }

    #[test]
    fn limits_and_bad_values_are_refused() {
        let mut c = samples().remove(0);
        c.body = Body::Text {
            message_id: [0; 16],
            expire_secs: 0,
            text: "x".repeat(MAX_TEXT_BYTES + 1),
            attachment: vec![],
        };
        assert!(c.to_bytes().is_err());
        let mut bytes = samples()[0].to_bytes().unwrap();
        bytes[0] = 2;
        assert_eq!(
            Content::from_bytes(&bytes),
            Err(ContentError("unsupported version"))
        );
        let mut bytes = samples()[0].to_bytes().unwrap();
        bytes[1] = 0x7f;
        assert!(Content::from_bytes(&bytes).is_err());
        // The unsigned group invite and update of earlier versions are refused.
        for legacy in [0x10, 0x12] {
            let mut bytes = samples()[0].to_bytes().unwrap();
            bytes[1] = legacy;
            assert_eq!(
                Content::from_bytes(&bytes),
                Err(ContentError("unsigned group change of an earlier version"))
            );
        }
        // Invalid UTF-8 in a text.
        let mut bytes = samples()[0].to_bytes().unwrap();
        let at = 2 + 8 + 17 + 16 + 4 + 4;
        bytes[at] = 0xff;
        assert_eq!(
            Content::from_bytes(&bytes),
            Err(ContentError("text not UTF-8"))
        );
    }
}

//! Channels: append-only logs of opaque entries, addressed by a random id and guarded by two
//! capability tokens (read, write). The relay stores only SHA-256 of each token and nothing about
//! who created, writes or reads a channel, so it learns no group membership.
//!
//! Service functions ([`authorize`], [`append`], [`page`]) over a [`ChannelContext`] are shared
//! by the REST handlers (`channels::routes`) and by the WebSocket's channel subscriptions.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_protocol::frames::Franking;
use haven_protocol::franking::Destination;
use haven_protocol::franking::verify::StampKey;
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::channels::store::{
    AppendOutcome, ChannelEntry, ChannelQuota, ChannelRecord, ChannelStore,
};
use crate::clock::now_i64;
use crate::db::Store;
use crate::error::AppError;
use crate::ids::Id;
use crate::moderation::stamp::stamped;
use crate::realtime::hub::{Hub, Topic};
use crate::settings::ChannelSettings;

/// What the channel service uses of the relay: its store, the `[channels]` settings and the hub
/// (to wake subscribers). Implemented by the application state.
pub trait ChannelContext: Send + Sync {
    /// The store.
    type Store: Store;
    /// The store.
    fn store(&self) -> &Self::Store;
    /// The `[channels]` settings.
    fn channel_settings(&self) -> &ChannelSettings;
    /// The wake-up hub.
    fn hub(&self) -> &Hub;
}

/// A channel capability token (32 random bytes): zeroized on drop, no `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ChannelToken([u8; 32]);

impl ChannelToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes (the WebSocket carries them in binary frames).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the text form: base64url without padding of 32 bytes (43 characters).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 43 {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let token = <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Self);
        bytes.zeroize();
        token
    }

    /// The text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// SHA-256 of the token, the only form the relay stores.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

/// Which capability a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read entries, subscribe.
    Read,
    /// Append entries.
    Write,
}

/// Checks `token` against the channel's stored hash for `access` (constant time) and returns the
/// channel. Unknown or expired channels are 404 `channel_not_found`; a wrong token is 401
/// `invalid_channel_token`.
pub async fn authorize<C: ChannelContext>(
    state: &C,
    id: &Id,
    token: &ChannelToken,
    access: Access,
) -> Result<ChannelRecord, AppError> {
    let channel = state
        .store()
        .channel(id, now_i64())
        .await?
        .ok_or_else(|| AppError::not_found("channel_not_found", "no such channel"))?;
    let stored = match access {
        Access::Read => &channel.read_hash,
        Access::Write => &channel.write_hash,
    };
    let presented = token.hash();
    if bool::from(presented.as_slice().ct_eq(stored.as_slice())) {
        Ok(channel)
    } else {
        Err(AppError::unauthorized(
            "invalid_channel_token",
            "the channel token is not valid for this operation",
        ))
    }
}

/// Appends `body` with its writer's franking `commitment`, if any, to channel `id` (write token
/// already checked by the caller through [`authorize`]), then wakes subscribers everywhere.
/// Returns the entry's sequence number.
pub async fn append<C: ChannelContext>(
    state: &C,
    id: &Id,
    body: &[u8],
    commitment: Option<&[u8; 32]>,
) -> Result<i64, AppError> {
    let limits = state.channel_settings();
    if body.is_empty() || body.len() > limits.max_entry_bytes {
        return Err(AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "entry_too_large",
            format!("entries are 1 to {} bytes", limits.max_entry_bytes),
        ));
    }
    let quota = ChannelQuota {
        max_entries: i64::try_from(limits.max_entries).unwrap_or(i64::MAX),
        max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
    };
    match state
        .store()
        .append_entry(id, body, commitment, now_i64(), quota)
        .await?
    {
        AppendOutcome::Appended(seq) => {
            state.hub().publish(&Topic::Channel(*id));
            Ok(seq)
        }
        AppendOutcome::QuotaExceeded => Err(AppError::client(
            StatusCode::INSUFFICIENT_STORAGE,
            "channel_full",
            "the channel's entry count or size limit is reached",
        )),
        _ => Err(AppError::not_found("channel_not_found", "no such channel")),
    }
}

/// The franking of `entry` of channel `id` as delivered to a reader (PROTOCOL.md §16.4: the
/// destination `0x02 || channel id || 0`, the entry's `seq` and `created_at`); `None` for an
/// entry appended without a commitment.
#[must_use]
pub fn entry_franking(key: &StampKey, id: &Id, entry: &ChannelEntry) -> Option<Franking> {
    stamped(
        key,
        entry.franking_commitment.as_ref(),
        &Destination::Channel {
            channel_id: *id.as_bytes(),
        },
        entry.seq,
        entry.created_at,
    )
}

/// Entries after `after`, at most `limit` (capped by the configured page limit), plus whether
/// more follow.
pub async fn page<C: ChannelContext>(
    state: &C,
    id: &Id,
    after: i64,
    limit: u32,
) -> Result<(Vec<ChannelEntry>, bool), AppError> {
    let limit = limit.clamp(1, state.channel_settings().page_limit);
    let mut entries = state
        .store()
        .entries(id, after.max(0), limit.saturating_add(1))
        .await?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    Ok((entries, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_form() {
        let t = ChannelToken::generate();
        let text = t.encode();
        assert_eq!(text.len(), 43);
        let parsed = ChannelToken::parse(&text).unwrap();
        assert_eq!(parsed.hash(), t.hash());
        assert!(ChannelToken::parse(&text[..42]).is_none());
        assert!(ChannelToken::parse(&format!("{}=", &text[..42])).is_none());
        assert!(ChannelToken::parse("").is_none());
    }
}

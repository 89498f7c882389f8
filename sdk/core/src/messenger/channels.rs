//! A group epoch's relay channel as the messenger uses it (PROTOCOL §11.15, §11.14): the
//! request a driver makes to create one, the capabilities read from the relay's answer, the
//! paths, bearer tokens and bodies of appending and reading entries, a page of entries as
//! `(seq, entry)` pairs, and the WebSocket subscription. Both drivers (`haven_client`'s
//! `Messenger` over HTTP, the web page through `haven-wasm`) build their requests here.
//!
//! ```text
//! create     POST /v1/channels  create_request()          ─► Channel::from_reply(answer)
//! append     POST epoch.append_path()   bearer write token  append_body(entry, c) ─► {"seq"}
//! read       GET  epoch.entries_path(after)  bearer read token ─► page_entries(answer):
//!            ChannelItem { seq, entry, franking }
//! live       channel entry frame ─► ChannelItem::from_frame
//! live       WebSocket subscribe frame (epoch.subscribe_frame(request id), after = cursor)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use haven_protocol::api::channels::{
    AppendRequest, CreateChannelRequest, CreateChannelResponse, EntriesPage,
};
use haven_protocol::frames::{ClientFrame, Franking};
use zeroize::Zeroizing;

use super::groups::{Channel, Epoch};
use super::types::{StateError, invalid};
use crate::device::DeliveredFranking;

/// Lifetime requested for a group channel (the relay caps it at its maximum; a relay whose
/// maximum is lower refuses it with `invalid_ttl`: then ask for its default,
/// [`CreateChannelRequest::default`]).
pub const CHANNEL_TTL_SECS: u64 = 90 * 86_400;
/// Most entries read from a channel per page.
pub const CHANNEL_PAGE: u32 = 100;

/// The body of `POST /v1/channels` for a new epoch: [`CHANNEL_TTL_SECS`].
#[must_use]
pub fn create_request() -> CreateChannelRequest {
    CreateChannelRequest {
        ttl_secs: Some(CHANNEL_TTL_SECS),
    }
}

impl Channel {
    /// The channel of the relay's answer to `POST /v1/channels` (tokens base64url, 32 bytes).
    ///
    /// # Errors
    /// [`StateError::Invalid`] for a malformed token.
    pub fn from_reply(reply: &CreateChannelResponse) -> Result<Self, StateError> {
        let token = |text: &str| -> Result<[u8; 32], StateError> {
            URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| invalid("relay answered with a malformed channel token"))
        };
        Ok(Self {
            id: *reply.channel_id.as_bytes(),
            read_token: token(&reply.read_token)?,
            write_token: token(&reply.write_token)?,
        })
    }
}

impl Epoch {
    /// The path to `POST` an entry to (bearer: [`Epoch::write_bearer`]).
    #[must_use]
    pub fn append_path(&self) -> String {
        format!("/v1/channels/{}/entries", hex::encode(self.channel_id()))
    }

    /// The path to `GET` the entries after `after` from (bearer: [`Epoch::read_bearer`]), a
    /// page of at most [`CHANNEL_PAGE`].
    #[must_use]
    pub fn entries_path(&self, after: u64) -> String {
        format!(
            "/v1/channels/{}/entries?after={after}&limit={CHANNEL_PAGE}",
            hex::encode(self.channel_id())
        )
    }

    /// The read capability as the bearer token of a read (base64url).
    #[must_use]
    pub fn read_bearer(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.read_token()))
    }

    /// The write capability as the bearer token of an append (base64url).
    #[must_use]
    pub fn write_bearer(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.write_token()))
    }

    /// The WebSocket frame subscribing to this epoch's channel after its cursor (§11.14
    /// `0x13`).
    #[must_use]
    pub fn subscribe_frame(&self, request_id: u32) -> Zeroizing<Vec<u8>> {
        let frame = ClientFrame::Subscribe {
            request_id,
            channel: *self.channel_id(),
            token: *self.read_token(),
            after: self.cursor(),
        };
        // A subscribe frame has a fixed layout: encoding cannot fail.
        Zeroizing::new(frame.encode().unwrap_or_default())
    }
}

/// The body appending `entry` (a sealed channel entry) to a channel, with its franking
/// commitment when the entry is franked (§16.3, §16.9).
#[must_use]
pub fn append_body(entry: &[u8], commitment: Option<&[u8; 32]>) -> AppendRequest {
    AppendRequest {
        entry: STANDARD.encode(entry),
        franking_commitment: commitment.map(|c| STANDARD.encode(c)),
    }
}

/// One channel entry as the relay delivered it: its position, the sealed entry, and its
/// franking (commitment and stamp, §16.4) when the writer franked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelItem {
    /// The entry's `seq` in its channel.
    pub seq: u64,
    /// The sealed entry (§13.3).
    pub entry: Vec<u8>,
    /// The relay's commitment and stamp with `seq` and `created_at`, if franked.
    pub franking: Option<DeliveredFranking>,
}

impl ChannelItem {
    /// An entry of a WebSocket channel entry frame (§11.14 `0x03` / `0x07`).
    #[must_use]
    pub fn from_frame(seq: u64, created_at: u64, entry: &[u8], franking: Option<Franking>) -> Self {
        Self {
            seq,
            entry: entry.to_vec(),
            franking: DeliveredFranking::from_channel_frame(franking, seq, created_at),
        }
    }
}

/// The entries of a page of `GET /v1/channels/{id}/entries`, in order.
///
/// # Errors
/// [`StateError::Invalid`] for a negative seq, an entry that is not base64 or a malformed
/// franking.
pub fn page_entries(page: &EntriesPage) -> Result<Vec<ChannelItem>, StateError> {
    page.entries
        .iter()
        .map(|item| {
            let seq = u64::try_from(item.seq).map_err(|_| invalid("malformed channel page"))?;
            let entry = STANDARD
                .decode(&item.entry)
                .map_err(|_| invalid("malformed channel entry"))?;
            let franking = DeliveredFranking::from_entry(item)
                .map_err(|_| invalid("malformed channel entry franking"))?;
            Ok(ChannelItem {
                seq,
                entry,
                franking,
            })
        })
        .collect()
}

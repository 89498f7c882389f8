//! The client's address as the relay may use it: only as a keyed hash, for per-address limits.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::secrets::Key32;

/// What [`ClientKey`] needs of the application state.
pub trait ClientAddrSource: Send + Sync {
    /// Whether a trusted reverse proxy in front sets `X-Forwarded-For`.
    fn trusted_proxy(&self) -> bool;
    /// The key client addresses are hashed with.
    fn addr_key(&self) -> &Key32;
}

/// The client address as a keyed hash (hex), or `None` when unknown (e.g. in-process tests).
///
/// The address itself is never stored or logged; the HMAC key is random per process. The same
/// address is what the address-ban middleware hashes (`moderation::routes`).
#[derive(Debug, Clone)]
pub struct ClientKey(pub Option<String>);

impl<St: ClientAddrSource> FromRequestParts<St> for ClientKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, state.trusted_proxy()).map(|ip| {
            hex::encode(
                state
                    .addr_key()
                    .hmac(b"client-addr", ip.to_string().as_bytes()),
            )
        })))
    }
}

pub(crate) fn client_ip(parts: &Parts, trusted_proxy: bool) -> Option<IpAddr> {
    if trusted_proxy {
        // The proxy appends the peer it saw; the left-most entry is the original client.
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
}

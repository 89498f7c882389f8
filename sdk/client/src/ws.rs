//! The device's WebSocket to the relay (`docs/PROTOCOL.md` §11.14): one connection attempt and
//! the reconnect policy (exponential backoff with full jitter). The frames are
//! `haven_protocol::frames`.
//!
//! [`connect`] opens an authenticated socket with the device's access token in the
//! `Authorization` header (native clients; browsers use tickets). [`Backoff`] decides how long to
//! wait before the next attempt. The loop that ties them to the messenger lives in
//! [`crate::messenger`].

use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::relay::{RelayClient, RelayError};

/// An open socket.
pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The session is gone (logged out, device unlinked, refresh token reused): reconnecting
    /// cannot help; the user must log in again.
    #[error("session no longer valid: {0}")]
    Unauthorized(String),
    /// Network or relay trouble: try again later.
    #[error("connection failed: {0}")]
    Transient(String),
}

/// Opens the device's socket: `GET {base}/v1/ws` with `Authorization: Bearer`.
///
/// # Errors
/// [`ConnectError::Unauthorized`] when the relay refuses the session (401), otherwise
/// [`ConnectError::Transient`].
pub async fn connect(relay: &RelayClient) -> Result<Socket, ConnectError> {
    let token = relay.access_token().await.map_err(|e| match e {
        RelayError::NotLoggedIn => ConnectError::Unauthorized(e.to_string()),
        RelayError::Refused { status: 401, .. } => ConnectError::Unauthorized(e.to_string()),
        other => ConnectError::Transient(other.to_string()),
    })?;
    let base = relay.base_url();
    let url = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/v1/ws")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}/v1/ws")
    } else {
        return Err(ConnectError::Transient("relay URL is not http(s)".into()));
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Transient(e.to_string()))?;
    let value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
        .map_err(|_| ConnectError::Transient("access token is not a header value".into()))?;
    request.headers_mut().insert("authorization", value);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response))
            if response.status().as_u16() == 401 =>
        {
            // An expired access token is refreshed on the next attempt; a revoked session
            // fails that refresh and surfaces as Unauthorized there.
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            if body.contains("token_expired") {
                relay.invalidate_access_token().await;
                Err(ConnectError::Transient("access token expired".into()))
            } else {
                Err(ConnectError::Unauthorized(body))
            }
        }
        Err(e) => Err(ConnectError::Transient(e.to_string())),
    }
}

/// Reconnect delays: exponential from `base` to `cap`, each drawn uniformly from
/// `[0, current]` ("full jitter"), so many clients reconnecting after a relay restart spread out
/// instead of arriving together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff between `base` and `cap`.
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: uniform in `[0, ceiling]`; doubles the ceiling for the attempt after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jitter = rand::Rng::next_u64(&mut rand::rng()) % millis.saturating_add(1);
        Duration::from_millis(jitter)
    }

    /// Back to the first step (after a connection that worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling);
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        // Jitter really varies (100 draws from [0, 2000] ms are not all equal).
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(2));
        let draws: std::collections::HashSet<_> = (0..100).map(|_| b.next_delay()).collect();
        assert!(draws.len() > 10);
    }
}

//! Push endpoints from the device side (PROTOCOL §18): checking what the host application
//! hands over (a browser's `PushSubscription`, or the app id and push key of a push gateway)
//! and building the body of `POST /v1/push/endpoints`, the same for the native client and the
//! web bindings. Nothing here reaches the network: a value refused here is never sent.
//!
//! A wake-up carries nothing but `{"type":"wake"}`; what the device does then is the messenger
//! driver's ([`crate::messenger::WakeSummary`], PROTOCOL §13.4.2).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use haven_protocol::api::push::{
    MAX_APP_ID_LEN, MAX_ENDPOINT_URL_LEN, MAX_ENDPOINTS_PER_DEVICE, MAX_PUSHKEY_LEN,
    PushEndpointBody, PushEndpointCreated, PushEndpointList, PushEndpointRequest, VapidKeyBody,
};

/// Length of a subscription's `p256dh` key: an uncompressed P-256 point.
pub const P256DH_LEN: usize = 65;
/// Length of a subscription's `auth` secret.
pub const AUTH_LEN: usize = 16;
/// Length of an endpoint id (base64url of this many bytes).
pub const ENDPOINT_ID_LEN: usize = 16;

/// A push endpoint the application asked to register, refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushEndpointError {
    /// The Web Push endpoint is not an `https://` URL of at most [`MAX_ENDPOINT_URL_LEN`] bytes.
    #[error("push endpoint must be an https:// URL of at most {MAX_ENDPOINT_URL_LEN} bytes")]
    Endpoint,
    /// `p256dh` is not base64url (no padding) of a 65-byte uncompressed P-256 point.
    #[error("p256dh must be base64url (no padding) of a 65-byte uncompressed P-256 point")]
    P256dh,
    /// `auth` is not base64url (no padding) of 16 bytes.
    #[error("auth must be base64url (no padding) of 16 bytes")]
    Auth,
    /// The app id is not 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    #[error("app id must be 1 to {MAX_APP_ID_LEN} characters of A-Z a-z 0-9 . _ -")]
    AppId,
    /// The push key is empty, longer than 512 bytes or holds a control character.
    #[error("push key must be 1 to {MAX_PUSHKEY_LEN} bytes without control characters")]
    Pushkey,
    /// An endpoint id is not base64url (no padding) of 16 bytes.
    #[error("a push endpoint id is base64url (no padding) of 16 bytes")]
    Id,
}

/// Decodes base64url, with or without the padding browsers sometimes add.
fn b64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// The body registering a browser's Web Push subscription: its `endpoint` and its `p256dh` and
/// `auth` keys as `PushSubscription.toJSON().keys` gives them (base64url). The keys are checked
/// (lengths, the point's `0x04` prefix) and sent without padding.
///
/// # Errors
/// [`PushEndpointError`] naming the first field that is wrong.
pub fn web_push(
    endpoint: &str,
    p256dh: &str,
    auth: &str,
) -> Result<PushEndpointRequest, PushEndpointError> {
    if !endpoint.starts_with("https://")
        || endpoint.len() <= "https://".len()
        || endpoint.len() > MAX_ENDPOINT_URL_LEN
        || endpoint
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(PushEndpointError::Endpoint);
    }
    let key = b64url(p256dh)
        .filter(|k| k.len() == P256DH_LEN && k.first() == Some(&0x04))
        .ok_or(PushEndpointError::P256dh)?;
    let secret = b64url(auth)
        .filter(|a| a.len() == AUTH_LEN)
        .ok_or(PushEndpointError::Auth)?;
    Ok(PushEndpointRequest::WebPush {
        endpoint: endpoint.to_owned(),
        p256dh: URL_SAFE_NO_PAD.encode(key),
        auth: URL_SAFE_NO_PAD.encode(secret),
    })
}

/// The body registering a push gateway's endpoint: the app id the relay's gateway knows the app
/// by, and the device's push key there (its APNs device token or FCM registration token).
///
/// # Errors
/// [`PushEndpointError::AppId`], [`PushEndpointError::Pushkey`].
pub fn gateway(app_id: &str, pushkey: &str) -> Result<PushEndpointRequest, PushEndpointError> {
    if app_id.is_empty()
        || app_id.len() > MAX_APP_ID_LEN
        || !app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(PushEndpointError::AppId);
    }
    if pushkey.is_empty()
        || pushkey.len() > MAX_PUSHKEY_LEN
        || pushkey.chars().any(char::is_control)
    {
        return Err(PushEndpointError::Pushkey);
    }
    Ok(PushEndpointRequest::Gateway {
        app_id: app_id.to_owned(),
        pushkey: pushkey.to_owned(),
    })
}

/// The path of one registered endpoint (`DELETE` removes it), for an id the relay gave.
///
/// # Errors
/// [`PushEndpointError::Id`] for text that is not an id (base64url without padding of 16
/// bytes): it is never put in a path.
pub fn endpoint_path(id: &str) -> Result<String, PushEndpointError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(id)
        .map_err(|_| PushEndpointError::Id)?;
    // Decoding accepts non-canonical trailing bits; only the canonical text is an id.
    if bytes.len() != ENDPOINT_ID_LEN || URL_SAFE_NO_PAD.encode(&bytes) != id {
        return Err(PushEndpointError::Id);
    }
    Ok(format!("/v1/push/endpoints/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> String {
        let mut p = [7u8; P256DH_LEN];
        p[0] = 4;
        URL_SAFE_NO_PAD.encode(p)
    }

    #[test]
    fn web_push_checks_every_field() {
        let auth = URL_SAFE_NO_PAD.encode([1u8; AUTH_LEN]);
        let ok = web_push("https://push.example/abc", &point(), &auth).unwrap();
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["kind"], "web_push");
        assert_eq!(json["p256dh"], point());
        // Padding a browser added is accepted and dropped.
        let padded = format!("{auth}==");
        let again = web_push("https://push.example/abc", &point(), &padded).unwrap();
        assert_eq!(again, ok);

        let bad = |e: &str, k: &str, a: &str| web_push(e, k, a).unwrap_err();
        assert_eq!(
            bad("http://push.example/x", &point(), &auth),
            PushEndpointError::Endpoint
        );
        assert_eq!(
            bad("https://", &point(), &auth),
            PushEndpointError::Endpoint
        );
        assert_eq!(
            bad("https://a b", &point(), &auth),
            PushEndpointError::Endpoint
        );
        let long = format!("https://{}", "a".repeat(MAX_ENDPOINT_URL_LEN));
        assert_eq!(bad(&long, &point(), &auth), PushEndpointError::Endpoint);
        let compressed = URL_SAFE_NO_PAD.encode([2u8; P256DH_LEN]);
        assert_eq!(
            bad("https://p", &compressed, &auth),
            PushEndpointError::P256dh
        );
        assert_eq!(
            bad("https://p", "not base64!", &auth),
            PushEndpointError::P256dh
        );
        let short = URL_SAFE_NO_PAD.encode([1u8; 15]);
        assert_eq!(bad("https://p", &point(), &short), PushEndpointError::Auth);
    }

    #[test]
    fn gateway_checks_app_id_and_pushkey() {
        let ok = gateway("com.example.chat", "token-1").unwrap();
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "gateway", "app_id": "com.example.chat", "pushkey": "token-1"})
        );
        assert_eq!(gateway("", "k"), Err(PushEndpointError::AppId));
        assert_eq!(gateway("a/b", "k"), Err(PushEndpointError::AppId));
        assert_eq!(gateway(&"a".repeat(65), "k"), Err(PushEndpointError::AppId));
        assert!(gateway(&"a".repeat(64), "k").is_ok());
        assert_eq!(gateway("app", ""), Err(PushEndpointError::Pushkey));
        assert_eq!(gateway("app", "a\nb"), Err(PushEndpointError::Pushkey));
        assert_eq!(
            gateway("app", &"k".repeat(513)),
            Err(PushEndpointError::Pushkey)
        );
        assert_eq!(
            gateway("app", &"é".repeat(257)),
            Err(PushEndpointError::Pushkey)
        );
        assert!(gateway("app", &"k".repeat(512)).is_ok());
    }

    #[test]
    fn endpoint_paths_only_for_plain_ids() {
        let id = URL_SAFE_NO_PAD.encode([0xfb; ENDPOINT_ID_LEN]);
        assert_eq!(endpoint_path(&id), Ok(format!("/v1/push/endpoints/{id}")));
        for bad in [
            "../x".to_owned(),
            String::new(),
            format!("{id}=="),
            URL_SAFE_NO_PAD.encode([1; 15]),
        ] {
            assert_eq!(endpoint_path(&bad), Err(PushEndpointError::Id), "{bad}");
        }
    }
}

//! What blindness tests look for: every spelling of a sender that must not appear in what the
//! relay stores or logs, and proof that the logs searched are the real, complete ones.
#![allow(clippy::unwrap_used, clippy::panic)] // A failure here is the test's failure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A relay's own events from start to stop at `debug` (its SQL statements included): logs that
/// hold them all are complete enough for a search of them to prove something.
pub const LIFETIME_AT_DEBUG: &[&str] = &[
    "relay listening",
    "account registered",
    "sqlx::query",
    "relay stopped",
];

/// Every form in which the sender of a message could leak: its account id (hex, upper-case hex,
/// raw, base64), device id (hex, raw), identity key (raw, hex, unpadded base64) and, last, its
/// client address `ip`. `account` and `device` are hex.
pub fn sender_forms(account: &str, device: &str, identity: &[u8], ip: &str) -> Vec<Vec<u8>> {
    let account_raw = hex::decode(account).unwrap();
    let device_raw = hex::decode(device).unwrap();
    vec![
        account.as_bytes().to_vec(),
        account.to_uppercase().into_bytes(),
        STANDARD.encode(&account_raw).into_bytes(),
        account_raw,
        device.as_bytes().to_vec(),
        device_raw,
        identity.to_vec(),
        hex::encode(identity).into_bytes(),
        STANDARD
            .encode(identity)
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
        ip.as_bytes().to_vec(),
    ]
}

/// Asserts that `haystack` (named `what` in the failure) is not empty and holds none of `forms`.
pub fn assert_free_of(haystack: &[u8], forms: &[Vec<u8>], what: &str) {
    assert!(
        !haystack.is_empty(),
        "{what} is empty: the test would prove nothing"
    );
    for form in forms {
        assert!(
            !haystack.windows(form.len()).any(|w| w == form.as_slice()),
            "{what} contains {:?}",
            String::from_utf8_lossy(form)
        );
    }
}

/// Asserts that the relay's `logs` hold each of `events`: otherwise a search of them for what
/// must not be there would prove nothing.
pub fn assert_logged(logs: &str, events: &[&str]) {
    for event in events {
        assert!(
            logs.contains(event),
            "the relay's logs lack {event:?}: the check would prove nothing"
        );
    }
}

/// Asserts that the only loopback address in `logs` is the relay's own, `own`: no peer address
/// (the proxy's, or without a proxy the client's) was logged.
pub fn assert_no_peer_address(logs: &str, own: &str) {
    for (i, _) in logs.match_indices("127.0.0.1:") {
        let end = logs[i + 10..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(logs.len(), |n| i + 10 + n);
        assert_eq!(&logs[i..end], own, "the logs hold a peer address:\n{logs}");
    }
}

//! Where a wake-up goes: a Web Push subscription or a gateway pushkey. Checking what a device
//! registers (sizes, keys, and the SSRF rules on endpoint URLs), the byte layout sealed at rest,
//! and the keyed lookup hash that finds a registration again (PROTOCOL.md §18.2, §18.8).

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_protocol::api::push::{
    MAX_APP_ID_LEN, MAX_ENDPOINT_URL_LEN, MAX_PUSHKEY_LEN, PushEndpointRequest,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::push::settings::PushSettings;
use crate::push::store::EndpointKind;
use crate::push::web_push::{AUTH_LEN, POINT_LEN, valid_public_key};

/// A registered endpoint, opened. Zeroized on drop, no `Debug` (it names the device's push
/// service address and keys, which the logs must never show).
#[derive(Zeroize, ZeroizeOnDrop)]
pub enum PushTarget {
    /// A Web Push subscription.
    WebPush {
        /// The push service URL.
        endpoint: String,
        /// The subscription's public key (65 bytes).
        p256dh: Vec<u8>,
        /// Its authentication secret (16 bytes).
        auth: [u8; AUTH_LEN],
    },
    /// A gateway pushkey.
    Gateway {
        /// The app id.
        app_id: String,
        /// The device token.
        pushkey: String,
    },
}

/// Why a registration is refused (all 400s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A key, URL or token is malformed or out of its limits (`invalid_push_endpoint`).
    #[error("{0}")]
    Invalid(&'static str),
    /// The URL names a host the relay does not send to (`push_endpoint_not_allowed`).
    #[error("{0}")]
    NotAllowed(&'static str),
    /// A gateway endpoint, but no gateway is configured (`push_gateway_not_configured`).
    #[error("this relay has no push gateway")]
    NoGateway,
}

impl TargetError {
    /// The API error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_push_endpoint",
            Self::NotAllowed(_) => "push_endpoint_not_allowed",
            Self::NoGateway => "push_gateway_not_configured",
        }
    }
}

/// Decodes base64url, with or without padding.
fn b64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

impl PushTarget {
    /// Checks a registration against the limits and the settings.
    pub fn from_request(
        req: &PushEndpointRequest,
        settings: &PushSettings,
    ) -> Result<Self, TargetError> {
        match req {
            PushEndpointRequest::WebPush {
                endpoint,
                p256dh,
                auth,
            } => {
                check_endpoint_url(endpoint, settings)?;
                let p256dh =
                    b64url(p256dh)
                        .filter(|k| valid_public_key(k))
                        .ok_or(TargetError::Invalid(
                            "p256dh must be a 65-byte uncompressed P-256 point, base64url",
                        ))?;
                let auth: [u8; AUTH_LEN] = b64url(auth)
                    .and_then(|a| a.try_into().ok())
                    .ok_or(TargetError::Invalid("auth must be 16 bytes, base64url"))?;
                Ok(Self::WebPush {
                    endpoint: endpoint.clone(),
                    p256dh,
                    auth,
                })
            }
            PushEndpointRequest::Gateway { app_id, pushkey } => {
                if settings.gateway_url.is_none() {
                    return Err(TargetError::NoGateway);
                }
                let app_id_ok = (1..=MAX_APP_ID_LEN).contains(&app_id.len())
                    && app_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                if !app_id_ok {
                    return Err(TargetError::Invalid(
                        "app_id must be 1..64 characters of [A-Za-z0-9._-]",
                    ));
                }
                if !(1..=MAX_PUSHKEY_LEN).contains(&pushkey.len())
                    || pushkey.chars().any(char::is_control)
                {
                    return Err(TargetError::Invalid(
                        "pushkey must be 1..512 bytes without control characters",
                    ));
                }
                Ok(Self::Gateway {
                    app_id: app_id.clone(),
                    pushkey: pushkey.clone(),
                })
            }
            _ => Err(TargetError::Invalid("unknown endpoint kind")),
        }
    }

    /// The kind.
    pub fn kind(&self) -> EndpointKind {
        match self {
            Self::WebPush { .. } => EndpointKind::WebPush,
            Self::Gateway { .. } => EndpointKind::Gateway,
        }
    }

    /// What identifies the registration for "the same endpoint again": the URL, or app id and
    /// pushkey (keys may change, the row stays). Input of the keyed lookup hash.
    pub fn identity(&self) -> Vec<u8> {
        let mut out = vec![self.kind().code() as u8];
        match self {
            Self::WebPush { endpoint, .. } => out.extend_from_slice(endpoint.as_bytes()),
            Self::Gateway { app_id, pushkey } => {
                out.extend_from_slice(app_id.as_bytes());
                out.push(0);
                out.extend_from_slice(pushkey.as_bytes());
            }
        }
        out
    }

    /// The bytes sealed at rest:
    /// `0x01 || url_len u16 BE || url || p256dh (65) || auth (16)` or
    /// `0x02 || app_id_len u8 || app_id || pushkey_len u16 BE || pushkey`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::WebPush {
                endpoint,
                p256dh,
                auth,
            } => {
                out.push(1);
                out.extend_from_slice(&(endpoint.len() as u16).to_be_bytes());
                out.extend_from_slice(endpoint.as_bytes());
                out.extend_from_slice(p256dh);
                out.extend_from_slice(auth);
            }
            Self::Gateway { app_id, pushkey } => {
                out.push(2);
                out.push(app_id.len() as u8);
                out.extend_from_slice(app_id.as_bytes());
                out.extend_from_slice(&(pushkey.len() as u16).to_be_bytes());
                out.extend_from_slice(pushkey.as_bytes());
            }
        }
        out
    }

    /// Reads what [`Self::encode`] wrote; `None` if malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (kind, rest) = bytes.split_first()?;
        match kind {
            1 => {
                let (len, rest) = rest.split_at_checked(2)?;
                let len = usize::from(u16::from_be_bytes(len.try_into().ok()?));
                let (url, rest) = rest.split_at_checked(len)?;
                let (p256dh, auth) = rest.split_at_checked(POINT_LEN)?;
                Some(Self::WebPush {
                    endpoint: String::from_utf8(url.to_vec()).ok()?,
                    p256dh: p256dh.to_vec(),
                    auth: auth.try_into().ok()?,
                })
            }
            2 => {
                let (len, rest) = rest.split_first()?;
                let (app_id, rest) = rest.split_at_checked(usize::from(*len))?;
                let (len, rest) = rest.split_at_checked(2)?;
                let len = usize::from(u16::from_be_bytes(len.try_into().ok()?));
                if rest.len() != len {
                    return None;
                }
                Some(Self::Gateway {
                    app_id: String::from_utf8(app_id.to_vec()).ok()?,
                    pushkey: String::from_utf8(rest.to_vec()).ok()?,
                })
            }
            _ => None,
        }
    }
}

/// The SSRF rules for a Web Push endpoint URL: at most 1024 bytes, `https://` (or `http://`
/// with `allow_insecure`), a host, no credentials; not `localhost` nor an IP literal in a
/// private, loopback, link-local, shared or reserved range (unless `allow_insecure`); and, when
/// `allowed_hosts` is set, one of those hosts.
pub fn check_endpoint_url(
    endpoint: &str,
    settings: &PushSettings,
) -> Result<url::Url, TargetError> {
    if endpoint.len() > MAX_ENDPOINT_URL_LEN {
        return Err(TargetError::Invalid("endpoint is longer than 1024 bytes"));
    }
    let url = url::Url::parse(endpoint)
        .map_err(|_| TargetError::Invalid("endpoint is not a valid URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if settings.allow_insecure => {}
        _ => return Err(TargetError::NotAllowed("endpoint must be https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Invalid("endpoint must not carry credentials"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !settings.allow_insecure && (d == "localhost" || d.ends_with(".localhost")) {
                return Err(TargetError::NotAllowed("endpoint host is local"));
            }
            d
        }
        Some(url::Host::Ipv4(ip)) => {
            if !settings.allow_insecure && forbidden_ip(IpAddr::V4(ip)) {
                return Err(TargetError::NotAllowed(
                    "endpoint host is a private or local address",
                ));
            }
            ip.to_string()
        }
        Some(url::Host::Ipv6(ip)) => {
            if !settings.allow_insecure && forbidden_ip(IpAddr::V6(ip)) {
                return Err(TargetError::NotAllowed(
                    "endpoint host is a private or local address",
                ));
            }
            ip.to_string()
        }
        None => return Err(TargetError::Invalid("endpoint has no host")),
    };
    if !settings.allowed_hosts.is_empty() && !host_allowed(&host, &settings.allowed_hosts) {
        return Err(TargetError::NotAllowed(
            "endpoint host is not an allowed push service",
        ));
    }
    Ok(url)
}

fn host_allowed(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_prefix('.') {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == a,
        }
    })
}

/// Addresses the relay never sends a push to (unless `allow_insecure`): loopback, private,
/// link-local, shared (CGNAT), unspecified, broadcast, documentation, benchmarking, multicast
/// and reserved IPv4; loopback, unspecified, unique-local, link-local, multicast and
/// documentation IPv6, and IPv4-mapped forms of the IPv4 ones.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> PushSettings {
        PushSettings::default()
    }

    #[test]
    fn ssrf_rules() {
        let s = settings();
        for bad in [
            "http://push.example/x",
            "https://localhost/x",
            "https://a.localhost/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:192.168.0.1]/x",
            "https://100.64.0.1/x",
            "ftp://push.example/x",
        ] {
            assert!(check_endpoint_url(bad, &s).is_err(), "{bad}");
        }
        assert!(check_endpoint_url("https://user:pw@push.example/x", &s).is_err());
        assert!(
            check_endpoint_url(&format!("https://p.example/{}", "a".repeat(1100)), &s).is_err()
        );
        assert!(check_endpoint_url("https://push.example/x", &s).is_ok());
        assert!(check_endpoint_url("https://8.8.8.8/x", &s).is_ok());
        let allow = PushSettings {
            allowed_hosts: vec![".push.example".into(), "fcm.example".into()],
            ..settings()
        };
        assert!(check_endpoint_url("https://a.push.example/x", &allow).is_ok());
        assert!(check_endpoint_url("https://fcm.example/x", &allow).is_ok());
        assert!(check_endpoint_url("https://evil.example/x", &allow).is_err());
        let insecure = PushSettings {
            allow_insecure: true,
            ..settings()
        };
        assert!(check_endpoint_url("http://127.0.0.1:9/x", &insecure).is_ok());
    }

    #[test]
    fn encoding_round_trips_and_refuses_garbage() {
        let t = PushTarget::WebPush {
            endpoint: "https://push.example/abc".into(),
            p256dh: vec![4; 65],
            auth: [9; 16],
        };
        let bytes = t.encode();
        let back = PushTarget::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        let g = PushTarget::Gateway {
            app_id: "com.example".into(),
            pushkey: "tok".into(),
        };
        assert_eq!(
            PushTarget::decode(&g.encode()).unwrap().encode(),
            g.encode()
        );
        for cut in 0..bytes.len() {
            assert!(PushTarget::decode(&bytes[..cut]).is_none());
        }
        assert!(PushTarget::decode(&[3, 0, 0]).is_none());
    }
}

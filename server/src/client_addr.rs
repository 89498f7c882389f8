//! The client's address as the relay may use it: only as a keyed hash of its prefix, for
//! per-address limits and address bans.
//!
//! # Behind proxies
//!
//! With `trusted_proxy_hops = N` (`HAVEN_TRUSTED_PROXY=true` means N = 1), each of the N
//! trusted proxies in front appends the address it saw to `X-Forwarded-For` (nginx
//! `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`). The entries of every
//! `X-Forwarded-For` line, in order, form one list; its last N entries were written by the
//! trusted proxies, and the N-th from the right is the client as the outermost trusted proxy saw
//! it. Everything to its left came from the client and is ignored, so forging the header gains
//! nothing. A correct chain always yields at least N entries: fewer, or an N-th entry that is
//! not an address, means the request did not pass through the whole chain, and the socket peer
//! (a proxy, shared by every client behind it) is used instead: a client cannot make up a fresh
//! address that way, only join the proxy's.
//!
//! # Prefixes
//!
//! The limits count an address prefix, not the address: `addr_prefix_v4` bits of an IPv4
//! address (32, the whole address, by default) and `addr_prefix_v6` bits of an IPv6 address
//! (64 by default: one end site usually holds a whole /64). An IPv4-mapped IPv6 address counts
//! as IPv4. [`prefix_bytes`] is the one truncation both the limits and the address bans use.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::secrets::Key32;

/// What [`ClientKey`] needs of the application state.
pub trait ClientAddrSource: Send + Sync {
    /// How many trusted reverse proxies in front append to `X-Forwarded-For` (0: none, the
    /// socket peer is the client).
    fn proxy_hops(&self) -> u8;
    /// The prefix lengths (IPv4 bits, IPv6 bits) the limits count.
    fn addr_prefixes(&self) -> (u8, u8);
    /// The key client address prefixes are hashed with.
    fn addr_key(&self) -> &Key32;
}

/// The client address prefix as a keyed hash (hex), or `None` when unknown (e.g. in-process
/// tests).
///
/// The address itself is never stored or logged. The HMAC key is derived from the server secret
/// (`ServerSecrets::addr_key`), so every instance of one deployment hashes an address alike and
/// the shared limiter counts it once. The same address is what the address-ban middleware
/// hashes (`moderation::routes`).
#[derive(Debug, Clone)]
pub struct ClientKey(pub Option<String>);

impl<St: ClientAddrSource> FromRequestParts<St> for ClientKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let (v4, v6) = state.addr_prefixes();
        Ok(Self(client_ip(parts, state.proxy_hops()).map(|ip| {
            hex::encode(
                state
                    .addr_key()
                    .hmac(b"haven/client-addr/v1", &prefix_bytes(ip, v4, v6)),
            )
        })))
    }
}

/// `family (4 or 6) || length || address with every bit after the first `length` cleared`,
/// with `length` = `v4_len` (at most 32) or `v6_len` (at most 128); an IPv4-mapped IPv6 address
/// counts as IPv4. The input of every keyed hash of an address (limits and bans).
pub fn prefix_bytes(ip: IpAddr, v4_len: u8, v6_len: u8) -> Vec<u8> {
    let (family, bytes, len): (u8, Vec<u8>, u8) = match ip.to_canonical() {
        IpAddr::V4(v4) => (4, v4.octets().to_vec(), v4_len.min(32)),
        IpAddr::V6(v6) => (6, v6.octets().to_vec(), v6_len.min(128)),
    };
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.push(family);
    out.push(len);
    out.extend(bytes.iter().enumerate().map(|(i, b)| {
        let bits = usize::from(len).saturating_sub(i * 8).min(8);
        // `bits` is 0..=8: keep the top `bits` bits of this byte.
        let mask = if bits == 0 { 0 } else { 0xFFu8 << (8 - bits) };
        b & mask
    }));
    out
}

/// The client's address: the `hops`-th `X-Forwarded-For` entry from the right when `hops > 0`
/// and the chain is complete (see the module docs), else the socket peer.
pub(crate) fn client_ip(parts: &Parts, hops: u8) -> Option<IpAddr> {
    let peer = || {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip())
    };
    if hops == 0 {
        return peer();
    }
    forwarded_client(
        parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes()),
        hops,
    )
    .or_else(peer)
}

/// The `hops`-th entry from the right of the `X-Forwarded-For` lines `values` (in order), if
/// there are that many and it is an address.
fn forwarded_client<'a>(values: impl Iterator<Item = &'a [u8]>, hops: u8) -> Option<IpAddr> {
    // Only the last `hops` entries are kept, however long the header (bounded by the relay's
    // header size limit anyway).
    let hops = usize::from(hops);
    let mut last: std::collections::VecDeque<&[u8]> =
        std::collections::VecDeque::with_capacity(hops);
    for value in values {
        for entry in value.split(|b| *b == b',') {
            if last.len() == hops {
                last.pop_front();
            }
            last.push_back(entry);
        }
    }
    if hops == 0 || last.len() < hops {
        return None;
    }
    last.front().and_then(|entry| parse_entry(entry))
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:4711`), surrounded by optional whitespace. Anything else is `None`.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    text.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::Request;

    fn parts(forwarded: &[&[u8]], peer: &str) -> Parts {
        let mut req = Request::builder();
        for value in forwarded {
            req = req.header("x-forwarded-for", *value);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    const PROXY: &str = "10.0.0.2:40000";

    #[test]
    fn a_forged_left_most_entry_does_not_escape_one_proxy() {
        // The client sent `X-Forwarded-For: 198.51.100.1`; the proxy appended what it saw.
        let p = parts(&[b"198.51.100.1, 203.0.113.7"], PROXY);
        assert_eq!(client_ip(&p, 1), ip("203.0.113.7"));
        // HAProxy adds a line of its own after the client's.
        let p = parts(&[b"198.51.100.1", b"203.0.113.7"], PROXY);
        assert_eq!(client_ip(&p, 1), ip("203.0.113.7"));
        // Garbage to the left changes nothing.
        let p = parts(&[b"\xff\xfe, not-an-ip,,1.2.3.4, 203.0.113.7"], PROXY);
        assert_eq!(client_ip(&p, 1), ip("203.0.113.7"));
    }

    #[test]
    fn chains_of_proxies_count_hops_from_the_right() {
        // client -> edge proxy -> inner proxy -> relay: the inner one appended the edge's address.
        let p = parts(&[b"198.51.100.1, 203.0.113.7, 10.0.0.1"], PROXY);
        assert_eq!(client_ip(&p, 2), ip("203.0.113.7"));
        assert_eq!(client_ip(&p, 3), ip("198.51.100.1"));
        let p = parts(&[b"203.0.113.7", b"10.0.0.1"], PROXY);
        assert_eq!(client_ip(&p, 2), ip("203.0.113.7"));
    }

    #[test]
    fn an_incomplete_chain_or_bad_entry_falls_back_to_the_peer() {
        // Fewer entries than proxies: not what a complete chain gives.
        let p = parts(&[b"203.0.113.7"], PROXY);
        assert_eq!(client_ip(&p, 2), ip("10.0.0.2"));
        // No header at all.
        let p = parts(&[], PROXY);
        assert_eq!(client_ip(&p, 1), ip("10.0.0.2"));
        // The entry the trusted proxy should have written is not an address.
        for bad in [
            &b"unknown"[..],
            b"",
            b"203.0.113.7, ",
            b"\xff",
            b"1.2.3.4/24",
        ] {
            let p = parts(&[bad], PROXY);
            assert_eq!(client_ip(&p, 1), ip("10.0.0.2"), "{bad:?}");
        }
        // No proxy trusted: the header is ignored.
        let p = parts(&[b"203.0.113.7"], PROXY);
        assert_eq!(client_ip(&p, 0), ip("10.0.0.2"));
    }

    #[test]
    fn entries_with_ports_and_whitespace_are_read() {
        let p = parts(&[b"  203.0.113.7:4711 "], PROXY);
        assert_eq!(client_ip(&p, 1), ip("203.0.113.7"));
        let p = parts(&[b"[2001:db8::1]:80"], PROXY);
        assert_eq!(client_ip(&p, 1), ip("2001:db8::1"));
        let p = parts(&[b"2001:db8::1"], PROXY);
        assert_eq!(client_ip(&p, 1), ip("2001:db8::1"));
    }

    #[test]
    fn very_long_headers_are_read_from_the_right() {
        let mut long = "198.51.100.1,".repeat(10_000);
        long.push_str("203.0.113.7");
        let p = parts(&[long.as_bytes()], PROXY);
        assert_eq!(client_ip(&p, 1), ip("203.0.113.7"));
        assert_eq!(
            client_ip(&p, crate::settings::MAX_PROXY_HOPS),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn prefixes_group_addresses() {
        let p = |s: &str, v4, v6| prefix_bytes(s.parse().unwrap(), v4, v6);
        assert_eq!(p("203.0.113.7", 24, 64), p("203.0.113.200", 24, 64));
        assert_ne!(p("203.0.113.7", 32, 64), p("203.0.113.200", 32, 64));
        assert_eq!(p("::ffff:203.0.113.7", 32, 64), p("203.0.113.7", 32, 64));
        assert_eq!(
            p("2001:db8:1:2::1", 32, 64),
            p("2001:db8:1:2:ffff::9", 32, 64)
        );
        assert_ne!(p("2001:db8:1:2::1", 32, 64), p("2001:db8:1:3::1", 32, 64));
        assert_ne!(p("2001:db8:1:2::1", 32, 128), p("2001:db8:1:2::2", 32, 128));
        // Family and length are part of the input: 0.0.0.0/0 is not ::/0.
        assert_ne!(p("0.0.0.0", 0, 0), p("::", 0, 0));
        assert_eq!(p("10.1.2.3", 16, 64), vec![4, 16, 10, 1, 0, 0]);
    }
}

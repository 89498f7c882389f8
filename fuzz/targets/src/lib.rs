//! The bodies of Haven's fuzz targets (docs/ARCHITECTURE.md, "Fuzzing").
//!
//! Each target is a plain function over arbitrary bytes that runs one family of decoders of
//! untrusted input, on the relay's side or the client's, and asserts their invariants: no
//! panic, and whatever a decoder accepts encodes back to the input (wire formats have exactly
//! one encoding) or at least re-decodes stably (store records). Formats behind an AEAD are also
//! reached through fixed keys ([`fixture`]), so the fuzzer tests the parser after the tag.
//!
//! The `fuzz/` cargo-fuzz crate (outside the workspace) hands libFuzzer's inputs to these
//! functions; this crate's test replays every committed corpus and regression input through
//! them, so `cargo test --workspace` re-checks every crash ever found.

// A fuzz target reports a broken invariant by panicking: that is what libFuzzer detects.
#![allow(clippy::panic)]

pub mod api;
pub mod client;
pub mod crypto;
pub mod fixture;
pub mod seeds;
pub mod wire;

/// A fuzz target: its name (the directory of its corpus) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name. The cargo-fuzz crate has one `fuzz_target!` per entry.
pub const TARGETS: &[Target] = &[
    ("frames", wire::frames),
    ("content", wire::content),
    ("attachment_pointer", wire::attachment_pointer),
    ("certificate", wire::certificate),
    ("device_list", wire::device_list),
    ("group_change", wire::group_change),
    ("franking", wire::franking),
    ("provisioning", wire::provisioning),
    ("prekeys", crypto::prekeys),
    ("ratchet", crypto::ratchet),
    ("session_record", crypto::session_record),
    ("sender_key", crypto::sender_key),
    ("sealed_sender", crypto::sealed_sender),
    ("diary", crypto::diary),
    ("attachment_stream", crypto::attachment_stream),
    ("channel_entry", client::channel_entry),
    ("store_rows", client::store_rows),
    ("messenger_records", client::messenger_records),
    ("api_requests", api::api_requests),
    ("api_responses", api::api_responses),
];

/// The target called `name`.
#[must_use]
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

//! Moderation (PROTOCOL.md §11.19, §16): verifiable abuse reports (message franking), the
//! review queue and its decisions, account sanctions (suspension, ban) and address bans.
//!
//! What the relay keeps, and why it stays blind: a report's body (which reveals one message's
//! content) is sealed at rest under a key derived from the moderation secret and opened only
//! when an admin reviews it; a sanction names an opaque account id; an address ban is a keyed
//! HMAC of an address prefix, never the address. `mail: purge` on a blind relay can only reach
//! what is attributable to the account: its undelivered logged-in sends and its blobs (see
//! [`store::ModerationStore::purge_account_mail`]); sealed sends and channel entries name no
//! sender and cannot be found.

mod conformance;
pub mod keys;
pub mod routes;
pub mod service;
pub mod settings;
pub mod stamp;
pub mod store;

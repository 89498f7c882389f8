//! Accounts: registration and OPAQUE login, tokens and sessions, TOTP, usernames, devices, the
//! signed device list and device linking, sender certificates, and the account's credentials
//! over its lifetime (PROTOCOL.md §11.3–§11.9, §11.13, §11.18).

pub mod credentials;
pub mod device_lists;
pub mod routes;
pub mod seed;
pub mod session;
pub(crate) mod sql;
pub mod store;
pub mod tokens;
pub mod totp;
pub mod username;

//! End-to-end tests across the relay and the SDK, one binary: what the relay stores and logs
//! when real clients use it (`blindness`), the diary's sync state machine against it
//! (`diary_sync`), the key directory and certificates as the SDK reads them (`keys`), and real
//! clients refusing what a hostile relay forges (`hostile_relay`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod blindness;
mod diary_sync;
mod hostile_relay;
mod keys;

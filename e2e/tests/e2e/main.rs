//! End-to-end tests across the relay and the SDK, one binary: what the relay stores and logs
//! when real clients use it (`blindness`), the diary's sync state machine against it
//! (`diary_sync`), and the key directory and certificates as the SDK reads them (`keys`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod blindness;
mod diary_sync;
mod keys;

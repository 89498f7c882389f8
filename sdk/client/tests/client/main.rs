//! The client's integration tests, one binary (one link) for all of them: the relay API, device
//! messaging, the Messenger, the diary and attachments, each against a real relay from
//! `haven-testkit` (in process, on a real TCP listener, with its logs captured). Postgres and S3
//! come from the local services; an absent one is reported as `SKIPPED <test>`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod account_lifecycle;
mod attachments;
mod device_messaging;
mod diary_e2e;
mod franking_e2e;
mod messenger_e2e;
mod push;
mod relay_auth;
mod sealed_transport;

//! The crypto core's integration tests, one binary (one link) for all of them: sessions through
//! the high-level API, groups, the diary's keys and entries, attachments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attachment;
mod diary;
mod diary_entries;
mod groups;
mod session;

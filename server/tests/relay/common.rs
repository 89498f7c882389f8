//! Test support for the relay's tests: the in-process harness, fresh stores and relay processes
//! come from `haven-testkit`; this module adds what only these tests use.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub use haven_testkit::harness::{
    Api, Cs, Guard, Harness, RemoteApi, Reply, Rows, TEST_JWT_KEY, Tokens, b64, pg_store,
    sqlite_store, test_settings,
};
pub use haven_testkit::{RelayConfig, RelayProcess, TestDatabase, services};

/// The relay binary these tests start.
pub const RELAY_BIN: &str = env!("CARGO_BIN_EXE_haven-relay");

/// A fresh Postgres database (URL and guard), or `None` when Postgres is absent (the test is
/// reported as skipped).
pub async fn pg_database() -> Option<(String, Guard)> {
    let db = TestDatabase::create().await?;
    Some((db.url().to_owned(), Guard::Postgres(db)))
}

pub(crate) use haven_testkit::on_both_backends;

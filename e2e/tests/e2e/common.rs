//! The test support these tests share: all of it from `haven-testkit`.
#![allow(unused_imports, unreachable_pub)]

pub(crate) use haven_testkit::harness::{
    Api, Cs, Guard, Harness, RemoteApi, Reply, Rows, TEST_JWT_KEY, Tokens, b64, pg_store,
    sqlite_store, test_settings,
};
pub(crate) use haven_testkit::on_both_backends;
pub(crate) use haven_testkit::{RelayConfig, TestDatabase};

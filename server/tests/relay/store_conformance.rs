//! The store conformance suite on SQLite (always) and Postgres (when configured).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sqlite {
    haven_relay::store_conformance_tests!(crate::common::sqlite_store);
    haven_relay::vault_conformance_tests!(crate::common::sqlite_store);
    haven_relay::channel_store_conformance_tests!(crate::common::sqlite_store);
    haven_relay::moderation_store_conformance_tests!(crate::common::sqlite_store);
}

mod postgres {
    haven_relay::store_conformance_tests!(crate::common::pg_store);
    haven_relay::vault_conformance_tests!(crate::common::pg_store);
    haven_relay::channel_store_conformance_tests!(crate::common::pg_store);
    haven_relay::moderation_store_conformance_tests!(crate::common::pg_store);
}

//! End-to-end tests across the relay and the SDK (`tests/e2e`): what the relay stores and logs
//! when real clients use it, that what it serves opens in the SDK, and that clients refuse what
//! a hostile relay forges. The relay's own tests (`server/tests`) exercise it with hand-made
//! bytes only, so the relay crate has no dependency on the SDK, not even for tests.
//!
//! The library holds the hostile relay ([`hostile`]), which the Rust tests use in process and
//! the `haven-hostile-relay` launcher serves to the Python and browser tests.

pub mod hostile;

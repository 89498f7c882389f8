//! End-to-end tests across the relay and the SDK (`tests/e2e`): what the relay stores and logs
//! when real clients use it, and that what it serves opens in the SDK. The relay's own tests
//! (`server/tests`) exercise it with hand-made bytes only, so the relay crate has no dependency
//! on the SDK, not even for tests. This library is empty.

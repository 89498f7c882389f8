//! Haven's blind relay.

//! Store traits: where the SDK keeps its state between calls.

pub mod sender_keys;

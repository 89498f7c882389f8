//! Real-time delivery: the WebSocket (PROTOCOL.md §11.14), the in-process hub of wake-up hints
//! and its Redis bridge for several instances.

pub mod conn;
pub mod ephemeral;
pub mod hub;
pub mod redis;
pub mod topic;
pub mod ws;

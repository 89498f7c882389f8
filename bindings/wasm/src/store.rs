//! The device's state: the client core's encrypted store in memory ([`MemoryStore`], PROTOCOL
//! §12), which the page exports as one sealed snapshot (§12.1, `exportState`) and keeps in
//! IndexedDB. Its spaces are those of the core's device (`haven_client_core::device::space`).

pub use haven_client_core::store::{MAX_SNAPSHOT_LEN, MemoryStore, SNAPSHOT_LABEL};

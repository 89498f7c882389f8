//! Haven's client-side cryptographic core (sans-I/O).

mod encoding;
pub mod identity;
pub mod pqxdh;
pub mod prekeys;
pub mod ratchet;
pub mod safety_number;
pub mod sealed_sender;
pub mod session_cipher;
pub mod snapshot;
pub mod store;

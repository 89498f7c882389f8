//! The audit log over the admin API (PROTOCOL.md §11.19).

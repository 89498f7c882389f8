//! Haven's client-side cryptographic core (sans-I/O).

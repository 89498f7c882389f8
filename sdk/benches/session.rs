//! Criterion benches for the session crypto (filled in below).
fn main() {}

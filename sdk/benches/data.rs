//! Benchmarks for the data-crypto modules (filled in below).
fn main() {}

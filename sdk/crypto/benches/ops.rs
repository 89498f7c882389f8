//! Runs one operation of the session benches (`common`) a given number of times, for instruction
//! counts under valgrind, which are repeatable on a busy machine where wall-clock times are not:
//!
//! ```text
//! cargo bench -p haven-sdk --bench ops --no-run     # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/ops-… OP N
//! ```
//!
//! Instructions per operation = (Ir at N = 11 − Ir at N = 1) / 10: set-up cancels out. `OP` is
//! one of the names printed without arguments. Run by `cargo bench` (no operation), it does one
//! of each as a smoke test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use common::{Conversation, Inbound, Outbound};

mod common;

const OPS: [&str; 8] = [
    "outbound_haven",
    "outbound_vodozemac",
    "inbound_haven",
    "inbound_vodozemac",
    "same_direction_haven",
    "same_direction_vodozemac",
    "ping_pong_haven",
    "ping_pong_vodozemac",
];

fn run(op: &str, n: usize) -> bool {
    match op {
        "outbound_haven" | "outbound_vodozemac" => {
            let mut o = Outbound::new();
            for _ in 0..n {
                if op.ends_with("haven") {
                    black_box(o.haven());
                } else {
                    black_box(o.olm());
                }
            }
        }
        "inbound_haven" | "inbound_vodozemac" => {
            let mut o = Inbound::new();
            for _ in 0..n {
                if op.ends_with("haven") {
                    black_box(o.haven());
                } else {
                    black_box(o.olm());
                }
            }
        }
        _ => {
            let mut c = Conversation::new();
            for _ in 0..n {
                match op {
                    "same_direction_haven" => drop(black_box(c.haven_same_direction())),
                    "same_direction_vodozemac" => drop(black_box(c.olm_same_direction())),
                    "ping_pong_haven" => drop(black_box(c.haven_ping_pong())),
                    "ping_pong_vodozemac" => drop(black_box(c.olm_ping_pong())),
                    _ => return false,
                }
            }
        }
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [op, n] if OPS.contains(&op.as_str()) => {
            assert!(run(op, n.parse().expect("N is a count")));
        }
        _ => {
            for op in OPS {
                assert!(run(op, 1), "{op}");
            }
            println!("usage: ops OP N, OP one of {}", OPS.join(", "));
        }
    }
}

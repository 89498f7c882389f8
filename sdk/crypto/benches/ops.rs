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
//! of each as a smoke test. `ops interleaved SECONDS` times Haven and vodozemac in alternating
//! short blocks and prints the ratios of the medians (robust to load that comes and goes).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use common::{Conversation, Inbound, Outbound, thread_cpu_ns};

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

/// Per-operation time of `block` runs of `f` in microseconds: the thread's CPU time, wall time
/// where that clock is missing.
fn time_block(block: u32, mut f: impl FnMut()) -> f64 {
    let (cpu, wall) = (thread_cpu_ns(), Instant::now());
    for _ in 0..block {
        f();
    }
    #[allow(clippy::cast_precision_loss)] // nanoseconds far below 2^53
    let micros = match (cpu, thread_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e3,
        _ => wall.elapsed().as_secs_f64() * 1e6,
    };
    micros / f64::from(block)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Haven and vodozemac alternately, one short block each, for `seconds` per comparison: what
/// load from other processes still does to CPU time (caches, frequency) hits both alike. Prints
/// the medians and vodozemac's time over Haven's (> 1: Haven is faster).
fn interleaved(seconds: f64) {
    fn compare(name: &str, seconds: f64, block: u32, mut h: impl FnMut(), mut v: impl FnMut()) {
        let (mut ht, mut vt) = (Vec::new(), Vec::new());
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < seconds {
            ht.push(time_block(block, &mut h));
            vt.push(time_block(block, &mut v));
        }
        let (hm, vm) = (median(ht), median(vt));
        println!(
            "{name:<16} haven {hm:>9.2} µs  vodozemac {vm:>9.2} µs  ratio {:.2}",
            vm / hm
        );
    }
    let mut o = Outbound::new();
    let mut o2 = Outbound::new();
    compare(
        "setup_outbound",
        seconds,
        4,
        || drop(black_box(o.haven())),
        || drop(black_box(o2.olm())),
    );
    let mut i = Inbound::new();
    let mut i2 = Inbound::new();
    compare(
        "setup_inbound",
        seconds,
        4,
        || drop(black_box(i.haven())),
        || drop(black_box(i2.olm())),
    );
    let mut c = Conversation::new();
    let mut c2 = Conversation::new();
    compare(
        "same_direction",
        seconds,
        100,
        || drop(black_box(c.haven_same_direction())),
        || drop(black_box(c2.olm_same_direction())),
    );
    let mut c = Conversation::new();
    let mut c2 = Conversation::new();
    compare(
        "ping_pong",
        seconds,
        4,
        || drop(black_box(c.haven_ping_pong())),
        || drop(black_box(c2.olm_ping_pong())),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, seconds] if cmd == "interleaved" => interleaved(seconds.parse().expect("seconds")),
        [op, n] if OPS.contains(&op.as_str()) => {
            assert!(run(op, n.parse().expect("N is a count")));
        }
        _ => {
            for op in OPS {
                assert!(run(op, 1), "{op}");
            }
            println!(
                "usage: ops OP N | ops interleaved SECONDS; OP one of {}",
                OPS.join(", ")
            );
        }
    }
}

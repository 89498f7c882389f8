//! `cargo xtask flakes`: the README's test command, run again and again, and at the same time.
//!
//! The test binaries are built once (`cargo test --workspace --no-run`, the same units the test
//! command builds), then each round starts `parallel` copies of the whole suite at once, each
//! copy running every test binary in turn as `cargo test` does (in the package's directory, with
//! the same environment). Running the binaries directly keeps copies from waiting on cargo's
//! build-directory lock, so they really run concurrently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::Result;

/// One test executable and the package it belongs to.
#[derive(Clone, Debug)]
struct TestBinary {
    executable: PathBuf,
    package_dir: PathBuf,
    package: String,
    name: String,
}

/// What one run of one binary showed.
#[derive(Default)]
struct Outcome {
    passed: Vec<String>,
    failed: Vec<(String, String)>,
    skipped: Vec<String>,
    crashed: Option<String>,
}

pub(crate) fn run(root: &Path, runs: usize, parallel: usize) -> Result<()> {
    let binaries = build(root)?;
    println!(
        "flakes: {} test binaries, {runs} round(s) of {parallel} concurrent suite run(s)",
        binaries.len()
    );
    let mut failures: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut skips: BTreeMap<String, usize> = BTreeMap::new();
    let mut crashes: Vec<String> = Vec::new();
    let mut passed_runs = 0usize;
    let mut suite_runs = 0usize;
    for round in 1..=runs {
        let started = Instant::now();
        let handles: Vec<_> = (0..parallel.max(1))
            .map(|_| {
                let binaries = binaries.clone();
                std::thread::spawn(move || {
                    binaries
                        .iter()
                        .map(|b| (b.clone(), run_binary(b)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut round_failed = 0usize;
        for handle in handles {
            let results = handle.join().map_err(|_| "a suite thread panicked")?;
            suite_runs += 1;
            let mut clean = true;
            for (binary, outcome) in results {
                let outcome = outcome?;
                for (test, first) in outcome.failed {
                    clean = false;
                    round_failed += 1;
                    let key = format!("{}::{} {test}", binary.package, binary.name);
                    let entry = failures.entry(key).or_insert((0, first));
                    entry.0 += 1;
                }
                for test in outcome.skipped {
                    *skips.entry(test).or_default() += 1;
                }
                if let Some(why) = outcome.crashed {
                    clean = false;
                    crashes.push(format!("{}::{}: {why}", binary.package, binary.name));
                }
                let _ = outcome.passed;
            }
            if clean {
                passed_runs += 1;
            }
        }
        println!(
            "flakes: round {round}/{runs}: {round_failed} failure(s), {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    println!("flakes: {passed_runs} of {suite_runs} suite runs passed");
    for (test, count) in &skips {
        println!("  skipped {count}x: {test}");
    }
    for crash in &crashes {
        println!("  CRASHED: {crash}");
    }
    for (test, (count, first)) in &failures {
        println!("  FAILED {count} of {suite_runs}: {test}");
        for line in first.lines().take(12) {
            println!("      {line}");
        }
    }
    if failures.is_empty() && crashes.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} test(s) failed at least once, {} binary run(s) crashed",
            failures.len(),
            crashes.len()
        )
        .into())
    }
}

/// Builds the workspace's tests and lists their executables.
fn build(root: &Path) -> Result<Vec<TestBinary>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .output()?;
    if !output.status.success() {
        return Err("cargo test --workspace --no-run failed".into());
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let (Some(exe), Some(manifest)) =
            (msg["executable"].as_str(), msg["manifest_path"].as_str())
        else {
            continue;
        };
        let package_dir = Path::new(manifest)
            .parent()
            .ok_or("manifest without a directory")?
            .to_path_buf();
        let package = package_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        binaries.push(TestBinary {
            executable: PathBuf::from(exe),
            package_dir,
            package,
            name: msg["target"]["name"].as_str().unwrap_or("?").to_owned(),
        });
    }
    Ok(binaries)
}

/// Runs one test binary as `cargo test` would and reads its outcome from its output.
fn run_binary(binary: &TestBinary) -> std::result::Result<Outcome, String> {
    let output = Command::new(&binary.executable)
        .current_dir(&binary.package_dir)
        .env("CARGO_MANIFEST_DIR", &binary.package_dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .map_err(|e| format!("{}: {e}", binary.executable.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut outcome = Outcome::default();
    let mut details: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some(name) = rest.strip_suffix(" ... ok") {
                outcome.passed.push(name.to_owned());
                continue;
            }
            if let Some(name) = rest.strip_suffix(" ... FAILED") {
                outcome.failed.push((name.to_owned(), String::new()));
                continue;
            }
        }
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            current = Some(name.to_owned());
            continue;
        }
        if line == "failures:" || line.starts_with("test result:") {
            current = None;
        }
        if let Some(name) = &current {
            let text = details.entry(name.clone()).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("SKIPPED ") {
            outcome.skipped.push(rest.to_owned());
        }
    }
    for (name, first) in &mut outcome.failed {
        *first = details.remove(name.as_str()).unwrap_or_default();
    }
    if !output.status.success() && outcome.failed.is_empty() {
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        outcome.crashed = Some(format!(
            "{} with no failed test; stderr ends: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    Ok(outcome)
}

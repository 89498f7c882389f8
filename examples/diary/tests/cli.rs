//! The `haven-diary` CLI, scripted, against a real relay (in process, from `haven-testkit`):
//! init → write → list → search → edit → sync on a second state directory → show, plus the error
//! exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use haven_testkit::{InProcessRelay, RelayConfig};

const BIN: &str = env!("CARGO_BIN_EXE_haven-diary");

fn start_relay() -> InProcessRelay {
    RelayConfig::new().set("HAVEN_LOG", "warn").start()
}

/// Shows the relay's logs (warnings and errors: it runs at `warn`) when the test fails.
struct LogsOnFailure<'a>(&'a InProcessRelay);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the relay's logs ---\n{}", self.0.logs());
        }
    }
}

/// Runs the CLI with the scripted secrets.
fn cli(relay: &str, state: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--relay", relay, "--state"])
        .arg(state)
        .args(args)
        .env("HAVEN_DIARY_PASSPHRASE", "local passphrase")
        .env("HAVEN_ACCOUNT_PASSWORD", "account password")
        .env("HAVEN_DIARY_PASSWORD", "diary password")
        .env_remove("EDITOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn scripted_flow_across_two_state_directories() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay();
    let _logs = LogsOnFailure(&relay);
    let url = relay.url();
    let url = url.as_str();
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let kdf = ["--kdf-mib", "19", "--kdf-passes", "2"];

    let mut init = vec!["init", "--username", "cli_user"];
    init.extend(kdf);
    let out = ok(&cli(url, &one, &init, None));
    assert!(out.contains("recovery codes"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("  ")).count(), 10);

    // write: body from stdin.
    let out = ok(&cli(
        url,
        &one,
        &[
            "write",
            "--title",
            "Harbour walk",
            "--mood",
            "calm",
            "--tag",
            "sea",
            "--tag",
            "walk",
        ],
        Some("Saw the pelicans near the pier.\n"),
    ));
    let id = out.trim().to_owned();
    assert_eq!(id.len(), 32, "{out}");
    ok(&cli(
        url,
        &one,
        &[
            "write",
            "--title",
            "Groceries",
            "--body",
            "apples and bread",
        ],
        None,
    ));

    let list = ok(&cli(url, &one, &["list"], None));
    assert!(
        list.contains("Harbour walk") && list.contains("Groceries"),
        "{list}"
    );
    let filtered = ok(&cli(url, &one, &["list", "--tag", "sea"], None));
    assert!(
        filtered.contains("Harbour walk") && !filtered.contains("Groceries"),
        "{filtered}"
    );
    let by_mood = ok(&cli(url, &one, &["list", "--mood", "calm"], None));
    assert!(!by_mood.contains("Groceries"), "{by_mood}");
    let future = ok(&cli(url, &one, &["list", "--from", "2999-01-01"], None));
    assert!(future.trim().is_empty(), "{future}");

    let found = ok(&cli(url, &one, &["search", "pelic"], None));
    assert!(
        found.contains(&id) && !found.contains("Groceries"),
        "{found}"
    );

    ok(&cli(
        url,
        &one,
        &[
            "edit",
            &id[..8],
            "--body",
            "Saw the pelicans near the pier. Then rain.",
        ],
        None,
    ));

    // A second state directory: log in by username, sync, show.
    let out = ok(&cli(url, &two, &["unlock", "--username", "cli_user"], None));
    assert!(out.contains("unlocked"), "{out}");
    ok(&cli(url, &two, &["sync"], None));
    let shown = ok(&cli(url, &two, &["show", &id], None));
    assert!(shown.contains("Harbour walk"), "{shown}");
    assert!(shown.contains("Then rain."), "{shown}");
    assert!(shown.contains("sea, walk"), "{shown}");
    let history = ok(&cli(url, &two, &["history", &id], None));
    assert!(
        history.contains("revision 1") && history.contains("revision 2"),
        "{history}"
    );

    // delete on two, restore on one.
    ok(&cli(url, &two, &["delete", &id], None));
    ok(&cli(url, &one, &["sync"], None));
    let list = ok(&cli(url, &one, &["list"], None));
    assert!(!list.contains("Harbour walk"), "{list}");
    ok(&cli(url, &one, &["restore", &id], None));
    ok(&cli(url, &two, &["sync"], None));
    assert!(ok(&cli(url, &two, &["show", &id], None)).contains("Then rain."));

    // passwd on one; two unlocks with the new password.
    let out = Command::new(BIN)
        .args(["--relay", url, "--state"])
        .arg(&one)
        .args(["passwd", "--kdf-mib", "19", "--kdf-passes", "2"])
        .env("HAVEN_DIARY_PASSPHRASE", "local passphrase")
        .env("HAVEN_DIARY_PASSWORD", "diary password")
        .env("HAVEN_DIARY_NEW_PASSWORD", "new diary password")
        .output()
        .unwrap();
    ok(&out);
    let out = Command::new(BIN)
        .args(["--relay", url, "--state"])
        .arg(&two)
        .args(["show", &id])
        .env("HAVEN_DIARY_PASSPHRASE", "local passphrase")
        .env("HAVEN_DIARY_PASSWORD", "new diary password")
        .output()
        .unwrap();
    assert!(ok(&out).contains("Then rain."));

    // Errors: clear message and exit code, never a panic.
    let wrong = cli(url, &two, &["list"], None); // old password
    assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong password"));
    let bad_pass = Command::new(BIN)
        .args(["--relay", url, "--state"])
        .arg(&two)
        .arg("list")
        .env("HAVEN_DIARY_PASSPHRASE", "not the passphrase")
        .env("HAVEN_DIARY_PASSWORD", "new diary password")
        .output()
        .unwrap();
    assert_eq!(bad_pass.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad_pass.stderr).contains("passphrase"));
    let unknown = cli(url, &one, &["frobnicate"], None);
    assert_eq!(unknown.status.code(), Some(2));
    let missing = Command::new(BIN)
        .args(["--relay", url, "--state"])
        .arg(dir.path().join("nowhere"))
        .arg("list")
        .env("HAVEN_DIARY_PASSPHRASE", "x")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    for out in [&wrong, &bad_pass, &unknown, &missing] {
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn attach_and_export_media() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay();
    let _logs = LogsOnFailure(&relay);
    let url = relay.url();
    let url = url.as_str();
    let state = dir.path().join("state");
    let out = ok(&cli(
        url,
        &state,
        &["init", "--kdf-mib", "19", "--kdf-passes", "2"],
        None,
    ));
    assert!(out.contains("recovery codes"), "{out}");
    let out = ok(&cli(
        url,
        &state,
        &["write", "--title", "Photos"],
        Some("the beach\n"),
    ));
    let id = out.trim().to_owned();
    // 300 KiB of recognisable bytes (several 64 KiB chunks).
    let media: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    let src = dir.path().join("beach-photo.jpg");
    std::fs::write(&src, &media).unwrap();
    let out = ok(&cli(
        url,
        &state,
        &["attach", &id[..8], src.to_str().unwrap()],
        None,
    ));
    assert!(out.contains("attached"), "{out}");
    let out = ok(&cli(url, &state, &["show", &id[..8]], None));
    assert!(
        out.contains(&format!("attachment 1: {} bytes", media.len())),
        "{out}"
    );
    let dest = dir.path().join("exported.jpg");
    ok(&cli(
        url,
        &state,
        &["export-attachment", &id[..8], "1", dest.to_str().unwrap()],
        None,
    ));
    assert_eq!(std::fs::read(&dest).unwrap(), media);
    // The relay's blob directory holds ciphertext only, under random names.
    let blobs = relay.config().dir().join("blobs");
    let mut stack = vec![blobs];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            assert!(!p.to_string_lossy().contains("beach"));
            let bytes = std::fs::read(&p).unwrap();
            assert!(!bytes.windows(64).any(|w| w == &media[..64]));
        }
    }
    assert!(files > 0);
    // A missing attachment number is a usage error.
    let out = cli(
        url,
        &state,
        &["export-attachment", &id[..8], "2", dest.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}

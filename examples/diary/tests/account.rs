//! The account's lifecycle through the `haven-diary` binary against a real relay (in process):
//! TOTP (setup, enable, required to log a new device in, disable), the device list, the account
//! password change and relogin, the account recovery code and recovery, export, logout (and
//! logout everywhere) and deletion, with the diary itself untouched throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use haven_relay::accounts::totp;
use haven_testkit::RelayConfig;

const BIN: &str = env!("CARGO_BIN_EXE_haven-diary");
const FIRST: &str = "diary cli: first account password";
const SECOND: &str = "diary cli: second account password";
const THIRD: &str = "diary cli: recovered account password";

/// Runs the CLI with the account password `password` and the extra variables `env`.
fn cli(relay: &str, state: &Path, args: &[&str], password: &str, env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(["--relay", relay, "--state"])
        .arg(state)
        .args(args)
        .env("HAVEN_DIARY_PASSPHRASE", "local passphrase")
        .env("HAVEN_ACCOUNT_PASSWORD", password)
        .env("HAVEN_DIARY_PASSWORD", "diary password")
        .envs(env.iter().copied())
        .env_remove("EDITOR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
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

/// The exit code of a run that must fail.
fn fails(out: &Output) -> i32 {
    assert!(
        !out.status.success(),
        "should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.status.code().unwrap_or(-1)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// RFC 4648 base32 (upper case, no padding) to bytes.
fn from_base32(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap());
        }
    }
    out
}

#[test]
fn account_lifecycle_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayConfig::new().set("HAVEN_LOG", "warn").start();
    let url = relay.url();
    let url = url.as_str();
    let desk = dir.path().join("desk");
    let laptop = dir.path().join("laptop");
    let kdf = ["--kdf-mib", "19", "--kdf-passes", "2"];

    let mut init = vec!["init", "--username", "life_diary_cli"];
    init.extend(kdf);
    ok(&cli(url, &desk, &init, FIRST, &[]));
    let id = ok(&cli(
        url,
        &desk,
        &["write", "--title", "Marsh", "--body", "a bittern booming"],
        FIRST,
        &[],
    ));
    let devices = ok(&cli(url, &desk, &["devices"], FIRST, &[]));
    assert!(
        devices.starts_with("*1 ") && devices.lines().count() == 1,
        "{devices}"
    );

    // TOTP: a secret for the app, on with a code; then a new device needs --totp to log in.
    let t = if now() % 30 > 15 {
        std::thread::sleep(std::time::Duration::from_secs(31 - now() % 30));
        now()
    } else {
        now()
    };
    let setup = ok(&cli(url, &desk, &["totp-setup"], FIRST, &[]));
    let secret = setup
        .lines()
        .find_map(|l| l.strip_prefix("secret "))
        .unwrap()
        .to_owned();
    assert!(setup.contains("otpauth://totp/Haven:"), "{setup}");
    let secret = from_base32(&secret);
    ok(&cli(
        url,
        &desk,
        &["totp-enable", &totp::code_at(&secret, t - 30)],
        FIRST,
        &[],
    ));
    let unlock = ["unlock", "--username", "life_diary_cli"];
    assert_eq!(fails(&cli(url, &laptop, &unlock, FIRST, &[])), 7);
    let code = totp::code_at(&secret, t);
    let with_totp = [unlock.as_slice(), &["--totp", code.as_str()]].concat();
    assert!(ok(&cli(url, &laptop, &with_totp, FIRST, &[])).contains("unlocked"));
    // Disabling proves the password and a code again (without the code: refused).
    let next = totp::code_at(&secret, t + 30);
    assert_eq!(
        fails(&cli(url, &desk, &["totp-disable", &next], FIRST, &[])),
        7
    );
    ok(&cli(
        url,
        &desk,
        &["totp-disable", &next, "--totp", &next],
        FIRST,
        &[],
    ));
    let devices = ok(&cli(url, &laptop, &["devices"], FIRST, &[]));
    assert!(devices.contains("\n*2 "), "{devices}");

    // An account recovery code, then a new account password: the laptop logs in again.
    assert_eq!(
        fails(&cli(url, &desk, &["account-recovery-code"], "wrong", &[])),
        3
    );
    let out = ok(&cli(url, &desk, &["account-recovery-code"], FIRST, &[]));
    let recovery = out.lines().last().unwrap().trim().to_owned();
    assert_eq!(recovery.len(), 39, "{out}");
    let new = [("HAVEN_NEW_ACCOUNT_PASSWORD", SECOND)];
    ok(&cli(url, &desk, &["change-password"], FIRST, &new));
    assert_eq!(fails(&cli(url, &laptop, &["devices"], SECOND, &[])), 7);
    assert_eq!(fails(&cli(url, &laptop, &["relogin"], FIRST, &[])), 3);
    ok(&cli(url, &laptop, &["relogin"], SECOND, &[]));
    ok(&cli(url, &laptop, &["sync"], SECOND, &[]));

    // The account password is lost: the recovery code replaces it; every session ends.
    let recover = [
        ("HAVEN_RECOVERY_CODE", recovery.as_str()),
        ("HAVEN_NEW_ACCOUNT_PASSWORD", THIRD),
    ];
    ok(&cli(url, &laptop, &["recover-account"], "", &recover));
    fails(&cli(url, &desk, &["devices"], THIRD, &[]));
    ok(&cli(url, &desk, &["relogin"], THIRD, &[]));
    ok(&cli(url, &laptop, &["relogin"], THIRD, &[]));
    assert_ne!(
        fails(&cli(url, &laptop, &["recover-account"], "", &recover)),
        0,
        "a recovery code works once"
    );
    // The diary password never changed.
    let show = ok(&cli(url, &laptop, &["show", id.trim()], THIRD, &[]));
    assert!(show.contains("a bittern booming"), "{show}");

    // Export to a file: both devices and the diary's vault items.
    let path = dir.path().join("export.json");
    let out = ok(&cli(
        url,
        &desk,
        &["export", path.to_str().unwrap()],
        THIRD,
        &[],
    ));
    assert!(out.contains("2 devices"), "{out}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("haven-relay-export/v1") && text.contains("\"vault\""));

    // Logout, logout everywhere, relogin; the diary stays readable locally meanwhile.
    ok(&cli(url, &desk, &["logout"], THIRD, &[]));
    fails(&cli(url, &desk, &["devices"], THIRD, &[]));
    assert!(ok(&cli(url, &desk, &["list"], THIRD, &[])).contains("Marsh"));
    ok(&cli(url, &desk, &["relogin"], THIRD, &[]));
    ok(&cli(url, &desk, &["logout-all"], THIRD, &[]));
    fails(&cli(url, &laptop, &["devices"], THIRD, &[]));
    ok(&cli(url, &desk, &["relogin"], THIRD, &[]));

    // Deletion needs the password; afterwards the account cannot log in.
    assert_eq!(fails(&cli(url, &desk, &["delete-account"], SECOND, &[])), 3);
    let out = ok(&cli(url, &desk, &["delete-account"], THIRD, &[]));
    assert!(out.contains("account deleted"), "{out}");
    assert_eq!(fails(&cli(url, &desk, &["relogin"], THIRD, &[])), 3);
}

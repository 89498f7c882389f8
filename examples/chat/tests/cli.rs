//! The chat scenario scripted through the `haven-chat` binary against a real relay (in process,
//! from `haven-testkit`): Alice with two devices, Bob and Carol; first contact by username,
//! replies, Bob offline then back, live delivery to `listen`, a group of three with Carol removed
//! (she reads nothing new), safety numbers, and the relay's files and logs free of the plaintexts
//! and usernames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use haven_testkit::{InProcessRelay, RelayConfig};

const BIN: &str = env!("CARGO_BIN_EXE_haven-chat");
const PASSWORD: &str = "chat cli: tangled kite string";
const SECRETS: &[&str] = &[
    "hello bob from the cli ptarmigan",
    "hi alice the cli reply mandolin",
    "while you were away okapi",
    "and another one narwhal",
    "live over the socket axolotl",
    "club news from alice quokka",
    "club reply from bob pangolin",
    "after carol left wombat",
];
const USERNAMES: &[&str] = &["alice_cli", "bob_cli", "carol_cli"];

/// How long the test waits for the `listen` process to connect and to print the live message.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);

/// A relay logging at `debug`, so the blindness check covers its most talkative logs.
fn start_relay() -> InProcessRelay {
    RelayConfig::new().set("HAVEN_LOG", "debug").start()
}

/// The relay's warnings and errors, for a failure message.
fn warnings(relay: &InProcessRelay) -> String {
    relay
        .logs()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct User<'a> {
    state: PathBuf,
    relay: &'a InProcessRelay,
    key: String,
}

impl<'a> User<'a> {
    fn new(root: &Path, name: &str, relay: &'a InProcessRelay) -> Self {
        Self {
            state: root.join(name),
            relay,
            key: hex::encode(rand::random::<[u8; 32]>()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--state")
            .arg(&self.state)
            .arg("--relay")
            .arg(self.relay.url())
            .args(args)
            .env("HAVEN_CHAT_STORE_KEY", &self.key)
            .env("HAVEN_ACCOUNT_PASSWORD", PASSWORD)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out: Output = self.command(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            panic!(
                "haven-chat {args:?} failed ({:?}): {stdout}{}\nrelay warnings:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr),
                warnings(self.relay)
            );
        }
        stdout
    }

    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.command(args).output().unwrap();
        assert!(!out.status.success(), "haven-chat {args:?} should fail");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn account(&self) -> String {
        let out = self.run(&["whoami"]);
        out.split_whitespace().nth(1).unwrap().to_owned()
    }
}

fn position(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{haystack}"))
}

/// `new` runs `link`, which prints a code and waits; `existing` approves the code.
fn link_by_approval(new: &User<'_>, existing: &User<'_>) {
    let mut link = new
        .command(&["link", "--seconds", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(link.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    let code = first.strip_prefix("link code: ").unwrap().to_owned();
    assert!(code.starts_with("haven-link:"), "{first}");
    existing.run(&["approve", &code]);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(link.wait().unwrap().success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("account ")), "{rest:?}");
}

#[test]
fn chat_scenario_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = start_relay();
    let alice = User::new(dir.path(), "alice", &relay);
    let alice2 = User::new(dir.path(), "alice2", &relay);
    let bob = User::new(dir.path(), "bob", &relay);
    let carol = User::new(dir.path(), "carol", &relay);

    // Bad input first: no state, unknown command, wrong store key.
    assert_eq!(bob.fails(&["whoami"]).0, 2);
    alice.run(&["register", "--username", USERNAMES[0]]);
    // Alice's second device joins by approval: it prints a code, her first device approves.
    assert_eq!(alice.fails(&["approve", "haven-link:nonsense"]).0, 2);
    link_by_approval(&alice2, &alice);
    bob.run(&["register", "--username", USERNAMES[1]]);
    carol.run(&["register", "--username", USERNAMES[2]]);
    // Bob's delivery receipts go out with his next command (checked in Alice's history below).
    assert_eq!(bob.run(&["receipts"]).trim(), "receipts delayed 5-60 s");
    assert_eq!(bob.fails(&["receipts", "delayed", "9", "8"]).0, 2);
    assert_eq!(
        bob.run(&["receipts", "immediate"]).trim(),
        "receipts immediate"
    );
    assert_eq!(alice.fails(&["frobnicate"]).0, 2);
    let wrong_key = User {
        state: alice.state.clone(),
        relay: &relay,
        key: hex::encode([1u8; 32]),
    };
    assert_eq!(wrong_key.fails(&["whoami"]).0, 3);
    assert_eq!(alice.account(), alice2.account());
    let alice_id = alice.account();

    // First contact by username, reply, both of Alice's devices see the conversation.
    alice.run(&["add", USERNAMES[1]]);
    alice.run(&["send", USERNAMES[1], SECRETS[0]]);
    let out = bob.run(&["sync"]);
    assert!(out.contains(SECRETS[0]), "{out}");
    bob.run(&["send", &alice_id, SECRETS[1]]);
    assert!(alice.run(&["sync"]).contains(SECRETS[1]));
    // Bob's reply was franked with the relay's key: Alice reports it, the relay attributes it.
    let out = alice.run(&["report", USERNAMES[1], "last"]);
    assert!(
        out.starts_with("reported ") && out.trim_end().ends_with(" attributed"),
        "{out}"
    );
    // An unknown message, and Alice's own, cannot be reported.
    let (code, err) = alice.fails(&["report", USERNAMES[1], "ffffffff"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = bob.fails(&["report", &alice_id, "ffffffff"]);
    assert_eq!(code, 2, "{err}");
    let out = alice2.run(&["sync"]);
    assert!(
        out.contains(SECRETS[0]) && out.contains(SECRETS[1]),
        "{out}"
    );
    let history = alice.run(&["history", USERNAMES[1]]);
    assert!(position(&history, SECRETS[0]) < position(&history, SECRETS[1]));
    assert!(
        history.contains("[delivered]") || history.contains("[read]"),
        "{history}"
    );

    // Bob offline, then back: both messages, in order.
    alice.run(&["send", USERNAMES[1], SECRETS[2]]);
    alice.run(&["send", USERNAMES[1], SECRETS[3]]);
    let out = bob.run(&["sync"]);
    assert!(
        position(&out, SECRETS[2]) < position(&out, SECRETS[3]),
        "{out}"
    );

    // Live: Bob listens on the socket while Alice sends. `listen` prints "connected" once its
    // socket is open and the queue drained, so what Alice sends after that arrives live; Ctrl-C
    // (SIGINT) ends it cleanly once the message is printed (`--seconds` only bounds a hang).
    let mut listener = bob
        .command(&["listen", "--seconds", &LISTEN_TIMEOUT.as_secs().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = {
        let stdout = BufReader::new(listener.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let mut live = String::new();
    let mut wait_for_line = |needle: &str| {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while !live.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => live.push_str(&format!("{line}\n")),
                Err(e) => panic!("listen printed no {needle:?} ({e}):\n{live}"),
            }
        }
    };
    wait_for_line("connected");
    alice.run(&["send", USERNAMES[1], SECRETS[4]]);
    wait_for_line(SECRETS[4]);
    let status = Command::new("kill")
        .args(["-INT", &listener.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT failed");
    let out = listener.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{live}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        live.contains("connected") && live.contains(SECRETS[4]),
        "{live}"
    );

    // A file: encrypted and uploaded by Alice, fetched, verified and decrypted by Bob; the relay
    // never sees its name or bytes.
    let file = dir.path().join("holiday-plan-zebrafinch.txt");
    let body: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i} kingfisher\n").into_bytes())
        .collect();
    std::fs::write(&file, &body).unwrap();
    alice.run(&[
        "send-file",
        USERNAMES[1],
        file.to_str().unwrap(),
        "--type",
        "text/plain",
        "the plan",
    ]);
    bob.run(&["sync"]);
    let history = bob.run(&["history", &alice_id]);
    let line = history
        .lines()
        .find(|l| l.contains("holiday-plan-zebrafinch.txt"))
        .unwrap_or_else(|| panic!("{history}"));
    let id = line.split_whitespace().nth(1).unwrap();
    let saved = dir.path().join("bob-got.txt");
    bob.run(&["save-file", &alice_id, id, saved.to_str().unwrap()]);
    assert_eq!(std::fs::read(&saved).unwrap(), body);

    // An image: its type comes from the extension and Alice's client makes a JPEG preview that
    // travels inside the encrypted pointer.
    let photo = dir.path().join("sunset-heron.png");
    image::RgbImage::from_fn(1200, 900, |x, y| {
        image::Rgb([(x / 5) as u8, (y / 4) as u8, ((x + y) / 9) as u8])
    })
    .save(&photo)
    .unwrap();
    alice.run(&["send-file", USERNAMES[1], photo.to_str().unwrap()]);
    bob.run(&["sync"]);
    let history = bob.run(&["history", &alice_id]);
    let line = history
        .lines()
        .find(|l| l.contains("sunset-heron.png"))
        .unwrap_or_else(|| panic!("{history}"));
    assert!(line.contains("image/png, thumbnail "), "{line}");
    let id = line.split_whitespace().nth(1).unwrap();
    let (saved, thumb) = (dir.path().join("bob.png"), dir.path().join("bob-thumb.jpg"));
    let out = bob.run(&[
        "save-file",
        &alice_id,
        id,
        saved.to_str().unwrap(),
        "--thumbnail",
        thumb.to_str().unwrap(),
    ]);
    assert!(out.contains("saved thumbnail"), "{out}");
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&photo).unwrap()
    );
    let preview = image::open(&thumb).unwrap();
    assert_eq!((preview.width(), preview.height()), (320, 240));
    assert!(std::fs::metadata(&thumb).unwrap().len() <= 64 * 1024);

    // Safety numbers match on both sides.
    let a_sn = alice.run(&["safety-number", USERNAMES[1]]);
    let b_sn = bob.run(&["safety-number", &alice_id]);
    let first_line = a_sn.lines().next().unwrap();
    let digits = first_line.split_once(": ").unwrap().1;
    assert_eq!(digits.split_whitespace().count(), 12);
    assert!(b_sn.contains(digits), "{a_sn} vs {b_sn}");

    // A group of three; Carol is removed and reads nothing new.
    let out = alice.run(&["group-create", "club", USERNAMES[1], USERNAMES[2]]);
    assert!(out.starts_with("group "), "{out}");
    assert!(bob.run(&["sync"]).contains("members"));
    assert!(carol.run(&["sync"]).contains("members"));
    alice.run(&["group-send", "club", SECRETS[5]]);
    assert!(bob.run(&["sync"]).contains(SECRETS[5]));
    assert!(carol.run(&["sync"]).contains(SECRETS[5]));
    bob.run(&["group-send", "club", SECRETS[6]]);
    assert!(alice.run(&["sync"]).contains(SECRETS[6]));
    assert!(carol.run(&["sync"]).contains(SECRETS[6]));
    let out = alice.run(&["group-remove", "club", USERNAMES[2]]);
    assert!(!out.contains(USERNAMES[2]), "{out}");
    alice.run(&["group-send", "club", SECRETS[7]]);
    assert!(bob.run(&["sync"]).contains(SECRETS[7]));
    let out = carol.run(&["sync"]);
    assert!(!out.contains(SECRETS[7]), "{out}");
    assert!(carol.run(&["groups"]).contains("(removed)"));
    assert!(!carol.run(&["history", "club"]).contains(SECRETS[7]));
    assert_eq!(carol.fails(&["group-send", "club", "let me in"]).0, 2);
    let out = alice2.run(&["sync"]);
    assert!(out.contains(SECRETS[7]) || alice2.run(&["history", "club"]).contains(SECRETS[7]));

    // The relay's database, blobs and logs hold none of it: its files as a crash would leave
    // them, then after a clean stop (stopped, not dropped: the files outlive it), and its
    // complete logs.
    fn collect(path: &Path, names: &mut String, out: &mut Vec<u8>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                let p = entry.unwrap().path();
                names.push_str(&p.to_string_lossy());
                collect(&p, names, out);
            }
        } else {
            match std::fs::read(path) {
                Ok(bytes) => out.extend(bytes),
                // A running relay may remove a file between the listing and the read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
    let relay_dir = relay.config().dir().to_owned();
    let mut haystack = Vec::new();
    let mut names = String::new();
    collect(&relay_dir, &mut names, &mut haystack);
    relay.stop();
    collect(&relay_dir, &mut names, &mut haystack);
    let blobs = relay_dir.join("blobs");
    assert!(
        names.contains(&format!("{}/", blobs.display())),
        "the blob directory was searched: {names}"
    );
    let logs = relay.logs();
    // Its own events from start to stop, and at `debug` (the SQL statements of its database).
    haven_testkit::blindness::assert_logged(&logs, haven_testkit::blindness::LIFETIME_AT_DEBUG);
    haystack.extend(logs.into_bytes());
    haystack.extend(
        names
            .replace(&relay_dir.to_string_lossy().into_owned(), "")
            .into_bytes(),
    );
    let text = String::from_utf8_lossy(&haystack).to_lowercase();
    for needle in
        SECRETS
            .iter()
            .chain(USERNAMES)
            .chain(&["zebrafinch", "kingfisher", "sunset-heron"])
    {
        assert!(
            !text.contains(&needle.to_lowercase()),
            "relay files or logs hold {needle}"
        );
    }
    // Nor the preview: no 64-byte window of the thumbnail JPEG appears in the relay's files.
    let thumb = std::fs::read(dir.path().join("bob-thumb.jpg")).unwrap();
    for window in thumb.chunks(64).filter(|w| w.len() == 64).step_by(8) {
        assert!(
            !haystack.windows(64).any(|h| h == window),
            "relay holds thumbnail bytes"
        );
    }
}

#[test]
fn account_lifecycle_through_the_binary() {
    const NEW: &str = "chat cli: the second password";
    const THIRD: &str = "chat cli: recovered password";
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay();
    let dave = User::new(dir.path(), "dave", &relay);
    let phone = User::new(dir.path(), "dave_phone", &relay);
    dave.run(&["register", "--username", "dave_cli"]);
    link_by_approval(&phone, &dave);
    let with = |user: &User<'_>, args: &[&str], env: &[(&str, &str)]| -> Output {
        user.command(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let ok = |out: Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let devices = dave.run(&["devices"]);
    assert_eq!(devices.lines().count(), 2, "{devices}");
    assert!(devices.lines().any(|l| l.starts_with("*1 ")), "{devices}");

    // A recovery code, shown once (proving the password again).
    let out = with(
        &dave,
        &["recovery-code"],
        &[("HAVEN_ACCOUNT_PASSWORD", "wrong")],
    );
    assert!(!out.status.success());
    let out = dave.run(&["recovery-code"]);
    let code = out.lines().last().unwrap().trim().to_owned();
    assert_eq!(code.len(), 39, "{out}");

    // Password change: the phone's session ends until it logs in again with the new password.
    ok(with(
        &dave,
        &["change-password"],
        &[("HAVEN_NEW_ACCOUNT_PASSWORD", NEW)],
    ));
    phone.fails(&["devices"]);
    phone.fails(&["relogin"]);
    ok(with(
        &phone,
        &["relogin"],
        &[("HAVEN_ACCOUNT_PASSWORD", NEW)],
    ));
    phone.run(&["devices"]);

    // The password is lost: the recovery code replaces it, every session ends.
    ok(with(
        &phone,
        &["recover"],
        &[
            ("HAVEN_RECOVERY_CODE", &code.to_lowercase()),
            ("HAVEN_NEW_ACCOUNT_PASSWORD", THIRD),
        ],
    ));
    dave.fails(&["devices"]);
    let third = [("HAVEN_ACCOUNT_PASSWORD", THIRD)];
    ok(with(&dave, &["relogin"], &third));
    ok(with(&phone, &["relogin"], &third));
    // The code worked once.
    let out = with(
        &phone,
        &["recover"],
        &[
            ("HAVEN_RECOVERY_CODE", &code),
            ("HAVEN_NEW_ACCOUNT_PASSWORD", "x"),
        ],
    );
    assert!(!out.status.success());

    // Unlinking the phone needs the password.
    assert!(
        !with(&dave, &["unlink", "2"], &[("HAVEN_ACCOUNT_PASSWORD", NEW)])
            .status
            .success()
    );
    let out = ok(with(&dave, &["unlink", "2"], &third));
    assert!(out.contains("unlinked device 2"), "{out}");
    phone.fails(&["devices"]);
    assert_eq!(ok(with(&dave, &["devices"], &third)).lines().count(), 1);

    // Export to a file.
    let path = dir.path().join("export.json");
    let out = ok(with(&dave, &["export", path.to_str().unwrap()], &third));
    assert!(out.contains("1 devices"), "{out}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("haven-relay-export/v1") && text.contains("opaque_registration_record"));

    // Logout everywhere, then in again; deletion.
    ok(with(&dave, &["logout-all"], &third));
    dave.fails(&["devices"]);
    ok(with(&dave, &["relogin"], &third));
    let out = ok(with(&dave, &["delete-account"], &third));
    assert!(out.contains("account deleted"), "{out}");
    assert!(!with(&dave, &["relogin"], &third).status.success());
}

#[test]
fn push_commands_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay();
    let erin = User::new(dir.path(), "erin", &relay);
    let finn = User::new(dir.path(), "finn", &relay);
    erin.run(&["register", "--username", "erin_cli"]);
    finn.run(&["register", "--username", "finn_cli"]);
    finn.run(&["receipts", "immediate"]);

    // Mail while Finn's app is not running; his push handler's one call brings it in.
    erin.run(&["add", "finn_cli"]);
    erin.run(&["send", "finn_cli", "woken by a push, capybara"]);
    erin.run(&["send", "finn_cli", "and a second one, tapir"]);
    let woke = finn.run(&["push", "wake", "--seconds", "20"]);
    position(&woke, "woken by a push, capybara");
    position(&woke, "and a second one, tapir");
    assert!(
        woke.contains("wake: 2 new message(s) in 1 conversation(s)"),
        "{woke}"
    );
    // A duplicate push finds nothing new.
    let again = finn.run(&["push", "wake"]);
    assert!(
        again.contains("wake: 0 new message(s) in 0 conversation(s), 0 envelope(s)"),
        "{again}"
    );
    let history = finn.run(&["history", "erin_cli"]);
    assert_eq!(history.matches("capybara").count(), 1, "{history}");

    // Endpoints: a malformed gateway key or id is refused before anything is sent (usage, 2);
    // a Web Push subscription is registered, listed and removed.
    assert_eq!(
        finn.fails(&["push", "register-gateway", "bad app", "token"])
            .0,
        2
    );
    assert_eq!(finn.fails(&["push", "remove", "../../v1/account"]).0, 2);
    assert_eq!(finn.fails(&["push", "frobnicate"]).0, 2);
    // The P-256 base point, uncompressed: a valid subscription key (the relay checks the curve).
    let point = hex::decode("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5").unwrap();
    let p256dh = base64_url(&point);
    let auth = base64_url(&[3u8; 16]);
    let out = finn.run(&[
        "push",
        "register-web",
        "https://push.example.test/cli",
        &p256dh,
        &auth,
    ]);
    let id = out
        .trim()
        .strip_prefix("push endpoint ")
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 22, "{out}");
    let listed = finn.run(&["push", "list"]);
    assert!(listed.starts_with(&format!("{id} web_push ")), "{listed}");
    finn.run(&["push", "remove", &id]);
    assert_eq!(finn.run(&["push", "list"]), "");
}

/// Base64url without padding (what a browser's subscription keys look like).
fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

//! The chat scenario scripted through the `haven-chat` binary against a relay process: Alice
//! with two devices, Bob and Carol; first contact by username, replies, Bob offline then back,
//! live delivery to `listen`, a group of three with Carol removed (she reads nothing new), safety
//! numbers, and the relay's files free of the plaintexts and usernames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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

fn relay_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join(format!("haven-relay{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "haven-relay", "--bin", "haven-relay"])
            .status()
            .unwrap();
        assert!(status.success(), "building haven-relay failed");
    }
    bin
}

struct Relay {
    child: Child,
    url: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_relay(dir: &Path) -> Relay {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("relay.log")).unwrap();
    let child = Command::new(relay_binary())
        .env("HAVEN_LISTEN", format!("127.0.0.1:{port}"))
        .env("HAVEN_METRICS_LISTEN", "off")
        .env(
            "HAVEN_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("relay.db").display()),
        )
        .env("HAVEN_LOG", "debug")
        .env("HAVEN_BLOBS_DIR", dir.join("relay-blobs"))
        .env("HAVEN_RATE_LIMIT_PER_MINUTE", "100000")
        .env("HAVEN_AUTH_RATE_LIMIT_PER_MINUTE", "10000")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let relay = Relay {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return relay;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("relay did not start");
}

struct User<'a> {
    state: PathBuf,
    url: &'a str,
    key: String,
}

impl<'a> User<'a> {
    fn new(root: &Path, name: &str, url: &'a str) -> Self {
        Self {
            state: root.join(name),
            url,
            key: hex::encode(rand::random::<[u8; 32]>()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--state")
            .arg(&self.state)
            .arg("--relay")
            .arg(self.url)
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
            let log = std::fs::read_to_string(self.state.parent().unwrap().join("relay.log"))
                .unwrap_or_default();
            let tail: String = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "haven-chat {args:?} failed ({:?}): {stdout}{}\nrelay warnings:\n{tail}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
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

#[test]
fn chat_scenario_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path());
    let alice = User::new(dir.path(), "alice", &relay.url);
    let alice2 = User {
        state: dir.path().join("alice2"),
        url: &relay.url,
        key: hex::encode(rand::random::<[u8; 32]>()),
    };
    let bob = User::new(dir.path(), "bob", &relay.url);
    let carol = User::new(dir.path(), "carol", &relay.url);

    // Bad input first: no state, unknown command, wrong store key.
    assert_eq!(bob.fails(&["whoami"]).0, 2);
    alice.run(&["register", "--username", USERNAMES[0]]);
    alice2.run(&["link", "--username", USERNAMES[0]]);
    bob.run(&["register", "--username", USERNAMES[1]]);
    carol.run(&["register", "--username", USERNAMES[2]]);
    assert_eq!(alice.fails(&["frobnicate"]).0, 2);
    let wrong_key = User {
        state: alice.state.clone(),
        url: &relay.url,
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

    // Live: Bob listens on the socket while Alice sends.
    let listener = bob
        .command(&["listen", "--seconds", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    alice.run(&["send", USERNAMES[1], SECRETS[4]]);
    let out = listener.wait_with_output().unwrap();
    let live = String::from_utf8_lossy(&out.stdout);
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

    // The relay's database and logs hold none of it.
    drop(relay);
    fn collect(path: &Path, names: &mut String, out: &mut Vec<u8>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                let p = entry.unwrap().path();
                names.push_str(&p.to_string_lossy());
                collect(&p, names, out);
            }
        } else {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    let mut haystack = Vec::new();
    let mut names = String::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("relay")
        {
            collect(&path, &mut names, &mut haystack);
        }
    }
    assert!(
        names.contains("relay-blobs"),
        "the blob directory was searched"
    );
    haystack.extend(
        names
            .replace(&dir.path().to_string_lossy().into_owned(), "")
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
            "relay holds {needle}"
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

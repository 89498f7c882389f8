//! `haven-diary`: an end-to-end encrypted diary on the command line.
//!
//! The entries are encrypted on this device (the relay stores opaque blobs) and synced through a
//! Haven relay's vault; the local state lives in one directory, encrypted at rest under a key
//! derived from a local passphrase. Run `haven-diary help` for the commands.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use haven_cli_common::{Args, Cli, Failure, account, progress_bar, secret};
use haven_client::attachments::{Attachments, Progress};
use haven_client::diary::{
    LocalDiaryError, codes_text, device_identity, load_session, save_session,
};
use haven_client::relay::{LoginDevice, LoginIdentifier};
use haven_client::{ClientStore, Diary, DiaryClientError, RelayClient, Space};
use haven_sdk::diary::{DiaryQuery, Entry, KdfParams};

const USAGE: &str = "\
usage: haven-diary [--state DIR] [--relay URL] COMMAND [OPTIONS]

commands:
  init [--username NAME]            register an account, create the diary, print recovery codes
  unlock [--username NAME] [--totp CODE]
                                    check the diary password (logs in on a new device)
  write [--title T] [--mood M] [--tag T]... [--body TEXT]
                                    new entry; body from --body, $EDITOR, or stdin
  list [--mood M] [--tag T] [--from YYYY-MM-DD] [--until YYYY-MM-DD]
  show ID                           an entry (ID: its id or a unique prefix)
  search TEXT...                    full-text search (on this device only)
  edit ID [--title T] [--mood M] [--tag T]... [--body TEXT | --stdin]
  delete ID                         soft-delete (restorable)
  restore ID                        restore a deleted entry
  history ID                        every revision of an entry
  sync                              push local edits, pull the other devices'
  recover [--username NAME] [--totp CODE]
                                    new device or forgotten diary password: use a diary
                                    recovery code
  passwd                            change the diary password
  attach ID FILE [--ttl-days N]     encrypt FILE, upload it as a blob, attach it to the entry
                                    (default lifetime 1825 days; progress bar on a terminal)
  export-attachment ID N DEST       download, verify and decrypt the entry's attachment N
                                    (from 1, as `show` lists them) to DEST, resumably

account (the relay login, not the diary password; actions marked * prove the account
password again: HAVEN_ACCOUNT_PASSWORD, and --totp CODE when TOTP is on):
  devices                           the account's devices (`*` marks this one)
  logout                            end this device's session on the relay
  logout-all                        end every session of the account
  relogin [--totp CODE]             log this device in again (after logout, a password change
                                    elsewhere or a recovery)
  change-password                 * new account password from HAVEN_NEW_ACCOUNT_PASSWORD;
                                    every other session ends
  account-recovery-code           * make and set an account recovery code (printed once)
  recover-account [--totp CODE]     replace a lost account password with that code
                                    (HAVEN_RECOVERY_CODE) and HAVEN_NEW_ACCOUNT_PASSWORD; every
                                    session ends: relogin afterwards
  totp-setup                        a TOTP secret for an authenticator app
  totp-enable CODE                  turn TOTP on with a code from that app
  totp-disable CODE               * turn TOTP off
  export [PATH]                     everything the relay stores about the account (JSON)
  delete-account                  * delete the account and its synced diary on the relay
                                    (this state directory is kept)

options and environment:
  --state DIR       or HAVEN_DIARY_STATE      state directory (created by init)
  --relay URL       or HAVEN_RELAY_URL        relay base URL
  HAVEN_DIARY_PASSPHRASE      local passphrase that encrypts the state directory
  HAVEN_ACCOUNT_PASSWORD      account password (OPAQUE login; the relay never sees it)
  HAVEN_DIARY_PASSWORD        diary password (unwraps the diary key)
  HAVEN_DIARY_NEW_PASSWORD    new diary password (passwd, recover)
  HAVEN_DIARY_RECOVERY_CODE   recovery code (recover)
  --kdf-mib N --kdf-passes N  Argon2id cost of the diary password (init, passwd, recover)
  --totp CODE                 the authenticator app's code, when the account has TOTP on
  HAVEN_NEW_ACCOUNT_PASSWORD  new account password (change-password, recover-account)
  HAVEN_RECOVERY_CODE         account recovery code (recover-account)
Without the variables the secrets are prompted for.";

/// Store space of the CLI's session (account, device, refresh token).
const SPACE_CLI: Space = Space::app(0x43);
const DB_FILE: &str = "diary.db";

static CLI: Cli = Cli {
    name: "haven-diary",
    usage: USAGE,
    value_flags: &[
        "--username",
        "--title",
        "--mood",
        "--tag",
        "--body",
        "--from",
        "--until",
        "--kdf-mib",
        "--ttl-days",
        "--kdf-passes",
        "--totp",
    ],
    switches: &["--stdin", "--no-tag", "--no-mood"],
    state_env: "HAVEN_DIARY_STATE",
    passphrase_env: "HAVEN_DIARY_PASSPHRASE",
    store_key_env: None,
    db_file: DB_FILE,
    state_dir_kind: "a diary state directory (run init, unlock --username or recover first)",
};

/// The Argon2id cost of the diary password: `--kdf-mib` and `--kdf-passes` over the default.
fn kdf_params(args: &Args) -> Result<KdfParams, Failure> {
    let mut params = KdfParams::DEFAULT;
    if let Some(m) = args.flag("--kdf-mib") {
        let mib: u32 = m
            .parse()
            .map_err(|_| Failure::usage("--kdf-mib takes a number"))?;
        params.m_cost_kib = mib.saturating_mul(1024);
    }
    if let Some(t) = args.flag("--kdf-passes") {
        params.t_cost = t
            .parse()
            .map_err(|_| Failure::usage("--kdf-passes takes a number"))?;
    }
    params
        .validate()
        .map_err(|e| Failure::usage(format!("Argon2id parameters: {e}")))?;
    Ok(params)
}

/// A relay client with this directory's session; logs in (`--username`) when there is none.
async fn connect(args: &Args, store: &ClientStore) -> Result<RelayClient, Failure> {
    let relay = RelayClient::new(args.relay_url()?)?;
    if let Some(session) = load_session(store, SPACE_CLI)? {
        relay.set_session(session).await;
        return Ok(relay);
    }
    let Some(username) = args.flag("--username") else {
        return Err(Failure::usage(
            "this state directory is not logged in: pass --username NAME to log in",
        ));
    };
    let password = secret("HAVEN_ACCOUNT_PASSWORD", "account password")?;
    let identity_key = device_identity(store)?;
    let session = relay
        .login(
            LoginIdentifier::Username(username),
            password.as_bytes(),
            LoginDevice::New {
                identity_key: &identity_key,
                name: None,
            },
            args.flag("--totp"),
        )
        .await?;
    save_session(store, SPACE_CLI, &session)?;
    Ok(relay)
}

/// The account commands (shared with haven-chat), on this directory's session without
/// unlocking the diary; the session is kept afterwards, whatever happened.
async fn account_command(args: &Args, command: &str) -> Result<(), Failure> {
    let store = CLI.open_store(args.state_dir()?, false)?;
    let stored = load_session(&store, SPACE_CLI)?.ok_or_else(|| {
        Failure::usage("this state directory is not logged in: run unlock --username NAME first")
    })?;
    let me = account::Me {
        account_id: stored.account_id.clone(),
        device_id: stored.device_id.clone(),
    };
    let relay = RelayClient::new(args.relay_url()?)?;
    relay.set_session(stored).await;
    let result = account::run(args, &relay, &me, command).await;
    // Refresh tokens rotate on use. After a logout the old session stays stored: it names
    // the device for relogin.
    if let Some(session) = relay.session().await {
        save_session(&store, SPACE_CLI, &session)?;
    }
    if result? {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "unknown command {command}\n\n{USAGE}"
        )))
    }
}

async fn unlocked(args: &Args) -> Result<Diary, Failure> {
    let store = CLI.open_store(args.state_dir()?, args.flag("--username").is_some())?;
    let relay = connect(args, &store).await?;
    let password = secret("HAVEN_DIARY_PASSWORD", "diary password")?;
    let diary = Diary::unlock(store, relay, password.as_bytes()).await?;
    diary.save_session(SPACE_CLI).await?;
    Ok(diary)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` (UTC midnight) to Unix ms.
fn parse_date(s: &str) -> Result<u64, Failure> {
    let bad = || Failure::usage(format!("not a date (YYYY-MM-DD): {s}"));
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d);
    u64::try_from(days * 86_400_000).map_err(|_| bad())
}

fn format_time(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The entry's text: `--body`, `--stdin`, `$EDITOR` on a terminal, else stdin.
fn read_body(args: &Args, initial: &str) -> Result<Option<String>, Failure> {
    if let Some(b) = args.flag("--body") {
        return Ok(Some(b.to_owned()));
    }
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty());
    if !args.switch("--stdin") && std::io::stdin().is_terminal() {
        let Some(editor) = editor else {
            return Ok(None);
        };
        let dir = tempfile_dir()?;
        let path = dir.join("entry.txt");
        std::fs::write(&path, initial)?;
        let mut words = editor.split_whitespace();
        let program = words.next().unwrap_or("vi");
        let status = std::process::Command::new(program)
            .args(words)
            .arg(&path)
            .status()?;
        let text = std::fs::read_to_string(&path);
        // Overwrite before removing: the draft is plaintext.
        if let Ok(meta) = std::fs::metadata(&path) {
            let _ = std::fs::write(&path, vec![0u8; usize::try_from(meta.len()).unwrap_or(0)]);
        }
        let _ = std::fs::remove_dir_all(&dir);
        if !status.success() {
            return Err(Failure::other("the editor failed; nothing was saved"));
        }
        return Ok(Some(text?));
    }
    let mut body = String::new();
    std::io::stdin().read_to_string(&mut body)?;
    Ok(Some(body))
}

/// A private temporary directory for the editor's draft.
fn tempfile_dir() -> Result<PathBuf, Failure> {
    let mut name = [0u8; 8];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut name);
    let dir = std::env::temp_dir().join(format!("haven-diary-{}", hex::encode(name)));
    std::fs::create_dir(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Resolves an id or a unique prefix (at least 4 hex digits) among the known entries.
fn resolve_id(
    diary: &Diary,
    word: Option<&String>,
    include_deleted: &[[u8; 16]],
) -> Result<[u8; 16], Failure> {
    let word = word
        .ok_or_else(|| Failure::usage("missing entry id"))?
        .to_ascii_lowercase();
    if word.len() < 4 || !word.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Failure::usage(format!("not an entry id: {word}")));
    }
    let mut candidates: Vec<[u8; 16]> = diary
        .list(&DiaryQuery::default())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    candidates.extend_from_slice(include_deleted);
    let hits: Vec<[u8; 16]> = candidates
        .into_iter()
        .filter(|id| hex::encode(id).starts_with(&word))
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] if word.len() == 32 => {
            let mut id = [0u8; 16];
            hex::decode_to_slice(&word, &mut id).map_err(|_| Failure::usage("bad id"))?;
            Ok(id)
        }
        [] => Err(Failure {
            code: 6,
            message: format!("no entry {word}"),
        }),
        _ => Err(Failure::usage(format!(
            "{word} matches several entries; give more digits"
        ))),
    }
}

fn print_line(id: &[u8; 16], e: &Entry, pending: bool) {
    let mut line = format!(
        "{}  {}  {}",
        hex::encode(id),
        format_time(e.created_ms),
        e.title
    );
    if let Some(m) = &e.mood {
        line.push_str(&format!("  [{m}]"));
    }
    for t in &e.tags {
        line.push_str(&format!(" #{t}"));
    }
    if pending {
        line.push_str("  (not synced)");
    }
    println!("{line}");
}

fn print_entry(id: &[u8; 16], e: &Entry) {
    println!("id:      {}", hex::encode(id));
    println!("title:   {}", e.title);
    if let Some(m) = &e.mood {
        println!("mood:    {m}");
    }
    if !e.tags.is_empty() {
        println!("tags:    {}", e.tags.join(", "));
    }
    println!("created: {}", format_time(e.created_ms));
    println!("updated: {}", format_time(e.updated_ms));
    for (i, a) in e.attachments.iter().enumerate() {
        println!("attachment {}: {} bytes", i + 1, a.plaintext_len);
    }
    println!();
    println!("{}", e.body);
}

fn apply_fields(args: &Args, entry: &mut Entry) {
    if let Some(t) = args.flag("--title") {
        entry.title = t.to_owned();
    }
    if let Some(m) = args.flag("--mood") {
        entry.mood = Some(m.to_owned());
    }
    if args.switch("--no-mood") {
        entry.mood = None;
    }
    let tags = args.all("--tag");
    if !tags.is_empty() {
        entry.tags = tags;
    }
    if args.switch("--no-tag") {
        entry.tags.clear();
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    match args.command.as_str() {
        "" | "help" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        "init" => {
            let dir = args.state_dir()?;
            if dir.join(DB_FILE).exists() {
                return Err(Failure::usage(format!(
                    "{} already holds a diary",
                    dir.display()
                )));
            }
            let params = kdf_params(&args)?;
            let store = CLI.open_store(dir, true)?;
            let relay = RelayClient::new(args.relay_url()?)?;
            let identity_key = device_identity(&store)?;
            let account_pw = secret("HAVEN_ACCOUNT_PASSWORD", "account password")?;
            let session = relay
                .register(
                    args.flag("--username"),
                    account_pw.as_bytes(),
                    &identity_key,
                    None,
                )
                .await?;
            save_session(&store, SPACE_CLI, &session)?;
            let password = secret("HAVEN_DIARY_PASSWORD", "diary password")?;
            let (diary, codes) = Diary::init(store, relay, password.as_bytes(), params).await?;
            diary.save_session(SPACE_CLI).await?;
            println!("diary created for account {}", session.account_id);
            println!("recovery codes (write them down now; they are shown only once):");
            for code in codes_text(&codes) {
                println!("  {}", code.as_str());
            }
            Ok(())
        }
        "unlock" => {
            let diary = unlocked(&args).await?;
            println!(
                "unlocked: {} entries",
                diary.list(&DiaryQuery::default()).len()
            );
            Ok(())
        }
        "write" => {
            let mut diary = unlocked(&args).await?;
            let now = now_ms();
            let mut entry = Entry::default();
            entry.created_ms = now;
            entry.updated_ms = now;
            apply_fields(&args, &mut entry);
            entry.body = read_body(&args, "")?
                .ok_or_else(|| Failure::usage("no body: pass --body, --stdin, or set $EDITOR"))?;
            let id = diary.write(entry)?;
            let synced = diary.sync().await;
            diary.save_session(SPACE_CLI).await?;
            println!("{}", hex::encode(id));
            if let Err(e) = synced {
                eprintln!("saved locally; sync failed: {e}");
            }
            Ok(())
        }
        "list" | "search" => {
            let diary = unlocked(&args).await?;
            let query = DiaryQuery {
                mood: args.flag("--mood").map(str::to_owned),
                tag: args.flag("--tag").map(str::to_owned),
                from_ms: args.flag("--from").map(parse_date).transpose()?,
                until_ms: args
                    .flag("--until")
                    .map(|d| parse_date(d).map(|ms| ms + 86_400_000))
                    .transpose()?,
                text: if args.command == "search" {
                    if args.words.is_empty() {
                        return Err(Failure::usage("search needs some text"));
                    }
                    Some(args.words.join(" "))
                } else {
                    None
                },
            };
            for (id, e) in diary.list(&query) {
                print_line(&id, e, diary.is_pending(&id));
            }
            Ok(())
        }
        "show" => {
            let diary = unlocked(&args).await?;
            let id = resolve_id(&diary, args.words.first(), &[])?;
            let entry = diary
                .show(&id)
                .ok_or(DiaryClientError::Diary(LocalDiaryError::UnknownEntry))?;
            print_entry(&id, entry);
            Ok(())
        }
        "edit" => {
            let mut diary = unlocked(&args).await?;
            let id = resolve_id(&diary, args.words.first(), &[])?;
            let mut entry = diary
                .show(&id)
                .cloned()
                .ok_or(DiaryClientError::Diary(LocalDiaryError::UnknownEntry))?;
            apply_fields(&args, &mut entry);
            let touches_body =
                args.flag("--body").is_some() || args.switch("--stdin") || !args.has_flags();
            if touches_body && let Some(body) = read_body(&args, &entry.body)? {
                entry.body = body;
            }
            entry.updated_ms = now_ms().max(entry.updated_ms);
            diary.edit(&id, entry)?;
            let synced = diary.sync().await;
            diary.save_session(SPACE_CLI).await?;
            if let Err(e) = synced {
                eprintln!("saved locally; sync failed: {e}");
            }
            Ok(())
        }
        "attach" => {
            let mut diary = unlocked(&args).await?;
            let id = resolve_id(&diary, args.words.first(), &[])?;
            let mut entry = diary
                .show(&id)
                .cloned()
                .ok_or(DiaryClientError::Diary(LocalDiaryError::UnknownEntry))?;
            let path = PathBuf::from(
                args.words
                    .get(1)
                    .ok_or_else(|| Failure::usage("attach needs a file"))?,
            );
            let days: u64 = match args.flag("--ttl-days") {
                Some(d) => d
                    .parse()
                    .map_err(|_| Failure::usage("--ttl-days takes a number"))?,
                None => 1825,
            };
            let file = std::fs::File::open(&path)
                .map_err(|e| Failure::other(format!("{}: {e}", path.display())))?;
            let size = file
                .metadata()
                .map_err(|e| Failure::other(format!("{}: {e}", path.display())))?
                .len();
            let attachments = Attachments::new(diary.relay())?;
            let pending = attachments
                .start_upload(size, Some(days.saturating_mul(86_400)))
                .await?;
            let bar = progress_bar("upload");
            let shown = bar.clone();
            let digest = attachments
                .upload(&pending, file, move |p: Progress| {
                    shown.set_length(p.total);
                    shown.set_position(p.done);
                })
                .await?;
            bar.finish_and_clear();
            let pointer = pending.pointer(digest, "", None, None);
            entry.attachments.push(pointer.diary_ref());
            entry.updated_ms = now_ms().max(entry.updated_ms);
            diary.edit(&id, entry)?;
            let synced = diary.sync().await;
            diary.save_session(SPACE_CLI).await?;
            println!("attached {} ({size} bytes)", path.display());
            if let Err(e) = synced {
                eprintln!("saved locally; sync failed: {e}");
            }
            Ok(())
        }
        "export-attachment" => {
            let diary = unlocked(&args).await?;
            let id = resolve_id(&diary, args.words.first(), &[])?;
            let entry = diary
                .show(&id)
                .ok_or(DiaryClientError::Diary(LocalDiaryError::UnknownEntry))?;
            let n: usize = args
                .words
                .get(1)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| Failure::usage("export-attachment needs an attachment number"))?;
            let reference = n
                .checked_sub(1)
                .and_then(|i| entry.attachments.get(i))
                .ok_or_else(|| Failure::usage(format!("the entry has no attachment {n}")))?
                .clone();
            let dest = PathBuf::from(
                args.words
                    .get(2)
                    .ok_or_else(|| Failure::usage("export-attachment needs a destination"))?,
            );
            let attachments = Attachments::new(diary.relay())?;
            let bar = progress_bar("download");
            let shown = bar.clone();
            attachments
                .download_diary_attachment(&reference, &dest, move |p: Progress| {
                    shown.set_length(p.total);
                    shown.set_position(p.done);
                })
                .await?;
            bar.finish_and_clear();
            println!(
                "wrote {} ({} bytes)",
                dest.display(),
                reference.plaintext_len
            );
            Ok(())
        }
        "delete" => {
            let mut diary = unlocked(&args).await?;
            let id = resolve_id(&diary, args.words.first(), &[])?;
            let result = diary.delete(&id).await;
            diary.save_session(SPACE_CLI).await?;
            result?;
            println!(
                "deleted {} (restore with: haven-diary restore {})",
                hex::encode(id),
                hex::encode(id)
            );
            Ok(())
        }
        "restore" => {
            let mut diary = unlocked(&args).await?;
            let word = args
                .words
                .first()
                .ok_or_else(|| Failure::usage("missing entry id"))?;
            let mut id = [0u8; 16];
            hex::decode_to_slice(word, &mut id)
                .map_err(|_| Failure::usage("restore needs the full 32-digit id"))?;
            diary.restore(&id).await?;
            let synced = diary.sync().await;
            diary.save_session(SPACE_CLI).await?;
            synced?;
            println!("restored {}", hex::encode(id));
            Ok(())
        }
        "history" => {
            let diary = unlocked(&args).await?;
            let word = args
                .words
                .first()
                .ok_or_else(|| Failure::usage("missing entry id"))?;
            let id = if word.len() == 32 {
                let mut id = [0u8; 16];
                hex::decode_to_slice(word, &mut id).map_err(|_| Failure::usage("bad id"))?;
                id
            } else {
                resolve_id(&diary, Some(word), &[])?
            };
            let history = diary.history(&id).await;
            diary.save_session(SPACE_CLI).await?;
            for r in history? {
                match &r.entry {
                    None => println!("revision {}: deleted", r.revision),
                    Some(e) => println!(
                        "revision {}: {}  (edited {})\n{}\n",
                        r.revision,
                        e.title,
                        format_time(e.updated_ms),
                        e.body
                    ),
                }
            }
            Ok(())
        }
        "sync" => {
            let mut diary = unlocked(&args).await?;
            let report = diary.sync().await;
            diary.save_session(SPACE_CLI).await?;
            let report = report?;
            println!(
                "synced: {} received, {} sent, {} conflicts merged, {} pending",
                report.pulled, report.pushed, report.conflicts, report.pending
            );
            Ok(())
        }
        "recover" => {
            let params = kdf_params(&args)?;
            let store = CLI.open_store(args.state_dir()?, true)?;
            let relay = connect(&args, &store).await?;
            let code = secret("HAVEN_DIARY_RECOVERY_CODE", "recovery code")?;
            let new_password = secret("HAVEN_DIARY_NEW_PASSWORD", "new diary password")?;
            let mut diary =
                Diary::recover(store, relay, code.as_str(), new_password.as_bytes(), params)
                    .await?;
            let synced = diary.sync().await;
            diary.save_session(SPACE_CLI).await?;
            synced?;
            println!(
                "recovered: {} entries; the diary password was changed",
                diary.list(&DiaryQuery::default()).len()
            );
            Ok(())
        }
        "passwd" => {
            let params = kdf_params(&args)?;
            let mut diary = unlocked(&args).await?;
            let new_password = secret("HAVEN_DIARY_NEW_PASSWORD", "new diary password")?;
            let result = diary.change_password(new_password.as_bytes(), params).await;
            diary.save_session(SPACE_CLI).await?;
            let codes = result?;
            println!("diary password changed");
            if !codes.is_empty() {
                // A diary created before key epochs was upgraded: its old codes are replaced.
                println!("new recovery codes (the old ones no longer work; shown only once):");
                for code in codes_text(&codes) {
                    println!("  {}", code.as_str());
                }
            }
            Ok(())
        }
        "account-recovery-code" => account_command(&args, "recovery-code").await,
        "recover-account" => account_command(&args, "recover").await,
        "recovery-code" | "recover-diary" => Err(Failure::usage(
            "the account's recovery code is account-recovery-code / recover-account; \
             the diary's are printed by init and used by recover",
        )),
        other => account_command(&args, other).await,
    }
}

fn main() -> ExitCode {
    let result = Args::parse(&CLI, std::env::args().skip(1)).and_then(|args| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::other(format!("runtime: {e}")))?;
        runtime.block_on(run(args))
    });
    CLI.exit(result)
}

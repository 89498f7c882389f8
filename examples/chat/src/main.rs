//! `haven-chat`: end-to-end encrypted chat on the command line.
//!
//! Every message is encrypted on this device (sealed sender, Double Ratchet, sender keys for
//! groups); the relay only relays opaque envelopes. The local state lives in one directory,
//! encrypted at rest under a key derived from a local passphrase (or given directly). Run
//! `haven-chat help` for the commands.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use haven_cli_common::{Args, Cli, Failure, account, progress_bar, secret};
use haven_client::messenger::{ConnectionState, Event, GroupInfo, MessageRecord, Messenger};
use haven_client::storage_key;
use haven_client::{
    ClientStore, Conversation, Device, DeviceError, ReceiptPolicy, RelayClient, Space,
};

const USAGE: &str = "\
usage: haven-chat [--state DIR] [--relay URL] COMMAND [ARGS]

commands:
  register [--username NAME]        create an account with this device as its first device
  link [--seconds N]                add this device to an existing account: prints a code
                                    to approve on one of its devices (`approve CODE`),
                                    then waits for the approval (default 300 s)
  approve CODE                      approve the new device showing CODE
  unlink DEVICE                     remove another device of this account (its number)
  accept-account-key CONTACT        accept a contact's new account key (after comparing
                                    the safety number)
  verify CONTACT                    mark a contact verified (after comparing the safety
                                    number): its new devices then need `confirm-devices`
  confirm-devices CONTACT           confirm a verified contact's new devices
  whoami                            account id, device number, username
  add CONTACT                       add a contact (a username or a 32-hex account id)
  contacts                          list contacts
  block CONTACT                     drop everything a contact sends (1:1 and in groups)
                                    and send it nothing 1:1; the relay is not told
  unblock CONTACT                   undo `block`
  send CONTACT TEXT...              send a message
  receipts [immediate|off|delayed MIN MAX]
                                    when delivery receipts go out (default: delayed a random
                                    5 to 60 s, batched per contact; sent by `listen`, or by
                                    the first command after they fall due); prints the policy
  sync                              fetch what is waiting and print new messages
  push register-gateway APP_ID PUSHKEY
                                    wake this device through the relay's push gateway
                                    (APP_ID: the app's id there; PUSHKEY: the device's APNs
                                    or FCM token); prints the endpoint id
  push register-web ENDPOINT P256DH AUTH
                                    the same for a Web Push subscription (keys base64url)
  push list                         this device's push endpoints (id, kind, registered)
  push remove ID                    stop wake-ups to one endpoint
  push vapid                        the relay's VAPID key (a browser's applicationServerKey)
  push wake [--seconds N]           what a push handler does on a wake-up: fetch, process
                                    and acknowledge what is waiting within N s (default
                                    25); prints new messages and a summary line
  history CONTACT|GROUP             the conversation so far
  report CONTACT|GROUP MESSAGE|last report a message received from CONTACT (or in GROUP) as
                                    abuse: reveals that one message to the relay, which
                                    verifies who sent it (MESSAGE: the id prefix shown by
                                    history; last: the latest message received there); prints
                                    the report id and whether the relay could attribute it to
                                    its sender
  listen [--seconds N]              stay connected (WebSocket) and print events as they come
  group-create NAME MEMBER...       create a group (members: usernames or account ids)
  group-add GROUP MEMBER            add a member
  group-remove GROUP MEMBER         remove a member (a new epoch: it reads nothing new)
  group-send GROUP TEXT...          send to a group (GROUP: its name, id or id prefix)
  send-file CONTACT|GROUP PATH [CAPTION...]
                                    encrypt, upload and send a file (progress on stderr)
  save-file CONTACT|GROUP MESSAGE DEST
                                    download, verify and decrypt a message's file to DEST
                                    (MESSAGE: the id prefix shown by history)
  groups                            list groups
  safety-number CONTACT             the safety number to compare with a contact (per
                                    account, then per device)

account (actions marked * prove the account password again: HAVEN_ACCOUNT_PASSWORD, and
--totp CODE when TOTP is on):
  devices                           the account's devices (`*` marks this one)
  unlink DEVICE                   * unlink a device (its number or id)
  logout                            end this device's session on the relay
  logout-all                        end every session of the account
  relogin [--totp CODE]             log this device in again (after logout, a password change
                                    elsewhere or a recovery)
  change-password                 * new password from HAVEN_NEW_ACCOUNT_PASSWORD; every other
                                    session ends
  recovery-code                   * make and set a new recovery code (printed once)
  recover [--totp CODE]             replace a lost password with the recovery code
                                    (HAVEN_RECOVERY_CODE) and HAVEN_NEW_ACCOUNT_PASSWORD; every
                                    session ends: relogin afterwards
  totp-setup                        a TOTP secret for an authenticator app
  totp-enable CODE                  turn TOTP on with a code from that app
  totp-disable CODE               * turn TOTP off
  export [PATH]                     everything the relay stores about the account (JSON)
  delete-account                  * delete the account on the relay (local state is kept)

options and environment:
  --state DIR    or HAVEN_CHAT_STATE     state directory (created by register or link)
  --relay URL    or HAVEN_RELAY_URL      relay base URL
  --type MIME                            content type for send-file (default: from the extension;
                                         images get a JPEG thumbnail)
  --thumbnail PATH                       save-file: also write the message's thumbnail to PATH
  HAVEN_CHAT_PASSPHRASE    local passphrase encrypting the state directory (Argon2id), or
  HAVEN_CHAT_STORE_KEY     the 32-byte storage key itself, 64 hex digits (e.g. from a keychain)
  HAVEN_ACCOUNT_PASSWORD   account password (OPAQUE; the relay never sees it)
Without the variables the secrets are prompted for.

exit codes: 1 other, 2 usage or bad input (also a message that cannot be reported), 3
credentials or session, 5 an identity or account key changed, or a verified contact has new
devices (compare safety numbers), 6 the relay served a forged or rolled-back device list or an
unlisted device, 7 relay refused (also a report), 8 attachment.";

/// Store space of the CLI's own settings (relay URL, username, names of contacts).
const SPACE_CLI: Space = Space::app(0x60);
const DB_FILE: &str = "chat.db";

static CLI: Cli = Cli {
    name: "haven-chat",
    usage: USAGE,
    value_flags: &[
        "--username",
        "--account",
        "--seconds",
        "--type",
        "--thumbnail",
        "--totp",
    ],
    switches: &[],
    state_env: "HAVEN_CHAT_STATE",
    passphrase_env: "HAVEN_CHAT_PASSPHRASE",
    store_key_env: Some("HAVEN_CHAT_STORE_KEY"),
    db_file: DB_FILE,
    state_dir_kind: "a chat state directory (run register or link first)",
};

/// Opens the state directory's store; with `create`, makes a new one (a directory holds one
/// device).
fn open_store(dir: &Path, create: bool) -> Result<ClientStore, Failure> {
    if create {
        if dir.join(DB_FILE).exists() {
            return Err(Failure::usage(format!(
                "{} already holds a device",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)?;
    } else if !dir.join(DB_FILE).exists() {
        return Err(CLI.not_a_state_dir(dir));
    }
    CLI.open_store(dir, create)
}

/// The message text: the words from `i` on.
fn text_from(args: &Args, i: usize) -> Result<String, Failure> {
    let text = args.rest(i);
    if text.is_empty() {
        return Err(Failure::usage("missing message text"));
    }
    Ok(text)
}

fn relay_url(args: &Args, store: Option<&ClientStore>) -> Result<String, Failure> {
    if let Some(url) = &args.relay {
        return Ok(url.clone());
    }
    if let Some(s) = store
        && let Some(url) = s.get(SPACE_CLI, b"relay")?
    {
        return String::from_utf8(url.to_vec()).map_err(|_| Failure::other("stored relay URL"));
    }
    Err(Failure::usage(
        "no relay: pass --relay URL or set HAVEN_RELAY_URL",
    ))
}

/// The local display name of an account: its username if known, else a short id.
fn name_of(m: &Messenger, account: &[u8; 16]) -> String {
    if *account == m.device().account_bytes() {
        return "me".into();
    }
    match m.contact(account) {
        Ok(Some(c)) => c.username.unwrap_or_else(|| hex::encode(account)),
        _ => hex::encode(account),
    }
}

fn group_label(m: &Messenger, id: &[u8; 16]) -> String {
    let name = m
        .groups()
        .ok()
        .and_then(|gs| gs.into_iter().find(|g| g.id == *id))
        .map(|g| g.name)
        .unwrap_or_default();
    format!("#{name}({})", &hex::encode(id)[..8])
}

fn conv_label(m: &Messenger, c: &Conversation) -> String {
    match c {
        Conversation::Direct(a) => format!("@{}", name_of(m, a)),
        Conversation::Group(g) => group_label(m, g),
    }
}

/// A content type from the file name's extension, for the common cases; anything else is
/// `application/octet-stream`. Images get a thumbnail from the SDK.
fn guess_content_type(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn message_line(m: &Messenger, r: &MessageRecord) -> String {
    let mut flags = String::new();
    if let Ok(Some(p)) = m.attachment(r) {
        flags.push_str(&format!(
            " [file {} {} bytes {}{}]",
            p.file_name.as_deref().unwrap_or("(unnamed)"),
            p.size,
            p.content_type,
            p.thumbnail
                .as_ref()
                .map(|t| format!(", thumbnail {} bytes", t.len()))
                .unwrap_or_default()
        ));
    }
    if r.edited {
        flags.push_str(" (edited)");
    }
    if r.deleted {
        flags.push_str(" (deleted)");
    }
    if !r.read_by.is_empty() {
        flags.push_str(" [read]");
    } else if !r.delivered_to.is_empty() {
        flags.push_str(" [delivered]");
    }
    for reaction in &r.reactions {
        flags.push_str(&format!(
            " {}:{}",
            name_of(m, &reaction.from),
            reaction.emoji
        ));
    }
    format!(
        "{} {} {}: {}{}",
        conv_label(m, &r.conversation()),
        &hex::encode(r.message_id)[..8],
        name_of(m, &r.sender),
        r.text,
        flags
    )
}

fn event_line(m: &Messenger, e: &Event) -> Option<String> {
    Some(match e {
        Event::Message(r) => format!("message {}", message_line(m, r)),
        Event::Receipt {
            conversation,
            from,
            kind,
            message_ids,
        } => format!(
            "receipt {} {} {kind:?} {}",
            conv_label(m, conversation),
            name_of(m, from),
            message_ids.len()
        ),
        Event::Typing {
            conversation,
            from,
            started,
        } => format!(
            "typing {} {} {}",
            conv_label(m, conversation),
            name_of(m, from),
            if *started { "started" } else { "stopped" }
        ),
        Event::Reaction {
            conversation,
            from,
            emoji,
            removed,
            ..
        } => format!(
            "reaction {} {} {emoji}{}",
            conv_label(m, conversation),
            name_of(m, from),
            if *removed { " removed" } else { "" }
        ),
        Event::Edited {
            conversation, text, ..
        } => format!("edited {} {text}", conv_label(m, conversation)),
        Event::Deleted { conversation, .. } => {
            format!("deleted {}", conv_label(m, conversation))
        }
        Event::TimerChanged {
            conversation,
            expire_secs,
        } => format!("timer {} {expire_secs}s", conv_label(m, conversation)),
        Event::GroupUpdated {
            group_id, members, ..
        } => format!(
            "group {} members {}",
            group_label(m, group_id),
            members
                .iter()
                .map(|a| name_of(m, a))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Event::RemovedFromGroup { group_id } => {
            format!("removed-from {}", group_label(m, group_id))
        }
        Event::IdentityChanged { account, device } => format!(
            "identity-changed {} device {device} (compare safety numbers)",
            name_of(m, account)
        ),
        Event::Rejected { reason } => format!("rejected {reason}"),
        Event::Connection(ConnectionState::CaughtUp) => "connected".into(),
        Event::Connection(ConnectionState::Disconnected { reason, retry_in }) => {
            format!("disconnected ({reason}); retrying in {retry_in:?}")
        }
        Event::Connection(ConnectionState::Stopped { reason }) => format!("stopped ({reason})"),
        _ => return None,
    })
}

/// Resolves a contact argument: a known username, an account id, or a username to look up.
async fn resolve_contact(m: &Messenger, text: &str) -> Result<[u8; 16], Failure> {
    if let Ok(bytes) = hex::decode(text)
        && let Ok(id) = <[u8; 16]>::try_from(bytes)
    {
        return Ok(id);
    }
    let wanted = text.trim().to_lowercase();
    for c in m.contacts()? {
        if c.username.as_deref() == Some(wanted.as_str()) {
            return Ok(c.account);
        }
    }
    Ok(m.add_contact_by_username(text).await?.account)
}

fn resolve_group(m: &Messenger, text: &str) -> Result<GroupInfo, Failure> {
    let groups = m.groups()?;
    let lower = text.to_lowercase();
    let matches: Vec<GroupInfo> = groups
        .into_iter()
        .filter(|g| g.name == text || hex::encode(g.id).starts_with(&lower))
        .collect();
    match matches.len() {
        1 => Ok(matches
            .into_iter()
            .next()
            .ok_or_else(|| Failure::other("group"))?),
        0 => Err(Failure::usage(format!("no group {text}"))),
        _ => Err(Failure::usage(format!(
            "{text} names several groups: use the id"
        ))),
    }
}

/// A conversation argument: a group (name, id or prefix) or a contact.
async fn resolve_conversation(m: &Messenger, text: &str) -> Result<Conversation, Failure> {
    match resolve_group(m, text) {
        Ok(g) => Ok(Conversation::Group(g.id)),
        Err(_) => Ok(Conversation::Direct(resolve_contact(m, text).await?)),
    }
}

async fn open_messenger(args: &Args) -> Result<Arc<Messenger>, Failure> {
    let store = open_store(args.state_dir()?, false)?;
    let url = relay_url(args, Some(&store))?;
    let device = Device::open(RelayClient::new(&url)?, store).await?;
    Ok(Arc::new(Messenger::new(Arc::new(device))))
}

async fn run(args: Args) -> Result<(), Failure> {
    match args.command.as_str() {
        "" | "help" => {
            println!("{USAGE}");
            return Ok(());
        }
        "register" => {
            let dir = args.state_dir()?;
            let url = relay_url(&args, None)?;
            let password = secret("HAVEN_ACCOUNT_PASSWORD", "account password")?;
            let store = open_store(dir, true)?;
            store.put(SPACE_CLI, b"relay", url.as_bytes())?;
            let relay = RelayClient::new(&url)?;
            let username = args.flag("--username");
            let result = Device::register(relay, store, username, password.as_bytes()).await;
            finish_setup(dir, result).await
        }
        "link" | "login" => {
            let dir = args.state_dir()?;
            let url = relay_url(&args, None)?;
            let seconds = match args.flag("--seconds") {
                Some(s) => s
                    .parse::<u64>()
                    .map_err(|_| Failure::usage("--seconds takes a number"))?,
                None => 300,
            };
            let store = open_store(dir, true)?;
            store.put(SPACE_CLI, b"relay", url.as_bytes())?;
            let pending = Device::start_link(RelayClient::new(&url)?).await?;
            println!("link code: {}", pending.code());
            println!("approve it on a device of the account: haven-chat approve CODE");
            let result = pending
                .finish(store, std::time::Duration::from_secs(seconds))
                .await;
            finish_setup(dir, result).await
        }
        _ => Ok(()),
    }?;
    if matches!(args.command.as_str(), "register" | "link" | "login") {
        return Ok(());
    }
    let m = open_messenger(&args).await?;
    let result = command(&args, &m).await;
    // Refresh tokens rotate on use: keep the latest one even when the command failed.
    m.device().persist_session().await?;
    result
}

/// After `register` or `link`: prints the new device, or removes the half-made state.
async fn finish_setup(dir: &Path, result: Result<Device, DeviceError>) -> Result<(), Failure> {
    let device = match result {
        Ok(d) => d,
        Err(e) => {
            // Leave no half-made state directory behind.
            let _ = std::fs::remove_file(dir.join(DB_FILE));
            let _ = std::fs::remove_file(dir.join(storage_key::SALT_FILE));
            return Err(e.into());
        }
    };
    device.persist_session().await?;
    println!(
        "account {} device {}",
        device.account_id(),
        device.device_number()
    );
    Ok(())
}

async fn command(args: &Args, m: &Arc<Messenger>) -> Result<(), Failure> {
    match args.command.as_str() {
        "whoami" => {
            println!(
                "account {} device {}",
                m.device().account_id(),
                m.device().device_number()
            );
        }
        "add" => {
            let who = args.word(0, "CONTACT")?;
            let contact = if let Ok(bytes) = hex::decode(who)
                && bytes.len() == 16
            {
                m.add_contact(who).await?
            } else {
                m.add_contact_by_username(who).await?
            };
            println!(
                "contact {} {}",
                hex::encode(contact.account),
                contact.username.unwrap_or_default()
            );
        }
        "contacts" => {
            for c in m.contacts()? {
                println!(
                    "{} {}{}",
                    hex::encode(c.account),
                    c.username.unwrap_or_default(),
                    if c.blocked { " (blocked)" } else { "" }
                );
            }
        }
        "block" | "unblock" => {
            let who = resolve_contact(m, args.word(0, "CONTACT")?).await?;
            let blocked = args.command == "block";
            m.set_blocked(&hex::encode(who), blocked)?;
            println!(
                "{} {}",
                hex::encode(who),
                if blocked { "blocked" } else { "unblocked" }
            );
        }
        "receipts" => {
            let secs = |i: usize, what: &str| -> Result<u32, Failure> {
                args.word(i, what)?
                    .parse()
                    .map_err(|_| Failure::usage(format!("{what} is a number of seconds")))
            };
            let policy = match args.words.first().map(String::as_str) {
                None => None,
                Some("immediate") => Some(ReceiptPolicy::Immediate),
                Some("off") => Some(ReceiptPolicy::Off),
                Some("delayed") => Some(ReceiptPolicy::Delayed {
                    min_secs: secs(1, "MIN")?,
                    max_secs: secs(2, "MAX")?,
                }),
                Some(other) => {
                    return Err(Failure::usage(format!(
                        "receipts takes immediate, off or delayed MIN MAX, not {other}"
                    )));
                }
            };
            if let Some(policy) = policy {
                m.set_receipt_policy(policy)?;
            }
            match m.receipt_policy()? {
                ReceiptPolicy::Delayed { min_secs, max_secs } => {
                    println!("receipts delayed {min_secs}-{max_secs} s");
                }
                ReceiptPolicy::Immediate => println!("receipts immediate"),
                _ => println!("receipts off"),
            }
        }
        "send" => {
            let to = resolve_contact(m, args.word(0, "CONTACT")?).await?;
            let text = text_from(args, 1)?;
            let id = m.send_text(Conversation::Direct(to), &text).await?;
            println!("sent {}", &hex::encode(id)[..8]);
        }
        "group-send" => {
            let g = resolve_group(m, args.word(0, "GROUP")?)?;
            let text = text_from(args, 1)?;
            let id = m.send_text(Conversation::Group(g.id), &text).await?;
            println!("sent {}", &hex::encode(id)[..8]);
        }
        "send-file" => {
            let conversation = resolve_conversation(m, args.word(0, "CONTACT or GROUP")?).await?;
            let path = PathBuf::from(args.word(1, "PATH")?);
            let caption = args.rest(2);
            let content_type = args
                .flag("--type")
                .unwrap_or_else(|| guess_content_type(&path));
            let bar = progress_bar("upload");
            let id = m
                .send_file(conversation, &path, content_type, &caption, |p| {
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                })
                .await;
            bar.finish_and_clear();
            println!("sent {}", &hex::encode(id?)[..8]);
        }
        "save-file" => {
            let conversation = resolve_conversation(m, args.word(0, "CONTACT or GROUP")?).await?;
            let prefix = args.word(1, "MESSAGE")?.to_lowercase();
            let dest = PathBuf::from(args.word(2, "DEST")?);
            let matches: Vec<MessageRecord> = m
                .history(conversation)?
                .into_iter()
                .filter(|r| hex::encode(r.message_id).starts_with(&prefix))
                .collect();
            let [record] = matches.as_slice() else {
                return Err(Failure::usage(format!(
                    "{prefix} names {} messages of that conversation",
                    matches.len()
                )));
            };
            if let Some(thumb_dest) = args.flag("--thumbnail") {
                let thumbnail = m
                    .attachment(record)?
                    .and_then(|p| p.thumbnail.clone())
                    .ok_or_else(|| Failure::usage("that message has no thumbnail"))?;
                std::fs::write(thumb_dest, &thumbnail)
                    .map_err(|e| Failure::usage(format!("cannot write {thumb_dest}: {e}")))?;
                println!("saved thumbnail {thumb_dest}");
            }
            let bar = progress_bar("download");
            let result = m
                .save_attachment(record, &dest, |p| {
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                })
                .await;
            bar.finish_and_clear();
            result?;
            println!("saved {}", dest.display());
        }
        "sync" => {
            let mut events = m.subscribe();
            m.sync().await?;
            while let Ok(e) = events.try_recv() {
                if let Some(line) = event_line(m, &e) {
                    println!("{line}");
                }
            }
        }
        "push" => push_command(args, m).await?,
        "history" => {
            let conversation = resolve_conversation(m, args.word(0, "CONTACT or GROUP")?).await?;
            for r in m.history(conversation)? {
                println!("{}", message_line(m, &r));
            }
        }
        "report" => {
            let conversation = resolve_conversation(m, args.word(0, "CONTACT or GROUP")?).await?;
            let which = args.word(1, "MESSAGE or last")?.to_lowercase();
            let received: Vec<MessageRecord> = m
                .history(conversation)?
                .into_iter()
                .filter(|r| !r.outgoing)
                .collect();
            let matches: Vec<&MessageRecord> = if which == "last" {
                received.last().into_iter().collect()
            } else {
                received
                    .iter()
                    .filter(|r| hex::encode(r.message_id).starts_with(&which))
                    .collect()
            };
            let [record] = matches.as_slice() else {
                return Err(Failure::usage(format!(
                    "{which} names {} received messages of that conversation",
                    matches.len()
                )));
            };
            let answer = m.report(conversation, record.message_id).await?;
            println!(
                "reported {} report {} {}",
                &hex::encode(record.message_id)[..8],
                answer.report_id,
                if answer.attributed {
                    "attributed"
                } else {
                    "unattributed"
                }
            );
        }
        "listen" => {
            let seconds: Option<u64> = match args.flag("--seconds") {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| Failure::usage("--seconds takes a number"))?,
                ),
                None => None,
            };
            let mut events = m.subscribe();
            let runner = tokio::spawn(m.clone().run());
            let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
            loop {
                let next = async {
                    match deadline {
                        Some(d) => tokio::time::timeout_at(d, events.recv()).await.ok(),
                        None => Some(events.recv().await),
                    }
                };
                tokio::select! {
                    e = next => match e {
                        None => break,
                        Some(Ok(e)) => {
                            if let Some(line) = event_line(m, &e) {
                                println!("{line}");
                                std::io::stdout().flush()?;
                            }
                            m.device().persist_session().await?;
                            if let Event::Connection(ConnectionState::Stopped { reason }) = &e {
                                return Err(Failure { code: 3, message: reason.clone() });
                            }
                        }
                        Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                            eprintln!("(skipped {n} events; run history to see everything)");
                        }
                        Some(Err(_)) => break,
                    },
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            runner.abort();
        }
        "group-create" => {
            let name = args.word(0, "NAME")?;
            let mut members = Vec::new();
            for who in args.words.iter().skip(1) {
                members.push(resolve_contact(m, who).await?);
            }
            let id = m.create_group(name, &members).await?;
            println!("group {} {}", hex::encode(id), name);
        }
        "group-add" | "group-remove" => {
            let g = resolve_group(m, args.word(0, "GROUP")?)?;
            let who = resolve_contact(m, args.word(1, "MEMBER")?).await?;
            if args.command == "group-add" {
                m.add_member(&g.id, &who).await?;
            } else {
                m.remove_member(&g.id, &who).await?;
            }
            let g = resolve_group(m, &hex::encode(g.id))?;
            println!(
                "group {} members {}",
                group_label(m, &g.id),
                g.members
                    .iter()
                    .map(|a| name_of(m, a))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        "groups" => {
            for g in m.groups()? {
                println!(
                    "{} {} epoch {} {} members{}",
                    hex::encode(g.id),
                    g.name,
                    g.epoch,
                    g.members.len(),
                    if g.active { "" } else { " (removed)" }
                );
            }
        }
        "approve" => {
            m.device().approve_link(args.word(0, "CODE")?).await?;
            println!("approved; the new device joins when it next asks");
        }
        "verify" => {
            let who = resolve_contact(m, args.word(0, "CONTACT")?).await?;
            m.refresh_devices(&who).await?;
            m.device().mark_verified(&who)?;
            println!("{} verified", hex::encode(who));
        }
        "confirm-devices" => {
            let who = resolve_contact(m, args.word(0, "CONTACT")?).await?;
            m.device().confirm_devices(&who)?;
            println!("the devices of {} are confirmed", hex::encode(who));
        }
        "accept-account-key" => {
            let who = resolve_contact(m, args.word(0, "CONTACT")?).await?;
            m.accept_account_key(&who)?;
            println!("accepted the new account key of {}", hex::encode(who));
        }
        "safety-number" => {
            let who = resolve_contact(m, args.word(0, "CONTACT")?).await?;
            m.refresh_devices(&who).await?;
            if let Some(digits) = m.account_safety_number(&who)? {
                println!("account: {}", group5(&digits));
            }
            for s in m.safety_numbers(&who)? {
                println!("device {}: {}", s.device, group5(&s.digits));
            }
        }
        other => return account_command(args, m, other).await,
    }
    Ok(())
}

/// The account's commands (PROTOCOL.md §11.6.1–§11.9): unlinking here (it signs a new device
/// list), the rest shared with haven-diary.
/// `push …`: this device's push endpoints, and a wake-up as a push handler does it.
async fn push_command(args: &Args, m: &Arc<Messenger>) -> Result<(), Failure> {
    let relay = m.device().relay();
    match args.word(0, "push command")? {
        "register-gateway" => {
            let id = relay
                .register_gateway_push(args.word(1, "APP_ID")?, args.word(2, "PUSHKEY")?)
                .await?;
            println!("push endpoint {id}");
        }
        "register-web" => {
            let id = relay
                .register_web_push(
                    args.word(1, "ENDPOINT")?,
                    args.word(2, "P256DH")?,
                    args.word(3, "AUTH")?,
                )
                .await?;
            println!("push endpoint {id}");
        }
        "list" => {
            for e in relay.push_endpoints().await? {
                println!("{} {} {}", e.id, e.kind, e.created_at);
            }
        }
        "remove" => {
            let id = args.word(1, "ID")?;
            relay.remove_push_endpoint(id).await?;
            println!("removed {id}");
        }
        "vapid" => println!("{}", relay.push_vapid_key().await?),
        "wake" => {
            let secs = match args.flag("--seconds") {
                Some(s) => s
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=600).contains(s))
                    .ok_or_else(|| Failure::usage("--seconds is 1 to 600"))?,
                None => haven_client::messenger::WAKE_BUDGET_MS / 1000,
            };
            let mut events = m.subscribe();
            let summary = m.handle_wake_up(Duration::from_secs(secs)).await?;
            while let Ok(e) = events.try_recv() {
                if let Some(line) = event_line(m, &e) {
                    println!("{line}");
                }
            }
            println!(
                "wake: {} new message(s) in {} conversation(s), {} envelope(s){}",
                summary.messages,
                summary.conversations.len(),
                summary.envelopes,
                if summary.complete {
                    ""
                } else {
                    ", more waiting (budget ran out)"
                }
            );
        }
        other => {
            return Err(Failure::usage(format!(
                "push takes register-gateway, register-web, list, remove, vapid or wake, not {other}"
            )));
        }
    }
    m.device().persist_session().await?;
    Ok(())
}

async fn account_command(args: &Args, m: &Arc<Messenger>, command: &str) -> Result<(), Failure> {
    let relay = m.device().relay();
    if command == "unlink" {
        let wanted = args.word(0, "DEVICE")?.to_lowercase();
        let devices = relay.devices().await?.devices;
        let device = devices
            .iter()
            .find(|d| d.device_number.to_string() == wanted || d.device_id.to_hex() == wanted)
            .ok_or_else(|| Failure::usage(format!("no device {wanted}; see devices")))?;
        if device.current {
            return Err(Failure::usage(
                "this is this device: unlink it from another one (or use logout)",
            ));
        }
        let fresh = account::fresh_auth(args, relay).await?;
        // A new signed device list without it first (contacts stop encrypting to it and
        // refuse its messages), then the relay forgets it.
        m.device()
            .unlink_device(device.device_number, fresh)
            .await?;
        println!("unlinked device {}", device.device_number);
        return Ok(());
    }
    // The session names this device; it was restored from the store when the device opened.
    let device_id = relay
        .session()
        .await
        .map(|s| s.device_id)
        .ok_or_else(|| Failure::other("this state directory holds no session"))?;
    let me = account::Me {
        account_id: m.device().account_id().to_owned(),
        device_id,
    };
    if account::run(args, relay, &me, command).await? {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "unknown command {command}; see help"
        )))
    }
}

/// Digits in groups of five, as they are read aloud.
fn group5(digits: &str) -> String {
    let grouped: Vec<&str> = digits
        .as_bytes()
        .chunks(5)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    grouped.join(" ")
}

fn main() -> ExitCode {
    let result = Args::parse(&CLI, std::env::args().skip(1)).and_then(|args| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failure::other(format!("runtime: {e}")))?;
        runtime.block_on(run(args))
    });
    CLI.exit(result)
}

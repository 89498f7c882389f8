//! `haven-admin`: the relay operator's command line, over the admin API
//! (`docs/PROTOCOL.md` §11.19).
//!
//! ```text
//! haven-admin overview [--json]
//! haven-admin keys list [--json]
//! haven-admin keys create --label LABEL [--expires-days N]
//! haven-admin keys revoke ID
//! haven-admin reports list [--status pending|decided] [--json]
//! haven-admin reports show ID [--json]
//! haven-admin reports decide ID dismiss|warn|suspend|ban [--days N] [--purge]
//! haven-admin bans accounts list|add ACCOUNT suspend|ban [--days N] [--purge]|remove ACCOUNT
//! haven-admin bans addresses list|add ADDRESS [--days N]|remove PREFIX_HASH|ADDRESS
//! haven-admin audit [--kind KIND] [--since T] [--limit N] [--json]
//! haven-admin audit-export [--since T]
//! ```
//!
//! The relay's address and the admin key come from `--url`/`HAVEN_ADMIN_URL` and
//! `--key`/`HAVEN_ADMIN_KEY` (prefer the variable: arguments show in process listings). The
//! first key is made on the relay's machine with `haven-relay admin create-key`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use haven_protocol::api::admin::{
    AdminKeyInfo, AdminKeyList, AdminOverview, CreateAdminKeyRequest, CreatedAdminKey,
    RequestWindow,
};
use haven_protocol::api::error::ErrorBody;
use haven_protocol::api::moderation::{
    AddressBanRequest, AddressBanView, DecisionRequest, DecisionResponse, ReportDetail, ReportPage,
    ReportSummary, SanctionView,
};
use haven_protocol::content::{Body, Content};
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// The Haven relay operator's command line.
#[derive(Debug, Parser)]
#[command(
    name = "haven-admin",
    version,
    about = "The Haven relay operator's command line over the admin API: the overview, admin keys, the review queue of abuse reports, account and address bans, the audit log.",
    after_help = "The first admin key is made on the relay's machine: haven-relay admin create-key --label LABEL.\nRotation: `keys create`, switch HAVEN_ADMIN_KEY to the new key, then `keys revoke OLD_ID`."
)]
struct Cli {
    /// The relay's base URL, e.g. https://relay.example.org.
    #[arg(long, env = "HAVEN_ADMIN_URL")]
    url: String,
    /// The admin key (hvn_admin_…). Prefer the environment variable.
    #[arg(long, env = "HAVEN_ADMIN_KEY", hide_env_values = true)]
    key: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Request figures (1, 5, 15 minutes), live sockets, storage, moderation figures.
    Overview {
        /// Print the relay's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Admin keys: list, create, revoke.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The review queue of verified abuse reports.
    #[command(subcommand)]
    Reports(ReportsCommand),
    /// Account and address bans.
    #[command(subcommand)]
    Bans(BansCommand),
    /// The security audit log (never addresses, usernames or content).
    Audit {
        /// Only this kind of event (e.g. login_failed, account_banned, report_filed).
        #[arg(long)]
        kind: Option<String>,
        /// Only events at or after this Unix time.
        #[arg(long)]
        since: Option<i64>,
        /// At most this many events (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print the relay's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// The whole audit log as NDJSON on stdout (for archiving).
    AuditExport {
        /// Only events at or after this Unix time.
        #[arg(long)]
        since: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum ReportsCommand {
    /// Reports waiting for a decision (or decided ones).
    List {
        /// `pending` (default) or `decided`.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Print the relay's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// One report, with the reported message opened (the reviewer's reading is audited).
    Show {
        /// The report id (32 hex digits).
        id: String,
        /// Print the relay's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Decide a report.
    Decide {
        /// The report id (32 hex digits).
        id: String,
        /// `dismiss`, `warn`, `suspend` or `ban` (the reported sender's account).
        decision: String,
        /// For suspend/ban: lift it after this many days (without it: until lifted).
        #[arg(long)]
        days: Option<u32>,
        /// For suspend/ban: delete the account's undelivered logged-in sends and its blobs.
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BansCommand {
    /// Account sanctions: its logins, refreshes, sends and certificates are refused.
    #[command(subcommand)]
    Accounts(AccountBansCommand),
    /// Address bans, kept only as a keyed hash of the address prefix.
    #[command(subcommand)]
    Addresses(AddressBansCommand),
}

#[derive(Debug, Subcommand)]
enum AccountBansCommand {
    /// Sanctions in force.
    List,
    /// Suspend or ban an account.
    Add {
        /// The account id (32 hex digits).
        account: String,
        /// `suspend` or `ban`.
        kind: String,
        /// Lift it after this many days (without it: until lifted).
        #[arg(long)]
        days: Option<u32>,
        /// Delete the account's undelivered logged-in sends and its blobs.
        #[arg(long)]
        purge: bool,
    },
    /// Lift an account's sanction.
    Remove {
        /// The account id (32 hex digits).
        account: String,
    },
}

#[derive(Debug, Subcommand)]
enum AddressBansCommand {
    /// Address bans in force (hashes and expiry only).
    List,
    /// Ban the prefix of an address (IPv4 /24, IPv6 /64 by default).
    Add {
        /// An address, or a prefix `addr/len` of the configured length.
        address: String,
        /// Lift it after this many days (without it: until lifted).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Lift an address ban by its prefix hash (from `list`) or an address in it.
    Remove {
        /// The prefix hash (64 hex digits) or an address.
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Every key (revoked and expired ones too), never the secrets.
    List {
        /// Print the relay's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Create a key; prints it once on stdout (its id on stderr).
    Create {
        /// A label for the key (1 to 100 bytes).
        #[arg(long)]
        label: String,
        /// Days until it expires (1 to 3650); without it the key never expires.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Revoke a key by id (it stops working at once).
    Revoke {
        /// The key's id (32 hex digits, from `keys list`).
        id: String,
    },
}

/// What went wrong, printed on stderr.
#[derive(Debug)]
enum Failure {
    /// The relay answered with an error.
    Relay(u16, String),
    /// The relay could not be reached or answered something unreadable.
    Transport(String),
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: Zeroizing<String>,
}

impl Client {
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, Failure> {
        let response = request
            .bearer_auth(self.key.as_str())
            .send()
            .await
            .map_err(|e| Failure::Transport(format!("cannot reach the relay: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Transport(format!("reading the reply: {e}")))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<ErrorBody>(&bytes).map_or_else(
                |_| status.canonical_reason().unwrap_or("error").to_owned(),
                |b| format!("{}: {}", b.error.code, b.error.message),
            );
            return Err(Failure::Relay(status.as_u16(), detail));
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Failure::Transport(format!("unexpected reply: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await?
            .ok_or_else(|| Failure::Transport("empty reply".into()))
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, Failure> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await?
            .ok_or_else(|| Failure::Transport("empty reply".into()))
    }

    async fn delete(&self, path: &str) -> Result<(), Failure> {
        self.send::<serde_json::Value>(self.http.delete(format!("{}{path}", self.base)))
            .await
            .map(|_| ())
    }

    /// The raw body of a GET (for NDJSON).
    async fn get_text(&self, path: &str) -> Result<String, Failure> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.key.as_str())
            .send()
            .await
            .map_err(|e| Failure::Transport(format!("cannot reach the relay: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Transport(format!("reading the reply: {e}")))?;
        if !status.is_success() {
            return Err(Failure::Relay(status.as_u16(), text));
        }
        Ok(text)
    }
}

fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(value).map_err(|e| Failure::Transport(format!("unexpected reply: {e}")))
}

/// `now + days`, for sanctions and bans that lift by themselves.
fn expiry(days: Option<u32>) -> Option<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    days.map(|d| now.saturating_add(i64::from(d) * 86_400))
}

fn print_reports(reports: &[ReportSummary]) {
    println!(
        "{:<32}  {:<32}  {:>6}  {:<10}  {:<8}  decision",
        "report", "sender account", "device", "attributed", "status"
    );
    for r in reports {
        println!(
            "{:<32}  {:<32}  {:>6}  {:<10}  {:<8}  {}",
            r.report_id.to_hex(),
            r.sender_account.to_hex(),
            r.sender_device,
            if r.attributed { "yes" } else { "no" },
            r.status,
            r.decision.as_deref().unwrap_or("-")
        );
    }
}

/// What a reviewer reads of a reported content: the text and whether an attachment came with
/// it, or the kind of a content that is not a text.
fn describe_content(bytes: &[u8]) -> String {
    match Content::from_bytes(bytes) {
        Ok(Content {
            body: Body::Text {
                text, attachment, ..
            },
            ..
        }) => {
            if attachment.is_empty() {
                format!("text: {text}")
            } else {
                format!(
                    "text: {text}\n(with an attachment pointer of {} bytes)",
                    attachment.len()
                )
            }
        }
        Ok(_) => "a content that is not a text (receipt, reaction, edit, control)".to_owned(),
        Err(e) => format!(
            "a content that does not decode ({e}), {} bytes",
            bytes.len()
        ),
    }
}

fn decision(
    decision: String,
    days: Option<u32>,
    purge: bool,
    account: Option<haven_protocol::api::Id>,
) -> DecisionRequest {
    DecisionRequest {
        decision,
        expires_at: expiry(days),
        mail: purge.then(|| "purge".to_owned()),
        account_id: account,
    }
}

fn print_decision(d: &DecisionResponse) {
    match &d.account_id {
        Some(account) => println!(
            "{} {}: {} sessions revoked, {} envelopes and {} blobs purged",
            d.decision,
            account.to_hex(),
            d.sessions_revoked,
            d.envelopes_purged,
            d.blobs_purged
        ),
        None => println!("{}", d.decision),
    }
}

fn time(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_string())
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS.get(unit).unwrap_or(&"B"))
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

fn print_overview(o: &AdminOverview) {
    let count =
        |v: Option<u64>| v.map_or_else(|| "- (no moderation)".to_owned(), |v| v.to_string());
    println!("uptime              {} s", o.uptime_secs);
    println!("live sockets        {}", o.live_sockets);
    println!("accounts            {}", o.storage.accounts);
    println!("devices             {}", o.storage.devices);
    println!("queued envelopes    {}", o.storage.queued_envelopes);
    println!("devices with mail   {}", o.storage.devices_with_mail);
    println!("blob storage        {}", bytes(o.storage.blob_bytes));
    println!("vault storage       {}", bytes(o.storage.vault_bytes));
    println!("pending reports     {}", count(o.pending_reports));
    println!("active bans         {}", count(o.active_bans));
    println!();
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8} {:>12} {:>12} {:>12}",
        "requests", "total", "2xx", "4xx", "5xx", "p50", "p95", "p99"
    );
    let row = |name: &str, w: &RequestWindow| {
        println!(
            "{:<8} {:>8} {:>8} {:>8} {:>8} {:>12} {:>12} {:>12}",
            name,
            w.total,
            w.status_2xx,
            w.status_4xx,
            w.status_5xx,
            ms(w.p50_ms),
            ms(w.p95_ms),
            ms(w.p99_ms)
        );
    };
    row("1 min", &o.requests.last_1m);
    row("5 min", &o.requests.last_5m);
    row("15 min", &o.requests.last_15m);
}

fn print_keys(keys: &[AdminKeyInfo]) {
    println!(
        "{:<32}  {:<8}  {:<11}  {:<11}  {:<11}  label",
        "id", "state", "created", "last used", "expires"
    );
    for key in keys {
        let state = if key.revoked_at.is_some() {
            "revoked"
        } else if key.active {
            "active"
        } else {
            "expired"
        };
        println!(
            "{:<32}  {:<8}  {:<11}  {:<11}  {:<11}  {}",
            key.id.to_hex(),
            state,
            key.created_at,
            time(key.last_used_at),
            time(key.expires_at),
            key.label
        );
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| Failure::Transport(e.to_string()))?;
    let client = Client {
        http,
        base: cli.url.trim_end_matches('/').to_owned(),
        key: Zeroizing::new(cli.key),
    };
    match cli.command {
        Command::Overview { json } => {
            let overview: serde_json::Value = client.get("/v1/admin/overview").await?;
            if json {
                println!("{overview}");
            } else {
                let parsed: AdminOverview = serde_json::from_value(overview)
                    .map_err(|e| Failure::Transport(format!("unexpected reply: {e}")))?;
                print_overview(&parsed);
            }
        }
        Command::Keys(KeysCommand::List { json }) => {
            let list: serde_json::Value = client.get("/v1/admin/keys").await?;
            if json {
                println!("{list}");
            } else {
                let parsed: AdminKeyList = serde_json::from_value(list)
                    .map_err(|e| Failure::Transport(format!("unexpected reply: {e}")))?;
                print_keys(&parsed.keys);
            }
        }
        Command::Keys(KeysCommand::Create {
            label,
            expires_days,
        }) => {
            let body = CreateAdminKeyRequest {
                label,
                expires_days,
            };
            let created: CreatedAdminKey = client
                .send(
                    client
                        .http
                        .post(format!("{}/v1/admin/keys", client.base))
                        .json(&body),
                )
                .await?
                .ok_or_else(|| Failure::Transport("empty reply".into()))?;
            let key = Zeroizing::new(created.key);
            println!("{}", key.as_str());
            eprintln!(
                "created admin key {} ({}); it is shown only once, store it now",
                created.info.id.to_hex(),
                created.info.label
            );
        }
        Command::Reports(ReportsCommand::List { status, json }) => {
            let page: serde_json::Value = client
                .get(&format!("/v1/admin/reports?status={status}&limit=500"))
                .await?;
            if json {
                println!("{page}");
            } else {
                print_reports(&parse::<ReportPage>(page)?.reports);
            }
        }
        Command::Reports(ReportsCommand::Show { id, json }) => {
            let detail: serde_json::Value = client.get(&format!("/v1/admin/reports/{id}")).await?;
            if json {
                println!("{detail}");
            } else {
                let detail: ReportDetail = parse(detail)?;
                print_reports(std::slice::from_ref(&detail.summary));
                let content = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    &detail.content,
                )
                .map_err(|e| Failure::Transport(format!("unexpected reply: {e}")))?;
                println!(
                    "message seq {} at {}",
                    detail.message_seq, detail.summary.message_time
                );
                println!("{}", describe_content(&content));
            }
        }
        Command::Reports(ReportsCommand::Decide {
            id,
            decision: what,
            days,
            purge,
        }) => {
            let reply: DecisionResponse = client
                .post(
                    &format!("/v1/admin/reports/{id}/decision"),
                    &decision(what, days, purge, None),
                )
                .await?;
            print_decision(&reply);
        }
        Command::Bans(BansCommand::Accounts(AccountBansCommand::List)) => {
            let list: Vec<SanctionView> = client.get("/v1/admin/bans/accounts").await?;
            for s in list {
                println!(
                    "{}  {:<9}  until {}  (since {})",
                    s.account_id.to_hex(),
                    s.kind,
                    time(s.expires_at),
                    s.created_at
                );
            }
        }
        Command::Bans(BansCommand::Accounts(AccountBansCommand::Add {
            account,
            kind,
            days,
            purge,
        })) => {
            let id = account
                .parse()
                .map_err(|_| Failure::Transport(format!("{account:?} is not an account id")))?;
            let reply: DecisionResponse = client
                .post(
                    "/v1/admin/bans/accounts",
                    &decision(kind, days, purge, Some(id)),
                )
                .await?;
            print_decision(&reply);
        }
        Command::Bans(BansCommand::Accounts(AccountBansCommand::Remove { account })) => {
            client
                .delete(&format!("/v1/admin/bans/accounts/{account}"))
                .await?;
            println!("lifted the sanction of {account}");
        }
        Command::Bans(BansCommand::Addresses(AddressBansCommand::List)) => {
            let list: Vec<AddressBanView> = client.get("/v1/admin/bans/addresses").await?;
            for b in list {
                println!(
                    "{}  until {}  (since {})",
                    b.prefix_hash,
                    time(b.expires_at),
                    b.created_at
                );
            }
        }
        Command::Bans(BansCommand::Addresses(AddressBansCommand::Add { address, days })) => {
            let view: AddressBanView = client
                .post(
                    "/v1/admin/bans/addresses",
                    &AddressBanRequest {
                        address,
                        expires_at: expiry(days),
                    },
                )
                .await?;
            println!("banned prefix {}", view.prefix_hash);
        }
        Command::Bans(BansCommand::Addresses(AddressBansCommand::Remove { prefix })) => {
            client
                .delete(&format!("/v1/admin/bans/addresses/{prefix}"))
                .await?;
            println!("lifted the address ban {prefix}");
        }
        Command::Audit {
            kind,
            since,
            limit,
            json,
        } => {
            let mut path = format!("/v1/admin/audit?limit={limit}");
            if let Some(kind) = kind {
                path.push_str(&format!("&kind={kind}"));
            }
            if let Some(since) = since {
                path.push_str(&format!("&since={since}"));
            }
            let page: serde_json::Value = client.get(&path).await?;
            if json {
                println!("{page}");
            } else {
                for e in page["events"].as_array().into_iter().flatten() {
                    println!(
                        "{:>8}  {:>11}  {:<22}  subject {}  actor {}  {}",
                        e["id"],
                        e["at"],
                        e["kind"].as_str().unwrap_or("?"),
                        e["subject"].as_str().unwrap_or("-"),
                        e["actor"].as_str().unwrap_or("-"),
                        e["detail"]
                    );
                }
            }
        }
        Command::AuditExport { since } => {
            let path = since.map_or_else(
                || "/v1/admin/audit/export".to_owned(),
                |s| format!("/v1/admin/audit/export?since={s}"),
            );
            print!("{}", client.get_text(&path).await?);
        }
        Command::Keys(KeysCommand::Revoke { id }) => {
            client
                .send::<serde_json::Value>(
                    client
                        .http
                        .delete(format!("{}/v1/admin/keys/{id}", client.base)),
                )
                .await?;
            eprintln!("revoked admin key {id}");
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Relay(status, detail)) => {
            eprintln!("haven-admin: the relay answered {status} {detail}");
            ExitCode::FAILURE
        }
        Err(Failure::Transport(detail)) => {
            eprintln!("haven-admin: {detail}");
            ExitCode::FAILURE
        }
    }
}

//! `haven-admin`: the relay operator's command line, over the admin API
//! (`docs/PROTOCOL.md` §11.19).
//!
//! ```text
//! haven-admin overview [--json]
//! haven-admin keys list [--json]
//! haven-admin keys create --label LABEL [--expires-days N]
//! haven-admin keys revoke ID
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
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// The Haven relay operator's command line.
#[derive(Debug, Parser)]
#[command(
    name = "haven-admin",
    version,
    about = "The Haven relay operator's command line: the overview and admin keys, over the admin API.",
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

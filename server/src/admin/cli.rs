//! `haven-relay admin …`: admin key management on the configured database, without a running
//! relay (how the first key is made).
//!
//! ```text
//! haven-relay [--config PATH] admin create-key --label LABEL [--expires-days N]
//! haven-relay [--config PATH] admin list-keys
//! haven-relay [--config PATH] admin revoke-key ID
//! haven-relay [--config PATH] admin rotate-franking-key
//! ```
//!
//! `rotate-franking-key` replaces the stored franking secret (PROTOCOL.md §16.1, §16.8) with a
//! fresh one and keeps the old one, retired, for the report window (reports of messages franked
//! under it still verify; after the window it is erased at the next start). Each instance
//! publishes and uses the new key from its next start; restart them all. It refuses when the
//! secret comes from the settings (`moderation.franking_secret`): rotate it there. The audit log
//! records a `key_rotation` event (no key material).
//!
//! `create-key` prints the key alone on stdout (so `KEY=$(haven-relay admin create-key …)`
//! works) and its id on stderr; the key is never shown again.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::franking::verify::FrankingSecret;

use crate::admin::keys;
use crate::audit::store::NewAuditEvent;
use crate::audit::{AuditDetail, AuditKind};
use crate::db::{PgStore, SqliteStore, Store, StoreError};
use crate::error::AppError;
use crate::ids::Id;
use crate::secrets::{FRANKING_SECRET_NAME, Key32, RETIRED_FRANKING_PREFIX};
use crate::settings::Settings;

/// Usage of the admin subcommands.
pub const USAGE: &str = "usage: haven-relay [--config PATH] admin create-key --label LABEL [--expires-days N]\n       haven-relay [--config PATH] admin list-keys\n       haven-relay [--config PATH] admin revoke-key ID\n       haven-relay [--config PATH] admin rotate-franking-key";

/// One admin subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// Create a key and print it once.
    CreateKey {
        /// Its label.
        label: String,
        /// Days until it expires; `None`: never.
        expires_days: Option<u32>,
    },
    /// List every key (no secrets).
    ListKeys,
    /// Revoke a key.
    RevokeKey {
        /// The key's id (hex).
        id: String,
    },
    /// Replace the stored franking secret, keeping the old one for the report window.
    RotateFrankingKey,
}

/// Errors of the admin subcommands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminCliError {
    /// The arguments were not understood.
    #[error("{0}\n{USAGE}")]
    Usage(String),
    /// The database URL has an unsupported scheme.
    #[error("unsupported database url scheme (use sqlite: or postgres://)")]
    UnsupportedDatabase,
    /// Opening the store or a query failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request was refused (bad label or expiry).
    #[error("{0}")]
    Refused(AppError),
    /// No key has that id.
    #[error("no admin key has id {0}")]
    UnknownKey(String),
    /// The franking secret comes from the settings, not the database.
    #[error(
        "moderation.franking_secret is configured: rotate it in the settings (move the old value to moderation.previous_franking_secrets for the report window)"
    )]
    ConfiguredFrankingSecret,
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

/// Parses the arguments after `admin`.
pub fn parse(args: &[String]) -> Result<AdminCommand, AdminCliError> {
    let usage = |msg: &str| AdminCliError::Usage(msg.to_owned());
    let (command, rest) = args
        .split_first()
        .ok_or_else(|| usage("missing admin subcommand"))?;
    match command.as_str() {
        "create-key" => {
            let mut label = None;
            let mut expires_days = None;
            let mut rest = rest.iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--label" => {
                        label = Some(
                            rest.next()
                                .ok_or_else(|| usage("--label needs a value"))?
                                .clone(),
                        )
                    }
                    "--expires-days" => {
                        let days = rest
                            .next()
                            .ok_or_else(|| usage("--expires-days needs a value"))?;
                        expires_days = Some(
                            days.parse()
                                .map_err(|_| usage("--expires-days needs a number of days"))?,
                        );
                    }
                    other => {
                        return Err(AdminCliError::Usage(format!("unknown argument {other:?}")));
                    }
                }
            }
            let label = label.ok_or_else(|| usage("create-key needs --label"))?;
            Ok(AdminCommand::CreateKey {
                label,
                expires_days,
            })
        }
        "list-keys" if rest.is_empty() => Ok(AdminCommand::ListKeys),
        "rotate-franking-key" if rest.is_empty() => Ok(AdminCommand::RotateFrankingKey),
        "revoke-key" => match rest {
            [id] => Ok(AdminCommand::RevokeKey { id: id.clone() }),
            _ => Err(usage("revoke-key needs exactly one key id")),
        },
        other => Err(AdminCliError::Usage(format!(
            "unknown admin subcommand {other:?}"
        ))),
    }
}

/// Opens the database of `settings` (running its migrations) and runs `command`, writing to
/// `out` (the key, the listing) and `err` (notes for the operator).
pub async fn run(
    settings: &Settings,
    command: &AdminCommand,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> Result<(), AdminCliError> {
    if *command == AdminCommand::RotateFrankingKey && settings.moderation.franking_secret.is_some()
    {
        return Err(AdminCliError::ConfiguredFrankingSecret);
    }
    let url = settings.database_url.expose();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect_with(url, &settings.database).await?;
        let done = run_on(&store, command, out, err).await;
        store.close().await;
        done
    } else if url.starts_with("sqlite:") {
        let store = SqliteStore::connect_with(url, &settings.database).await?;
        let done = run_on(&store, command, out, err).await;
        store.close().await;
        done
    } else {
        Err(AdminCliError::UnsupportedDatabase)
    }
}

/// Runs `command` on `store`.
pub async fn run_on<S: Store>(
    store: &S,
    command: &AdminCommand,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> Result<(), AdminCliError> {
    let now = crate::clock::now_i64();
    match command {
        AdminCommand::CreateKey {
            label,
            expires_days,
        } => {
            let created = keys::create_key(store, label, *expires_days, now)
                .await
                .map_err(AdminCliError::Refused)?;
            writeln!(out, "{}", &*created.secret.encode())?;
            writeln!(
                err,
                "created admin key {} ({}); it is shown only once, store it now",
                created.record.id, created.record.label
            )?;
        }
        AdminCommand::ListKeys => {
            writeln!(
                out,
                "{:<32}  {:<8}  {:<11}  {:<11}  {:<11}  label",
                "id", "state", "created", "last used", "expires"
            )?;
            for key in store.list_admin_keys().await? {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else if key.is_active(now) {
                    "active"
                } else {
                    "expired"
                };
                let time = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
                writeln!(
                    out,
                    "{:<32}  {:<8}  {:<11}  {:<11}  {:<11}  {}",
                    key.id,
                    state,
                    key.created_at,
                    time(key.last_used_at),
                    time(key.expires_at),
                    key.label
                )?;
            }
        }
        AdminCommand::RevokeKey { id } => {
            let parsed: Id = id
                .parse()
                .map_err(|_| AdminCliError::UnknownKey(id.clone()))?;
            if !keys::revoke_key(store, &parsed, now).await? {
                return Err(AdminCliError::UnknownKey(id.clone()));
            }
            writeln!(err, "revoked admin key {parsed}")?;
        }
        AdminCommand::RotateFrankingKey => {
            // The current secret exists once any relay started on this database; make sure.
            store
                .secret_or_insert(FRANKING_SECRET_NAME, Key32::random().expose())
                .await?;
            let fresh = Key32::random();
            let retired_as = format!("{RETIRED_FRANKING_PREFIX}{now}");
            if !store
                .rotate_secret(FRANKING_SECRET_NAME, fresh.expose(), &retired_as)
                .await?
            {
                return Err(AdminCliError::Store(StoreError::Corrupt {
                    table: "server_secrets",
                }));
            }
            store
                .record_audit(&NewAuditEvent {
                    kind: AuditKind::KeyRotation,
                    at: now,
                    subject: None,
                    actor: None,
                    detail: AuditDetail::none().reason("franking_key"),
                })
                .await?;
            let public = FrankingSecret::from_bytes(*fresh.expose()).public();
            writeln!(out, "{}", STANDARD.encode(public.encode()))?;
            writeln!(
                err,
                "rotated the franking key; the old one is kept for the report window. Restart every relay instance to publish the new key (printed above)."
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_the_subcommands() {
        assert_eq!(
            parse(&args(&[
                "create-key",
                "--label",
                "ops",
                "--expires-days",
                "30"
            ]))
            .unwrap(),
            AdminCommand::CreateKey {
                label: "ops".into(),
                expires_days: Some(30)
            }
        );
        assert_eq!(
            parse(&args(&["list-keys"])).unwrap(),
            AdminCommand::ListKeys
        );
        assert_eq!(
            parse(&args(&["revoke-key", "ab"])).unwrap(),
            AdminCommand::RevokeKey { id: "ab".into() }
        );
        assert!(parse(&args(&["create-key"])).is_err());
        assert!(
            parse(&args(&[
                "create-key",
                "--label",
                "x",
                "--expires-days",
                "x"
            ]))
            .is_err()
        );
        assert!(parse(&args(&["revoke-key"])).is_err());
        assert!(parse(&args(&["nope"])).is_err());
        assert!(parse(&args(&[])).is_err());
    }
}

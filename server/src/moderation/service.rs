//! The moderation service: verifying and storing abuse reports (PROTOCOL.md §16.6), decisions
//! and account sanctions, and address bans. It takes the store and the keys it uses, never the
//! application state; the routes map its errors to HTTP.
//!
//! Sanctions and address bans are read on hot paths (every request for bans, every send for
//! sanctions), so each instance serves them from a cache it reloads from the database when it
//! is older than `moderation.cache_secs`, and at once after a change it made itself. A ban made
//! on another instance therefore takes effect here within `cache_secs`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_protocol::franking::verify::{FrankingError, verify_report};
use haven_protocol::franking::{Destination, IDENTITY_KEY_LEN, Report, report_id};
use subtle::ConstantTimeEq;
use tokio::sync::RwLock;

use crate::channels::service::ChannelToken;
use crate::clock::now_i64;
use crate::db::{Store, StoreError};
use crate::ids::Id;
use crate::moderation::keys::ModerationKeys;
use crate::moderation::settings::ModerationSettings;
use crate::moderation::store::{
    AddressBanRecord, MailPurge, NewReport, ReportRecord, SanctionRecord,
};

/// Why a report was refused (PROTOCOL.md §16.9).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The body does not decode (§16.2).
    #[error("the report does not decode")]
    Invalid,
    /// The reporter is not the destination's account, or lacks the channel's read token.
    #[error("the reporter is not the recipient")]
    NotRecipient,
    /// The message is older than the report window.
    #[error("the message is older than the report window")]
    Expired,
    /// §16.6 steps 3–5 failed: not this relay's key, not delivered, or altered content.
    #[error("the report does not verify: {0}")]
    Unverified(FrankingError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing the report failed (cannot happen for bodies under the AEAD's limit).
    #[error("sealing the report failed")]
    Seal,
}

/// A filed (or earlier filed, for a replay) report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filed {
    /// The report id.
    pub id: Id,
    /// Whether the sender tag verified.
    pub attributed: bool,
    /// Whether this call stored it (else it is a replay of a stored report).
    pub new: bool,
    /// The reported sender account.
    pub sender: Id,
}

/// A sanction that refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the account is {}", if self.banned { "banned" } else { "suspended" })]
pub struct Sanctioned {
    /// Banned (else suspended).
    pub banned: bool,
    /// When it lifts (`None`: never).
    pub expires_at: Option<i64>,
}

/// A moderation decision on a report or an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No action.
    Dismiss,
    /// Recorded only.
    Warn,
    /// Logins, refreshes, sends and certificates refused until `expires_at`.
    Suspend,
    /// As suspend, and every session revoked.
    Ban,
}

impl Decision {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dismiss => "dismiss",
            Self::Warn => "warn",
            Self::Suspend => "suspend",
            Self::Ban => "ban",
        }
    }
}

/// Why a decision could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// No such report.
    #[error("no such report")]
    NotFound,
    /// The report was already decided.
    #[error("the report was already decided")]
    AlreadyDecided,
    /// A sanction on an unattributed report: the relay could not verify who sent it.
    #[error("the report is unattributed")]
    Unattributed,
    /// The sanctioned account does not exist (any more).
    #[error("no such account")]
    AccountNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a sanction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sessions revoked (bans).
    pub sessions_revoked: u64,
    /// What `mail: purge` removed.
    pub purged: Option<MailPurge>,
}

#[derive(Default)]
struct Cache {
    loaded_at: Option<Instant>,
    sanctions: HashMap<Id, SanctionRecord>,
    bans: HashMap<[u8; 32], Option<i64>>,
}

/// The moderation service (cheap to clone).
pub struct Moderation<S> {
    store: S,
    keys: Arc<ModerationKeys>,
    settings: ModerationSettings,
    cache: Arc<RwLock<Cache>>,
}

impl<S: Clone> Clone for Moderation<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            keys: Arc::clone(&self.keys),
            settings: self.settings.clone(),
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<S: Store> Moderation<S> {
    /// The service over `store` with `keys`.
    pub fn new(store: S, keys: Arc<ModerationKeys>, settings: ModerationSettings) -> Self {
        Self {
            store,
            keys,
            settings,
            cache: Arc::new(RwLock::new(Cache::default())),
        }
    }

    /// The keys.
    pub fn keys(&self) -> &ModerationKeys {
        &self.keys
    }

    /// The settings.
    pub fn settings(&self) -> &ModerationSettings {
        &self.settings
    }

    /// Verifies a report (PROTOCOL.md §16.6) from `reporter` (with the channel read token for
    /// a channel destination) and stores it sealed. A replay of a stored report answers the
    /// stored outcome and writes nothing.
    ///
    /// The order differs from §16.6 in one point: the replay check comes after the MAC checks,
    /// so an altered copy of a filed report is refused as altered rather than answered with the
    /// genuine report's outcome; and an attributed report of a message supersedes a pending
    /// unattributed one (same id), so a damaged first copy does not hide the sender.
    ///
    /// # Errors
    /// [`ReportError`].
    pub async fn file_report(
        &self,
        reporter: Id,
        body: &[u8],
        read_token: Option<&ChannelToken>,
    ) -> Result<Filed, ReportError> {
        let report = Report::decode(body).map_err(|_| ReportError::Invalid)?;
        let now = now_i64();
        match report.destination {
            Destination::Device { account, .. } => {
                if Id::from(account) != reporter {
                    return Err(ReportError::NotRecipient);
                }
            }
            Destination::Channel { channel_id } => {
                let token = read_token.ok_or(ReportError::NotRecipient)?;
                let channel = self
                    .store
                    .channel(&Id::from(channel_id), now)
                    .await?
                    .ok_or(ReportError::NotRecipient)?;
                if !bool::from(token.hash().as_slice().ct_eq(channel.read_hash.as_slice())) {
                    return Err(ReportError::NotRecipient);
                }
            }
            _ => return Err(ReportError::Invalid),
        }
        let window = i64::try_from(self.settings.report_window_days.saturating_mul(86_400))
            .unwrap_or(i64::MAX);
        let time = i64::try_from(report.time).unwrap_or(i64::MAX);
        if time < now.saturating_sub(window) {
            return Err(ReportError::Expired);
        }
        let secret = self
            .keys
            .secret_for(&report.franking_key)
            .ok_or(ReportError::Unverified(FrankingError::WrongFrankingKey))?;
        let sender = Id::from(report.sender_account);
        // The identity key on record for the claimed sender device; without one (unknown or
        // not an SDK identity key) the tag cannot be checked and the report is unattributed.
        // A device unlinked since keeps its key on record for the report window (device
        // numbers are never reused, so the number names that device).
        let key = match self
            .store
            .device_by_number(&sender, report.sender_device)
            .await?
        {
            Some(device) => Some(device.identity_key),
            None => {
                self.store
                    .retired_identity_key(&sender, report.sender_device, now.saturating_sub(window))
                    .await?
            }
        };
        let identity: Option<[u8; IDENTITY_KEY_LEN]> =
            key.and_then(|k| k.as_slice().try_into().ok());
        let attributed = match identity {
            Some(ik) => match verify_report(&report, secret, self.keys.stamp_key(), &ik) {
                Ok(()) => true,
                Err(FrankingError::TagMismatch | FrankingError::InvalidPublicKey) => false,
                Err(other) => return Err(ReportError::Unverified(other)),
            },
            None => match verify_report(&report, secret, self.keys.stamp_key(), &[0; 64]) {
                // Steps 3–5 passed (the all-zero key fails step 6 only).
                Ok(()) | Err(FrankingError::TagMismatch | FrankingError::InvalidPublicKey) => false,
                Err(other) => return Err(ReportError::Unverified(other)),
            },
        };
        let id = Id::from(report_id(&report.stamp));
        let sealed = self
            .keys
            .seal(id.as_bytes(), body)
            .ok_or(ReportError::Seal)?;
        let new = NewReport {
            id,
            reporter,
            sender_account: sender,
            sender_device: report.sender_device,
            destination: report.destination.encode().to_vec(),
            message_seq: i64::try_from(report.seq).unwrap_or(i64::MAX),
            message_time: time,
            attributed,
            sealed,
            created_at: now,
        };
        if self.store.insert_report(&new).await? {
            return Ok(Filed {
                id,
                attributed,
                new: true,
                sender,
            });
        }
        // The same message again. An attributed report supersedes a pending unattributed one
        // (a reporter whose first copy had a damaged tag); otherwise the first outcome stands.
        if attributed && self.store.upgrade_report(&new).await? {
            return Ok(Filed {
                id,
                attributed,
                new: true,
                sender,
            });
        }
        let stored = self.store.report(&id).await?.ok_or(ReportError::Invalid)?;
        Ok(Filed {
            id,
            attributed: stored.report.attributed,
            new: false,
            sender: stored.report.sender_account,
        })
    }

    /// A stored report and its opened body (for the reviewer).
    ///
    /// # Errors
    /// The store.
    pub async fn open_report(
        &self,
        id: &Id,
    ) -> Result<Option<(ReportRecord, Option<Report>)>, StoreError> {
        let Some(record) = self.store.report(id).await? else {
            return Ok(None);
        };
        let opened = self
            .keys
            .open(id.as_bytes(), &record.report.sealed)
            .and_then(|body| Report::decode(&body).ok());
        Ok(Some((record, opened)))
    }

    /// Applies `decision` to a pending report: records it, and sanctions the sender for
    /// suspend/ban (only an attributed report can sanction).
    ///
    /// # Errors
    /// [`DecisionError`].
    pub async fn decide(
        &self,
        report: &Id,
        decision: Decision,
        expires_at: Option<i64>,
        purge: bool,
        actor: Option<Id>,
    ) -> Result<(ReportRecord, Applied), DecisionError> {
        let record = self
            .store
            .report(report)
            .await?
            .ok_or(DecisionError::NotFound)?;
        if record.status != "pending" {
            return Err(DecisionError::AlreadyDecided);
        }
        let sanction = matches!(decision, Decision::Suspend | Decision::Ban);
        if sanction && !record.report.attributed {
            return Err(DecisionError::Unattributed);
        }
        let applied = if sanction {
            self.sanction(
                &record.report.sender_account,
                decision == Decision::Ban,
                expires_at,
                purge,
            )
            .await?
        } else {
            Applied::default()
        };
        if !self
            .store
            .decide_report(report, decision.as_str(), actor, now_i64())
            .await?
        {
            return Err(DecisionError::AlreadyDecided);
        }
        Ok((record, applied))
    }

    /// Suspends or bans `account` until `expires_at`; a ban revokes every session. With
    /// `purge`, also [`ModerationStore::purge_account_mail`](crate::moderation::store::ModerationStore::purge_account_mail).
    ///
    /// # Errors
    /// [`DecisionError::AccountNotFound`], the store.
    pub async fn sanction(
        &self,
        account: &Id,
        banned: bool,
        expires_at: Option<i64>,
        purge: bool,
    ) -> Result<Applied, DecisionError> {
        let now = now_i64();
        let record = SanctionRecord {
            account: *account,
            banned,
            expires_at,
            created_at: now,
        };
        if !self.store.put_sanction(&record).await? {
            return Err(DecisionError::AccountNotFound);
        }
        let mut applied = Applied::default();
        if banned {
            applied.sessions_revoked = self.store.revoke_sessions(account).await?;
        }
        if purge {
            applied.purged = Some(self.store.purge_account_mail(account, now).await?);
        }
        self.reload().await;
        Ok(applied)
    }

    /// Lifts an account's sanction; `false` if it had none.
    ///
    /// # Errors
    /// The store.
    pub async fn lift(&self, account: &Id) -> Result<bool, StoreError> {
        let lifted = self.store.remove_sanction(account).await?;
        self.reload().await;
        Ok(lifted)
    }

    /// The sanctions in force.
    ///
    /// # Errors
    /// The store.
    pub async fn sanctions(&self) -> Result<Vec<SanctionRecord>, StoreError> {
        self.store.sanctions(now_i64()).await
    }

    /// Refuses a sanctioned account (from the cache; an expired sanction no longer counts).
    ///
    /// # Errors
    /// [`Sanctioned`].
    pub async fn check_account(&self, account: &Id) -> Result<(), Sanctioned> {
        self.refresh_if_stale().await;
        let cache = self.cache.read().await;
        match cache.sanctions.get(account) {
            Some(s) if s.expires_at.is_none_or(|at| at > now_i64()) => Err(Sanctioned {
                banned: s.banned,
                expires_at: s.expires_at,
            }),
            _ => Ok(()),
        }
    }

    /// Like [`Self::check_account`] but read from the database (logins: rare, and must see a
    /// ban made on another instance at once).
    ///
    /// # Errors
    /// [`Sanctioned`] inside `Ok`, the store outside.
    pub async fn check_account_now(
        &self,
        account: &Id,
    ) -> Result<Result<(), Sanctioned>, StoreError> {
        let now = now_i64();
        let found = self
            .store
            .sanctions(now)
            .await?
            .into_iter()
            .find(|s| s.account == *account);
        Ok(match found {
            Some(s) => Err(Sanctioned {
                banned: s.banned,
                expires_at: s.expires_at,
            }),
            None => Ok(()),
        })
    }

    /// The keyed hash of `ip`'s prefix at the configured lengths.
    pub fn prefix_hash(&self, ip: IpAddr) -> [u8; 32] {
        self.keys.prefix_hash(
            ip,
            self.settings.ipv4_prefix_len,
            self.settings.ipv6_prefix_len,
        )
    }

    /// Whether requests from `ip` are refused.
    pub async fn address_banned(&self, ip: IpAddr) -> bool {
        let hash = self.prefix_hash(ip);
        self.refresh_if_stale().await;
        let cache = self.cache.read().await;
        match cache.bans.get(&hash) {
            Some(expires) => expires.is_none_or(|at| at > now_i64()),
            None => false,
        }
    }

    /// Bans a prefix hash until `expires_at`.
    ///
    /// # Errors
    /// The store.
    pub async fn ban_prefix(
        &self,
        prefix_hash: [u8; 32],
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.store
            .put_address_ban(&AddressBanRecord {
                prefix_hash,
                expires_at,
                created_at: now_i64(),
            })
            .await?;
        self.reload().await;
        Ok(())
    }

    /// Lifts a prefix ban; `false` if there was none.
    ///
    /// # Errors
    /// The store.
    pub async fn unban_prefix(&self, prefix_hash: &[u8; 32]) -> Result<bool, StoreError> {
        let removed = self.store.remove_address_ban(prefix_hash).await?;
        self.reload().await;
        Ok(removed)
    }

    /// The prefix bans in force.
    ///
    /// # Errors
    /// The store.
    pub async fn address_bans(&self) -> Result<Vec<AddressBanRecord>, StoreError> {
        self.store.address_bans(now_i64()).await
    }

    async fn refresh_if_stale(&self) {
        let max_age = Duration::from_secs(self.settings.cache_secs);
        let fresh = {
            let cache = self.cache.read().await;
            cache.loaded_at.is_some_and(|at| at.elapsed() < max_age)
        };
        if !fresh {
            self.reload().await;
        }
    }

    /// Reads the sanction and ban lists again. On a store error the old lists stay in use
    /// (and are retried on the next request).
    async fn reload(&self) {
        let now = now_i64();
        let mut cache = self.cache.write().await;
        let loaded = async {
            let sanctions = self.store.sanctions(now).await?;
            let bans = self.store.address_bans(now).await?;
            Ok::<_, StoreError>((sanctions, bans))
        }
        .await;
        match loaded {
            Ok((sanctions, bans)) => {
                cache.sanctions = sanctions.into_iter().map(|s| (s.account, s)).collect();
                cache.bans = bans
                    .into_iter()
                    .map(|b| (b.prefix_hash, b.expires_at))
                    .collect();
                cache.loaded_at = Some(Instant::now());
            }
            Err(err) => tracing::warn!(%err, "moderation lists not reloaded"),
        }
    }
}

/// Deletes expired sanctions and bans, reports decided more than `report_retention_days` ago
/// and identity keys of devices unlinked more than `report_window_days` ago, every
/// `reap_interval_secs` until `stop` is set.
pub async fn reap_task<S: Store>(
    store: S,
    settings: ModerationSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(settings.reap_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention =
        i64::try_from(settings.report_retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let window =
        i64::try_from(settings.report_window_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = now_i64();
        match store
            .reap_moderation(
                now,
                now.saturating_sub(retention),
                now.saturating_sub(window),
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "expired moderation rows reaped"),
            Err(err) => tracing::warn!(%err, "moderation reaper failed"),
        }
    }
}

//! The application state the router hands its handlers. Only the router and the HTTP handlers
//! see it; services take the parts they use through their own context traits
//! ([`crate::mail::service::MailContext`], [`crate::limits::LimitContext`],
//! [`crate::accounts::session::SessionCheck`], [`crate::client_addr::ClientAddrSource`]),
//! which this state implements.

use std::sync::Arc;

use crate::db::Store;
use crate::db::error::StoreResult;
use crate::ids::Id;
use crate::limits::Limits;
use crate::realtime::ephemeral::EphemeralHub;
use crate::realtime::hub::Hub;
use crate::secrets::{Key32, ServerSecrets};
use crate::settings::Settings;

/// State shared by all handlers (cheap to clone).
pub struct AppState<S: Store> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    settings: Settings,
    secrets: ServerSecrets,
    limits: Limits,
    /// In-process wake-up hints for sockets.
    hub: Hub,
    /// In-process routing of ephemeral (never stored) messages to live sockets.
    ephemeral: EphemeralHub,
    /// The security audit log.
    audit: crate::audit::Audit<S>,
    /// Reports, sanctions and bans.
    moderation: crate::moderation::service::Moderation<S>,
    /// The blob store, installed once at launch (absent in tests that build state directly).
    blobs: std::sync::OnceLock<Arc<crate::blobs::BlobService>>,
    /// The push service, installed once at launch when push is enabled.
    push: std::sync::OnceLock<Arc<crate::push::service::PushService>>,
}

impl<S: Store> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> AppState<S> {
    /// Builds the state.
    pub fn new(store: S, settings: Settings, secrets: ServerSecrets, limits: Limits) -> Self {
        let ephemeral = EphemeralHub::new();
        let audit = crate::audit::Audit::new(store.clone());
        let moderation = crate::moderation::service::Moderation::new(
            store.clone(),
            Arc::new(crate::moderation::keys::ModerationKeys::from_secrets(
                &secrets.moderation,
            )),
            settings.moderation.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                audit,
                moderation,
                store,
                settings,
                secrets,
                limits,
                hub: Hub::with_ephemeral(ephemeral.clone()),
                ephemeral,
                blobs: std::sync::OnceLock::new(),
                push: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The server secrets.
    pub fn secrets(&self) -> &ServerSecrets {
        &self.inner.secrets
    }

    /// The rate limiters.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The wake-up hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The ephemeral-message router.
    pub fn ephemeral(&self) -> &EphemeralHub {
        &self.inner.ephemeral
    }

    /// The blob service, if one was installed.
    pub fn blobs(&self) -> Option<&crate::blobs::BlobService> {
        self.inner.blobs.get().map(Arc::as_ref)
    }

    /// Installs the blob service (once; later calls are ignored).
    pub fn set_blobs(&self, service: Arc<crate::blobs::BlobService>) {
        let _ = self.inner.blobs.set(service);
    }

    /// The push service, if push is enabled (installed at launch).
    pub fn push(&self) -> Option<&crate::push::service::PushService> {
        self.inner.push.get().map(Arc::as_ref)
    }

    /// Installs the push service (once; later calls are ignored).
    pub fn set_push(&self, service: Arc<crate::push::service::PushService>) {
        let _ = self.inner.push.set(service);
    }

    /// The security audit log.
    pub fn audit(&self) -> &crate::audit::Audit<S> {
        &self.inner.audit
    }

    /// The moderation service.
    pub fn moderation(&self) -> &crate::moderation::service::Moderation<S> {
        &self.inner.moderation
    }
}

impl<S: Store> crate::accounts::session::SessionCheck for AppState<S> {
    fn jwt_key(&self) -> &Key32 {
        &self.inner.secrets.jwt_key
    }

    async fn session_valid(&self, account: &Id, device: &Id, family: &Id) -> StoreResult<bool> {
        self.inner
            .store
            .session_valid(account, device, family)
            .await
    }
}

impl<S: Store> crate::client_addr::ClientAddrSource for AppState<S> {
    fn proxy_hops(&self) -> u8 {
        self.inner.settings.proxy_hops()
    }

    fn addr_prefixes(&self) -> (u8, u8) {
        (
            self.inner.settings.addr_prefix_v4,
            self.inner.settings.addr_prefix_v6,
        )
    }

    fn addr_key(&self) -> &Key32 {
        &self.inner.secrets.addr_key
    }
}

impl<S: Store> crate::limits::LimitContext for AppState<S> {
    fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn limit_pepper(&self) -> &Key32 {
        &self.inner.secrets.username_pepper
    }

    async fn rate_limited(&self, route: &axum::extract::MatchedPath) {
        self.inner.audit.rate_limited(route).await;
    }
}

impl<S: Store> crate::mail::service::MailContext for AppState<S> {
    type Store = S;

    fn store(&self) -> &S {
        &self.inner.store
    }

    fn mail_settings(&self) -> &crate::settings::MailSettings {
        &self.inner.settings.mail
    }

    fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    fn ephemeral(&self) -> &EphemeralHub {
        &self.inner.ephemeral
    }

    fn mail_queued_offline(&self, account: Id, device: u32) {
        if let Some(push) = self.inner.push.get() {
            push.mail_queued(crate::realtime::hub::DeviceKey { account, device });
        }
    }
}

impl<S: Store> crate::channels::service::ChannelContext for AppState<S> {
    type Store = S;

    fn store(&self) -> &S {
        &self.inner.store
    }

    fn channel_settings(&self) -> &crate::settings::ChannelSettings {
        &self.inner.settings.channels
    }

    fn hub(&self) -> &Hub {
        &self.inner.hub
    }
}

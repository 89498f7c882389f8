//! The application state as the admin feature's [`AdminContext`].

use crate::admin::AdminContext;
use crate::app::state::AppState;
use crate::db::Store;

impl<S: Store> AdminContext for AppState<S> {
    type Store = S;

    fn admin_store(&self) -> &S {
        self.store()
    }

    fn live_sockets(&self) -> u64 {
        u64::try_from(self.hub().live_sockets()).unwrap_or(u64::MAX)
    }

    async fn moderation_figures(
        &self,
    ) -> Result<crate::admin::overview::ModerationFigures, crate::error::AppError> {
        let pending = self.store().count_reports("pending").await?;
        let accounts = self.moderation().sanctions().await?.len();
        let addresses = self.moderation().address_bans().await?.len();
        let bans = u64::try_from(accounts.saturating_add(addresses)).unwrap_or(u64::MAX);
        Ok(crate::admin::overview::ModerationFigures {
            pending_reports: Some(pending),
            active_bans: Some(bans),
        })
    }

    async fn audit_key_event(&self, created: bool, key: crate::ids::Id, actor: crate::ids::Id) {
        let kind = if created {
            crate::audit::AuditKind::AdminKeyCreated
        } else {
            crate::audit::AuditKind::AdminKeyRevoked
        };
        self.audit()
            .record(
                kind,
                Some(key),
                Some(actor),
                crate::audit::AuditDetail::none(),
            )
            .await;
    }
}

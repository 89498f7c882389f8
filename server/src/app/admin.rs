//! The application state as the admin feature's [`AdminContext`].

use axum::http::request::Parts;

use crate::admin::AdminContext;
use crate::app::state::AppState;
use crate::db::Store;
use crate::limits::Limits;
use crate::settings::Settings;

impl<S: Store> AdminContext for AppState<S> {
    type Store = S;

    fn admin_store(&self) -> &S {
        self.store()
    }

    fn limits(&self) -> &Limits {
        AppState::limits(self)
    }

    fn settings(&self) -> &Settings {
        AppState::settings(self)
    }

    fn live_sockets(&self) -> u64 {
        u64::try_from(self.hub().live_sockets()).unwrap_or(u64::MAX)
    }

    fn client_key(&self, parts: &Parts) -> Option<String> {
        // The same keyed hash as `accounts::session::ClientKey`.
        crate::accounts::session::client_ip(parts, AppState::settings(self).trusted_proxy).map(
            |ip| {
                hex::encode(
                    self.addr_key()
                        .hmac(b"client-addr", ip.to_string().as_bytes()),
                )
            },
        )
    }
}

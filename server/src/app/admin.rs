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
}

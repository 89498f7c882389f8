//! The tokio runtime every async export runs on.
//!
//! uniffi lets the host's executor poll Rust futures, but reqwest and tokio-tungstenite need a
//! tokio reactor, and the messenger's connection loop must keep running between host calls. So
//! each async export spawns its work here and the host only awaits the `JoinHandle`, which
//! wakes any executor. A panic inside a task becomes [`HavenError::Internal`], not an abort.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::error::HavenError;

static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

/// The shared runtime (two workers: the SDK's work is mostly waiting on the network).
pub(crate) fn get() -> Result<&'static Runtime, HavenError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("haven-ffi")
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
        .ok_or_else(|| HavenError::Internal("the async runtime could not be started".into()))
}

fn joined<T>(r: Result<Result<T, HavenError>, tokio::task::JoinError>) -> Result<T, HavenError> {
    r.map_err(|e| HavenError::Internal(format!("task failed: {e}")))?
}

/// Runs `future` on the shared runtime and waits for it.
pub(crate) async fn run<T, F>(future: F) -> Result<T, HavenError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, HavenError>> + Send + 'static,
{
    joined(get()?.spawn(future).await)
}

/// Runs the future `make` builds on a blocking thread of the shared runtime and waits for it:
/// for work whose future is not `Send` (the diary keeps its SQLite connection, which is not
/// `Sync`, borrowed across awaits).
pub(crate) async fn run_blocking<T, F, Fut>(make: F) -> Result<T, HavenError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, HavenError>>,
{
    let rt = get()?;
    let handle = rt.handle().clone();
    joined(rt.spawn_blocking(move || handle.block_on(make())).await)
}

//! What the client's tests share: a relay from `haven-testkit` that shows its logs when the test
//! owning it fails, and the helpers of the blindness checks.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use haven_testkit::{InProcessRelay, RelayConfig};

/// How many of the relay's last log lines a failing test prints.
const LOG_TAIL_LINES: usize = 200;

/// A relay in this process (see [`InProcessRelay`]); when the test fails, the end of its logs
/// goes to the test's output.
pub(crate) struct Relay(InProcessRelay);

impl Relay {
    /// Starts a relay with `config`; returns once it listens.
    pub(crate) fn start(config: RelayConfig) -> Self {
        Self(config.start())
    }
}

impl Deref for Relay {
    type Target = InProcessRelay;
    fn deref(&self) -> &InProcessRelay {
        &self.0
    }
}

impl DerefMut for Relay {
    fn deref_mut(&mut self) -> &mut InProcessRelay {
        &mut self.0
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.0.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!("--- the relay's last log lines ---\n{}", tail.join("\n"));
        }
    }
}

/// Every file under `root`, recursively (none when `root` does not exist).
pub(crate) fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The bytes of every file under `root`, concatenated; a file removed between the listing and
/// the read (a running relay's) is passed over.
pub(crate) fn read_all(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for file in files_under(root) {
        match std::fs::read(&file) {
            Ok(bytes) => out.extend(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", file.display()),
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Links a new device (its store `store`) to `existing`'s account by approval, the way a user
/// does: the new device shows its code, the existing one approves it.
pub(crate) async fn link_device(
    existing: &haven_client::Device,
    relay: haven_client::relay::RelayClient,
    store: haven_client::ClientStore,
) -> haven_client::Device {
    let pending = haven_client::Device::start_link(relay).await.unwrap();
    existing.approve_link(&pending.code()).await.unwrap();
    pending
        .finish(store, std::time::Duration::from_secs(20))
        .await
        .unwrap()
}

//! What the relay launchers (`haven-test-relay`, and `haven-e2e`'s `haven-hostile-relay`) do
//! once their relay runs: forward its logs to stderr until the test that started them closes
//! their stdin, or sends SIGTERM or SIGINT.

use std::io::{Read as _, Write as _};
use std::time::Duration;

/// Forwards what `logs()` returns past the bytes already written, every 100 ms, until stdin
/// closes or a SIGTERM/SIGINT arrives; returns how many bytes of the logs were written (pass
/// it to [`forward_logs`] after stopping the relay, for the last lines).
pub async fn forward_until_closed(logs: impl Fn() -> String) -> usize {
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    });
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::pin!(stdin_closed);
    loop {
        tokio::select! {
            _ = &mut stdin_closed => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } } => break,
            _ = tick.tick() => sent = forward_logs(&logs(), sent),
        }
    }
    sent
}

/// Writes what the relay logged since `sent` bytes to stderr; returns the new position.
pub fn forward_logs(logs: &str, sent: usize) -> usize {
    if let Some(new) = logs.get(sent..)
        && !new.is_empty()
    {
        let _ = std::io::stderr().write_all(new.as_bytes());
    }
    logs.len()
}

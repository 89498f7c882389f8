//! Relays for tests, from one table of settings: in this process (on a real TCP listener, on
//! its own runtime) or as the `haven-relay` binary.
//!
//! [`RelayConfig`] holds the `HAVEN_*` settings a test relay runs with: every test starts from
//! the same defaults (a fresh SQLite database and blob directory in a temporary directory, an
//! ephemeral port, metrics off, rate limits raised) and overrides what it is about.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The TOTP sealing key (`HAVEN_TOTP_KEY`, base64 of 32 bytes 0x07) of every test relay and
/// harness, so relays and in-process harnesses sharing a Postgres database open each other's
/// TOTP secrets. A test of the key file unsets it.
pub const TEST_TOTP_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// How long a relay may take to start or to stop before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The settings a test relay runs with (the relay's own `HAVEN_*` names, see
/// `docs/SELF_HOSTING.md`), and the directory its files go to.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    env: BTreeMap<String, String>,
    dir: Arc<tempfile::TempDir>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayConfig {
    /// The test defaults: SQLite and blobs in a fresh temporary directory, `127.0.0.1:0`,
    /// metrics off, `info` logs, rate limits far above what a test sends, the TOTP key
    /// [`TEST_TOTP_KEY`].
    ///
    /// # Panics
    /// When no temporary directory can be made.
    pub fn new() -> Self {
        #[allow(clippy::expect_used)] // A test-support failure is the test's failure.
        let dir = tempfile::Builder::new()
            .prefix("haven-relay-")
            .tempdir()
            .expect("temporary directory");
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: String| env.insert(k.to_owned(), v);
        set("HAVEN_LISTEN", "127.0.0.1:0".into());
        set("HAVEN_METRICS_LISTEN", "off".into());
        set("HAVEN_LOG", "info".into());
        set(
            "HAVEN_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("relay.db").display()
            ),
        );
        set(
            "HAVEN_BLOBS_DIR",
            dir.path().join("blobs").display().to_string(),
        );
        set("HAVEN_RATE_LIMIT_PER_MINUTE", "100000".into());
        set("HAVEN_AUTH_RATE_LIMIT_PER_MINUTE", "10000".into());
        set("HAVEN_TOTP_KEY", TEST_TOTP_KEY.into());
        // Tests send and upload far more between two accounts than a person would.
        set("HAVEN_MAIL_PAIR_SENDS_PER_MINUTE", "100000".into());
        set("HAVEN_MAIL_PAIR_SENDS_PER_DAY", "1000000".into());
        set("HAVEN_KEYS_UPLOADS_PER_HOUR", "10000".into());
        Self {
            env,
            dir: Arc::new(dir),
        }
    }

    /// Sets one setting (`HAVEN_*` name).
    #[must_use]
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_owned(), value.into());
        self
    }

    /// Sets several settings.
    #[must_use]
    pub fn set_all<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        for (k, v) in pairs {
            self.env
                .insert(k.as_ref().to_owned(), v.as_ref().to_owned());
        }
        self
    }

    /// Removes a setting (the relay's own default applies).
    #[must_use]
    pub fn unset(mut self, key: &str) -> Self {
        self.env.remove(key);
        self
    }

    /// Uses this database (`postgres://…` or `sqlite://…`) instead of the fresh SQLite file.
    #[must_use]
    pub fn database(self, url: &str) -> Self {
        self.set("HAVEN_DATABASE_URL", url)
    }

    /// The value of a setting.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// Every setting, as `(name, value)` pairs.
    pub fn settings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The directory the relay's files go to (its SQLite database, blobs, working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the relay in this process, on its own multi-threaded runtime, and returns once it
    /// is accepting connections.
    ///
    /// # Panics
    /// When the settings are invalid or the relay cannot start.
    #[cfg(feature = "in-process")]
    pub fn start(self) -> InProcessRelay {
        InProcessRelay::start(self)
    }

    /// Starts the `haven-relay` binary at `binary` (tests of the relay crate pass
    /// `env!("CARGO_BIN_EXE_haven-relay")`) with a cleared environment plus these settings, in
    /// the relay's directory, and returns once it has printed its address.
    ///
    /// # Panics
    /// When the process cannot be started or does not print its address.
    pub fn spawn(self, binary: impl AsRef<Path>) -> RelayProcess {
        RelayProcess::spawn(self, binary.as_ref().to_owned(), Output::default())
    }
}

/// Everything a relay wrote to stdout and stderr, shared with the threads that read its pipes.
#[derive(Clone, Debug, Default)]
struct Output {
    text: Arc<(Mutex<String>, Condvar)>,
}

impl Output {
    fn push(&self, chunk: &str) {
        let (lock, cv) = &*self.text;
        if let Ok(mut text) = lock.lock() {
            text.push_str(chunk);
            cv.notify_all();
        }
    }

    fn snapshot(&self) -> String {
        self.text.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let (lock, cv) = &*self.text;
        let deadline = Instant::now() + timeout;
        let Ok(mut text) = lock.lock() else {
            return false;
        };
        while !text.contains(needle) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match cv.wait_timeout(text, deadline - now) {
                Ok((t, _)) => text = t,
                Err(_) => return false,
            }
        }
        true
    }

    /// Copies `pipe` into this output until it closes.
    fn drain(&self, mut pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let out = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.push(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    }
}

/// A `haven-relay` process; killed (and reaped) when dropped.
#[derive(Debug)]
pub struct RelayProcess {
    config: RelayConfig,
    binary: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
    output: Output,
    readers: Vec<JoinHandle<()>>,
}

/// The line the relay prints on stdout once it listens (scripts and tests parse it).
const LISTENING: &str = "haven-relay listening on http://";

impl RelayProcess {
    #[allow(clippy::expect_used, clippy::panic)] // A relay that cannot start fails the test.
    fn spawn(config: RelayConfig, binary: PathBuf, output: Output) -> Self {
        let mut cmd = Command::new(&binary);
        cmd.env_clear()
            .current_dir(config.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for (k, v) in config.settings() {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let mut readers = vec![output.drain(stderr)];
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        let Some(addr) = first.trim().strip_prefix(LISTENING) else {
            let _ = child.kill();
            let _ = child.wait();
            for r in readers {
                let _ = r.join();
            }
            panic!(
                "haven-relay did not start: first line {first:?}, output:\n{}",
                output.snapshot()
            );
        };
        let addr: SocketAddr = addr.parse().expect("relay address");
        readers.push(output.drain(stdout));
        Self {
            config,
            binary,
            child: Some(child),
            addr,
            output,
            readers,
        }
    }

    /// The address the relay listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://addr`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the relay wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.output.snapshot()
    }

    /// Waits until the relay's output contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.output.wait_for(needle, timeout)
    }

    /// Sends SIGTERM (graceful shutdown).
    ///
    /// # Panics
    /// When the process is gone or the signal cannot be sent.
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGKILL (a crash: nothing is flushed or drained).
    ///
    /// # Panics
    /// When the process is gone or the signal cannot be sent.
    pub fn sigkill(&self) {
        self.signal("-KILL");
    }

    #[allow(clippy::expect_used, clippy::panic)]
    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("relay process is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Waits for the process to exit and for its output to be read to the end; returns
    /// whether it exited successfully.
    ///
    /// # Panics
    /// When it does not exit within `timeout`.
    #[allow(clippy::panic)]
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => panic!("relay did not exit within {timeout:?}"),
                Err(e) => panic!("waiting for the relay: {e}"),
            }
        };
        self.child = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status.success()
    }

    /// SIGTERM, then waits for a clean exit; returns the complete output.
    ///
    /// # Panics
    /// When the relay does not exit cleanly.
    pub fn stop(&mut self) -> String {
        self.sigterm();
        assert!(
            self.wait_exit(START_TIMEOUT),
            "relay exited with an error:\n{}",
            self.logs()
        );
        self.logs()
    }

    /// Kills the process (if running) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// Starts the relay again with the same settings and files, on the same port (after a
    /// crash or a stop), so clients configured with its URL find it again.
    ///
    /// # Panics
    /// When it cannot start.
    pub fn restart(&mut self) {
        self.kill();
        let config = RelayConfig {
            env: self.config.env.clone(),
            dir: self.config.dir.clone(),
        }
        .set("HAVEN_LISTEN", self.addr.to_string());
        // The same output: tests read a relay's logs across restarts.
        let next = Self::spawn(config, self.binary.clone(), self.output.clone());
        let _ = std::mem::replace(self, next);
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(feature = "in-process")]
pub use in_process::InProcessRelay;

#[cfg(feature = "in-process")]
mod in_process {
    use super::{Output, RelayConfig, START_TIMEOUT};
    use std::net::SocketAddr;
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// Log lines into an [`Output`].
    #[derive(Clone)]
    struct LogWriter(Output);

    impl std::io::Write for LogWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A relay running in this process on its own runtime (so it keeps serving while the test's
    /// runtime is busy or blocked); shut down gracefully when dropped.
    ///
    /// Its logs (at `HAVEN_LOG`, through the binary's filter) are captured from every thread it
    /// runs on, and from no other, except the SQLite connection threads of sqlx, whose lines go to
    /// every in-process relay alive (see `unowned`): [`InProcessRelay::logs`].
    #[derive(Debug)]
    pub struct InProcessRelay {
        config: RelayConfig,
        addr: SocketAddr,
        output: Output,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<JoinHandle<Result<(), String>>>,
    }

    impl InProcessRelay {
        pub(super) fn start(config: RelayConfig) -> Self {
            Self::start_with(config, Output::default())
        }

        #[allow(clippy::expect_used, clippy::panic)] // A relay that cannot start fails the test.
        fn start_with(config: RelayConfig, output: Output) -> Self {
            let env: Vec<(String, String)> = config
                .settings()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let settings = haven_relay::Settings::load(None, |name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|e| panic!("test relay settings: {e}"));
            let listen = settings.listen;
            let writer = LogWriter(output.clone());
            let dispatch = tracing::Dispatch::new(
                tracing_subscriber::fmt()
                    .with_env_filter(haven_relay::logging::filter(&settings.log))
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish(),
            );
            unowned::register(&dispatch);
            let (addr_tx, addr_rx) = std::sync::mpsc::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name("haven-test-relay".into())
                .spawn(move || -> Result<(), String> {
                    let _logs = tracing::dispatcher::set_default(&dispatch);
                    let on_start = dispatch.clone();
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        // Every runtime thread (workers and the blocking pool) logs to this
                        // relay's output for as long as it lives.
                        .on_thread_start(move || {
                            std::mem::forget(tracing::dispatcher::set_default(&on_start));
                        })
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::bind(listen)
                            .await
                            .map_err(|e| format!("bind {listen}: {e}"))?;
                        let addr = listener.local_addr().map_err(|e| e.to_string())?;
                        let _ = addr_tx.send(addr);
                        haven_relay::launch_with_listener(settings, listener, async {
                            let _ = stopped.await;
                        })
                        .await
                        .map_err(|e| e.to_string())
                    })
                })
                .expect("relay thread");
            let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
                Ok(addr) => addr,
                Err(_) => {
                    let why = thread
                        .join()
                        .map_or_else(|_| "panicked".to_owned(), |r| format!("{r:?}"));
                    panic!("test relay did not start: {why}");
                }
            };
            Self {
                config,
                addr,
                output,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        /// Everything the relay logged so far.
        pub fn logs(&self) -> String {
            self.output.snapshot()
        }

        /// Waits until the relay's logs contain `needle`; false after `timeout`.
        pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
            self.output.wait_for(needle, timeout)
        }

        /// The address it listens on.
        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        /// `http://addr`.
        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// `ws://addr`.
        pub fn ws_url(&self) -> String {
            format!("ws://{}", self.addr)
        }

        /// The settings it runs with.
        pub fn config(&self) -> &RelayConfig {
            &self.config
        }

        /// Shuts the relay down gracefully and waits until it has stopped.
        ///
        /// # Panics
        /// When the relay failed while running.
        #[allow(clippy::panic)]
        pub fn stop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take() {
                match thread.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("test relay failed: {e}"),
                    Err(_) => panic!("test relay panicked"),
                }
            }
        }

        /// Stops the relay and starts it again on the same port, files and settings.
        #[must_use]
        pub fn restart(mut self) -> Self {
            self.stop();
            let config = RelayConfig {
                env: self.config.env.clone(),
                dir: self.config.dir.clone(),
            }
            .set("HAVEN_LISTEN", self.addr.to_string());
            // The same output: tests read a relay's logs across restarts.
            Self::start_with(config, self.output.clone())
        }
    }

    /// The threads a relay's work runs on that no relay runtime owns: sqlx runs each SQLite
    /// connection on a thread of its own, which inherits no subscriber, so what is logged there
    /// (every statement at `debug`, slow ones at `warn`) would be lost. A process-wide default
    /// subscriber hands those threads' events to every in-process relay alive, each through its
    /// own filter: which relay a connection serves cannot be told, so a relay's logs may also
    /// hold another's SQLite lines, never fewer than its own. Other threads (the tests' own, and
    /// their clients') are not captured.
    mod unowned {
        use std::sync::{Mutex, OnceLock};
        use tracing::dispatcher::WeakDispatch;
        use tracing::level_filters::LevelFilter;
        use tracing::span::{Attributes, Id, Record};
        use tracing::subscriber::Interest;
        use tracing::{Dispatch, Event, Metadata};

        /// Name prefixes of the threads whose events go to the relays.
        const THREAD_PREFIXES: &[&str] = &["sqlx-sqlite-worker-"];

        static RELAYS: Mutex<Vec<WeakDispatch>> = Mutex::new(Vec::new());

        /// Hands the unowned threads' events to `relay` too, for as long as it lives (a no-op
        /// when the process already has another default subscriber).
        pub(super) fn register(relay: &Dispatch) {
            static INSTALLED: OnceLock<bool> = OnceLock::new();
            if *INSTALLED.get_or_init(|| {
                tracing::dispatcher::set_global_default(Dispatch::new(UnownedThreads)).is_ok()
            }) && let Ok(mut relays) = RELAYS.lock()
            {
                relays.retain(|r| r.upgrade().is_some());
                relays.push(relay.downgrade());
            }
        }

        fn relays() -> Vec<Dispatch> {
            RELAYS.lock().map_or_else(
                |_| Vec::new(),
                |relays| relays.iter().filter_map(WeakDispatch::upgrade).collect(),
            )
        }

        fn on_unowned_thread() -> bool {
            std::thread::current()
                .name()
                .is_some_and(|name| THREAD_PREFIXES.iter().any(|p| name.starts_with(p)))
        }

        struct UnownedThreads;

        impl tracing::Subscriber for UnownedThreads {
            fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
                Interest::sometimes()
            }
            // The relays' own subscribers set the level worth evaluating; this one adds none.
            fn max_level_hint(&self) -> Option<LevelFilter> {
                Some(LevelFilter::OFF)
            }
            fn enabled(&self, metadata: &Metadata<'_>) -> bool {
                // Events, and `enabled!` hints (sqlx asks one before logging a statement).
                !metadata.is_span()
                    && on_unowned_thread()
                    && relays().iter().any(|r| r.enabled(metadata))
            }
            fn event(&self, event: &Event<'_>) {
                for relay in relays() {
                    if relay.enabled(event.metadata()) {
                        relay.event(event);
                    }
                }
            }
            // Spans are never enabled here.
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
    }

    impl Drop for InProcessRelay {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take()
                && !std::thread::panicking()
            {
                let _ = thread.join();
            }
        }
    }
}

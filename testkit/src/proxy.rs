//! A real reverse proxy in front of a test relay: Debian's `haproxy` with `option forwardfor`
//! (it appends the address it saw to `X-Forwarded-For`, in a header line of its own after any
//! the client sent), on a loopback port, as a plain process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services;

/// How long the proxy may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// An `haproxy` process forwarding HTTP from a loopback port to one backend; killed when
/// dropped.
#[derive(Debug)]
pub struct ReverseProxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ReverseProxy {
    /// Starts `haproxy` in front of `backend`, or returns `None` after reporting the calling
    /// test as skipped when it is not installed (see [`services::haproxy`]).
    ///
    /// # Panics
    /// When the proxy does not start.
    #[allow(clippy::expect_used, clippy::panic)] // A proxy that cannot start fails the test.
    pub fn haproxy(backend: SocketAddr) -> Option<Self> {
        let bin = services::haproxy()?;
        let dir = tempfile::Builder::new()
            .prefix("haven-haproxy-")
            .tempdir()
            .expect("temporary directory");
        let mut last_error = String::new();
        // HAProxy cannot report a port the kernel chose: a free one is chosen here and released
        // for it, and taken again if another process was quicker.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let config = dir.path().join("haproxy.cfg");
            std::fs::write(&config, config_text(addr, backend)).expect("writing haproxy.cfg");
            let log = dir.path().join("haproxy.log");
            let stderr = std::fs::File::create(&log).expect("haproxy.log");
            let mut child = Command::new(&bin)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    last_error = std::fs::read_to_string(&log).unwrap_or_default();
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(Self {
                        child,
                        addr,
                        _dir: dir,
                    });
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("haproxy did not accept connections within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("haproxy did not start: {last_error}");
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration: HTTP mode, `option forwardfor` (append the client address), one server.
fn config_text(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "global\n\
         \x20   maxconn 256\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   option forwardfor\n\
         frontend haven\n\
         \x20   bind {listen}\n\
         \x20   default_backend relay\n\
         backend relay\n\
         \x20   server relay {backend}\n"
    )
}

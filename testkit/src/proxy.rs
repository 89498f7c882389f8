//! A real reverse proxy in front of test relays: Debian's `haproxy` with `option forwardfor`
//! (it appends the address it saw to `X-Forwarded-For`, in a header line of its own after any
//! the client sent), on a loopback port, as a plain process; in front of one relay, or
//! balancing several with health checks (a cluster on one Postgres and Redis).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services;

/// How long the proxy may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// An `haproxy` process forwarding HTTP from a loopback port to one or more backends; killed
/// when dropped.
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
    pub fn haproxy(backend: SocketAddr) -> Option<Self> {
        Self::start(&config_text(backend))
    }

    /// Starts `haproxy` balancing over `backends` (round robin, each health-checked on
    /// `GET /health` every 250 ms and taken out after one failed check, a request that
    /// cannot connect re-dispatched to another), with WebSocket tunnels kept for an hour;
    /// `None` as for [`ReverseProxy::haproxy`].
    ///
    /// # Panics
    /// When the proxy does not start.
    pub fn balancer(backends: &[SocketAddr]) -> Option<Self> {
        Self::start(&balancer_text(backends))
    }

    #[allow(clippy::expect_used, clippy::panic)] // A proxy that cannot start fails the test.
    fn start(backend_section: &str) -> Option<Self> {
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
            std::fs::write(&config, frontend_text(addr) + backend_section)
                .expect("writing haproxy.cfg");
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

/// The global and frontend sections: HTTP mode, `option forwardfor` (append the client
/// address), WebSocket tunnels kept open for an hour. No `maxconn`: HAProxy derives it from
/// the file descriptor limit it runs under (and refuses to start with one it cannot reach).
fn frontend_text(listen: SocketAddr) -> String {
    format!(
        "defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   timeout tunnel 1h\n\
         \x20   option forwardfor\n\
         frontend haven\n\
         \x20   bind {listen}\n\
         \x20   default_backend relay\n"
    )
}

/// One backend server.
fn config_text(backend: SocketAddr) -> String {
    format!("backend relay\n\x20   server relay {backend}\n")
}

/// Several backend servers, balanced and health-checked.
fn balancer_text(backends: &[SocketAddr]) -> String {
    let mut text = String::from(
        "backend relay\n\
         \x20   balance roundrobin\n\
         \x20   option httpchk GET /health\n\
         \x20   option redispatch\n\
         \x20   retries 3\n\
         \x20   default-server check inter 250ms fall 1 rise 2\n",
    );
    for (i, backend) in backends.iter().enumerate() {
        text.push_str(&format!("\x20   server relay{i} {backend}\n"));
    }
    text
}

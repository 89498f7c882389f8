//! `haven-loadgen`: drives a Haven relay's WebSocket and reports throughput, send-to-delivery
//! latency and the relay's resident memory; `--baseline` measures a bare tokio-tungstenite echo
//! server with the same client for comparison.
//!
//! ```text
//! haven-loadgen throughput [--devices N] [--rate R] [--seconds S] [--size B] [--baseline]
//!                          [--instances N --redis URL] [--kill-after S]
//! haven-loadgen idle [--connections K] [--settle S] [--baseline]
//! common: [--relay PATH] (default: haven-relay next to this binary)
//!         [--postgres URL] (default: a fresh SQLite database in a temporary directory)
//!         [--set NAME=VALUE]… (extra environment for the relay, e.g.
//!          HAVEN_DATABASE_SQLITE_SYNCHRONOUS=normal)
//!         [--relay-cpus LIST] (pins every relay thread with `taskset -a -c LIST`)
//! ```
//!
//! `--instances N` starts N relays on one Postgres database (`--postgres`) and one Redis
//! (`--redis`) behind Debian's HAProxy (`haproxy` on the `PATH`, in `/usr/sbin`, or
//! `HAVEN_TEST_HAPROXY`), round robin with health checks; the clients connect through it.
//! `--kill-after S` kills the first relay with SIGKILL S seconds into the run: its clients
//! reconnect through the balancer and go on. In every relay run the load generator then reads
//! each device's queue to the end and reports every envelope the relay acknowledged to its
//! sender (a `result` with status 200) that was never delivered as lost, and fails if there is
//! one.
//!
//! The relay is started by the load generator on a fresh SQLite database in a temporary
//! directory (or on the given Postgres database, where the provisioned accounts are new random
//! ones). Devices are provisioned directly in that database through the relay's own store
//! API (account, device, session) and get access tokens signed with the JWT key the relay is
//! started with: OPAQUE registration costs the *client* an Argon2id run per device and is
//! measured separately (BENCHMARKS.md, login), so it is kept out of this measurement.
//!
//! Every envelope carries its send time; the receiving socket computes the latency when the
//! envelope frame arrives and acknowledges it (which deletes it), so each envelope is persisted,
//! delivered and deleted.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use haven_protocol::frames::{self, ClientFrame, SendEnvelope, ServerFrame};
use haven_relay::accounts::seed::seed_session;
use haven_relay::accounts::store::{AccountStore, TokenStore};
use haven_relay::accounts::tokens::sign_access;
use haven_relay::db::{PgStore, SqliteStore};
use haven_relay::ids::Id;
use haven_relay::secrets::Key32;
use haven_testkit::proxy::ReverseProxy;
use haven_testkit::{RelayConfig, RelayProcess};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    devices: usize,
    rate: u64,
    seconds: u64,
    size: usize,
    connections: usize,
    /// Idle mode: seconds between the last socket's `queue_empty` and the RSS reading.
    settle: u64,
    baseline: bool,
    relay: Option<String>,
    postgres: Option<String>,
    redis: Option<String>,
    instances: usize,
    kill_after: Option<u64>,
    relay_cpus: Option<String>,
    env: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or(USAGE)?;
    let mut out = Args {
        mode,
        devices: 200,
        rate: 10_000,
        seconds: 10,
        size: 256,
        connections: 10_000,
        settle: 5,
        baseline: false,
        relay: None,
        postgres: None,
        redis: None,
        instances: 1,
        kill_after: None,
        relay_cpus: None,
        env: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|_| format!("bad number {v}"));
        match arg.as_str() {
            "--devices" => {
                out.devices =
                    usize::try_from(num(value("--devices")?)?).map_err(|e| e.to_string())?
            }
            "--rate" => out.rate = num(value("--rate")?)?,
            "--seconds" => out.seconds = num(value("--seconds")?)?,
            "--size" => {
                out.size = usize::try_from(num(value("--size")?)?).map_err(|e| e.to_string())?
            }
            "--connections" => {
                out.connections =
                    usize::try_from(num(value("--connections")?)?).map_err(|e| e.to_string())?;
            }
            "--settle" => out.settle = num(value("--settle")?)?,
            "--baseline" => out.baseline = true,
            "--relay" => out.relay = Some(value("--relay")?),
            "--postgres" => out.postgres = Some(value("--postgres")?),
            "--redis" => out.redis = Some(value("--redis")?),
            "--instances" => {
                out.instances =
                    usize::try_from(num(value("--instances")?)?).map_err(|e| e.to_string())?;
            }
            "--kill-after" => out.kill_after = Some(num(value("--kill-after")?)?),
            "--relay-cpus" => out.relay_cpus = Some(value("--relay-cpus")?),
            "--set" => {
                let v = value("--set")?;
                let (k, v) = v.split_once('=').ok_or("--set needs NAME=VALUE")?;
                out.env.push((k.to_owned(), v.to_owned()));
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if out.size < 16 || out.devices < 2 {
        return Err("--size must be ≥ 16 and --devices ≥ 2".into());
    }
    if out.instances == 0 || out.instances > 16 {
        return Err("--instances must be 1 to 16".into());
    }
    if out.instances > 1 && (out.postgres.is_none() || out.redis.is_none()) {
        return Err(
            "--instances above 1 needs --postgres and --redis (shared by the relays)".into(),
        );
    }
    if out.kill_after.is_some() && (out.instances < 2 || out.baseline) {
        return Err("--kill-after needs --instances 2 or more".into());
    }
    Ok(out)
}

const USAGE: &str = "usage: haven-loadgen (throughput|idle|echo-server) [--devices N] [--rate R] \
[--seconds S] [--size B] [--connections K] [--settle S] [--baseline] [--relay PATH] \
[--postgres URL] [--redis URL] [--instances N] [--kill-after S] [--relay-cpus LIST] \
[--set NAME=VALUE]";

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.mode.as_str() {
            "echo-server" => echo_server().await,
            "throughput" => throughput(&args).await,
            "idle" => idle(&args).await,
            _ => Err(USAGE.into()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("haven-loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// What the load runs against: the echo baseline, one relay, or several relays behind a
/// balancer. Every process is killed when this is dropped.
struct Server {
    relays: Vec<RelayProcess>,
    echo: Option<tokio::process::Child>,
    proxy: Option<ReverseProxy>,
    /// Where the clients connect (the balancer's address when there is one).
    addr: String,
}

impl Server {
    /// Process ids of the server processes still running.
    fn pids(&self) -> Vec<u32> {
        self.relays
            .iter()
            .filter_map(RelayProcess::pid)
            .chain(self.echo.as_ref().and_then(tokio::process::Child::id))
            .collect()
    }

    /// Resident memory of every server process still running, summed, in KiB.
    fn rss_kib(&self) -> u64 {
        self.pids()
            .into_iter()
            .filter_map(|p| rss_kib(p).ok())
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for relay in &mut self.relays {
            relay.kill();
        }
        if let Some(child) = &mut self.echo {
            let _ = child.start_kill();
        }
        drop(self.proxy.take());
    }
}

async fn first_line(child: &mut tokio::process::Child) -> Result<String, BoxError> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines.next_line().await?.ok_or("server printed nothing")?;
    // Keep draining so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(line)
}

const JWT_KEY: [u8; 32] = [7u8; 32];

/// Provisions `n` devices (one account each) in the database at `db_url` and returns their
/// (account, access token).
async fn provision(db_url: &str, n: usize) -> Result<Vec<(Id, String)>, BoxError> {
    if db_url.starts_with("postgres") {
        let store = PgStore::connect(db_url).await?;
        let out = provision_in(&store, n).await;
        store.close().await;
        out
    } else {
        let store = SqliteStore::connect(db_url).await?;
        let out = provision_in(&store, n).await;
        store.close().await;
        out
    }
}

async fn provision_in<S: AccountStore + TokenStore>(
    store: &S,
    n: usize,
) -> Result<Vec<(Id, String)>, BoxError> {
    let key = Key32::from_bytes(JWT_KEY);
    let now = haven_relay::clock::now_i64();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let session = seed_session(store, now, 86_400).await?;
        let token = sign_access(&key, &session, u64::try_from(now)?, 86_400)?;
        out.push((session.account, token));
    }
    Ok(out)
}

fn relay_path(args: &Args) -> Result<String, BoxError> {
    if let Some(p) = &args.relay {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no exe dir")?;
    Ok(dir.join("haven-relay").to_string_lossy().into_owned())
}

/// Starts the relay on a fresh SQLite database (or the given Postgres one) with `devices`
/// provisioned devices; `--instances N` starts N of them on the same Postgres and Redis behind
/// HAProxy.
async fn start_relay(args: &Args, devices: usize) -> Result<(Server, Vec<(Id, String)>), BoxError> {
    let mut config = RelayConfig::new();
    if let Some(url) = &args.postgres {
        config = config.database(url);
    }
    if let Some(url) = &args.redis {
        config = config.set("HAVEN_REDIS_URL", url.as_str());
    }
    let db = config
        .get("HAVEN_DATABASE_URL")
        .ok_or("no database")?
        .to_owned();
    let provisioned = provision(&db, devices).await?;
    let jwt = base64::engine::general_purpose::STANDARD.encode(JWT_KEY);
    config = config
        .set("HAVEN_JWT_SECRET", jwt)
        .set("HAVEN_LOG", "warn")
        .set("HAVEN_RATE_LIMIT_PER_MINUTE", "1000000")
        .set("HAVEN_MAIL_PAIR_SENDS_PER_MINUTE", "60000000")
        .set("HAVEN_MAIL_PAIR_SENDS_PER_DAY", "1000000000")
        .set("HAVEN_WS_POLL_INTERVAL_SECS", "300");
    // Given last, so they override the defaults above.
    for (k, v) in &args.env {
        config = config.set(k, v.as_str());
    }
    let binary = relay_path(args)?;
    let mut relays = Vec::with_capacity(args.instances);
    for _ in 0..args.instances {
        // One after the other: the first one migrates the database.
        let (config, binary) = (config.clone(), binary.clone());
        relays.push(tokio::task::spawn_blocking(move || config.spawn(binary)).await?);
    }
    if let Some(cpus) = &args.relay_cpus {
        for pid in relays.iter().filter_map(RelayProcess::pid) {
            pin(pid, cpus)?;
        }
    }
    let (proxy, addr) = if relays.len() > 1 {
        let backends: Vec<_> = relays.iter().map(RelayProcess::addr).collect();
        let proxy = tokio::task::spawn_blocking(move || ReverseProxy::balancer(&backends))
            .await?
            .ok_or(
                "--instances needs haproxy (on the PATH, in /usr/sbin, or HAVEN_TEST_HAPROXY)",
            )?;
        let addr = proxy.addr().to_string();
        (Some(proxy), addr)
    } else {
        let addr = relays.first().ok_or("no relay")?.addr().to_string();
        (None, addr)
    };
    Ok((
        Server {
            relays,
            echo: None,
            proxy,
            addr,
        },
        provisioned,
    ))
}

/// Pins every thread of `pid` (and the threads it starts later) to `cpus` (`taskset` syntax).
fn pin(pid: u32, cpus: &str) -> Result<(), BoxError> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("taskset -a -p -c {cpus} {pid} failed").into());
    }
    Ok(())
}

/// Starts `haven-loadgen echo-server` (this binary) as a child process.
async fn start_echo() -> Result<Server, BoxError> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("echo-server")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let line = first_line(&mut child).await?;
    let addr = line
        .strip_prefix("echo listening on ")
        .ok_or("bad echo output")?
        .to_owned();
    Ok(Server {
        relays: Vec::new(),
        echo: Some(child),
        proxy: None,
        addr,
    })
}

/// The baseline: a bare tokio-tungstenite server echoing every binary message back.
async fn echo_server() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("echo listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        // Same socket option as the relay sets on its connections.
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_binary() && ws.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn open(addr: &str, token: Option<&str>) -> Result<Ws, BoxError> {
    let url = match token {
        Some(_) => format!("ws://{addr}/v1/ws"),
        None => format!("ws://{addr}/"),
    };
    let mut req = url.into_client_request()?;
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}"))?,
        );
    }
    // TCP_NODELAY on the client side, for the relay and the echo baseline alike.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
    Ok(ws)
}

/// A `send` frame of one envelope to device 1 of `to`, and its message id.
fn send_frame(request_id: u32, to: &Id, content: &[u8]) -> (Vec<u8>, [u8; 16]) {
    let message_id = *Id::random().as_bytes();
    let frame = ClientFrame::Send {
        request_id,
        account: *to.as_bytes(),
        message_id,
        ephemeral: false,
        access_key: None,
        envelopes: vec![SendEnvelope {
            device: 1,
            content,
            commitment: None,
        }],
    }
    .encode()
    .unwrap_or_default();
    (frame, message_id)
}

fn is_queue_empty(message: &Message) -> bool {
    matches!(message, Message::Binary(b) if ServerFrame::decode(b) == Ok(ServerFrame::QueueEmpty))
}

/// Nanoseconds since `epoch`, written into the first 8 bytes of each payload.
fn stamp(epoch: Instant, size: usize) -> Vec<u8> {
    let mut p = vec![0x42; size];
    let t = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    p[..8].copy_from_slice(&t.to_be_bytes());
    p
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

struct Totals {
    sent: AtomicU64,
    errors: AtomicU64,
    /// Sends whose socket closed before their result came back (neither acknowledged nor
    /// refused: the relay may or may not have stored them).
    in_doubt: AtomicU64,
    reconnects: AtomicU64,
}

/// When one client sends.
struct Schedule {
    /// Sends per second.
    rate_per_sec: f64,
    /// 0..1: where in the tick period its ticks fall, and its initial send credit.
    phase: f64,
    /// Time zero of the payload stamps.
    epoch: Instant,
    /// When it stops sending.
    until: Instant,
    /// When it stops receiving.
    drain_until: Instant,
}

/// Where a client connects, and again after its socket is lost.
struct Dial {
    addr: String,
    token: Option<String>,
    /// Reconnect (every 50 ms until the drain ends) when the socket is lost.
    reconnect: bool,
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// Send-to-delivery latencies in microseconds, one per envelope delivered the first time.
    latencies: Vec<u64>,
    /// Message ids the relay acknowledged to this client as the sender.
    acked: Vec<[u8; 16]>,
    /// Message ids delivered to this client as the recipient.
    received: HashSet<[u8; 16]>,
}

/// Reopens a lost socket; `None` once the drain deadline has passed.
async fn redial(dial: &Dial, deadline: Instant) -> Option<Ws> {
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(ws) = open(&dial.addr, dial.token.as_deref()).await {
            return Some(ws);
        }
    }
    None
}

/// One client socket: sends at `rate_per_sec` to `to` (relay) or to itself (echo), receives,
/// acks, records latencies in microseconds and which of its sends the relay acknowledged.
/// `phase` (0..1) offsets its ticks within the tick period and its send credit, so that many
/// clients together send at an even pace. A lost socket is reopened if `dial` says so; the
/// sends whose results it had not answered are counted as in doubt.
async fn client_loop(
    mut ws: Ws,
    dial: Dial,
    to: Option<Id>,
    schedule: Schedule,
    size: usize,
    totals: Arc<Totals>,
) -> Seen {
    let Schedule {
        rate_per_sec,
        phase,
        epoch,
        until,
        drain_until,
    } = schedule;
    let mut seen = Seen::default();
    let tick = Duration::from_millis(10);
    let per_tick = rate_per_sec * tick.as_secs_f64();
    let mut credit = phase;
    let mut timer =
        tokio::time::interval_at(tokio::time::Instant::now() + tick.mul_f64(phase), tick);
    let mut request_id = 0u32;
    // Sends waiting for their result: request id → message id.
    let mut pending: std::collections::HashMap<u32, [u8; 16]> = std::collections::HashMap::new();
    // Acks are batched per 10 ms tick, as a real client acks what one read burst delivered.
    let mut acks: Vec<[u8; 16]> = Vec::new();
    loop {
        let now = Instant::now();
        if now > drain_until {
            break;
        }
        let lost = tokio::select! {
            _ = timer.tick() => 'tick: {
                for frame in frames::ack_frames(&std::mem::take(&mut acks)) {
                    if ws.feed(Message::Binary(frame.into())).await.is_err() {
                        break 'tick true;
                    }
                }
                credit += if now < until { per_tick } else { 0.0 };
                while credit >= 1.0 {
                    credit -= 1.0;
                    request_id = request_id.wrapping_add(1);
                    let payload = stamp(epoch, size);
                    let frame = match &to {
                        Some(to) => {
                            let (frame, message_id) = send_frame(request_id, to, &payload);
                            pending.insert(request_id, message_id);
                            frame
                        }
                        None => payload,
                    };
                    if ws.feed(Message::Binary(frame.into())).await.is_err() {
                        break 'tick true;
                    }
                    totals.sent.fetch_add(1, Ordering::Relaxed);
                }
                ws.flush().await.is_err()
            },
            _ = tokio::time::sleep_until((drain_until).into()) => break,
            msg = ws.next() => 'msg: {
                let b = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(_)) => break 'msg false,
                    _ => break 'msg true,
                };
                let now_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(0);
                let sent_at = |payload: &[u8]| {
                    payload.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_be_bytes)
                };
                if to.is_none() {
                    // Echo baseline: the payload itself comes back.
                    if let Some(t) = sent_at(&b) {
                        seen.latencies.push(now_ns.saturating_sub(t) / 1000);
                    }
                    break 'msg false;
                }
                match ServerFrame::decode(&b) {
                    Ok(ServerFrame::Envelope(e)) => {
                        // A redelivery after a reconnect is acked again but not measured again.
                        if seen.received.insert(e.message_id)
                            && let Some(t) = sent_at(e.content)
                        {
                            seen.latencies.push(now_ns.saturating_sub(t) / 1000);
                        }
                        acks.push(e.message_id);
                    }
                    Ok(ServerFrame::Result { request_id, status, .. }) => {
                        let message_id = pending.remove(&request_id);
                        if status == 200 {
                            seen.acked.extend(message_id);
                        } else {
                            totals.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {}
                }
                false
            },
        };
        if lost {
            totals
                .in_doubt
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            pending.clear();
            // Deliveries not yet acked come again on the new socket.
            acks.clear();
            if !dial.reconnect {
                break;
            }
            match redial(&dial, drain_until).await {
                Some(new) => {
                    ws = new;
                    totals.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
    }
    seen
}

/// Reads a device's queue to the end (`queue_empty`) on a new socket and returns the message
/// ids of everything delivered, acking each.
async fn sweep(addr: &str, token: &str) -> Result<HashSet<[u8; 16]>, BoxError> {
    let mut ws = open(addr, Some(token)).await?;
    let mut got = HashSet::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "no queue_empty within 30 s")?;
        let Some(Ok(Message::Binary(b))) = msg else {
            if matches!(msg, Some(Ok(_))) {
                continue;
            }
            return Err("socket closed during the sweep".into());
        };
        match ServerFrame::decode(&b) {
            Ok(ServerFrame::Envelope(e)) => {
                got.insert(e.message_id);
                for frame in frames::ack_frames(&[e.message_id]) {
                    ws.send(Message::Binary(frame.into())).await?;
                }
            }
            Ok(ServerFrame::QueueEmpty) => return Ok(got),
            _ => {}
        }
    }
}

async fn throughput(args: &Args) -> Result<(), BoxError> {
    let n = args.devices;
    let (server, devices) = if args.baseline {
        (start_echo().await?, Vec::new())
    } else {
        start_relay(args, n).await?
    };
    let rss_before = server.rss_kib();
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let token = devices.get(i).map(|d| d.1.as_str());
        let mut ws = open(&server.addr, token).await?;
        if !args.baseline {
            // Wait for queue_empty so the run starts from a settled state.
            while let Some(Ok(m)) = ws.next().await {
                if is_queue_empty(&m) {
                    break;
                }
            }
        }
        sockets.push(ws);
    }
    let epoch = Instant::now();
    let until = epoch + Duration::from_secs(args.seconds);
    // After a kill, the clients of the killed relay need time to reconnect and be served.
    let drain = if args.kill_after.is_some() { 10 } else { 2 };
    let drain_until = until + Duration::from_secs(drain);
    let totals = Arc::new(Totals {
        sent: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        in_doubt: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
    });
    let per_socket = args.rate as f64 / n as f64;
    let mut tasks = Vec::with_capacity(n);
    for (i, ws) in sockets.into_iter().enumerate() {
        let to = devices.get((i + 1) % n.max(1)).map(|d| d.0);
        let to = if args.baseline { None } else { to };
        let dial = Dial {
            addr: server.addr.clone(),
            token: devices.get(i).map(|d| d.1.clone()),
            reconnect: args.kill_after.is_some(),
        };
        tasks.push(tokio::spawn(client_loop(
            ws,
            dial,
            to,
            Schedule {
                rate_per_sec: per_socket,
                // Spread the clients' sends evenly over time: with equal start conditions every
                // client would send in the same 10 ms tick, one burst of `devices` sends at once.
                phase: i as f64 / n as f64,
                epoch,
                until,
                drain_until,
            },
            args.size,
            totals.clone(),
        )));
    }
    let mut peak_rss = 0;
    let mut seen = Seen::default();
    let mut killed = None;
    let sampler = async {
        loop {
            peak_rss = peak_rss.max(server.rss_kib());
            if let Some(after) = args.kill_after
                && killed.is_none()
                && epoch.elapsed() >= Duration::from_secs(after)
                && let Some(relay) = server.relays.first()
            {
                relay.sigkill();
                killed = Some(epoch.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let joined = async {
        for t in tasks {
            if let Ok(s) = t.await {
                seen.latencies.extend(s.latencies);
                seen.acked.extend(s.acked);
                seen.received.extend(s.received);
            }
        }
    };
    tokio::select! {
        () = joined => {},
        () = sampler => {},
    }
    let mut lat = seen.latencies;
    lat.sort_unstable();
    let sent = totals.sent.load(Ordering::Relaxed);
    let secs = args.seconds as f64;
    println!(
        "mode=throughput target={} instances={} devices={n} size={}B seconds={} baseline={}",
        if args.baseline { "echo" } else { "relay" },
        if args.baseline { 1 } else { args.instances },
        args.size,
        args.seconds,
        args.baseline
    );
    println!(
        "sent={sent} ({:.0}/s, target {}/s) delivered={} ({:.0}/s) errors={}",
        sent as f64 / secs,
        args.rate,
        lat.len(),
        lat.len() as f64 / secs,
        totals.errors.load(Ordering::Relaxed)
    );
    println!(
        "latency ms: p50={:.2} p99={:.2} max={:.2}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!(
        "server rss: before={} KiB peak={} KiB",
        rss_before,
        peak_rss.max(rss_before)
    );
    if args.baseline {
        return Ok(());
    }
    // What the relays warned about (they log warnings and errors only here).
    for (i, relay) in server.relays.iter().enumerate() {
        let logs = relay.logs();
        let warnings: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        if !warnings.is_empty() {
            eprintln!(
                "relay {i} logged {} warnings and errors, the last:",
                warnings.len()
            );
            for line in warnings.iter().rev().take(3) {
                eprintln!("  {line}");
            }
        }
    }
    // Everything acknowledged must be delivered: read every queue to the end (`queue_empty`),
    // acking everything, and again until a round finds every queue empty (right after a
    // saturated run the relay is still committing sends nobody was answered for).
    let mut late = 0usize;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut total = 0usize;
        for (_, token) in &devices {
            for id in sweep(&server.addr, token).await? {
                total += 1;
                if seen.received.insert(id) {
                    late += 1;
                }
            }
        }
        if total == 0 {
            break;
        }
        if rounds >= 60 {
            return Err("the queues were still not empty after 60 sweeps".into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let acked: HashSet<[u8; 16]> = seen.acked.into_iter().collect();
    let lost = acked.difference(&seen.received).count();
    if let Some(at) = killed {
        println!(
            "killed relay 0 (SIGKILL) at {:.1}s; reconnects={} in_doubt={} (sent, socket lost before the result)",
            at.as_secs_f64(),
            totals.reconnects.load(Ordering::Relaxed),
            totals.in_doubt.load(Ordering::Relaxed)
        );
    }
    println!(
        "acknowledged={} delivered after the run={late} (queues read {rounds} times until empty) lost={lost}",
        acked.len()
    );
    drop(server);
    if lost > 0 {
        return Err(format!("{lost} acknowledged envelopes were never delivered").into());
    }
    Ok(())
}

/// Raises this process's soft limit on open files to `need` (the relay, a child, inherits it):
/// up to the hard limit, and past it when privileged. Returns the limit now in force.
fn raise_nofile(need: u64) -> Result<u64, BoxError> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= need {
        return Ok(soft);
    }
    if hard < need && rlimit::setrlimit(rlimit::Resource::NOFILE, need, need).is_ok() {
        return Ok(need);
    }
    Ok(rlimit::increase_nofile_limit(need)?)
}

async fn idle(args: &Args) -> Result<(), BoxError> {
    let k = args.connections;
    // One descriptor per socket on each side, plus the relay's database, log and listener.
    let need = u64::try_from(k)?.saturating_add(256);
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE)?.0;
    let limit = raise_nofile(need)?;
    if limit < need {
        println!(
            "warning: the open-file limit is {limit} (hard limit reached), {need} are needed \
             for {k} connections: the run will fail once it runs out"
        );
    } else if limit != before {
        println!("open-file limit raised from {before} to {limit}");
    }
    let (server, devices) = if args.baseline {
        (start_echo().await?, Vec::new())
    } else {
        start_relay(args, k).await?
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_kib();
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(k);
    for i in 0..k {
        let token = devices.get(i).map(|d| d.1.as_str());
        sockets.push(open(&server.addr, token).await?);
    }
    if !args.baseline {
        for ws in &mut sockets {
            while let Some(Ok(m)) = ws.next().await {
                if is_queue_empty(&m) {
                    break;
                }
            }
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    let rss_open = server.rss_kib();
    // Let the server finish what the handshakes left (freed buffers, timers) before reading.
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_after = server.rss_kib();
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / k as f64;
    println!(
        "mode=idle target={} connections={k} opened in {open_secs:.1}s, settled {}s",
        if args.baseline { "echo" } else { "relay" },
        args.settle
    );
    println!(
        "server rss: before={rss_before} KiB all-open={rss_open} KiB after={rss_after} KiB => {:.0} bytes/connection => {:.0} connections/GiB",
        per_conn,
        (1u64 << 30) as f64 / per_conn
    );
    drop(sockets);
    drop(server);
    Ok(())
}

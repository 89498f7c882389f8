//! `haven-loadgen`: drives a Haven relay's WebSocket and reports throughput, send-to-delivery
//! latency and the relay's resident memory; `--baseline` measures a bare tokio-tungstenite echo
//! server with the same client for comparison.
//!
//! ```text
//! haven-loadgen throughput [--devices N] [--rate R] [--seconds S] [--size B] [--baseline]
//! haven-loadgen idle [--connections K] [--settle S] [--baseline]
//! common: [--relay PATH] (default: haven-relay next to this binary)
//!         [--postgres URL] (default: a fresh SQLite database in a temporary directory)
//!         [--set NAME=VALUE]… (extra environment for the relay, e.g.
//!          HAVEN_DATABASE_SQLITE_SYNCHRONOUS=normal)
//! ```
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
    Ok(out)
}

const USAGE: &str = "usage: haven-loadgen (throughput|idle|echo-server) [--devices N] [--rate R] \
[--seconds S] [--size B] [--connections K] [--settle S] [--baseline] [--relay PATH] [--postgres URL] \
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

/// A running server process (relay or echo baseline) and its address.
/// A server under load: the relay (started from the workspace's one table of test-relay
/// settings, `haven-testkit`) or the echo baseline. Killed when dropped.
struct Server {
    process: ServerProcess,
    addr: String,
    pid: u32,
}

enum ServerProcess {
    Relay(RelayProcess),
    Echo(tokio::process::Child),
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.process {
            ServerProcess::Relay(relay) => relay.kill(),
            ServerProcess::Echo(child) => {
                let _ = child.start_kill();
            }
        }
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
/// provisioned devices.
async fn start_relay(args: &Args, devices: usize) -> Result<(Server, Vec<(Id, String)>), BoxError> {
    let mut config = RelayConfig::new();
    if let Some(url) = &args.postgres {
        config = config.database(url);
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
        .set("HAVEN_MAIL_PAIR_SENDS_PER_MINUTE", "100000000")
        .set("HAVEN_MAIL_PAIR_SENDS_PER_DAY", "1000000000")
        .set("HAVEN_WS_POLL_INTERVAL_SECS", "300");
    // Given last, so they override the defaults above.
    for (k, v) in &args.env {
        config = config.set(k, v.as_str());
    }
    let binary = relay_path(args)?;
    let relay = tokio::task::spawn_blocking(move || config.spawn(binary)).await?;
    let addr = relay.addr().to_string();
    let pid = relay.pid().ok_or("no pid")?;
    Ok((
        Server {
            process: ServerProcess::Relay(relay),
            addr,
            pid,
        },
        provisioned,
    ))
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
    let pid = child.id().ok_or("no pid")?;
    Ok(Server {
        process: ServerProcess::Echo(child),
        addr,
        pid,
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

fn send_frame(request_id: u32, to: &Id, content: &[u8]) -> Vec<u8> {
    ClientFrame::Send {
        request_id,
        account: *to.as_bytes(),
        message_id: *Id::random().as_bytes(),
        ephemeral: false,
        access_key: None,
        envelopes: vec![SendEnvelope {
            device: 1,
            content,
            commitment: None,
        }],
    }
    .encode()
    .unwrap_or_default()
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
}

/// One client socket: sends at `rate_per_sec` to `to` (relay) or to itself (echo), receives,
/// acks, records latencies in microseconds. `phase` (0..1) offsets its ticks within the tick
/// period and its send credit, so that many clients together send at an even pace.
async fn client_loop(
    mut ws: Ws,
    to: Option<Id>,
    schedule: Schedule,
    size: usize,
    totals: Arc<Totals>,
) -> Vec<u64> {
    let Schedule {
        rate_per_sec,
        phase,
        epoch,
        until,
    } = schedule;
    let mut latencies = Vec::new();
    let tick = Duration::from_millis(10);
    let per_tick = rate_per_sec * tick.as_secs_f64();
    let mut credit = phase;
    let mut timer =
        tokio::time::interval_at(tokio::time::Instant::now() + tick.mul_f64(phase), tick);
    let mut request_id = 0u32;
    let drain_until = until + Duration::from_secs(2);
    // Acks are batched per 10 ms tick, as a real client acks what one read burst delivered.
    let mut acks: Vec<[u8; 16]> = Vec::new();
    loop {
        let now = Instant::now();
        if now > drain_until {
            break;
        }
        tokio::select! {
            _ = timer.tick() => {
                for frame in frames::ack_frames(&std::mem::take(&mut acks)) {
                    if ws.feed(Message::Binary(frame.into())).await.is_err() {
                        return latencies;
                    }
                }
                credit += if now < until { per_tick } else { 0.0 };
                while credit >= 1.0 {
                    credit -= 1.0;
                    request_id = request_id.wrapping_add(1);
                    let payload = stamp(epoch, size);
                    let frame = match &to {
                        Some(to) => send_frame(request_id, to, &payload),
                        None => payload,
                    };
                    if ws.feed(Message::Binary(frame.into())).await.is_err() {
                        return latencies;
                    }
                    totals.sent.fetch_add(1, Ordering::Relaxed);
                }
                if ws.flush().await.is_err() {
                    return latencies;
                }
            }
            _ = tokio::time::sleep_until((drain_until).into()) => break,
            msg = ws.next() => {
                let Some(Ok(Message::Binary(b))) = msg else {
                    if matches!(msg, Some(Ok(_))) { continue; }
                    return latencies;
                };
                let now_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(0);
                let sent_at = |payload: &[u8]| {
                    payload.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_be_bytes)
                };
                if to.is_none() {
                    // Echo baseline: the payload itself comes back.
                    if let Some(t) = sent_at(&b) {
                        latencies.push(now_ns.saturating_sub(t) / 1000);
                    }
                    continue;
                }
                match ServerFrame::decode(&b) {
                    Ok(ServerFrame::Envelope(e)) => {
                        if let Some(t) = sent_at(e.content) {
                            latencies.push(now_ns.saturating_sub(t) / 1000);
                        }
                        acks.push(e.message_id);
                    }
                    Ok(ServerFrame::Result { status, .. }) if status != 200 => {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
    }
    latencies
}

async fn throughput(args: &Args) -> Result<(), BoxError> {
    let n = args.devices;
    let (server, devices) = if args.baseline {
        (start_echo().await?, Vec::new())
    } else {
        start_relay(args, n).await?
    };
    let rss_before = rss_kib(server.pid)?;
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
    let totals = Arc::new(Totals {
        sent: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let per_socket = args.rate as f64 / n as f64;
    let mut tasks = Vec::with_capacity(n);
    for (i, ws) in sockets.into_iter().enumerate() {
        let to = devices.get((i + 1) % n.max(1)).map(|d| d.0);
        let to = if args.baseline { None } else { to };
        tasks.push(tokio::spawn(client_loop(
            ws,
            to,
            Schedule {
                rate_per_sec: per_socket,
                // Spread the clients' sends evenly over time: with equal start conditions every
                // client would send in the same 10 ms tick, one burst of `devices` sends at once.
                phase: i as f64 / n as f64,
                epoch,
                until,
            },
            args.size,
            totals.clone(),
        )));
    }
    let mut peak_rss = 0;
    let mut lat = Vec::new();
    let sampler = async {
        loop {
            if let Ok(r) = rss_kib(server.pid) {
                peak_rss = peak_rss.max(r);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let joined = async {
        for t in tasks {
            if let Ok(mut l) = t.await {
                lat.append(&mut l);
            }
        }
    };
    tokio::select! {
        () = joined => {},
        () = sampler => {},
    }
    lat.sort_unstable();
    let sent = totals.sent.load(Ordering::Relaxed);
    let secs = args.seconds as f64;
    println!(
        "mode=throughput target={} devices={n} size={}B seconds={} baseline={}",
        if args.baseline { "echo" } else { "relay" },
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
    drop(server);
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
    let rss_before = rss_kib(server.pid)?;
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
    let rss_open = rss_kib(server.pid)?;
    // Let the server finish what the handshakes left (freed buffers, timers) before reading.
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_after = rss_kib(server.pid)?;
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

//! Attachment throughput and peak memory, end to end: a real `haven-relay` process (SQLite, the
//! local blob backend or an `s3s-fs` S3 server), the SDK encrypting, uploading, downloading,
//! verifying and decrypting. Baselines in the same run: `cp` of the same number of bytes, and a
//! plain `object_store` multipart put of them into the same storage.
//!
//! ```text
//! cargo run -p haven-client --example blob_bench -- \
//!     --relay target/debug/haven-relay --sizes 1M,100M,1G --backends local,s3 [--max-rss-mib 64]
//! ```
//!
//! Peak resident memory is `VmHWM` from `/proc/<pid>/status`: the relay is a fresh process per
//! (backend, size); the client's figure is this process's peak during the upload and download
//! (reset through `/proc/self/clear_refs` before each transfer; baselines run afterwards). With
//! `--max-rss-mib N` the run fails if either peak exceeds N MiB. Work files go to `/dev/shm`
//! (tmpfs) when it exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use haven_client::RelayClient;
use haven_client::attachments::Attachments;
use object_store::{ObjectStore, ObjectStoreExt as _, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

const ACCESS_KEY: &str = "haven-bench-access";
const SECRET_KEY: &str = "haven-bench-secret-key-0123456789";
const BUCKET: &str = "haven-bench";
const MIB: u64 = 1 << 20;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn parse_size(s: &str) -> u64 {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().unwrap();
    n * match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => MIB,
        "G" => 1 << 30,
        other => panic!("unknown unit {other}"),
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_s3(root: &Path) -> (Proc, String) {
    let home = std::env::var("HOME").unwrap();
    let bin = std::env::var("HAVEN_TEST_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&home).join(".cargo/bin/s3s-fs"));
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

fn start_relay(bin: &Path, work: &Path, s3: Option<&str>) -> (Proc, String) {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HAVEN_LISTEN", "127.0.0.1:0")
        .env("HAVEN_METRICS_LISTEN", "off")
        .env("HAVEN_LOG", "warn")
        .env("HAVEN_RATE_LIMIT_PER_MINUTE", "100000")
        .env(
            "HAVEN_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", work.join("relay.db").display()),
        )
        .env("HAVEN_BLOBS_DIR", work.join("blobs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(endpoint) = s3 {
        cmd.env("HAVEN_BLOBS_BACKEND", "s3")
            .env("HAVEN_BLOBS_S3_ENDPOINT", endpoint)
            .env("HAVEN_BLOBS_S3_BUCKET", BUCKET)
            .env("HAVEN_BLOBS_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("HAVEN_BLOBS_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("HAVEN_BLOBS_S3_ALLOW_HTTP", "true");
    }
    let mut child = cmd.spawn().expect("haven-relay binary (see --relay)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("haven-relay listening on http://")
        .unwrap_or_else(|| panic!("unexpected relay output {line:?}"))
        .to_owned();
    (Proc(child), addr)
}

/// Writes `len` pseudo-random bytes (cheap xorshift, not all zeros) and returns their SHA-256.
fn write_source(path: &Path, len: u64) -> [u8; 32] {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap();
        file.write_all(&buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.flush().unwrap();
    hasher.finalize().into()
}

/// Hashes what is written to it (the download's destination, so nothing is kept in memory).
struct HashWriter(Sha256, u64);

impl tokio::io::AsyncWrite for HashWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64().max(1e-9)
}

/// `object_store` multipart put of the file at `src` to `store` (the baseline the relay's
/// upload path is compared with).
async fn plain_put(store: &dyn ObjectStore, src: &Path) -> Duration {
    let started = Instant::now();
    let upload = store
        .put_multipart(&object_store::path::Path::from("baseline/object"))
        .await
        .unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
    let mut file = tokio::fs::File::open(src).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use tokio::io::AsyncReadExt as _;
        let n = file.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        writer.wait_for_capacity(2).await.unwrap();
        writer.write(&buf[..n]);
    }
    writer.finish().await.unwrap();
    let elapsed = started.elapsed();
    store
        .delete(&object_store::path::Path::from("baseline/object"))
        .await
        .unwrap();
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let relay_bin =
        PathBuf::from(arg("--relay").unwrap_or_else(|| "target/debug/haven-relay".into()));
    let sizes: Vec<u64> = arg("--sizes")
        .unwrap_or_else(|| "1M,100M,1G".into())
        .split(',')
        .map(parse_size)
        .collect();
    let backends: Vec<String> = arg("--backends")
        .unwrap_or_else(|| "local,s3".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let max_rss_kib = arg("--max-rss-mib").map(|m| m.parse::<u64>().unwrap() * 1024);
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    println!(
        "| backend | size | upload MiB/s | download MiB/s | cp MiB/s | object_store put MiB/s | relay peak RSS MiB | client peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut over = Vec::new();
    for backend in &backends {
        for &size in &sizes {
            let work = tempfile::Builder::new()
                .prefix("haven-blob-bench")
                .tempdir_in(&base)
                .unwrap();
            let src = work.path().join("source.bin");
            let expected = write_source(&src, size);
            let s3 = (backend == "s3").then(|| start_s3(&work.path().join("s3")));
            let (relay, addr) = start_relay(
                &relay_bin,
                work.path(),
                s3.as_ref().map(|(_, e)| e.as_str()),
            );
            // Reset this process's peak RSS so the figure covers this transfer only (not the
            // source generation or an earlier baseline).
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            let client = RelayClient::new(&format!("http://{addr}")).unwrap();
            client
                .register(None, b"bench password", &[1u8; 64], None)
                .await
                .unwrap();
            let attachments = Attachments::new(&client).unwrap();

            let started = Instant::now();
            let pointer = attachments
                .upload_file(&src, "application/octet-stream", None, None, |_| {})
                .await
                .unwrap();
            let up = started.elapsed();
            let blob = pointer.blob_size().unwrap();

            let started = Instant::now();
            let mut sink = HashWriter(Sha256::new(), 0);
            attachments
                .download(&pointer, &mut sink, |_| {})
                .await
                .unwrap();
            sink.shutdown().await.unwrap();
            let down = started.elapsed();
            let got: [u8; 32] = sink.0.finalize().into();
            assert_eq!(got, expected, "round trip changed the bytes");
            assert_eq!(sink.1, size);

            let relay_rss = peak_rss_kib(relay.0.id());
            eprintln!(
                "{backend} {size}: relay cpu {:.1} s, client cpu {:.1} s, wall {:.1} s",
                cpu_secs(relay.0.id()),
                cpu_secs(std::process::id()),
                (up + down).as_secs_f64()
            );
            let client_rss = peak_rss_kib(std::process::id());

            // Baselines on the same bytes count (the source file stands in for the blob).
            let started = Instant::now();
            let status = Command::new("cp")
                .arg(&src)
                .arg(work.path().join("copy.bin"))
                .status()
                .unwrap();
            assert!(status.success());
            let cp = started.elapsed();
            std::fs::remove_file(work.path().join("copy.bin")).unwrap();
            let store: Box<dyn ObjectStore> = match &s3 {
                Some((_, endpoint)) => Box::new(
                    object_store::aws::AmazonS3Builder::new()
                        .with_endpoint(endpoint)
                        .with_bucket_name(BUCKET)
                        .with_region("us-east-1")
                        .with_access_key_id(ACCESS_KEY)
                        .with_secret_access_key(SECRET_KEY)
                        .with_allow_http(true)
                        .build()
                        .unwrap(),
                ),
                None => {
                    let dir = work.path().join("baseline");
                    std::fs::create_dir_all(&dir).unwrap();
                    Box::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap())
                }
            };
            let put = plain_put(store.as_ref(), &src).await;

            println!(
                "| {backend} | {} MiB (blob {blob} B) | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
                size / MIB,
                mib_s(size, up),
                mib_s(size, down),
                mib_s(size, cp),
                mib_s(size, put),
                relay_rss as f64 / 1024.0,
                client_rss as f64 / 1024.0,
            );
            if let Some(max) = max_rss_kib
                && (relay_rss > max || client_rss > max)
            {
                over.push(format!(
                    "{backend} {size}: relay {relay_rss} KiB, client {client_rss} KiB"
                ));
            }
            drop(relay);
            drop(s3);
        }
    }
    if !over.is_empty() {
        eprintln!("peak resident memory over the limit: {over:?}");
        std::process::exit(1);
    }
}

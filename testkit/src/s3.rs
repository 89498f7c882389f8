//! A real S3 server for the blob tests: `s3s-fs`, with an access key and a secret key so every
//! request's signature is checked, on an ephemeral port, serving a fresh directory.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::services;

/// The access key id the test server accepts.
pub const ACCESS_KEY: &str = "haven-test-access";
/// The secret key the test server signs with.
pub const SECRET_KEY: &str = "haven-test-secret-key-0123456789";
/// The bucket every test server has.
pub const BUCKET: &str = "haven-blobs";

/// An `s3s-fs` process serving [`BUCKET`] from a temporary directory; killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    endpoint: String,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server, or returns `None` after reporting the calling test as skipped when
    /// `s3s-fs` is not installed (see [`services`]).
    ///
    /// # Panics
    /// When the server does not start.
    #[allow(clippy::expect_used, clippy::panic)] // A server that cannot start fails the test.
    pub fn start() -> Option<Self> {
        let bin = services::s3s_fs()?;
        let root = tempfile::Builder::new()
            .prefix("haven-s3-")
            .tempdir()
            .expect("temporary directory");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket directory");
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        // The server logs the address it bound; port 0 leaves the choice to the kernel, so no
        // other process can take the port between choosing and binding it.
        let (tx, rx) = mpsc::channel::<String>();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut seen = String::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if let Some(endpoint) = endpoint_in(&seen) {
                        let _ = tx.send(endpoint);
                        seen.clear();
                    }
                }
            });
        }
        drop(tx);
        let endpoint = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(endpoint) => endpoint,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3s-fs did not report its address");
            }
        };
        Some(Self {
            child,
            endpoint,
            root,
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET)
    }

    /// The server's data root.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The relay settings that store blobs in this server.
    pub fn relay_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HAVEN_BLOBS_BACKEND", "s3".into()),
            ("HAVEN_BLOBS_S3_ENDPOINT", self.endpoint.clone()),
            ("HAVEN_BLOBS_S3_BUCKET", BUCKET.into()),
            ("HAVEN_BLOBS_S3_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("HAVEN_BLOBS_S3_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("HAVEN_BLOBS_S3_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `http://127.0.0.1:<port>` with a non-zero port in `text`.
fn endpoint_in(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(i) = rest.find("127.0.0.1:") {
        let digits: String = rest[i + 10..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.parse::<u16>().is_ok_and(|p| p != 0) {
            return Some(format!("http://127.0.0.1:{digits}"));
        }
        rest = &rest[i + 10..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::endpoint_in;

    #[test]
    fn finds_the_bound_port() {
        assert_eq!(
            endpoint_in("INFO s3s_fs: server is running at http://127.0.0.1:40123\n").as_deref(),
            Some("http://127.0.0.1:40123")
        );
        assert_eq!(endpoint_in("listening on 127.0.0.1:0"), None);
    }
}

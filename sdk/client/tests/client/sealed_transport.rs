//! Sealed sends are not linkable to their sender by the connection they travel on (issue 19,
//! THREAT_MODEL "sealed sender"): a recorder in front of a real relay sees every TCP connection
//! the clients open and what each carried; a connection that carried a sealed send carried
//! nothing else — no bearer token, no other request — while the same clients' authenticated
//! traffic goes on as before.

use std::sync::{Arc, Mutex};

use haven_client::messenger::Messenger;
use haven_client::relay::RelayClient;
use haven_client::{ClientStore, Conversation, Device};
use haven_testkit::RelayConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::common::Relay;

const PW: &[u8] = b"sealed transport: correct horse";

/// What one client connection carried (the request bytes, as sent: HTTP/1.1 in clear here).
#[derive(Default, Debug, Clone)]
struct Seen {
    requests: usize,
    bearer: bool,
    sealed: usize,
}

/// The bytes a client sent on one connection.
type Recorded = Arc<Mutex<Vec<u8>>>;

/// A TCP relay-through that records, per connection, what the client sent on it.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let bytes = Arc::new(Mutex::new(Vec::new()));
                record.lock().unwrap().push(bytes.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    });
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sw.shutdown().await;
                    let _ = down.await;
                });
            }
        });
        Self { url, seen }
    }

    /// What each connection carried so far.
    fn connections(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|bytes| {
                let text = String::from_utf8_lossy(&bytes.lock().unwrap()).to_lowercase();
                let request_lines = text
                    .split("\r\n")
                    .filter(|l| {
                        ["get ", "post ", "put ", "delete ", "patch "]
                            .iter()
                            .any(|m| l.starts_with(m))
                            && l.ends_with(" http/1.1")
                    })
                    .collect::<Vec<_>>();
                Seen {
                    requests: request_lines.len(),
                    bearer: text.contains("\r\nauthorization: bearer "),
                    sealed: request_lines
                        .iter()
                        .filter(|l| l.starts_with("post /v1/messages/") && l.contains("/sealed "))
                        .count(),
                }
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_sends_travel_alone_on_connections_without_credentials() {
    let relay = Relay::start(RelayConfig::new());
    let upstream = relay.url().trim_start_matches("http://").to_owned();
    let recorder = Recorder::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let register = |file: &'static str| {
        let client = RelayClient::new(&recorder.url).unwrap();
        let store = ClientStore::open(&dir.path().join(file), &[4; 32]).unwrap();
        async move { Device::register(client, store, None, PW).await.unwrap() }
    };
    let alice = Arc::new(Messenger::new(Arc::new(register("a.db").await)));
    let bob = Arc::new(Messenger::new(Arc::new(register("b.db").await)));
    let (alice_id, bob_id) = (alice.device().account_bytes(), bob.device().account_bytes());

    // Contact cards both ways: each then holds the other's access key, and sends go sealed.
    alice.add_contact(&hex::encode(bob_id)).await.unwrap();
    bob.sync().await.unwrap();
    bob.add_contact(&hex::encode(alice_id)).await.unwrap();
    alice.sync().await.unwrap();
    for text in ["one", "two", "three"] {
        alice
            .send_text(Conversation::Direct(bob_id), text)
            .await
            .unwrap();
        // Authenticated traffic in between (a fetch with the bearer token).
        alice.sync().await.unwrap();
    }
    bob.sync().await.unwrap();
    let texts: Vec<String> = bob
        .history(Conversation::Direct(alice_id))
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);

    let connections = recorder.connections();
    let sealed: usize = connections.iter().map(|c| c.sealed).sum();
    assert!(sealed >= 3, "the texts went sealed: {connections:?}");
    assert!(
        connections.iter().any(|c| c.bearer && c.requests > 1),
        "authenticated requests still share their connections: {connections:?}"
    );
    for c in &connections {
        if c.sealed > 0 {
            assert!(
                !c.bearer && c.requests == 1,
                "a sealed send shared its connection: {c:?}"
            );
        }
    }
}

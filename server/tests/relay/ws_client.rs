//! Relay processes, a minimal HTTP client and a WebSocket client speaking the frames of
//! PROTOCOL.md §11.14 (through `haven_protocol::frames`), shared by the WebSocket and
//! multi-instance tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt as _, StreamExt as _};
use haven_protocol::frames::{ClientFrame, SendEnvelope, ServerFrame};
use haven_testkit::{RelayConfig, RelayProcess};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A relay process (from `haven-testkit`) and its address as text.
pub struct Relay {
    pub process: RelayProcess,
    pub addr: String,
}

impl Relay {
    /// Starts `haven-relay` with the test defaults plus `env`.
    pub fn spawn(env: &[(&str, &str)]) -> Self {
        let process = RelayConfig::new()
            .set_all(env)
            .spawn(crate::common::RELAY_BIN);
        let addr = process.addr().to_string();
        Self { process, addr }
    }

    /// Everything the relay wrote so far.
    pub fn stderr(&self) -> String {
        self.process.logs()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.process.sigterm();
    }

    /// Waits for the process to exit (at most `timeout`), returning whether it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        self.process.wait_exit(timeout)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and JSON body (Null if empty).
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    http_with(addr, method, path, bearer, &[], body).await
}

/// [`http`] with extra request headers (name, value).
pub async fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    // The relay printed its address after binding: it accepts from then on.
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
    let body = body.map(|b| serde_json::to_vec(b).unwrap());
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = &body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    if let Some(b) = &body {
        stream.write_all(b).await.unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let json = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    (status, json)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).unwrap()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/v1/ws` with optional bearer, ticket and origin. `Err` carries the HTTP status and
/// the JSON error body of a refused upgrade.
pub async fn try_connect(
    relay_addr: &str,
    bearer: Option<&str>,
    ticket: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, (u16, Value)> {
    let url = match ticket {
        Some(t) => format!("ws://{relay_addr}/v1/ws?ticket={t}"),
        None => format!("ws://{relay_addr}/v1/ws"),
    };
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(other) => panic!("websocket connect failed: {other}"),
    }
}

pub async fn connect(relay_addr: &str, bearer: &str) -> Ws {
    try_connect(relay_addr, Some(bearer), None, None)
        .await
        .unwrap_or_else(|(s, b)| panic!("upgrade refused: {s} {b}"))
}

/// A server frame, decoded as a client would (PROTOCOL.md §11.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Envelope {
        seq: u64,
        message_id: [u8; 16],
        source: Option<([u8; 16], u32)>,
        content: Vec<u8>,
    },
    QueueEmpty,
    ChannelEntry {
        channel: [u8; 16],
        seq: u64,
        entry: Vec<u8>,
        /// The commitment and stamp of a franked entry (`0x07` frame).
        franking: Option<([u8; 32], [u8; 32])>,
    },
    Ephemeral {
        source: Option<([u8; 16], u32)>,
        content: Vec<u8>,
    },
    Result {
        request_id: u32,
        status: u16,
        body: Value,
    },
    Error(Value),
    Close(Option<u16>),
}

/// Decodes a relay frame with the protocol's codec into the owned view the tests match on.
pub fn parse(bytes: &[u8]) -> Frame {
    match ServerFrame::decode(bytes).expect("a well-formed frame") {
        ServerFrame::Envelope(e) => Frame::Envelope {
            seq: e.seq,
            message_id: e.message_id,
            source: e.source,
            content: e.content.to_vec(),
        },
        ServerFrame::QueueEmpty => Frame::QueueEmpty,
        ServerFrame::ChannelEntry {
            channel,
            seq,
            entry,
            franking,
            ..
        } => Frame::ChannelEntry {
            channel,
            seq,
            entry: entry.to_vec(),
            franking: franking.map(|f| (f.commitment, f.stamp)),
        },
        ServerFrame::Ephemeral {
            source, content, ..
        } => Frame::Ephemeral {
            source,
            content: content.to_vec(),
        },
        ServerFrame::Result {
            request_id,
            status,
            body,
        } => Frame::Result {
            request_id,
            status,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        },
        ServerFrame::Error { body } => Frame::Error(serde_json::from_slice(body).unwrap()),
    }
}

/// The next application frame (pings skipped); `Close` when the server closed or the stream
/// ended. Panics after `timeout`.
pub async fn next(ws: &mut Ws, timeout: Duration) -> Frame {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("timed out waiting for a frame");
        match msg {
            Some(Ok(Message::Binary(b))) => return parse(&b),
            Some(Ok(Message::Close(frame))) => {
                return Frame::Close(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(Message::Text(t))) => panic!("unexpected text frame {t}"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Frame::Close(None),
        }
    }
}

/// Asserts that nothing but pings arrives for `wait`.
pub async fn silent(ws: &mut Ws, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

pub async fn send_bin(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into())).await.unwrap();
}

pub fn ack_frame(ids: &[[u8; 16]]) -> Vec<u8> {
    ClientFrame::Ack(ids.to_vec()).encode().unwrap()
}

pub fn send_frame(
    request_id: u32,
    account: &[u8; 16],
    message_id: &[u8; 16],
    ephemeral: bool,
    envelopes: &[(u32, &[u8])],
) -> Vec<u8> {
    ClientFrame::Send {
        request_id,
        account: *account,
        message_id: *message_id,
        ephemeral,
        access_key: None,
        envelopes: envelopes
            .iter()
            .map(|&(device, content)| SendEnvelope {
                device,
                content,
                commitment: None,
            })
            .collect(),
    }
    .encode()
    .unwrap()
}

/// A signal frame carrying `access_key` (the recipient's; ignored on the own account).
pub fn signal_frame(
    request_id: u32,
    account: &[u8; 16],
    device: u32,
    access_key: &[u8; 16],
    payload: &[u8],
) -> Vec<u8> {
    ClientFrame::Signal {
        request_id,
        account: *account,
        device,
        access_key: *access_key,
        payload,
    }
    .encode()
    .unwrap()
}

pub fn subscribe_frame(
    request_id: u32,
    channel: &[u8; 16],
    token: &[u8; 32],
    after: u64,
) -> Vec<u8> {
    ClientFrame::Subscribe {
        request_id,
        channel: *channel,
        token: *token,
        after,
    }
    .encode()
    .unwrap()
}

pub fn unsubscribe_frame(request_id: u32, channel: &[u8; 16]) -> Vec<u8> {
    ClientFrame::Unsubscribe {
        request_id,
        channel: *channel,
    }
    .encode()
    .unwrap()
}

pub fn hex16(text: &str) -> [u8; 16] {
    hex::decode(text).unwrap().try_into().unwrap()
}

pub fn close_code(code: CloseCode) -> u16 {
    u16::from(code)
}

//! Interop with the native client through a real relay (in-process, SQLite). The web side is
//! the wasm crate's device and messenger cores (`DeviceCore`, `MessengerCore`) driven over HTTP
//! as `js/haven-client.js` drives them (`Page` below mirrors its `HavenClient` and
//! `HavenMessenger`); the other side is a native `haven_client::Messenger`. They become
//! contacts, talk 1:1 sealed both ways (the relay sees no sender once each holds the other's
//! contact card), and talk in a group the web creates with the native account as a member,
//! both ways; the relay's files hold none of the texts or the group's name. Devices link
//! across platforms by approval, both ways, and an unlink reaches the other platform's list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;

use haven_client::relay::RelayClient;
use haven_client::{
    ClientStore, Conversation, Device, Event, Messenger, ReceiptPolicy, RelayError,
};
use haven_protocol::api::error::{ErrorBody, ErrorDetail};
use haven_protocol::api::messages::FetchResponse;
use haven_testkit::RelayConfig;
use haven_wasm::device::DeviceCore;
use haven_wasm::messenger::{
    Action, ChannelPost, Delivery, EventView, GroupInvites, MessageView, MessengerCore,
};
use reqwest::Method;
use serde_json::Value;

const SECRETS: &[&str] = &[
    "from the web, periwinkle",
    "from native, tangerine",
    "web again, sealed marzipan",
    "group hello from the web, obsidian",
    "group reply from native, lanternfish",
    "harbour walkers",
];

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The page: its device and messenger cores, the relay, the access token.
struct Page {
    d: DeviceCore,
    m: MessengerCore,
    http: RelayClient,
    token: String,
    account: String,
    events: Vec<EventView>,
    /// Whether each envelope fetched came sealed (no `source`).
    sealed_in: Vec<bool>,
}

impl Page {
    /// One JSON request as `HavenClient.call` makes it (`bearer`: the access token, a channel
    /// token, or none for anonymous and sealed requests).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Value, RelayError> {
        let body: Option<Value> = body.map(|b| serde_json::from_str(b).unwrap());
        match bearer {
            Some(t) => {
                self.http
                    .request_with_bearer(method, path, t, body.as_ref())
                    .await
            }
            None => {
                self.http
                    .request_anonymous(method, path, body.as_ref())
                    .await
            }
        }
    }

    async fn authed(&self, method: Method, path: &str, body: Option<&str>) -> Value {
        self.call(method, path, body, Some(&self.token.clone()))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `HavenClient.register`: OPAQUE, the session, the relay key, the keys, the access key.
    async fn register(url: &str, username: &str) -> Self {
        let mut page = Self {
            d: DeviceCore::new().unwrap(),
            m: MessengerCore::new(),
            http: RelayClient::new(url).unwrap(),
            token: String::new(),
            account: String::new(),
            events: Vec::new(),
            sealed_in: Vec::new(),
        };
        let start = page.d.register_start(b"pw-web").unwrap();
        let start = page
            .call(Method::POST, "/v1/register/start", Some(&start), None)
            .await
            .unwrap();
        let finish = page
            .d
            .register_finish(b"pw-web", &start.to_string(), Some(username))
            .unwrap();
        let tokens = page
            .call(Method::POST, "/v1/register/finish", Some(&finish), None)
            .await
            .unwrap();
        let info = page.d.set_session(&tokens.to_string()).unwrap();
        page.token = info.access_token.clone();
        page.account = info.account_id;
        let key = page
            .call(Method::GET, "/v1/certificate/key", None, None)
            .await
            .unwrap();
        page.d.set_relay_key(&key.to_string()).unwrap();
        let upload = page.d.prekey_upload(now() / 1000).unwrap();
        page.authed(Method::PUT, "/v1/keys", Some(&upload)).await;
        let access = page.d.prepare_access_key().unwrap();
        page.authed(Method::PUT, "/v1/account/access-key", Some(&access))
            .await;
        page.d.confirm_access_key().unwrap();
        // `HavenClient.setUp`: the account's first signed device list.
        assert!(page.d.needs_first_list().unwrap());
        let list = page.d.first_own_list(now() / 1000).unwrap();
        page.authed(Method::PUT, "/v1/account/device-list", Some(&list))
            .await;
        page.d.own_list_published(now() / 1000).unwrap();
        page
    }

    /// `HavenClient.fetchDeviceList`: the account's signed list (404: it publishes none).
    async fn fetch_device_list(&mut self, account: &str) {
        let path = format!("/v1/accounts/{account}/device-list");
        let answer = match self
            .call(Method::GET, &path, None, Some(&self.token.clone()))
            .await
        {
            Ok(v) => Some(v.to_string()),
            Err(e) if e.code() == Some("device_list_not_found") => None,
            Err(e) => panic!("{path}: {e}"),
        };
        self.d
            .accept_device_list(account, answer.as_deref(), now() / 1000)
            .unwrap();
    }

    async fn ensure_certificate(&mut self) {
        if self.d.needs_certificate(now() / 1000) {
            let cert = self.authed(Method::POST, "/v1/certificate", None).await;
            self.d
                .set_certificate(&cert.to_string(), now() / 1000)
                .unwrap();
        }
    }

    /// `HavenClient.deliver`: claims, encrypts, posts (without the bearer when sealed); a
    /// 409/410 repairs once. Returns whether it went sealed.
    async fn deliver(&mut self, message_id: &str, account: &str) -> Option<bool> {
        self.ensure_certificate().await;
        if self.d.device_list_due(account, now() / 1000).unwrap() {
            self.fetch_device_list(account).await;
        }
        for attempt in 0..2 {
            let mut answers = Vec::new();
            for path in self.d.claim_paths(account).unwrap() {
                answers.push(self.authed(Method::GET, &path, None).await.to_string());
            }
            let send = self
                .d
                .encrypt_prepared(message_id, account, &answers, now() / 1000)
                .unwrap()?;
            let bearer = (!send.sealed).then(|| self.token.clone());
            match self
                .call(
                    Method::POST,
                    &send.path,
                    Some(&send.body),
                    bearer.as_deref(),
                )
                .await
            {
                Ok(_) => return Some(send.sealed),
                Err(RelayError::Refused {
                    status: 409 | 410,
                    code,
                    message,
                    mismatches,
                }) if attempt == 0 => {
                    let answer = ErrorBody {
                        error: ErrorDetail {
                            code,
                            message,
                            mismatches,
                        },
                    };
                    let answer = serde_json::to_string(&answer).unwrap();
                    if let Err(e) = self.d.repair_devices(account, &answer, false) {
                        assert_eq!(e.code.as_str(), "need_device_list", "{e}");
                        self.fetch_device_list(account).await;
                        self.d.repair_devices(account, &answer, true).unwrap();
                    }
                }
                Err(e) => panic!("send to {account}: {e}"),
            }
        }
        panic!("device list still stale");
    }

    /// To a contact, then the copy to this account's other devices.
    async fn deliver_direct(&mut self, message_id: &str, account: &str) -> bool {
        let sealed = self.deliver(message_id, account).await.unwrap();
        if account != self.account {
            if self.d.own_devices_due(now() / 1000).unwrap() {
                let list = self.authed(Method::GET, "/v1/devices", None).await;
                self.d.set_own_devices(&list.to_string()).unwrap();
            }
            let own = self.account.clone();
            assert!(
                self.deliver(message_id, &own).await.is_none(),
                "no other own device"
            );
        }
        self.d.finish_send(message_id).unwrap();
        sealed
    }

    async fn deliver_all(&mut self, delivery: &Delivery) {
        for account in &delivery.accounts {
            self.deliver(&delivery.message_id, account).await;
        }
        self.d.finish_send(&delivery.message_id).unwrap();
    }

    async fn ensure_card(&mut self, account: &str) {
        if let Some(id) = self.m.card_for(&mut self.d, account, now()).unwrap() {
            self.deliver_direct(&id, account).await;
            self.m.card_sent(&mut self.d, account).unwrap();
        }
    }

    async fn post(&mut self, post: &ChannelPost) -> String {
        self.call(
            Method::POST,
            &post.path,
            Some(&post.body),
            Some(&post.token),
        )
        .await
        .unwrap()
        .to_string()
    }

    /// `HavenMessenger`'s action: returns whether a 1:1 content went sealed.
    async fn run(&mut self, action: Action) -> Option<bool> {
        let mut sealed = None;
        if let Some(direct) = &action.direct {
            self.ensure_card(&direct.account).await;
            sealed = Some(
                self.deliver_direct(&direct.message_id, &direct.account)
                    .await,
            );
        }
        if let Some(group) = &action.group {
            if let Some(key) = &group.sender_key {
                self.deliver_all(key).await;
            }
            self.post(&group.post).await;
        }
        self.m
            .action_done(&mut self.d, &action.action_id, true)
            .unwrap();
        sealed
    }

    async fn invites(&mut self, invites: &GroupInvites) {
        for account in invites.invite.accounts.clone() {
            if account != self.account {
                self.ensure_card(&account).await;
            }
        }
        self.deliver_all(&invites.invite).await;
        self.deliver_all(&invites.sender_key).await;
    }

    async fn run_tasks(&mut self) {
        for task in self.m.follow_ups(&self.d, now()).unwrap() {
            if let Some(delivery) = self.m.follow_up(&mut self.d, &task, now()).unwrap() {
                self.deliver_all(&delivery).await;
                self.m.task_done(&mut self.d, &task).unwrap();
            }
        }
    }

    /// `HavenMessenger.sync`: follow-ups, the mailbox (acked), every channel, follow-ups.
    async fn sync(&mut self) {
        self.run_tasks().await;
        let page = self
            .authed(Method::GET, "/v1/messages?after=0&limit=100", None)
            .await;
        let page: FetchResponse = serde_json::from_value(page).unwrap();
        let mut ids = Vec::new();
        for q in &page.envelopes {
            let id = q.message_id.to_hex();
            // As the page hands the relay's franking over (PROTOCOL §16.4).
            let franking = q.franking.as_ref().map(|f| {
                serde_json::json!({
                    "commitment": f.commitment,
                    "stamp": f.stamp,
                    "seq": q.seq,
                    "receivedAt": q.received_at,
                })
                .to_string()
            });
            let franking = franking.as_deref();
            let mut got = self
                .m
                .receive_envelope(&mut self.d, &id, &q.content, franking, false, false, now())
                .unwrap();
            if let Some(account) = got.account.clone() {
                self.fetch_device_list(&account).await;
                got = self
                    .m
                    .receive_envelope(&mut self.d, &id, &q.content, franking, false, true, now())
                    .unwrap();
            }
            self.sealed_in.push(q.source.is_none());
            self.events.extend(got.events);
            ids.push(id);
        }
        if !ids.is_empty() {
            let body = serde_json::json!({ "message_ids": ids }).to_string();
            self.authed(Method::POST, "/v1/messages/ack", Some(&body))
                .await;
        }
        for read in self.m.channel_reads(&self.d).unwrap() {
            let mut path = read.path.clone();
            loop {
                let answer = self
                    .call(Method::GET, &path, None, Some(&read.token))
                    .await
                    .unwrap();
                let page = self
                    .m
                    .receive_channel_page(&mut self.d, &read.channel_id, &answer.to_string(), now())
                    .unwrap();
                self.events.extend(page.received.events);
                match page.next {
                    Some(next) => path = next,
                    None => break,
                }
            }
        }
        self.run_tasks().await;
    }

    fn texts(&mut self, conversation: Conversation) -> Vec<String> {
        self.m
            .history(&self.d, conversation, now())
            .unwrap()
            .into_iter()
            .map(|m: MessageView| m.text)
            .collect()
    }
}

fn native_texts(m: &Messenger, conversation: Conversation) -> Vec<String> {
    m.history(conversation)
        .unwrap()
        .into_iter()
        .map(|r| r.text)
        .collect()
}

fn id(hex_id: &str) -> [u8; 16] {
    hex::decode(hex_id).unwrap().try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_native_messengers_talk_one_to_one_and_in_a_group() {
    let relay = RelayConfig::new().set("HAVEN_LOG", "warn").start();
    let url = relay.url();

    let mut web = Page::register(&url, "web_alice").await;
    let bob_device = Device::register(
        RelayClient::new(&url).unwrap(),
        ClientStore::open_in_memory(&[7u8; 32]).unwrap(),
        Some("native_bob"),
        b"pw-bob",
    )
    .await
    .unwrap();
    let bob = Arc::new(Messenger::new(Arc::new(bob_device)));
    // The delivery receipt is checked below, right after Bob's sync.
    bob.set_receipt_policy(ReceiptPolicy::Immediate).unwrap();
    let bob_hex = bob.device().account_id().to_owned();
    let (bob_id, web_id) = (id(&bob_hex), id(&web.account));

    // The web looks Bob up by username and writes: its card first, logged-in (it holds no
    // key of Bob's yet), then the text.
    let found = web
        .authed(
            Method::POST,
            "/v1/usernames/lookup",
            Some(r#"{"username":"native_bob"}"#),
        )
        .await;
    assert_eq!(found["account_id"], bob_hex.as_str());
    web.m
        .add_contact(&mut web.d, &bob_hex, Some("native_bob"))
        .unwrap();
    let action = web
        .m
        .send_text(
            &mut web.d,
            Conversation::Direct(bob_id),
            SECRETS[0],
            Vec::new(),
            now(),
        )
        .unwrap();
    let first_id = action.content_id.clone().unwrap();
    assert_eq!(web.run(action).await, Some(false));
    bob.sync().await.unwrap();
    let bobs = bob.history(Conversation::Direct(web_id)).unwrap();
    assert_eq!(bobs[0].text, SECRETS[0]);
    assert_eq!(hex::encode(bobs[0].message_id), first_id);
    // Bob's delivery receipt went out with his sync; his card and reply go sealed.
    bob.send_text(Conversation::Direct(web_id), SECRETS[1])
        .await
        .unwrap();
    web.sync().await;
    assert_eq!(
        web.texts(Conversation::Direct(bob_id)),
        [SECRETS[0], SECRETS[1]]
    );
    assert!(!web.sealed_in.is_empty());
    assert!(web.sealed_in.iter().all(|s| *s), "native → web sealed");
    let mine = &web
        .m
        .history(&web.d, Conversation::Direct(bob_id), now())
        .unwrap()[0];
    assert_eq!(mine.delivered_to, std::slice::from_ref(&bob_hex));
    // Now the web holds Bob's key: sealed the other way too.
    let again = web
        .m
        .send_text(
            &mut web.d,
            Conversation::Direct(bob_id),
            SECRETS[2],
            Vec::new(),
            now(),
        )
        .unwrap();
    assert_eq!(web.run(again).await, Some(true), "web → native sealed");
    bob.sync().await.unwrap();
    assert_eq!(
        native_texts(&bob, Conversation::Direct(web_id)),
        [SECRETS[0], SECRETS[1], SECRETS[2]]
    );
    // A reaction from the web reaches the native record.
    let react = web
        .m
        .react(
            &mut web.d,
            Conversation::Direct(bob_id),
            &hex::encode(bobs[0].message_id),
            "🍊",
            false,
            now(),
        )
        .unwrap();
    web.run(react).await;
    bob.sync().await.unwrap();
    let first = &bob.history(Conversation::Direct(web_id)).unwrap()[0];
    assert_eq!(first.reactions[0].emoji, "🍊");
    // Safety numbers agree on both sides.
    let ours = web.m.safety_numbers(&web.d, &bob_hex).unwrap();
    let theirs = bob.safety_numbers(&web_id).unwrap();
    assert_eq!(ours[0].digits, theirs[0].digits);

    // A group the web creates with the native account as a member.
    let mut events = bob.subscribe();
    let request = haven_wasm::messenger::channel_request().unwrap();
    let channel = web
        .authed(Method::POST, "/v1/channels", Some(&request))
        .await;
    let created = web
        .m
        .create_group(
            &mut web.d,
            SECRETS[5],
            std::slice::from_ref(&bob_hex),
            &channel.to_string(),
            now(),
        )
        .unwrap();
    let group = id(&created.group_id);
    web.invites(&created).await;
    bob.sync().await.unwrap();
    let joined = loop {
        match events.try_recv() {
            Ok(Event::GroupUpdated { group_id, name, .. }) => break (group_id, name),
            Ok(_) => {}
            Err(e) => panic!("no group event: {e}"),
        }
    };
    assert_eq!(joined, (group, SECRETS[5].to_owned()));
    // The web gets Bob's sender key (his follow-up), then both post.
    web.sync().await;
    let post = web
        .m
        .send_text(
            &mut web.d,
            Conversation::Group(group),
            SECRETS[3],
            Vec::new(),
            now(),
        )
        .unwrap();
    web.run(post).await;
    bob.sync().await.unwrap();
    assert_eq!(native_texts(&bob, Conversation::Group(group)), [SECRETS[3]]);
    bob.send_text(Conversation::Group(group), SECRETS[4])
        .await
        .unwrap();
    web.sync().await;
    assert_eq!(
        web.texts(Conversation::Group(group)),
        [SECRETS[3], SECRETS[4]]
    );
    assert!(
        !web.events
            .iter()
            .any(|e| matches!(e, EventView::Rejected { .. })),
        "{:?}",
        web.events
    );
    let info = &bob.groups().unwrap()[0];
    assert_eq!(info.members.len(), 2);

    // The relay's files hold no text and no group name.
    drop(bob);
    let mut haystack = Vec::new();
    let mut stack = vec![relay.config().dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                haystack.extend(bytes);
            }
        }
    }
    assert!(haystack.len() > 10_000, "the relay's files were read");
    let text = String::from_utf8_lossy(&haystack);
    for s in SECRETS {
        assert!(!text.contains(s), "the relay's files contain {s:?}");
    }
}

/// `HavenClient.startLink` … `finish` on the web side, approved by `approve` (which gets the
/// code): the provisioning box, the grant, the session and keys, the own list with this device.
async fn link_web_device(url: &str, approve: impl AsyncFnOnce(String)) -> Page {
    let mut page = Page {
        d: DeviceCore::new().unwrap(),
        m: MessengerCore::new(),
        http: RelayClient::new(url).unwrap(),
        token: String::new(),
        account: String::new(),
        events: Vec::new(),
        sealed_in: Vec::new(),
    };
    let created = page
        .call(Method::POST, "/v1/provisioning", None, None)
        .await
        .unwrap();
    let (code, box_path) = page.d.link_start(&created.to_string()).unwrap();
    approve(code).await;
    let message = page.call(Method::GET, &box_path, None, None).await.unwrap();
    assert!(!message.is_null(), "the approval is in the box");
    let body = page.d.link_open(&message.to_string()).unwrap();
    let tokens = page
        .call(Method::POST, "/v1/devices/link", Some(&body), None)
        .await
        .unwrap();
    let info = page.d.set_session(&tokens.to_string()).unwrap();
    page.token = info.access_token.clone();
    page.account = info.account_id;
    let key = page
        .call(Method::GET, "/v1/certificate/key", None, None)
        .await
        .unwrap();
    page.d.set_relay_key(&key.to_string()).unwrap();
    let upload = page.d.prekey_upload(now() / 1000).unwrap();
    page.authed(Method::PUT, "/v1/keys", Some(&upload)).await;
    let own = format!("/v1/accounts/{}/device-list", page.account);
    let list = page.authed(Method::GET, &own, None).await;
    let body = page.d.link_join(&list.to_string(), now() / 1000).unwrap();
    page.authed(Method::PUT, "/v1/account/device-list", Some(&body))
        .await;
    page.d.own_list_published(now() / 1000).unwrap();
    page
}

/// Linking across platforms, both ways: a native device approves a new web device; that web
/// device approves a new native device; the web device unlinks it from the signed list, and the
/// first native device reads each change from the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_native_devices_link_each_other_by_approval() {
    let relay = RelayConfig::new().set("HAVEN_LOG", "warn").start();
    let url = relay.url();
    let first = Device::register(
        RelayClient::new(&url).unwrap(),
        ClientStore::open_in_memory(&[7u8; 32]).unwrap(),
        Some("native_carol"),
        b"pw-carol",
    )
    .await
    .unwrap();
    let own = first.account_bytes();

    // The native device approves the web device's code.
    let mut web = link_web_device(&url, async |code| {
        first.approve_link(&code).await.unwrap();
    })
    .await;
    assert_eq!(web.account, hex::encode(own));
    assert_eq!(web.d.device_number().unwrap(), 2);
    let update = first.fetch_device_list(&own).await.unwrap();
    assert_eq!(update.added, [2]);

    // The web device approves a new native device.
    let pending = Device::start_link(RelayClient::new(&url).unwrap())
        .await
        .unwrap();
    let token = web
        .authed(Method::POST, "/v1/devices/link-token", None)
        .await;
    let put = web
        .d
        .approve_link(&pending.code(), &token.to_string())
        .unwrap();
    web.authed(Method::PUT, &put.0, Some(&put.1)).await;
    let third = pending
        .finish(
            ClientStore::open_in_memory(&[8u8; 32]).unwrap(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(third.account_bytes(), own);
    assert_eq!(third.device_number(), 3);
    assert_eq!(first.fetch_device_list(&own).await.unwrap().added, [3]);
    web.fetch_device_list(&web.account.clone()).await;

    // The web device signs the list without the third device; the first reads it.
    assert!(web.d.unlink_list(2, now() / 1000).is_err(), "not itself");
    let body = web.d.unlink_list(3, now() / 1000).unwrap().unwrap();
    web.authed(Method::PUT, "/v1/account/device-list", Some(&body))
        .await;
    web.d.own_list_published(now() / 1000).unwrap();
    assert_eq!(first.fetch_device_list(&own).await.unwrap().removed, [3]);
}

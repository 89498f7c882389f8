//! Two relay instances on one database: login state and (with Redis) failure limits are shared.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Guard, Harness};
use haven_relay::limits::Limits;
use haven_relay::secrets::ServerSecrets;
use haven_relay::settings::ConnectionUrl;
use haven_relay::store::Store;
use haven_relay::{AppState, app};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

async fn second_instance<S: Store>(h: &Harness<S>, limits: Limits) -> Harness<S> {
    let settings = common::test_settings();
    let secrets = ServerSecrets::load(&settings, &h.store).await.unwrap();
    let state = AppState::new(h.store.clone(), settings, secrets, limits);
    Harness {
        app: app(state.clone()),
        state,
        store: h.store.clone(),
        guard: Guard::None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_started_on_one_instance_finishes_on_another() {
    let Some(a) = Harness::postgres().await else {
        return;
    };
    let b = second_instance(&a, Limits::in_memory()).await;
    let alice = a.register(Some("alice"), PASSWORD).await;
    // The secrets converged through the database, so B knows A's OPAQUE setup and JWT key.
    let tokens = b.login_existing(&alice, PASSWORD).await;
    a.call(
        axum::http::Method::GET,
        "/v1/devices",
        None,
        Some(&tokens.access),
    )
    .await
    .expect(StatusCode::OK);
    // Split one login across the two instances.
    let start =
        opaque_ke::ClientLogin::<common::Cs>::start(&mut rand::rngs::OsRng, PASSWORD.as_bytes())
            .unwrap();
    let reply = a
        .post(
            "/v1/login/start",
            json!({
                "account_id": alice.account_id,
                "credential_request": common::b64(&start.message.serialize()),
            }),
        )
        .await
        .expect(StatusCode::OK);
    use base64::Engine as _;
    let ke2 = base64::engine::general_purpose::STANDARD
        .decode(reply.body["credential_response"].as_str().unwrap())
        .unwrap();
    let ke2 = opaque_ke::CredentialResponse::<common::Cs>::deserialize(&ke2).unwrap();
    let params = opaque_ke::ClientLoginFinishParameters::new(
        Some(haven_protocol::opaque::OPAQUE_CONTEXT),
        opaque_ke::Identifiers::default(),
        None,
    );
    let ke3 = start
        .state
        .finish(PASSWORD.as_bytes(), ke2, params)
        .unwrap()
        .message;
    b.post(
        "/v1/login/finish",
        json!({
            "login_id": reply.body["login_id"],
            "credential_finalization": common::b64(&ke3.serialize()),
            "device_id": alice.device_id,
        }),
    )
    .await
    .expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_limits_are_shared_through_redis() {
    let Ok(redis) = std::env::var("HAVEN_TEST_REDIS_URL") else {
        println!("skipped: HAVEN_TEST_REDIS_URL is not set");
        return;
    };
    let Some(a0) = Harness::sqlite().await else {
        return;
    };
    let mut settings = common::test_settings();
    settings.redis_url = Some(ConnectionUrl::new(redis));
    let a = second_instance(&a0, Limits::from_settings(&settings).await.unwrap()).await;
    let b = second_instance(&a0, Limits::from_settings(&settings).await.unwrap()).await;
    let alice = a.register(Some("alice"), PASSWORD).await;
    for h in [&a, &b, &a] {
        h.try_login(
            json!({"account_id": alice.account_id}),
            "wrong",
            json!({"device_id": alice.device_id}),
        )
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Three failures spread over two instances lock the account on both.
    for h in [&a, &b] {
        h.try_login(
            json!({"account_id": alice.account_id}),
            PASSWORD,
            json!({"device_id": alice.device_id}),
        )
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    }
    let ready = b.call(axum::http::Method::GET, "/ready", None, None).await;
    ready.expect(StatusCode::OK);
}

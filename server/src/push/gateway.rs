//! Delivery through the operator's push gateway (PROTOCOL.md §18.6), in the manner of Matrix's
//! Sygnal: the relay never holds Apple or Google credentials; it POSTs the tokens to wake to
//! `push.gateway_url`, which answers which tokens the platform refused for good.

use haven_protocol::api::push::{
    GatewayDevice, GatewayNotification, GatewayRequest, GatewayResponse,
};

use crate::push::delivery::Delivery;

/// Largest gateway reply read, bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Sends one wake-up for `devices` (`(app_id, pushkey)`); one [`Delivery`] per device, in order.
pub(crate) async fn send(
    client: &reqwest::Client,
    gateway_url: &str,
    devices: &[(String, String)],
) -> Vec<Delivery> {
    let body = GatewayRequest {
        notification: GatewayNotification {
            kind: "wake".into(),
            devices: devices
                .iter()
                .map(|(app_id, pushkey)| GatewayDevice {
                    app_id: app_id.clone(),
                    pushkey: pushkey.clone(),
                })
                .collect(),
        },
    };
    let all = |d: Delivery| vec![d; devices.len()];
    let Ok(body) = serde_json::to_vec(&body) else {
        return all(Delivery::Failed);
    };
    let response = client
        .post(gateway_url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(_) => return all(Delivery::Retry),
    };
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return all(Delivery::Retry);
    }
    if !status.is_success() {
        return all(Delivery::Failed);
    }
    let bytes = match response.bytes().await {
        Ok(b) if b.len() <= MAX_REPLY_BYTES => b,
        Ok(_) => return all(Delivery::Failed),
        Err(_) => return all(Delivery::Retry),
    };
    let reply: GatewayResponse = if bytes.iter().all(u8::is_ascii_whitespace) {
        GatewayResponse::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(_) => return all(Delivery::Failed),
        }
    };
    devices
        .iter()
        .map(|(_, pushkey)| {
            if reply.rejected.iter().any(|r| r == pushkey) {
                Delivery::Gone
            } else {
                Delivery::Delivered
            }
        })
        .collect()
}

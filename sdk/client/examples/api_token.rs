//! Registers an account and logs it in through the SDK's [`RelayClient`], then prints the
//! session as one JSON line for tools that speak HTTP themselves (CI's schema-driven API fuzz
//! run, `.ci/api-fuzz.sh`, hands the access token to schemathesis):
//!
//! ```text
//! cargo run -p haven-client --example api_token -- --relay http://127.0.0.1:8080
//! {"account_id":"…","device_id":"…","device_number":1,"access_token":"…"}
//! ```

use std::process::ExitCode;

use haven_client::RelayClient;
use haven_client::relay::{LoginDevice, LoginIdentifier};
use rand::Rng as _;

async fn run(relay: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut rng = rand::rng();
    let mut random = [0u8; 16];
    rng.fill_bytes(&mut random);
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let username = format!("fuzz.{}", &suffix[..16]);
    let mut password = [0u8; 32];
    rng.fill_bytes(&mut password);
    let mut identity_key = [0u8; 64];
    rng.fill_bytes(&mut identity_key);

    let registering = RelayClient::new(relay)?;
    let registered = registering
        .register(Some(&username), &password, &identity_key, None)
        .await?;
    // A second client logs the same device in, as an app does after a restart.
    let client = RelayClient::new(relay)?;
    let session = client
        .login(
            LoginIdentifier::Username(&username),
            &password,
            LoginDevice::Existing(&registered.device_id),
            None,
        )
        .await?;
    let line = serde_json::json!({
        "account_id": session.account_id,
        "device_id": session.device_id,
        "device_number": session.device_number,
        "access_token": session.access_token(),
    });
    Ok(line.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let relay = match (args.next().as_deref(), args.next()) {
        (Some("--relay"), Some(url)) => url,
        _ => {
            eprintln!("usage: api_token --relay http://HOST:PORT");
            return ExitCode::from(2);
        }
    };
    match run(&relay).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("api_token: {err}");
            ExitCode::FAILURE
        }
    }
}

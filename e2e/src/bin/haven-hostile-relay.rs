//! `haven-hostile-relay`: a test relay that lies, for the tests that are not Rust (pytest, the
//! browser end-to-end test); see [`haven_e2e::hostile`].
//!
//! ```text
//! haven-hostile-relay [--set NAME=VALUE]...
//! ```
//!
//! Starts a relay in this process with `haven-testkit`'s test defaults plus the given settings,
//! behind the lying proxy. Prints one JSON line on stdout once both accept connections,
//! `{"url":"http://127.0.0.1:PORT","dir":"/tmp/haven-relay-…","control":"http://127.0.0.1:PORT/hostile"}`
//! (`url` is the proxy, what clients use; REST only), streams the relay's logs to stderr, and
//! stops when stdin closes or on SIGTERM/SIGINT.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::process::ExitCode;

use haven_e2e::hostile::HostileRelay;
use haven_testkit::{RelayConfig, launcher};

const USAGE: &str = "usage: haven-hostile-relay [--set NAME=VALUE]...";

fn main() -> ExitCode {
    let mut config = RelayConfig::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg != "--set" {
            eprintln!("haven-hostile-relay: unknown argument {arg:?}\n{USAGE}");
            return ExitCode::from(2);
        }
        let Some((name, value)) = args.next().and_then(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        }) else {
            eprintln!("haven-hostile-relay: --set needs NAME=VALUE\n{USAGE}");
            return ExitCode::from(2);
        };
        config = config.set(&name, value);
    }
    let dir = config.dir().display().to_string();
    let relay = match HostileRelay::start(config) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("haven-hostile-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let line = serde_json::json!({"url": relay.url(), "dir": dir, "control": relay.control_url()});
    println!("{line}");
    let _ = std::io::stdout().flush();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("haven-hostile-relay: no runtime");
        return ExitCode::FAILURE;
    };
    let sent = rt.block_on(launcher::forward_until_closed(|| relay.relay().logs()));
    launcher::forward_logs(&relay.relay().logs(), sent);
    drop(relay);
    ExitCode::SUCCESS
}

//! The `haven-relay` binary: `haven-relay [--config PATH]` serves; `haven-relay [--config PATH]
//! admin …` manages admin keys on the configured database (`admin::cli`).

use std::path::PathBuf;
use std::process::ExitCode;

use haven_relay::Settings;
use haven_relay::admin::cli::{self, AdminCommand};

/// What the command line asks for: the configuration file, and an admin subcommand if any.
struct Invocation {
    config: Option<PathBuf>,
    admin: Option<AdminCommand>,
}

fn parse_args() -> Result<Invocation, String> {
    let mut args = std::env::args().skip(1);
    let mut config = std::env::var_os("HAVEN_CONFIG").map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(args.next().ok_or("--config needs a path")?.into()),
            "admin" => {
                let rest: Vec<String> = args.collect();
                let admin = cli::parse(&rest).map_err(|e| e.to_string())?;
                return Ok(Invocation {
                    config,
                    admin: Some(admin),
                });
            }
            "--help" | "-h" => {
                return Err(format!(
                    "usage: haven-relay [--config PATH]   (see docs/SELF_HOSTING.md)\n{}",
                    cli::USAGE
                ));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Invocation {
        config,
        admin: None,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

#[tokio::main]
async fn main() -> ExitCode {
    let invocation = match parse_args() {
        Ok(invocation) => invocation,
        Err(err) => {
            eprintln!("haven-relay: {err}");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::load(invocation.config.as_deref(), |name| {
        std::env::var(name).ok()
    }) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("haven-relay: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(command) = invocation.admin {
        let done = cli::run(
            &settings,
            &command,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )
        .await;
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("haven-relay admin: {err}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(haven_relay::logging::filter(&settings.log))
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in the files and journals logs end up in.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A misspelt HAVEN_* name would otherwise be ignored silently.
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    for name in Settings::unknown_env_vars(names.iter().map(String::as_str)) {
        tracing::warn!(name, "unknown environment variable, ignored");
    }
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("haven-relay: cannot bind {}: {err}", settings.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        // Tests and scripts parse this exact line from stdout.
        Ok(addr) => println!("haven-relay listening on http://{addr}"),
        Err(err) => {
            eprintln!("haven-relay: {err}");
            return ExitCode::FAILURE;
        }
    }
    match haven_relay::launch_with_listener(settings, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "relay failed");
            ExitCode::FAILURE
        }
    }
}

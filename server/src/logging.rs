//! The relay's log output: the operator's filter with the address-logging targets capped.
//!
//! The relay never logs a client address, whatever the level (docs/THREAT_MODEL.md, "Logs").
//! Its own code logs none; dependencies that would at fine levels are capped here.

use tracing_subscriber::EnvFilter;

/// Targets capped below the level at which they log connection addresses: axum's server logs
/// each accepted connection's peer address at `TRACE`; the push worker's HTTP client (reqwest,
/// hyper-util's connector) logs the push service URL and address it connects to at `DEBUG`.
const ADDRESS_LOGGING_TARGETS: &[&str] = &[
    "axum::serve=debug",
    "reqwest=info",
    "hyper_util::client=info",
];

/// The filter for `HAVEN_LOG` (an `EnvFilter` directive string; `info` when it does not parse),
/// with [`ADDRESS_LOGGING_TARGETS`] capped whatever it asks for.
pub fn filter(spec: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    for cap in ADDRESS_LOGGING_TARGETS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_explicit_trace_for_axum_is_still_capped() {
        let filter = super::filter("trace,axum::serve=trace").to_string();
        assert!(filter.contains("axum::serve=debug"), "{filter}");
        assert!(!filter.contains("axum::serve=trace"), "{filter}");
    }
}

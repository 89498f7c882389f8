//! The command line: `--state DIR` and `--relay URL` (or their variables), the command, its
//! options and its words.

use std::path::{Path, PathBuf};

use crate::{Cli, Failure};

/// A parsed command line.
#[derive(Debug)]
pub struct Args {
    cli: &'static Cli,
    /// The state directory: `--state`, else the CLI's variable.
    pub state: Option<PathBuf>,
    /// The relay's base URL: `--relay`, else `HAVEN_RELAY_URL`.
    pub relay: Option<String>,
    /// The command (`help` for `-h` and `--help`; empty when none was given).
    pub command: String,
    /// The words after the command that are not options.
    pub words: Vec<String>,
    flags: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// Parses `raw` (the arguments after the program's name) as `cli`'s command line.
    ///
    /// # Errors
    /// A usage failure for an unknown option or an option without its value.
    pub fn parse(
        cli: &'static Cli,
        raw: impl IntoIterator<Item = String>,
    ) -> Result<Self, Failure> {
        let mut args = Self {
            cli,
            state: None,
            relay: None,
            command: String::new(),
            words: Vec::new(),
            flags: Vec::new(),
            switches: Vec::new(),
        };
        let mut raw = raw.into_iter();
        while let Some(a) = raw.next() {
            let name = a.as_str();
            if matches!(name, "--state" | "--relay") || cli.value_flags.contains(&name) {
                let v = raw
                    .next()
                    .ok_or_else(|| Failure::usage(format!("{a} needs a value")))?;
                match name {
                    "--state" => args.state = Some(PathBuf::from(v)),
                    "--relay" => args.relay = Some(v),
                    _ => args.flags.push((a, v)),
                }
            } else if cli.switches.contains(&name) {
                args.switches.push(a);
            } else if matches!(name, "-h" | "--help") {
                args.command = "help".into();
            } else if name.starts_with("--") {
                return Err(Failure::usage(format!(
                    "unknown option {a}\n\n{}",
                    cli.usage
                )));
            } else if args.command.is_empty() {
                args.command = a;
            } else {
                args.words.push(a);
            }
        }
        if args.state.is_none() {
            args.state = std::env::var_os(cli.state_env).map(PathBuf::from);
        }
        if args.relay.is_none() {
            args.relay = std::env::var("HAVEN_RELAY_URL").ok();
        }
        Ok(args)
    }

    /// The CLI these arguments are for.
    #[must_use]
    pub fn cli(&self) -> &'static Cli {
        self.cli
    }

    /// The value of the option `name` given last.
    #[must_use]
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the option `name`, in order.
    #[must_use]
    pub fn all(&self, name: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether any option with a value (other than `--state` and `--relay`) was given.
    #[must_use]
    pub fn has_flags(&self) -> bool {
        !self.flags.is_empty()
    }

    /// Whether the switch `name` was given.
    #[must_use]
    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// The state directory.
    ///
    /// # Errors
    /// A usage failure when neither `--state` nor the variable gave one.
    pub fn state_dir(&self) -> Result<&Path, Failure> {
        self.state.as_deref().ok_or_else(|| {
            Failure::usage(format!(
                "no state directory: pass --state DIR or set {}",
                self.cli.state_env
            ))
        })
    }

    /// The relay's base URL.
    ///
    /// # Errors
    /// A usage failure when neither `--relay` nor `HAVEN_RELAY_URL` gave one.
    pub fn relay_url(&self) -> Result<&str, Failure> {
        self.relay
            .as_deref()
            .ok_or_else(|| Failure::usage("no relay: pass --relay URL or set HAVEN_RELAY_URL"))
    }

    /// The word at `i` after the command, `what` in the usage (`CONTACT`).
    ///
    /// # Errors
    /// A usage failure when it is missing.
    pub fn word(&self, i: usize, what: &str) -> Result<&str, Failure> {
        self.words
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| Failure::usage(format!("missing {what} (see {} help)", self.cli.name)))
    }

    /// The words from `i` on, joined by spaces (empty when there are none).
    #[must_use]
    pub fn rest(&self, i: usize) -> String {
        self.words.get(i..).unwrap_or_default().join(" ")
    }
}

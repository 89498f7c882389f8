//! `haven-cli-common`: what the two command-line examples, `haven-chat` and `haven-diary`,
//! share, so that each CLI is only its commands.
//!
//! - [`Cli`]: a CLI's description (name, usage, options, state directory and the variables of
//!   its secrets), from which [`Args`] are parsed and its store is opened.
//! - [`Failure`]: a message and an exit code, with the codes the README lists for the client's
//!   errors.
//! - [`secret`]: a secret from the environment or prompted for; [`progress_bar`] for blob
//!   transfers.
//! - [`account`]: the account's commands (devices, logout, relogin, password change, the
//!   recovery code, TOTP, export, deletion) on a relay session.

pub mod account;
mod args;
mod failure;
mod progress;
mod state;

pub use args::Args;
pub use failure::Failure;
pub use progress::progress_bar;
pub use state::secret;

/// A command-line program: what its arguments, its messages and its state directory depend on.
#[derive(Debug)]
pub struct Cli {
    /// The program's name, which prefixes its error messages (`haven-chat`).
    pub name: &'static str,
    /// The usage text (`help`, and after an unknown option).
    pub usage: &'static str,
    /// The options that take a value, besides `--state` and `--relay`.
    pub value_flags: &'static [&'static str],
    /// The options that take none.
    pub switches: &'static [&'static str],
    /// The variable naming the state directory when `--state` is not given.
    pub state_env: &'static str,
    /// The variable holding the local passphrase of the state directory.
    pub passphrase_env: &'static str,
    /// The variable that may hold the storage key itself (64 hex digits), if the CLI takes one.
    pub store_key_env: Option<&'static str>,
    /// The store's file in the state directory.
    pub db_file: &'static str,
    /// What a state directory of this CLI is and how one is made, for the error when a
    /// directory is not one (`a chat state directory (run register or link first)`).
    pub state_dir_kind: &'static str,
}

impl Cli {
    /// The exit code of `result`, after printing its failure's message on stderr.
    #[must_use]
    pub fn exit(&self, result: Result<(), Failure>) -> std::process::ExitCode {
        match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(f) => {
                eprintln!("{}: {}", self.name, f.message);
                std::process::ExitCode::from(f.code)
            }
        }
    }
}

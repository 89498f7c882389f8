//! Haven's blind relay: accounts, devices and OPAQUE login over an axum HTTP API, stored in
//! SQLite (default) or Postgres.
//!
//! The relay never receives a password or a password-equivalent (OPAQUE), stores usernames only
//! as a keyed hash, and logs no IPs, bodies, tokens or usernames.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod audit;
pub mod blobs;
pub mod channels;
pub mod client_addr;
pub mod clock;
pub mod db;
pub mod error;
pub mod http;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod mail;
pub mod moderation;
pub mod push;
pub mod realtime;
pub mod sealing;
pub mod secrets;
pub mod settings;
pub mod vault;

pub use app::state::AppState;
pub use app::{LaunchError, app, launch_with_listener};
pub use error::AppError;
pub use settings::Settings;

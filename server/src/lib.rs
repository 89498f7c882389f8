//! Haven's blind relay: accounts, devices and OPAQUE login over an axum HTTP API, stored in
//! SQLite (default) or Postgres.
//!
//! The relay never receives a password or a password-equivalent (OPAQUE), stores usernames only
//! as a keyed hash, and logs no IPs, bodies, tokens or usernames.

pub mod app;
pub mod auth;
pub mod blobs;
pub mod channels;
pub mod error;
pub mod hub;
pub mod hub_redis;
pub mod ids;
pub mod limits;
pub mod logging;
pub mod messaging;
pub mod openapi;
pub mod routes;
pub mod secrets;
pub mod settings;
pub mod state;
pub mod store;
pub mod ws;

pub use app::{LaunchError, app, launch_with_listener};
pub use error::AppError;
pub use settings::Settings;
pub use state::AppState;

//! The relay's integration tests, one binary (one link) for all of them: the HTTP API in
//! process on both engines, the store conformance suite, real `haven-relay` processes with real
//! WebSocket clients, several instances on one database, and what the relay's files and logs
//! hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ws_client;

mod abuse_limits;
mod account_lifecycle;
mod admin;
mod api;
mod binary;
mod contract;
mod identity;
mod login_latency;
mod logs;
mod messaging;
mod moderation;
mod multi_instance;
mod proxy;
mod send_throughput;
mod store_conformance;
mod totp_at_rest;
mod vault;
mod websocket;

//! Content-free wake-ups (PROTOCOL.md §18): a phone app cannot keep a socket open in the
//! background, so when mail is stored for a device that has no live socket on any instance, the
//! relay sends it a push that carries no sender, no content and no count — only
//! `{"type":"wake"}` — through Web Push (RFC 8030/8291/8292) or the operator's push gateway.
//!
//! - [`routes`]: `GET /v1/push/vapid`, `POST/GET /v1/push/endpoints`,
//!   `DELETE /v1/push/endpoints/{id}`.
//! - [`service`]: registration (targets sealed at rest, `crate::sealing`), the VAPID key, the
//!   hand-off from the mail path.
//! - [`store`]: the endpoint table and the durable queue, SQL for both backends.
//! - [`presence`]: whether a device has a socket anywhere (hub, or Redis keys with a TTL).
//! - [`worker`]: the enqueuer and the worker: coalescing, per-device limit, retries with
//!   backoff, dropping dead endpoints.
//! - [`web_push`], [`gateway`]: the two deliveries; [`target`]: what may be registered.

pub(crate) mod delivery;
pub mod gateway;
pub mod presence;
pub mod routes;
pub mod service;
pub mod settings;
pub mod store;
pub mod target;
pub mod web_push;
pub mod worker;

//! What became of one endpoint's delivery (Web Push or gateway), as the worker acts on it.

/// What became of one endpoint's delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Accepted (2xx).
    Delivered,
    /// Gone for good (404, 410, rejected by the gateway, or no longer allowed): delete it.
    Gone,
    /// Try again later (timeout, connection error, 429, 5xx).
    Retry,
    /// Refused otherwise (other 4xx): not retried, not deleted.
    Failed,
}

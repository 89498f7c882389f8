//! Push endpoints of this device on the relay (PROTOCOL §18): the relay's VAPID key for a
//! browser's subscription, registering a Web Push subscription or a push gateway's key,
//! listing and removing them. What is registered is checked first by the client core
//! ([`haven_client_core::push`]); a value refused there is never sent.
//!
//! A wake-up carries nothing; the push handler then calls
//! [`Messenger::handle_wake_up`](crate::Messenger::handle_wake_up).

use haven_client_core::push::{
    self as core, PushEndpointCreated, PushEndpointList, PushEndpointRequest, VapidKeyBody,
};
use reqwest::Method;

use crate::relay::{RelayClient, RelayError};

pub use haven_client_core::push::{MAX_ENDPOINTS_PER_DEVICE, PushEndpointBody, PushEndpointError};

impl RelayClient {
    /// The relay's VAPID public key (base64url, no padding, a 65-byte uncompressed P-256
    /// point): the `applicationServerKey` a browser subscribes with. Needs no login.
    ///
    /// # Errors
    /// [`RelayError::Refused`] (404 when the relay sends no Web Push), transport errors.
    pub async fn push_vapid_key(&self) -> Result<String, RelayError> {
        let reply: VapidKeyBody = self
            .request_anonymous_as::<_, ()>(Method::GET, "/v1/push/vapid", None)
            .await?;
        Ok(reply.public_key)
    }

    /// Registers a browser's Web Push subscription for this device: its `endpoint` and its
    /// `p256dh` and `auth` keys (base64url, as `PushSubscription.toJSON().keys` gives them).
    /// Registering the same subscription again returns the same id. Returns the endpoint's id.
    ///
    /// # Errors
    /// [`RelayError::InvalidPushEndpoint`] (nothing sent), [`RelayError::Refused`]
    /// (`too_many_push_endpoints` past [`MAX_ENDPOINTS_PER_DEVICE`], `invalid_push_endpoint`),
    /// [`RelayError::NotLoggedIn`], transport errors.
    pub async fn register_web_push(
        &self,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
    ) -> Result<String, RelayError> {
        self.register_push(&core::web_push(endpoint, p256dh, auth)?)
            .await
    }

    /// Registers this device's key at a push gateway (e.g. its APNs device token or FCM
    /// registration token, under the `app_id` the relay's gateway knows the app by). Returns
    /// the endpoint's id; registering the same key again returns the same id.
    ///
    /// # Errors
    /// As [`RelayClient::register_web_push`]; `push_gateway_not_configured` when the relay has
    /// no gateway.
    pub async fn register_gateway_push(
        &self,
        app_id: &str,
        pushkey: &str,
    ) -> Result<String, RelayError> {
        self.register_push(&core::gateway(app_id, pushkey)?).await
    }

    async fn register_push(&self, body: &PushEndpointRequest) -> Result<String, RelayError> {
        let reply: PushEndpointCreated = self
            .request_as(Method::POST, "/v1/push/endpoints", Some(body))
            .await?;
        Ok(reply.id)
    }

    /// This device's registered push endpoints (id, kind, registration time).
    ///
    /// # Errors
    /// [`RelayError::NotLoggedIn`], [`RelayError::Refused`], transport errors.
    pub async fn push_endpoints(&self) -> Result<Vec<PushEndpointBody>, RelayError> {
        let list: PushEndpointList = self
            .request_as::<_, ()>(Method::GET, "/v1/push/endpoints", None)
            .await?;
        Ok(list.endpoints)
    }

    /// Removes one of this device's push endpoints: no wake-up goes there any more.
    ///
    /// # Errors
    /// [`RelayError::InvalidPushEndpoint`] (not an id; nothing sent), [`RelayError::Refused`]
    /// (not found),
    /// [`RelayError::NotLoggedIn`], transport errors.
    pub async fn remove_push_endpoint(&self, id: &str) -> Result<(), RelayError> {
        let path = core::endpoint_path(id)?;
        self.request_as::<serde::de::IgnoredAny, ()>(Method::DELETE, &path, None)
            .await?;
        Ok(())
    }
}

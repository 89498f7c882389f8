//! The relay's HTTP bodies (`haven_protocol::api`, PROTOCOL §11): every JSON request body the
//! relay deserialises and every query string it parses, and the response bodies a client parses
//! from a relay it does not trust. Whatever deserialises must serialise and deserialise again to
//! the same JSON.

use haven_protocol::api::{
    Id, account::TotpCodeRequest, admin::CreateAdminKeyRequest, auth, blobs, channels, devices,
    identity, keys, messages, moderation, usernames, vault, websocket,
};
use serde::{Serialize, de::DeserializeOwned};

fn json<T: Serialize + DeserializeOwned>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let Ok(once) = serde_json::to_vec(&value) else {
            panic!("a decoded body does not serialise");
        };
        let Ok(again) = serde_json::from_slice::<T>(&once) else {
            panic!("a serialised body does not deserialise");
        };
        assert_eq!(serde_json::to_vec(&again).ok(), Some(once), "unstable body");
    }
}

fn query<T: DeserializeOwned>(text: &str) {
    let _ = serde_urlencoded::from_str::<T>(text);
}

/// Request bodies the relay accepts.
pub fn api_requests(data: &[u8]) {
    json::<TotpCodeRequest>(data);
    json::<CreateAdminKeyRequest>(data);
    json::<auth::RegisterStartRequest>(data);
    json::<auth::RegisterFinishRequest>(data);
    json::<auth::LoginStartRequest>(data);
    json::<auth::LoginFinishRequest>(data);
    json::<auth::RefreshRequest>(data);
    json::<auth::ReauthStartRequest>(data);
    json::<auth::ReauthFinishRequest>(data);
    json::<auth::CredentialStartRequest>(data);
    json::<auth::CredentialFinishRequest>(data);
    json::<auth::RecoverStartRequest>(data);
    json::<auth::RecoverFinishRequest>(data);
    json::<blobs::CreateBlobRequest>(data);
    json::<blobs::PartUrlsRequest>(data);
    json::<blobs::PartReport>(data);
    json::<channels::CreateChannelRequest>(data);
    json::<channels::AppendRequest>(data);
    json::<devices::RenameRequest>(data);
    json::<identity::DeviceListUpload>(data);
    json::<identity::LinkDeviceRequest>(data);
    json::<identity::ProvisioningMessage>(data);
    json::<keys::KeyUploadRequest>(data);
    json::<messages::SendBody>(data);
    json::<messages::MultiSendBody>(data);
    json::<messages::AckBody>(data);
    json::<messages::AccessKeyBody>(data);
    json::<moderation::ReportRequest>(data);
    json::<moderation::DecisionRequest>(data);
    json::<moderation::AddressBanRequest>(data);
    json::<usernames::LookupRequest>(data);
    json::<vault::ItemWriteRequest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        query::<blobs::TokenQuery>(text);
        query::<channels::EntriesQuery>(text);
        query::<messages::FetchQuery>(text);
        query::<vault::DeleteQuery>(text);
        query::<vault::HistoryQuery>(text);
        query::<vault::ChangesQuery>(text);
        query::<websocket::WsQuery>(text);
    }
    if let Ok(id) = Id::from_slice(data) {
        assert_eq!(id.as_bytes().as_slice(), data);
    }
}

/// Response bodies a client parses (the relay is not trusted with their contents).
pub fn api_responses(data: &[u8]) {
    json::<auth::TokenResponse>(data);
    json::<auth::RegisterStartResponse>(data);
    json::<auth::LoginStartResponse>(data);
    json::<keys::BundlesResponse>(data);
    json::<keys::KeyCountsResponse>(data);
    json::<messages::SendResponse>(data);
    json::<messages::MultiSendResponse>(data);
    json::<messages::FetchResponse>(data);
    json::<channels::EntriesPage>(data);
    json::<identity::DeviceListReply>(data);
    json::<vault::ChangesReply>(data);
    json::<vault::HistoryReply>(data);
    json::<vault::ItemBody>(data);
    json::<blobs::BlobInfo>(data);
    json::<haven_protocol::api::error::ErrorBody>(data);
}

//! Targets for the byte formats of `haven-protocol` (no keys needed): each decoder either
//! refuses the input or returns a value that encodes back to exactly the input (every format
//! has one encoding), and never panics.

use crate::fixture::rng;
use haven_protocol::{
    account::DeviceListBody,
    attachment,
    certificate::CertificateBody,
    content::Content,
    frames::{self, ClientFrame, ServerFrame},
    franking::{FrankingKey, Opening, Report},
    group_change::GroupChangeBody,
    provisioning::{LinkCode, ProvisioningPlaintext},
};

/// WebSocket frames (PROTOCOL §11.14), both directions, and the request-id peek the relay
/// uses to answer a frame it cannot decode.
pub fn frames(data: &[u8]) {
    if let Ok(frame) = ServerFrame::decode(data) {
        assert_eq!(frame.encode(), data, "server frame round trip");
    }
    let request_id = frames::request_id_of(data);
    if let Ok(frame) = ClientFrame::decode(data) {
        let encoded = frame.encode();
        assert_eq!(encoded.as_deref(), Ok(data), "client frame round trip");
        let carries_id = !matches!(frame, ClientFrame::Ack(_));
        if carries_id {
            assert!(request_id.is_some(), "a decoded request has a request id");
        }
    }
}

/// Content messages (§13.1): the plaintext behind the ratchet, sender-key and sealed-sender
/// AEADs, so the fuzzer reaches it directly.
pub fn content(data: &[u8]) {
    if let Ok(content) = Content::from_bytes(data) {
        let again = content.to_bytes();
        assert_eq!(again.as_deref(), Ok(data), "content round trip");
    }
    // Padded plaintexts (§7): what the receiver strips before decoding the content.
    if let Ok(unpadded) = haven_sdk::unpad(data) {
        assert!(unpadded.len() < data.len(), "unpadding did not shorten");
        let _ = Content::from_bytes(unpadded);
    }
}

/// Attachment pointers (§14), the layout inside content messages and diary entries.
pub fn attachment_pointer(data: &[u8]) {
    if let Ok(fields) = attachment::decode(data) {
        let mut out = Vec::new();
        assert_eq!(attachment::encode_into(&fields, &mut out), Ok(()));
        assert_eq!(out, data, "pointer round trip");
        assert_eq!(attachment::encoded_len(&fields), data.len());
    }
    if let Ok(pointer) = haven_client_core::attachments::AttachmentPointer::from_bytes(data) {
        let again = pointer.to_bytes();
        assert_eq!(again.as_ref().map(|b| b.as_slice()).ok(), Some(data));
    }
    if let Ok(pending) = haven_client_core::attachments::PendingUpload::from_bytes(data) {
        assert_eq!(
            pending.to_bytes().as_slice(),
            data,
            "pending upload round trip"
        );
    }
}

/// Sender certificates (§8.1), as the protocol layout and as the SDK's checked type.
pub fn certificate(data: &[u8]) {
    if let Ok((body, signature)) = CertificateBody::decode(data) {
        assert_eq!(
            body.with_signature(&signature),
            data,
            "certificate round trip"
        );
    }
    if let Ok(cert) = haven_sdk::SenderCertificate::from_bytes(data) {
        assert_eq!(cert.to_bytes(), data, "sender certificate round trip");
    }
}

/// Signed account device lists (§5), as the layout and as the SDK's parsed list.
pub fn device_list(data: &[u8]) {
    if let Ok((body, signature)) = DeviceListBody::decode(data) {
        assert_eq!(body.with_signature(&signature).as_deref(), Ok(data));
    }
    if let Ok(list) = haven_sdk::DeviceList::verify(data) {
        assert_eq!(list.to_bytes(), data, "device list round trip");
    }
    if let Ok(key) = haven_sdk::AccountIdentityKey::from_bytes(data) {
        assert_eq!(key.to_bytes().as_slice(), data);
    }
}

/// Signed group changes (§13.5).
pub fn group_change(data: &[u8]) {
    if let Ok((body, signature)) = GroupChangeBody::decode(data) {
        assert_eq!(body.with_signature(&signature).as_deref(), Ok(data));
    }
    if let Ok(change) = haven_sdk::groups::SignedGroupChange::verify(data) {
        assert_eq!(change.to_bytes(), data, "signed group change round trip");
    }
}

/// Franking keys, openings and abuse reports (§16).
pub fn franking(data: &[u8]) {
    if let Ok(key) = FrankingKey::decode(data) {
        assert_eq!(key.encode().as_slice(), data, "franking key round trip");
    }
    if let Ok(opening) = Opening::decode(data) {
        assert_eq!(opening.encode(), data, "opening round trip");
    }
    if let Ok(report) = Report::decode(data) {
        assert_eq!(report.encode(), data, "report round trip");
    }
    if let Ok(material) = haven_client_core::device::ReportMaterial::from_bytes(data) {
        assert_eq!(material.as_bytes(), data);
    }
    // A recipient reading a franked plaintext against a delivered commitment.
    let _ = haven_sdk::open_franked(data, &[0x11; 32]);
}

/// Device-linking codes (text) and provisioning plaintexts (§6).
pub fn provisioning(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(code) = LinkCode::parse(text)
    {
        let again = LinkCode::parse(&code.encode());
        assert_eq!(again.as_ref(), Ok(&code), "link code round trip");
    }
    let keys = haven_sdk::provisioning::ProvisioningKeys::generate([0x1B; 16], &mut rng());
    // A sealed message as the relay's provisioning box hands it to the new device.
    let _ = keys.open(data);
    if let Ok(plain) = ProvisioningPlaintext::decode(data) {
        assert_eq!(plain.encode(), data, "provisioning plaintext round trip");
        let sealed = haven_sdk::provisioning::seal(&keys.code(), &plain, &mut rng());
        if let Ok(sealed) = sealed {
            assert_eq!(keys.open(&sealed).as_ref(), Ok(&plain), "sealed round trip");
        }
    }
}

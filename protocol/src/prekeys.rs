//! What a prekey signature covers (PROTOCOL.md §2.1), in one place for the SDK, which signs and
//! checks bundles, and the relay, which checks uploads so that a stolen access token cannot store
//! keys the device did not make (§11.11).

/// Domain-separation prefix of every prekey signature.
pub const PREKEY_SIGNATURE_CONTEXT: &[u8] = b"Haven_PreKeySignature_v1";
/// Type byte for X25519 public keys inside prekey signatures.
pub const KEY_TYPE_X25519: u8 = 0x01;
/// Type byte for ML-KEM-1024 encapsulation keys inside prekey signatures.
pub const KEY_TYPE_ML_KEM_1024: u8 = 0x02;

/// The byte string a prekey signature covers:
/// `"Haven_PreKeySignature_v1" || IK (64) || type || id u32be || public_key`. Including the whole
/// identity key binds its X25519 half (which nothing else signs) to the Ed25519 half; the type
/// byte keeps a signature over one kind of key from passing for the other (PQXDH's `EncodeEC` /
/// `EncodeKEM`); the id binds the key to its id.
#[must_use]
pub fn prekey_signature_message(
    identity: &[u8; 64],
    key_type: u8,
    id: u32,
    public_key: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(PREKEY_SIGNATURE_CONTEXT.len() + 69 + public_key.len());
    m.extend_from_slice(PREKEY_SIGNATURE_CONTEXT);
    m.extend_from_slice(identity);
    m.push(key_type);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(public_key);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let m = prekey_signature_message(&[7; 64], KEY_TYPE_ML_KEM_1024, 0x0102_0304, b"pk");
        let mut expected = b"Haven_PreKeySignature_v1".to_vec();
        expected.extend_from_slice(&[7; 64]);
        expected.extend_from_slice(&[2, 1, 2, 3, 4]);
        expected.extend_from_slice(b"pk");
        assert_eq!(m, expected);
    }
}

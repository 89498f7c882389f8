//! The OPAQUE parameter set Haven uses for account registration and login (PROTOCOL.md §11.3).
//!
//! - OPRF: ristretto255-SHA512 (RFC 9497).
//! - Key exchange: 3DH over ristretto255 with SHA-512 (the opaque-ke `TripleDh`).
//! - Key stretching: Argon2id v1.3 with the explicit parameters in [`ARGON2_M_COST_KIB`],
//!   [`ARGON2_T_COST`], [`ARGON2_P_COST`], a 16-byte all-zero salt (the OPRF output is already
//!   unique per user and server) and an output as long as its input (64 bytes).
//! - Context string: [`OPAQUE_CONTEXT`]; identifiers: the defaults (both public keys).
//! - Credential identifier: the 16 raw bytes of the account id.
// opaque-ke 3 speaks generic-array 0.14, whose types are marked deprecated upstream.
#![allow(deprecated)]

use generic_array::{ArrayLength, GenericArray};
use opaque_ke::errors::InternalError;

/// Argon2id memory cost in KiB (19 MiB, the OWASP 2023 minimum for Argon2id).
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// Argon2id number of passes.
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id degree of parallelism (lanes).
pub const ARGON2_P_COST: u32 = 1;
/// Argon2id salt: all zero, 16 bytes (the input is the per-user OPRF output).
pub const ARGON2_SALT: [u8; 16] = [0u8; 16];
/// The OPAQUE context string both sides bind into the key exchange transcript.
pub const OPAQUE_CONTEXT: &[u8] = b"haven/opaque/v1";

/// Argon2id key-stretching function with Haven's explicit parameters.
#[derive(Clone, Copy, Default)]
pub struct HavenKsf;

impl HavenKsf {
    /// The configured Argon2id instance (also used by benchmarks as the baseline).
    pub fn argon2() -> Result<argon2::Argon2<'static>, argon2::Error> {
        let params = argon2::Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

impl opaque_ke::ksf::Ksf for HavenKsf {
    fn hash<L: ArrayLength<u8>>(
        &self,
        input: GenericArray<u8, L>,
    ) -> Result<GenericArray<u8, L>, InternalError> {
        let argon = Self::argon2().map_err(|_| InternalError::KsfError)?;
        let mut output = GenericArray::default();
        argon
            .hash_password_into(&input, &ARGON2_SALT, &mut output)
            .map_err(|_| InternalError::KsfError)?;
        Ok(output)
    }
}

/// Haven's OPAQUE cipher suite (use as the `CS` parameter of every opaque-ke type).
#[derive(Clone, Copy, Debug, Default)]
pub struct HavenCipherSuite;

impl opaque_ke::CipherSuite for HavenCipherSuite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeGroup = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::key_exchange::tripledh::TripleDh;
    type Ksf = HavenKsf;
}

pub use opaque_ke;

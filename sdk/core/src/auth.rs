//! OPAQUE on the client (PROTOCOL §11.5–§11.6.3), sans I/O: the steps of a registration and of
//! a login, as base64 messages for the relay's typed bodies (`haven_protocol::api::auth`).
//!
//! ```text
//! registration (register, password change, recovery code):
//!   Registration::start(secret) ─► registration_request ─► relay ─► registration_response
//!   Registration::finish(secret, registration_response) ─► registration_upload
//! login (login, re-authentication, recovery):
//!   Login::start(password) ─► credential_request (KE1) ─► relay ─► credential_response (KE2)
//!   Login::finish(password, credential_response) ─► credential_finalization (KE3)
//! ```
//!
//! A wrong password is found by [`Login::finish`] on the device (the server's envelope does not
//! open), so nothing is sent for it. The native client's `RelayClient` and the web bindings'
//! `WebDevice` both drive these steps; neither has OPAQUE code of its own. The RNG is an
//! argument (opaque-ke 3 takes `rand_core` 0.6 RNGs).
//!
//! Every password and recovery code given here is normalised first (PROTOCOL §9.1.1:
//! non-ASCII spaces to U+0020, then NFC), so the forms different keyboards produce of the same
//! password log in to the same account. A recovery code's canonical text is ASCII, which
//! normalisation leaves unchanged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::opaque::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
use haven_sdk::password::normalize_password;
use rand_core_06::{CryptoRng, RngCore};

/// Why an OPAQUE step failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The password (or recovery code) is wrong, detected by OPAQUE on the device; or OPAQUE
    /// could not start with it.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The relay's message (named) is not base64 or does not decode.
    #[error("invalid response: {0}")]
    InvalidResponse(&'static str),
}

fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, AuthError> {
    STANDARD
        .decode(text)
        .map_err(|_| AuthError::InvalidResponse(field))
}

/// A login (or re-authentication, or the code half of a recovery) between KE1 and KE3. Its
/// state is secret and wiped by opaque-ke on drop; nothing of it is printed.
pub struct Login {
    state: ClientLogin<HavenCipherSuite>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").finish_non_exhaustive()
    }
}

impl Login {
    /// KE1 for `password`: the login to keep and the `credential_request` (base64) to send.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] when OPAQUE cannot start with it.
    pub fn start<R: RngCore + CryptoRng>(
        password: &[u8],
        rng: &mut R,
    ) -> Result<(Self, String), AuthError> {
        let start = ClientLogin::<HavenCipherSuite>::start(rng, &normalize_password(password))
            .map_err(|_| AuthError::InvalidCredentials)?;
        Ok((
            Self { state: start.state },
            STANDARD.encode(start.message.serialize()),
        ))
    }

    /// KE3 (`credential_finalization`, base64) for the relay's `credential_response` (KE2).
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for a wrong password (nothing is to be sent),
    /// [`AuthError::InvalidResponse`] for a malformed KE2.
    pub fn finish(self, password: &[u8], credential_response: &str) -> Result<String, AuthError> {
        let ke2 = decode("credential_response", credential_response)?;
        let ke2 = CredentialResponse::<HavenCipherSuite>::deserialize(&ke2)
            .map_err(|_| AuthError::InvalidResponse("credential_response"))?;
        let params =
            ClientLoginFinishParameters::new(Some(OPAQUE_CONTEXT), Identifiers::default(), None);
        let finish = self
            .state
            .finish(&normalize_password(password), ke2, params)
            .map_err(|_| AuthError::InvalidCredentials)?;
        Ok(STANDARD.encode(finish.message.serialize()))
    }
}

/// A registration of a secret (a new account's password, a new password, a recovery code)
/// between its request and its upload. Secret state; nothing of it is printed.
pub struct Registration {
    state: ClientRegistration<HavenCipherSuite>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

impl Registration {
    /// The registration to keep and the `registration_request` (base64) to send.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] when OPAQUE cannot start with `secret`.
    pub fn start<R: RngCore + CryptoRng>(
        secret: &[u8],
        rng: &mut R,
    ) -> Result<(Self, String), AuthError> {
        let start = ClientRegistration::<HavenCipherSuite>::start(rng, &normalize_password(secret))
            .map_err(|_| AuthError::InvalidCredentials)?;
        Ok((
            Self { state: start.state },
            STANDARD.encode(start.message.serialize()),
        ))
    }

    /// The `registration_upload` (base64) for the relay's `registration_response`.
    ///
    /// # Errors
    /// [`AuthError::InvalidResponse`] for a malformed or refused response.
    pub fn finish<R: RngCore + CryptoRng>(
        self,
        secret: &[u8],
        registration_response: &str,
        rng: &mut R,
    ) -> Result<String, AuthError> {
        let response = decode("registration_response", registration_response)?;
        let response = RegistrationResponse::<HavenCipherSuite>::deserialize(&response)
            .map_err(|_| AuthError::InvalidResponse("registration_response"))?;
        let finish = self
            .state
            .finish(
                rng,
                &normalize_password(secret),
                response,
                ClientRegistrationFinishParameters::default(),
            )
            .map_err(|_| AuthError::InvalidResponse("registration_response"))?;
        Ok(STANDARD.encode(finish.message.serialize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_protocol::opaque::opaque_ke::{
        CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload,
        ServerLogin, ServerLoginStartParameters, ServerRegistration, ServerSetup,
    };
    use rand_core_06::OsRng;

    fn b(text: &str) -> Vec<u8> {
        STANDARD.decode(text).unwrap()
    }

    /// `é` as U+0065 U+0301 and as U+00E9 (PROTOCOL §9.1.1).
    const DECOMPOSED: &str = "pw cafe\u{0301}";
    const PRECOMPOSED: &str = "pw caf\u{00E9}";

    /// A registration and logins against opaque-ke's server side, as the relay runs it.
    #[test]
    fn register_then_log_in_and_a_wrong_password_is_found_on_the_device() {
        let setup = ServerSetup::<HavenCipherSuite>::new(&mut OsRng);
        let (reg, request) = Registration::start(DECOMPOSED.as_bytes(), &mut OsRng).unwrap();
        let request = RegistrationRequest::deserialize(&b(&request)).unwrap();
        let response = ServerRegistration::<HavenCipherSuite>::start(&setup, request, b"acct")
            .unwrap()
            .message;
        let upload = reg
            .finish(
                DECOMPOSED.as_bytes(),
                &STANDARD.encode(response.serialize()),
                &mut OsRng,
            )
            .unwrap();
        let record =
            ServerRegistration::finish(RegistrationUpload::deserialize(&b(&upload)).unwrap());

        let log_in = |password: &[u8]| {
            let (login, ke1) = Login::start(password, &mut OsRng).unwrap();
            let server = ServerLogin::start(
                &mut OsRng,
                &setup,
                Some(record.clone()),
                CredentialRequest::deserialize(&b(&ke1)).unwrap(),
                b"acct",
                ServerLoginStartParameters {
                    context: Some(OPAQUE_CONTEXT),
                    ..Default::default()
                },
            )
            .unwrap();
            let ke3 = login.finish(password, &STANDARD.encode(server.message.serialize()))?;
            server
                .state
                .finish(CredentialFinalization::deserialize(&b(&ke3)).unwrap())
                .unwrap();
            Ok::<_, AuthError>(())
        };
        log_in(DECOMPOSED.as_bytes()).unwrap();
        // The other form of the same password logs in too: both are normalised to NFC.
        log_in(PRECOMPOSED.as_bytes()).unwrap();
        assert_eq!(log_in(b"pw cafe"), Err(AuthError::InvalidCredentials));
        assert_eq!(log_in(b"pw two"), Err(AuthError::InvalidCredentials));

        let (login, _) = Login::start(b"pw", &mut OsRng).unwrap();
        assert_eq!(
            login.finish(b"pw", "not base64!").unwrap_err(),
            AuthError::InvalidResponse("credential_response")
        );
        let (reg, _) = Registration::start(b"pw", &mut OsRng).unwrap();
        assert_eq!(
            reg.finish(b"pw", "AAAA", &mut OsRng).unwrap_err(),
            AuthError::InvalidResponse("registration_response")
        );
    }
}

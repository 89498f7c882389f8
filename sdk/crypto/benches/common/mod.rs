//! The operations the session benches compare, each as Haven and as vodozemac (Matrix's Olm,
//! `SessionConfig::version_1`, what Matrix clients use), shared by the criterion bench
//! (`session.rs`) and the instruction-count driver (`ops.rs`) so both measure the same code.

use std::time::Instant;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::pqxdh::{self, ResponderKeys};
use haven_sdk::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use haven_sdk::ratchet::message::{PreKeyMessage, SessionMessage};
use haven_sdk::ratchet::session::Session;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{self, Account, OlmMessage, SessionConfig};
use zeroize::Zeroizing;

/// On-CPU time of the calling thread in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`), `None` where
/// there is no such clock. Time the thread spends waiting for a core (other processes' builds on
/// a shared machine) is not counted, so a comparison run while the load comes and goes is not
/// skewed towards whichever side ran during a quiet moment.
pub(crate) fn thread_cpu_ns() -> Option<u64> {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let secs = u64::try_from(t.tv_sec).ok()?;
        let nanos = u64::try_from(t.tv_nsec).ok()?;
        Some(secs * 1_000_000_000 + nanos)
    }
    #[cfg(not(unix))]
    None
}

/// A criterion measurement of the benchmarking thread's CPU time ([`thread_cpu_ns`]), wall time
/// where that clock is missing. Reported in the usual time units.
#[allow(dead_code)] // used by session.rs; ops.rs, which shares this module, times blocks itself
pub(crate) struct ThreadCpuTime(pub(crate) WallTime);

impl Measurement for ThreadCpuTime {
    type Intermediate = (Option<u64>, Instant);
    type Value = u64;

    fn start(&self) -> Self::Intermediate {
        (thread_cpu_ns(), Instant::now())
    }

    fn end(&self, (cpu, wall): Self::Intermediate) -> u64 {
        match (cpu, thread_cpu_ns()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a.saturating_add(*b)
    }

    fn zero(&self) -> u64 {
        0
    }

    #[allow(clippy::cast_precision_loss)] // nanoseconds far below 2^53
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

/// The `now` (Unix seconds) every decrypt is given.
pub(crate) const NOW: u64 = 1_800_000_000;
/// Plaintext of the per-message benches.
pub(crate) const MESSAGE_LEN: usize = 1024;

/// Bob's keys and the bundle Alice fetched.
pub(crate) struct Fx {
    pub(crate) alice: IdentityKeyPair,
    pub(crate) bob: IdentityKeyPair,
    pub(crate) spk: SignedPreKey,
    pub(crate) otpk: OneTimePreKey,
    pub(crate) kem: KemPreKey,
    pub(crate) bundle: PreKeyBundle,
}

pub(crate) fn fx(rng: &mut ChaCha20Rng) -> Fx {
    let alice = IdentityKeyPair::generate(rng);
    let bob = IdentityKeyPair::generate(rng);
    let spk = SignedPreKey::generate(&bob, 1, 0, rng);
    let otpk = OneTimePreKey::generate(2, rng);
    let kem = KemPreKey::generate(&bob, 3, KemPreKeyKind::OneTime, 0, rng);
    let bundle = PreKeyBundle::new(*bob.public(), 1, 1, &spk, Some(&otpk), &kem);
    Fx {
        alice,
        bob,
        spk,
        otpk,
        kem,
        bundle,
    }
}

impl Fx {
    fn responder_keys(&self) -> ResponderKeys<'_> {
        ResponderKeys {
            signed_prekey: &self.spk,
            one_time_prekey: Some(&self.otpk),
            kem_prekey: &self.kem,
        }
    }

    fn first_message(&self, rng: &mut ChaCha20Rng) -> (Session, Box<PreKeyMessage>) {
        let mut alice = pqxdh::initiate(&self.alice, &self.bundle, rng).unwrap();
        let SessionMessage::PreKey(pm) = alice.encrypt(&[0x42; 64]).unwrap() else {
            unreachable!("a new session sends a prekey message")
        };
        (alice, pm)
    }
}

/// Outbound session setup. Haven: verify two prekey signatures, 4 DH, ML-KEM-1024
/// encapsulation, first ratchet step. Olm: 3 DH.
pub(crate) struct Outbound {
    rng: ChaCha20Rng,
    f: Fx,
    olm_alice: Account,
    olm_bob_identity: Curve25519PublicKey,
    olm_bob_otk: Curve25519PublicKey,
}

impl Outbound {
    pub(crate) fn new() -> Self {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let f = fx(&mut rng);
        let mut bob = Account::new();
        bob.generate_one_time_keys(1);
        Self {
            rng,
            f,
            olm_alice: Account::new(),
            olm_bob_identity: bob.curve25519_key(),
            olm_bob_otk: bob.one_time_keys().into_values().next().unwrap(),
        }
    }

    pub(crate) fn haven(&mut self) -> Session {
        pqxdh::initiate(&self.f.alice, &self.f.bundle, &mut self.rng).unwrap()
    }

    pub(crate) fn olm(&mut self) -> olm::Session {
        self.olm_alice
            .create_outbound_session(
                SessionConfig::version_1(),
                self.olm_bob_identity,
                self.olm_bob_otk,
            )
            .unwrap()
    }
}

/// Inbound session setup including the decryption of the first (64-byte) message. Haven's
/// responder borrows its prekeys (the caller deletes one-time keys after success); Olm's consumes
/// a one-time key, so it answers with its fallback key, which it keeps, to repeat the operation.
pub(crate) struct Inbound {
    rng: ChaCha20Rng,
    f: Fx,
    message: Box<PreKeyMessage>,
    olm_bob: Account,
    olm_alice_identity: Curve25519PublicKey,
    olm_message: olm::PreKeyMessage,
}

impl Inbound {
    pub(crate) fn new() -> Self {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let f = fx(&mut rng);
        let (_, message) = f.first_message(&mut rng);
        let alice = Account::new();
        let mut olm_bob = Account::new();
        olm_bob.generate_fallback_key();
        let fallback = olm_bob.fallback_key().into_values().next().unwrap();
        let mut s = alice
            .create_outbound_session(
                SessionConfig::version_1(),
                olm_bob.curve25519_key(),
                fallback,
            )
            .unwrap();
        let OlmMessage::PreKey(olm_message) = s.encrypt([0x42; 64]).unwrap() else {
            unreachable!("a new session sends a pre-key message")
        };
        Self {
            rng,
            f,
            message,
            olm_bob,
            olm_alice_identity: alice.curve25519_key(),
            olm_message,
        }
    }

    pub(crate) fn haven(&mut self) -> Zeroizing<Vec<u8>> {
        let mut s = pqxdh::respond(&self.f.bob, &self.message, &self.f.responder_keys()).unwrap();
        s.decrypt(&self.message.message, NOW, &mut self.rng)
            .unwrap()
    }

    pub(crate) fn olm(&mut self) -> olm::InboundCreationResult {
        self.olm_bob
            .create_inbound_session(
                SessionConfig::version_1(),
                self.olm_alice_identity,
                &self.olm_message,
            )
            .unwrap()
    }
}

/// Two sessions after the handshake and one reply, so both sides send plain ratchet messages, as
/// in a conversation; Haven's and Olm's side by side.
pub(crate) struct Conversation {
    rng: ChaCha20Rng,
    message: Vec<u8>,
    alice: Session,
    bob: Session,
    olm_alice: olm::Session,
    olm_bob: olm::Session,
}

impl Conversation {
    pub(crate) fn new() -> Self {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let f = fx(&mut rng);
        let (mut alice, pm) = f.first_message(&mut rng);
        let mut bob = pqxdh::respond(&f.bob, &pm, &f.responder_keys()).unwrap();
        bob.decrypt(&pm.message, NOW, &mut rng).unwrap();
        alice
            .decrypt(&bob.ratchet_encrypt(b"hello").unwrap(), NOW, &mut rng)
            .unwrap();

        let a = Account::new();
        let mut b = Account::new();
        b.generate_one_time_keys(1);
        let otk = b.one_time_keys().into_values().next().unwrap();
        let mut olm_alice = a
            .create_outbound_session(SessionConfig::version_1(), b.curve25519_key(), otk)
            .unwrap();
        let OlmMessage::PreKey(pm) = olm_alice.encrypt(b"hi").unwrap() else {
            unreachable!("a new session sends a pre-key message")
        };
        let mut olm_bob = b
            .create_inbound_session(SessionConfig::version_1(), a.curve25519_key(), &pm)
            .unwrap()
            .session;
        olm_alice
            .decrypt(&olm_bob.encrypt(b"hello").unwrap())
            .unwrap();
        Self {
            rng,
            message: vec![0x42; MESSAGE_LEN],
            alice,
            bob,
            olm_alice,
            olm_bob,
        }
    }

    /// Alice → Bob: the symmetric ratchet only.
    pub(crate) fn haven_same_direction(&mut self) -> Zeroizing<Vec<u8>> {
        let m = self.alice.ratchet_encrypt(&self.message).unwrap();
        self.bob.decrypt(&m, NOW, &mut self.rng).unwrap()
    }

    pub(crate) fn olm_same_direction(&mut self) -> Vec<u8> {
        let m = self.olm_alice.encrypt(&self.message).unwrap();
        self.olm_bob.decrypt(&m).unwrap()
    }

    /// Alice → Bob → Alice: every message starts a new ratchet key (a DH ratchet step).
    pub(crate) fn haven_ping_pong(&mut self) -> Zeroizing<Vec<u8>> {
        let m = self.alice.ratchet_encrypt(&self.message).unwrap();
        self.bob.decrypt(&m, NOW, &mut self.rng).unwrap();
        let m = self.bob.ratchet_encrypt(&self.message).unwrap();
        self.alice.decrypt(&m, NOW, &mut self.rng).unwrap()
    }

    pub(crate) fn olm_ping_pong(&mut self) -> Vec<u8> {
        let m = self.olm_alice.encrypt(&self.message).unwrap();
        self.olm_bob.decrypt(&m).unwrap();
        let m = self.olm_bob.encrypt(&self.message).unwrap();
        self.olm_alice.decrypt(&m).unwrap()
    }
}

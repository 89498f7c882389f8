//! Group messaging with sender keys, following Signal's sender-key design.
//!
//! Each member keeps, per group, a [`GroupSenderSession`]: a symmetric chain key and an Ed25519
//! signing key. Its [`SenderKeyDistributionMessage`] is sent to every other member over the 1:1
//! sessions (by the caller); receivers keep a [`SenderKeyRecord`] per sender. Messages are
//! [`SenderKeyMessage`]s: ChaCha20-Poly1305 under a per-message key from the chain, signed by the
//! sender. When a member leaves, the others call [`GroupSenderSession::rotate`] and redistribute
//! to the remaining members only. Wire formats and KDFs: `docs/PROTOCOL.md` §8.
//!
//! Who may change a group's membership is the [`admin`] module's: changes signed with the
//! group's [`GroupAdminKey`] (§13.3.1).

pub mod admin;

pub use admin::{GroupAdminKey, GroupChangeError, SignedGroupChange, group_key_commitment};

use alloc::vec::Vec;
use haven_protocol::encoding::Reader;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Tag};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Version byte of every sender-key format.
pub const SENDER_KEY_VERSION: u8 = 0x01;
/// Type byte of a [`SenderKeyDistributionMessage`].
pub const TYPE_DISTRIBUTION: u8 = 0x01;
/// Type byte of a [`SenderKeyMessage`].
pub const TYPE_MESSAGE: u8 = 0x02;
/// Type byte of a pickled [`GroupSenderSession`].
pub const TYPE_SENDER_STATE: u8 = 0x03;
/// Type byte of a pickled [`SenderKeyRecord`].
pub const TYPE_RECORD: u8 = 0x04;

/// Largest forward jump in iterations a single message may cause (keys skipped at once).
pub const MAX_SENDER_KEY_SKIP: u32 = 2000;
/// Most skipped message keys kept per chain; the oldest are dropped beyond this.
pub const MAX_STORED_SENDER_MESSAGE_KEYS: usize = 2000;
/// Most chains kept per sender (the newest win): covers rotations racing with late messages.
pub const MAX_SENDER_CHAINS: usize = 5;
/// Largest plaintext of one group message (1 MiB).
pub const MAX_GROUP_PLAINTEXT_LEN: usize = 1 << 20;

/// HKDF info for message keys.
const MESSAGE_KEY_INFO: &[u8] = b"Haven_SenderKeyMessage_v1";
const SIG_LEN: usize = 64;
const TAG_LEN: usize = 16;
/// version, type, distribution id, chain id, iteration.
const HEADER_LEN: usize = 2 + 16 + 4 + 4;
/// Length of an encoded [`SenderKeyDistributionMessage`].
pub const DISTRIBUTION_MESSAGE_LEN: usize = HEADER_LEN + 32 + 32;

/// Errors from group encryption, decryption and decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The input is not a well-formed encoding (wrong length, type or count).
    #[error("malformed sender-key data")]
    Malformed,
    /// Unknown version byte.
    #[error("unsupported sender-key version {0}")]
    UnsupportedVersion(u8),
    /// No chain with this id is known for the sender (never distributed, or rotated away).
    #[error("unknown sender chain {0}")]
    UnknownChain(u32),
    /// The message belongs to another group (distribution id).
    #[error("distribution id mismatch")]
    DistributionMismatch,
    /// The message's key was already used or dropped: a replay or a very old message.
    #[error("duplicate or expired message at iteration {0}")]
    DuplicateMessage(u32),
    /// The message is further ahead than [`MAX_SENDER_KEY_SKIP`].
    #[error("message {jump} iterations ahead exceeds the limit")]
    TooFarInFuture {
        /// Iterations between the chain's position and the message.
        jump: u32,
    },
    /// Signature or AEAD verification failed (collapsed: an attacker learns nothing from which).
    #[error("group message failed authentication")]
    InvalidMessage,
    /// The plaintext exceeds [`MAX_GROUP_PLAINTEXT_LEN`].
    #[error("plaintext of {0} bytes is too large")]
    TooLarge(usize),
    /// The sending chain reached the last iteration; rotate.
    #[error("sender chain exhausted")]
    ChainExhausted,
}

/// A 16-byte group (distribution) identifier, chosen at random by the group creator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DistributionId(pub [u8; 16]);

impl DistributionId {
    /// A fresh random id.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }
}

/// A short or overlong input is `Malformed`; the shared [`Reader`] says only "too short".
fn need<T>(value: Option<T>) -> Result<T, GroupError> {
    value.ok_or(GroupError::Malformed)
}

/// Reads and checks `version || type`.
fn read_header(r: &mut Reader<'_>, ty: u8) -> Result<(), GroupError> {
    let version = need(r.u8())?;
    if version != SENDER_KEY_VERSION {
        return Err(GroupError::UnsupportedVersion(version));
    }
    if need(r.u8())? != ty {
        return Err(GroupError::Malformed);
    }
    Ok(())
}

fn hmac(key: &[u8; 32], byte: u8) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length.
    if let Ok(mut mac) = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) {
        mac.update(&[byte]);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Message-key seed for the current iteration and the next chain key (Signal's sender chain).
pub(crate) fn chain_step(chain_key: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    (hmac(chain_key, 0x01), hmac(chain_key, 0x02))
}

/// Decodes a sender's signing key, refusing small-order points: under such a key an all-identity
/// signature verifies for any message (PROTOCOL.md §8).
fn signing_key(bytes: &[u8; 32]) -> Result<VerifyingKey, GroupError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| GroupError::Malformed)?;
    if key.is_weak() {
        return Err(GroupError::Malformed);
    }
    Ok(key)
}

/// ChaCha20-Poly1305 key and nonce from a message-key seed.
pub(crate) fn message_key_and_nonce(seed: &[u8; 32]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let mut okm = Zeroizing::new([0u8; 44]);
    // 44 bytes is far below HKDF's limit.
    let _ = Hkdf::<Sha256>::new(None, seed).expand(MESSAGE_KEY_INFO, okm.as_mut_slice());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

fn message_cipher(seed: &[u8; 32]) -> (ChaCha20Poly1305, [u8; 12]) {
    let (key, nonce) = message_key_and_nonce(seed);
    (<ChaCha20Poly1305 as KeyInit>::new(&(*key).into()), nonce)
}

fn header(ty: u8, dist: &DistributionId, chain_id: u32, iteration: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.push(SENDER_KEY_VERSION);
    h.push(ty);
    h.extend_from_slice(&dist.0);
    h.extend_from_slice(&chain_id.to_be_bytes());
    h.extend_from_slice(&iteration.to_be_bytes());
    h
}

/// The key material a member sends to each other member (over 1:1 sessions) so they can read
/// its group messages. Contains a secret chain key: send it only inside encrypted sessions.
pub struct SenderKeyDistributionMessage {
    distribution_id: DistributionId,
    chain_id: u32,
    iteration: u32,
    chain_key: Zeroizing<[u8; 32]>,
    signing_public: VerifyingKey,
}

impl SenderKeyDistributionMessage {
    /// The group this key is for.
    #[must_use]
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }
    /// The chain id.
    #[must_use]
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }
    /// The iteration of the included chain key.
    #[must_use]
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Encodes as `0x01 || 0x01 || dist(16) || chain_id u32 || iteration u32 || chain_key(32)
    /// || signing_public(32)`.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(header(
            TYPE_DISTRIBUTION,
            &self.distribution_id,
            self.chain_id,
            self.iteration,
        ));
        out.extend_from_slice(self.chain_key.as_slice());
        out.extend_from_slice(self.signing_public.as_bytes());
        out
    }

    /// Decodes and validates (exact length, version, type, valid public key).
    ///
    /// # Errors
    /// [`GroupError::Malformed`] or [`GroupError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let mut r = Reader::new(bytes);
        read_header(&mut r, TYPE_DISTRIBUTION)?;
        let distribution_id = DistributionId(need(r.array())?);
        let chain_id = need(r.u32())?;
        let iteration = need(r.u32())?;
        let chain_key = Zeroizing::new(need(r.array::<32>())?);
        let signing_public = signing_key(&need(r.array())?)?;
        need(r.finish())?;
        Ok(Self {
            distribution_id,
            chain_id,
            iteration,
            chain_key,
            signing_public,
        })
    }
}

/// A parsed group message (`docs/PROTOCOL.md` §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderKeyMessage {
    /// The group.
    pub distribution_id: DistributionId,
    /// The sender's chain.
    pub chain_id: u32,
    /// Position in the chain.
    pub iteration: u32,
    /// AEAD ciphertext with tag.
    pub ciphertext: Vec<u8>,
    /// Ed25519 signature over everything before it.
    pub signature: [u8; SIG_LEN],
}

impl SenderKeyMessage {
    fn signed_part(&self) -> Vec<u8> {
        let mut out = header(
            TYPE_MESSAGE,
            &self.distribution_id,
            self.chain_id,
            self.iteration,
        );
        out.extend_from_slice(&(self.ciphertext.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Encodes as `0x01 || 0x02 || dist(16) || chain_id u32 || iteration u32 || len u32 ||
    /// ciphertext || signature(64)`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_part();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes (checks lengths and limits; does not verify anything cryptographic).
    ///
    /// # Errors
    /// [`GroupError::Malformed`], [`GroupError::UnsupportedVersion`] or
    /// [`GroupError::TooLarge`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let mut r = Reader::new(bytes);
        read_header(&mut r, TYPE_MESSAGE)?;
        let distribution_id = DistributionId(need(r.array())?);
        let chain_id = need(r.u32())?;
        let iteration = need(r.u32())?;
        let len = need(r.u32())? as usize;
        if len < TAG_LEN {
            return Err(GroupError::Malformed);
        }
        if len - TAG_LEN > MAX_GROUP_PLAINTEXT_LEN {
            return Err(GroupError::TooLarge(len - TAG_LEN));
        }
        let ciphertext = need(r.take(len))?.to_vec();
        let signature = need(r.array())?;
        need(r.finish())?;
        Ok(Self {
            distribution_id,
            chain_id,
            iteration,
            ciphertext,
            signature,
        })
    }
}

/// The sending side of one member in one group.
pub struct GroupSenderSession {
    distribution_id: DistributionId,
    chain_id: u32,
    iteration: u32,
    chain_key: Zeroizing<[u8; 32]>,
    signing: SigningKey,
}

impl GroupSenderSession {
    /// Starts a fresh sending chain for the group `distribution_id`.
    pub fn new<R: CryptoRng + ?Sized>(distribution_id: DistributionId, rng: &mut R) -> Self {
        let mut s = Self {
            distribution_id,
            chain_id: 0,
            iteration: 0,
            chain_key: Zeroizing::new([0u8; 32]),
            signing: SigningKey::from_bytes(&[0u8; 32]),
        };
        s.rotate(rng);
        s
    }

    /// hazmat: builds a session from explicit key material, for deterministic tests and
    /// vectors. Re-using a (chain key, iteration) pair re-uses AEAD nonces; use [`Self::new`].
    #[must_use]
    pub fn from_parts(
        distribution_id: DistributionId,
        chain_id: u32,
        iteration: u32,
        chain_key: [u8; 32],
        signing_seed: [u8; 32],
    ) -> Self {
        let signing_seed = Zeroizing::new(signing_seed);
        Self {
            distribution_id,
            chain_id,
            iteration,
            chain_key: Zeroizing::new(chain_key),
            signing: SigningKey::from_bytes(&signing_seed),
        }
    }

    /// Replaces the chain with a fresh random chain id, chain key and signing key. Call it when
    /// a member leaves, then send the new [`distribution_message`](Self::distribution_message)
    /// to the remaining members only.
    pub fn rotate<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        let mut id = [0u8; 4];
        rng.fill_bytes(&mut id);
        let mut chain_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(chain_key.as_mut_slice());
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut_slice());
        self.chain_id = u32::from_be_bytes(id);
        self.iteration = 0;
        self.chain_key = chain_key;
        self.signing = SigningKey::from_bytes(&seed);
    }

    /// The group.
    #[must_use]
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }

    /// The current chain id.
    #[must_use]
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The distribution message for the current chain position.
    #[must_use]
    pub fn distribution_message(&self) -> SenderKeyDistributionMessage {
        SenderKeyDistributionMessage {
            distribution_id: self.distribution_id,
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: self.chain_key.clone(),
            signing_public: self.signing.verifying_key(),
        }
    }

    /// Encrypts and signs one group message, advancing the chain. Callers pad the plaintext
    /// first (§7).
    ///
    /// # Errors
    /// [`GroupError::TooLarge`] or [`GroupError::ChainExhausted`].
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, GroupError> {
        if plaintext.len() > MAX_GROUP_PLAINTEXT_LEN {
            return Err(GroupError::TooLarge(plaintext.len()));
        }
        let next_iteration = self
            .iteration
            .checked_add(1)
            .ok_or(GroupError::ChainExhausted)?;
        let (seed, next) = chain_step(&self.chain_key);
        let (cipher, nonce) = message_cipher(&seed);
        let ad = header(
            TYPE_MESSAGE,
            &self.distribution_id,
            self.chain_id,
            self.iteration,
        );
        let mut ciphertext = plaintext.to_vec();
        let tag = cipher
            .encrypt_inout_detached(&nonce.into(), &ad, ciphertext.as_mut_slice().into())
            .map_err(|_| GroupError::TooLarge(plaintext.len()))?;
        ciphertext.extend_from_slice(&tag);
        let mut msg = SenderKeyMessage {
            distribution_id: self.distribution_id,
            chain_id: self.chain_id,
            iteration: self.iteration,
            ciphertext,
            signature: [0u8; SIG_LEN],
        };
        msg.signature = self.signing.sign(&msg.signed_part()).to_bytes();
        self.chain_key = next;
        self.iteration = next_iteration;
        Ok(msg.to_bytes())
    }

    /// Pickles the state: `0x01 || 0x03 || dist(16) || chain_id u32 || iteration u32 ||
    /// chain_key(32) || signing_seed(32)`. Secret: store it encrypted.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(header(
            TYPE_SENDER_STATE,
            &self.distribution_id,
            self.chain_id,
            self.iteration,
        ));
        out.extend_from_slice(self.chain_key.as_slice());
        out.extend_from_slice(self.signing.as_bytes());
        out
    }

    /// Restores a pickled state.
    ///
    /// # Errors
    /// [`GroupError::Malformed`] or [`GroupError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let mut r = Reader::new(bytes);
        read_header(&mut r, TYPE_SENDER_STATE)?;
        let distribution_id = DistributionId(need(r.array())?);
        let chain_id = need(r.u32())?;
        let iteration = need(r.u32())?;
        let chain_key = need(r.array::<32>())?;
        let seed = need(r.array::<32>())?;
        need(r.finish())?;
        Ok(Self::from_parts(
            distribution_id,
            chain_id,
            iteration,
            chain_key,
            seed,
        ))
    }
}

/// One receiving chain of a sender.
#[derive(Clone)]
struct ReceiverChain {
    chain_id: u32,
    /// Iteration of `chain_key` (the next unused position).
    iteration: u32,
    chain_key: Zeroizing<[u8; 32]>,
    signing_public: VerifyingKey,
    /// Message-key seeds of skipped iterations, oldest first.
    skipped: Vec<(u32, Zeroizing<[u8; 32]>)>,
}

impl ReceiverChain {
    /// Returns the message-key seed for `iteration`, advancing the chain (on this copy).
    fn seed_for(&mut self, iteration: u32) -> Result<Zeroizing<[u8; 32]>, GroupError> {
        if iteration < self.iteration {
            let pos = self
                .skipped
                .iter()
                .position(|(i, _)| *i == iteration)
                .ok_or(GroupError::DuplicateMessage(iteration))?;
            return Ok(self.skipped.remove(pos).1);
        }
        let jump = iteration - self.iteration;
        if jump > MAX_SENDER_KEY_SKIP {
            return Err(GroupError::TooFarInFuture { jump });
        }
        // The chain cannot produce a key past u32::MAX - 1 (the next iteration must fit).
        let next = iteration.checked_add(1).ok_or(GroupError::ChainExhausted)?;
        while self.iteration < iteration {
            let (seed, ck) = chain_step(&self.chain_key);
            self.skipped.push((self.iteration, seed));
            self.chain_key = ck;
            self.iteration += 1;
        }
        let excess = self
            .skipped
            .len()
            .saturating_sub(MAX_STORED_SENDER_MESSAGE_KEYS);
        self.skipped.drain(..excess);
        let (seed, ck) = chain_step(&self.chain_key);
        self.chain_key = ck;
        self.iteration = next;
        Ok(seed)
    }
}

/// Everything a member knows about one sender's chains in one group.
#[derive(Clone)]
pub struct SenderKeyRecord {
    distribution_id: DistributionId,
    /// Newest first, at most [`MAX_SENDER_CHAINS`].
    chains: Vec<ReceiverChain>,
}

impl SenderKeyRecord {
    /// Creates a record from the sender's first distribution message.
    #[must_use]
    pub fn new(skdm: &SenderKeyDistributionMessage) -> Self {
        let mut r = Self {
            distribution_id: skdm.distribution_id,
            chains: Vec::new(),
        };
        let _ = r.process_distribution(skdm);
        r
    }

    /// Adds the chain of a (new or re-sent) distribution message. A chain id already known is
    /// ignored, so a re-delivered old distribution message cannot rewind the chain (replays).
    ///
    /// # Errors
    /// [`GroupError::DistributionMismatch`] if it is for another group.
    pub fn process_distribution(
        &mut self,
        skdm: &SenderKeyDistributionMessage,
    ) -> Result<(), GroupError> {
        if skdm.distribution_id != self.distribution_id {
            return Err(GroupError::DistributionMismatch);
        }
        if self.chains.iter().any(|c| c.chain_id == skdm.chain_id) {
            return Ok(());
        }
        self.chains.insert(
            0,
            ReceiverChain {
                chain_id: skdm.chain_id,
                iteration: skdm.iteration,
                chain_key: skdm.chain_key.clone(),
                signing_public: skdm.signing_public,
                skipped: Vec::new(),
            },
        );
        self.chains.truncate(MAX_SENDER_CHAINS);
        Ok(())
    }

    /// Number of chains kept.
    #[must_use]
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    /// Verifies and decrypts a group message. The record changes only if the signature and the
    /// AEAD both verify.
    ///
    /// # Errors
    /// Any [`GroupError`]: unknown chain, replay, too far ahead, authentication failure.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, GroupError> {
        let msg = SenderKeyMessage::from_bytes(message)?;
        if msg.distribution_id != self.distribution_id {
            return Err(GroupError::DistributionMismatch);
        }
        let index = self
            .chains
            .iter()
            .position(|c| c.chain_id == msg.chain_id)
            .ok_or(GroupError::UnknownChain(msg.chain_id))?;
        let chain = self
            .chains
            .get(index)
            .ok_or(GroupError::UnknownChain(msg.chain_id))?;
        chain
            .signing_public
            .verify_strict(&msg.signed_part(), &Signature::from_bytes(&msg.signature))
            .map_err(|_| GroupError::InvalidMessage)?;
        let mut chain = chain.clone();
        let seed = chain.seed_for(msg.iteration)?;
        let (cipher, nonce) = message_cipher(&seed);
        let ad = header(
            TYPE_MESSAGE,
            &msg.distribution_id,
            msg.chain_id,
            msg.iteration,
        );
        let body_len = msg
            .ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(GroupError::Malformed)?;
        let (body, tag) = msg.ciphertext.split_at(body_len);
        let tag = Tag::try_from(tag).map_err(|_| GroupError::Malformed)?;
        let mut plaintext = body.to_vec();
        cipher
            .decrypt_inout_detached(&nonce.into(), &ad, plaintext.as_mut_slice().into(), &tag)
            .map_err(|_| GroupError::InvalidMessage)?;
        if let Some(slot) = self.chains.get_mut(index) {
            *slot = chain;
        }
        Ok(plaintext)
    }

    /// Pickles the record: `0x01 || 0x04 || dist(16) || n u8 || n × (chain_id u32 || iteration
    /// u32 || chain_key(32) || signing_public(32) || k u16 || k × (iteration u32 || seed(32)))`.
    /// Secret: store it encrypted.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(&[SENDER_KEY_VERSION, TYPE_RECORD]);
        out.extend_from_slice(&self.distribution_id.0);
        out.push(self.chains.len() as u8); // <= MAX_SENDER_CHAINS
        for c in &self.chains {
            out.extend_from_slice(&c.chain_id.to_be_bytes());
            out.extend_from_slice(&c.iteration.to_be_bytes());
            out.extend_from_slice(c.chain_key.as_slice());
            out.extend_from_slice(c.signing_public.as_bytes());
            out.extend_from_slice(&(c.skipped.len() as u16).to_be_bytes()); // <= 2000
            for (i, seed) in &c.skipped {
                out.extend_from_slice(&i.to_be_bytes());
                out.extend_from_slice(seed.as_slice());
            }
        }
        out
    }

    /// Restores a pickled record, enforcing every limit.
    ///
    /// # Errors
    /// [`GroupError::Malformed`] or [`GroupError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupError> {
        let mut r = Reader::new(bytes);
        read_header(&mut r, TYPE_RECORD)?;
        let distribution_id = DistributionId(need(r.array())?);
        let n = usize::from(need(r.u8())?);
        if n > MAX_SENDER_CHAINS {
            return Err(GroupError::Malformed);
        }
        let mut chains = Vec::with_capacity(n);
        for _ in 0..n {
            let chain_id = need(r.u32())?;
            let iteration = need(r.u32())?;
            let chain_key = Zeroizing::new(need(r.array::<32>())?);
            let signing_public = signing_key(&need(r.array())?)?;
            let k = usize::from(need(r.u16())?);
            if k > MAX_STORED_SENDER_MESSAGE_KEYS {
                return Err(GroupError::Malformed);
            }
            let mut skipped = Vec::with_capacity(k);
            for _ in 0..k {
                let i = need(r.u32())?;
                skipped.push((i, Zeroizing::new(need(r.array::<32>())?)));
            }
            chains.push(ReceiverChain {
                chain_id,
                iteration,
                chain_key,
                signing_public,
                skipped,
            });
        }
        need(r.finish())?;
        Ok(Self {
            distribution_id,
            chains,
        })
    }
}

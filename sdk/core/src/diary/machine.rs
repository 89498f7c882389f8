//! [`DiaryMachine`]: one account's diary on a device as a single state machine, for drivers
//! that hand requests out one at a time (the web package: the page `fetch`es each). It holds
//! the store (locked) or the [`LocalDiary`] (open) and the vault operation in progress; an
//! operation is `begin_…`, then [`next_call`](DiaryMachine::next_call) →
//! (the relay) → [`answer`](DiaryMachine::answer) until `next_call` is `None`, then
//! [`finish`](DiaryMachine::finish). A failed step ends the operation and leaves the diary as
//! it was (locked with its store, or open).
//!
//! It composes the steps of [`state`](super::state) and [`run`](super::run) exactly as
//! `haven_client::Diary` does with async calls, so both drivers behave alike.

use haven_sdk::diary::{KdfParams, RecoveryCode};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::run::{HistoryRevision, HistoryRun, SyncReport, SyncRun};
use super::state::{BundleFetch, LocalDiary, NewDiary, Opening, save_bundle};
use super::{BundleUpload, LocalDiaryError, VaultAnswer, VaultCall, bundle};
use crate::store::{Backend, EncryptedStore};

/// What a finished operation gives. `Debug` shows no recovery code.
#[non_exhaustive]
pub enum Outcome {
    /// Unlock, recovery, restore, password change: nothing to show.
    Done,
    /// Creation and regenerated codes: the recovery codes, to show once.
    RecoveryCodes(Vec<RecoveryCode>),
    /// A sync or a delete.
    Report(SyncReport),
    /// An entry's history, oldest first.
    History(Vec<HistoryRevision>),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Done => f.write_str("Done"),
            Self::RecoveryCodes(c) => write!(f, "RecoveryCodes({} codes)", c.len()),
            Self::Report(r) => f.debug_tuple("Report").field(r).finish(),
            Self::History(h) => write!(f, "History({} revisions)", h.len()),
        }
    }
}

#[allow(clippy::large_enum_variant)] // One per diary, replaced in place; boxing buys nothing.
enum Held<B> {
    Locked(EncryptedStore<B>),
    Open(LocalDiary<B>),
    /// Taken by the operation in progress.
    Lent,
    /// The store's diary rows did not load (corrupt); the store is gone with them.
    Lost,
}

#[allow(clippy::large_enum_variant)] // One per diary, replaced in place; boxing buys nothing.
enum Op<B> {
    Idle,
    Create {
        new: NewDiary,
        codes: Vec<RecoveryCode>,
    },
    Unlock {
        fetch: BundleFetch<B>,
        password: Zeroizing<Vec<u8>>,
    },
    RecoverFetch {
        code: Zeroizing<String>,
        password: Zeroizing<Vec<u8>>,
        params: KdfParams,
    },
    RecoverPut {
        new: NewDiary,
    },
    Bundle {
        upload: BundleUpload,
        codes: Option<Vec<RecoveryCode>>,
    },
    Sync(SyncRun),
    History {
        run: HistoryRun,
        restore: bool,
    },
    Done(Outcome),
}

impl<B> Op<B> {
    /// Operations of one request (their call is handed out once).
    fn single(&self) -> bool {
        matches!(
            self,
            Self::Create { .. }
                | Self::Unlock { .. }
                | Self::RecoverFetch { .. }
                | Self::RecoverPut { .. }
                | Self::Bundle { .. }
        )
    }
}

/// One account's diary and the vault operation in progress (module docs).
pub struct DiaryMachine<B> {
    held: Held<B>,
    op: Op<B>,
    /// The call of a single-request operation was handed out (its answer is awaited).
    sent: bool,
}

impl<B> std::fmt::Debug for DiaryMachine<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiaryMachine")
            .field("open", &matches!(self.held, Held::Open(_)))
            .field("busy", &!matches!(self.op, Op::Idle))
            .finish_non_exhaustive()
    }
}

fn out_of_order(what: &'static str) -> LocalDiaryError {
    LocalDiaryError::OutOfOrder(what)
}

impl<B: Backend> DiaryMachine<B> {
    /// A locked diary over `store` (empty, or holding a diary's rows from an earlier session).
    #[must_use]
    pub fn new(store: EncryptedStore<B>) -> Self {
        Self {
            held: Held::Locked(store),
            op: Op::Idle,
            sent: false,
        }
    }

    /// The store (locked or open).
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`] while an unlock holds it, or once it was lost.
    pub fn store(&self) -> Result<&EncryptedStore<B>, LocalDiaryError> {
        match &self.held {
            Held::Locked(s) => Ok(s),
            Held::Open(d) => Ok(d.store()),
            Held::Lent => Err(out_of_order("an unlock is in progress")),
            Held::Lost => Err(LocalDiaryError::CorruptState),
        }
    }

    /// The open diary, if unlocked.
    #[must_use]
    pub fn diary(&self) -> Option<&LocalDiary<B>> {
        match &self.held {
            Held::Open(d) => Some(d),
            _ => None,
        }
    }

    /// The open diary, mutably (local edits), if unlocked.
    pub fn diary_mut(&mut self) -> Option<&mut LocalDiary<B>> {
        match &mut self.held {
            Held::Open(d) => Some(d),
            _ => None,
        }
    }

    fn open_mut(&mut self) -> Result<&mut LocalDiary<B>, LocalDiaryError> {
        self.diary_mut().ok_or(out_of_order("the diary is locked"))
    }

    fn open_ref(&self) -> Result<&LocalDiary<B>, LocalDiaryError> {
        self.diary().ok_or(out_of_order("the diary is locked"))
    }

    fn idle(&self) -> Result<(), LocalDiaryError> {
        match self.op {
            Op::Idle => Ok(()),
            _ => Err(out_of_order("another operation is in progress")),
        }
    }

    fn idle_locked(&self) -> Result<(), LocalDiaryError> {
        self.idle()?;
        match self.held {
            Held::Locked(_) => Ok(()),
            Held::Open(_) => Err(out_of_order("the diary is unlocked already")),
            Held::Lent => Err(out_of_order("an unlock is in progress")),
            Held::Lost => Err(LocalDiaryError::CorruptState),
        }
    }

    fn take_locked(&mut self) -> Result<EncryptedStore<B>, LocalDiaryError> {
        match std::mem::replace(&mut self.held, Held::Lent) {
            Held::Locked(store) => Ok(store),
            other => {
                self.held = other;
                Err(out_of_order("the diary is not locked"))
            }
        }
    }

    fn start(&mut self, op: Op<B>) {
        self.op = op;
        self.sent = false;
    }

    /// Opens the diary over the locked store with `open`; a failure loses the store (its rows
    /// are corrupt).
    fn open_with(
        &mut self,
        open: impl FnOnce(EncryptedStore<B>) -> Result<LocalDiary<B>, LocalDiaryError>,
    ) -> Result<(), LocalDiaryError> {
        let store = self.take_locked()?;
        match open(store) {
            Ok(diary) => {
                self.held = Held::Open(diary);
                Ok(())
            }
            Err(e) => {
                self.held = Held::Lost;
                Err(e)
            }
        }
    }

    /// Starts creating the account's diary (one request; [`Outcome::RecoveryCodes`]).
    ///
    /// # Errors
    /// Key errors (parameters out of bounds), [`LocalDiaryError::OutOfOrder`].
    pub fn begin_create<R: CryptoRng + ?Sized>(
        &mut self,
        password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        self.idle_locked()?;
        let (new, codes) = NewDiary::create(password, params, rng)?;
        self.start(Op::Create { new, codes });
        Ok(())
    }

    /// Starts unlocking: with the store's copy of the bundle (no request), else with the
    /// relay's (one request).
    ///
    /// # Errors
    /// Key errors other than a wrong password, store errors, [`LocalDiaryError::OutOfOrder`].
    pub fn begin_unlock<R: CryptoRng + ?Sized>(
        &mut self,
        password: &[u8],
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        self.idle_locked()?;
        let Held::Locked(store) = &self.held else {
            return Err(out_of_order("the diary is not locked"));
        };
        match LocalDiary::opening(store, password)? {
            Opening::Keys(keys, local) => {
                self.open_with(|store| LocalDiary::open(store, keys, local, rng))?;
                self.start(Op::Done(Outcome::Done));
            }
            Opening::Fetch(local) => {
                let store = self.take_locked()?;
                self.start(Op::Unlock {
                    fetch: BundleFetch::with(store, local),
                    password: Zeroizing::new(password.to_vec()),
                });
            }
        }
        Ok(())
    }

    /// Starts a recovery with a code and a new password (two requests).
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`].
    pub fn begin_recover(
        &mut self,
        code: &str,
        new_password: &[u8],
        params: KdfParams,
    ) -> Result<(), LocalDiaryError> {
        self.idle_locked()?;
        self.start(Op::RecoverFetch {
            code: Zeroizing::new(code.to_owned()),
            password: Zeroizing::new(new_password.to_vec()),
            params,
        });
        Ok(())
    }

    /// Starts a sync ([`Outcome::Report`]).
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`], entry limits.
    pub fn begin_sync<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        self.idle()?;
        let run = self.open_mut()?.sync_run(rng)?;
        self.start(Op::Sync(run));
        Ok(())
    }

    /// Starts deleting an entry ([`Outcome::Report`]; `finish` fails with
    /// [`LocalDiaryError::Conflict`] if it changed elsewhere first).
    ///
    /// # Errors
    /// [`LocalDiaryError::UnknownEntry`], [`LocalDiaryError::OutOfOrder`].
    pub fn begin_delete<R: CryptoRng + ?Sized>(
        &mut self,
        id: &[u8; 16],
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        self.idle()?;
        let run = self.open_mut()?.delete_run(id, rng)?;
        self.start(Op::Sync(run));
        Ok(())
    }

    /// Starts reading an entry's history ([`Outcome::History`]).
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`].
    pub fn begin_history(&mut self, id: &[u8; 16]) -> Result<(), LocalDiaryError> {
        self.idle()?;
        let run = self.open_ref()?.history_run(id);
        self.start(Op::History {
            run,
            restore: false,
        });
        Ok(())
    }

    /// Starts restoring a deleted entry from its history (local first; the next sync sends it).
    ///
    /// # Errors
    /// As [`LocalDiary::check_restorable`], [`LocalDiaryError::OutOfOrder`].
    pub fn begin_restore(&mut self, id: &[u8; 16]) -> Result<(), LocalDiaryError> {
        self.idle()?;
        let diary = self.open_ref()?;
        diary.check_restorable(id)?;
        let run = diary.history_run(id);
        self.start(Op::History { run, restore: true });
        Ok(())
    }

    /// Starts a password change (one request): a new key epoch. Ends in [`Outcome::Done`], or in
    /// [`Outcome::RecoveryCodes`] when a version-1 bundle was upgraded (its codes replaced).
    ///
    /// # Errors
    /// Key errors, [`LocalDiaryError::OutOfOrder`].
    pub fn begin_change_password<R: CryptoRng + ?Sized>(
        &mut self,
        new_password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        self.idle()?;
        let (upload, codes) = self
            .open_ref()?
            .change_password(new_password, params, rng)?;
        // New codes only when a version-1 bundle was upgraded: then they must be shown.
        self.start(Op::Bundle {
            upload,
            codes: (!codes.is_empty()).then_some(codes),
        });
        Ok(())
    }

    /// Starts replacing the recovery codes (one request; [`Outcome::RecoveryCodes`]): a new
    /// key epoch.
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`], key errors (too many epochs).
    pub fn begin_regenerate_codes<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        self.idle()?;
        let (upload, codes) = self.open_ref()?.regenerate_recovery_codes(rng)?;
        self.start(Op::Bundle {
            upload,
            codes: Some(codes),
        });
        Ok(())
    }

    /// The next request of the operation, `None` once it is over (then [`finish`](Self::finish)).
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`] (no operation, or the last request not answered), a
    /// run's own errors.
    pub fn next_call(&mut self) -> Result<Option<VaultCall>, LocalDiaryError> {
        if self.op.single() {
            if self.sent {
                return Err(out_of_order("answer the call in flight first"));
            }
            self.sent = true;
        }
        Ok(match &mut self.op {
            Op::Idle => return Err(out_of_order("no operation started")),
            Op::Done(_) => None,
            Op::Create { new, .. } | Op::RecoverPut { new } => Some(new.call()),
            Op::Unlock { fetch, .. } => Some(fetch.call()),
            Op::RecoverFetch { .. } => Some(bundle::fetch_call()),
            Op::Bundle { upload, .. } => Some(upload.call()),
            Op::Sync(run) => {
                let Held::Open(diary) = &self.held else {
                    return Err(out_of_order("the diary is locked"));
                };
                run.next_call(diary)?
            }
            Op::History { run, .. } => run.next_call()?,
        })
    }

    /// The relay's answer to the last call. An error ends the operation; the diary stays as it
    /// was (an unlock gives the store back, locked).
    ///
    /// # Errors
    /// The step's errors; [`LocalDiaryError::OutOfOrder`] without a call in flight.
    pub fn answer<R: CryptoRng + ?Sized>(
        &mut self,
        answer: VaultAnswer,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        let result = self.step(answer, rng);
        if result.is_err() {
            self.abort();
        }
        result
    }

    fn step<R: CryptoRng + ?Sized>(
        &mut self,
        answer: VaultAnswer,
        rng: &mut R,
    ) -> Result<(), LocalDiaryError> {
        if self.op.single() && !self.sent {
            return Err(out_of_order("no call in flight"));
        }
        self.sent = false;
        match std::mem::replace(&mut self.op, Op::Idle) {
            Op::Idle | Op::Done(_) => Err(out_of_order("no call in flight")),
            Op::Create { new, codes } => {
                let stored = new.upload.read(answer)?;
                self.open_with(|store| new.open(store, stored, rng))?;
                self.op = Op::Done(Outcome::RecoveryCodes(codes));
                Ok(())
            }
            Op::Unlock { fetch, password } => {
                let checked = fetch.check(answer, &password);
                let (keys, remote) = match checked {
                    Ok(k) => k,
                    Err(e) => {
                        self.held = Held::Locked(fetch.into_store());
                        return Err(e);
                    }
                };
                self.held = Held::Locked(fetch.into_store());
                self.open_with(|store| {
                    save_bundle(&store, &remote)?;
                    LocalDiary::open(store, keys, remote, rng)
                })?;
                self.op = Op::Done(Outcome::Done);
                Ok(())
            }
            Op::RecoverFetch {
                code,
                password,
                params,
            } => {
                let new = NewDiary::recover(answer, &code, &password, params, rng)?;
                self.start(Op::RecoverPut { new });
                Ok(())
            }
            Op::RecoverPut { new } => {
                let stored = new.upload.read(answer)?;
                self.open_with(|store| new.open(store, stored, rng))?;
                self.op = Op::Done(Outcome::Done);
                Ok(())
            }
            Op::Bundle { upload, codes } => {
                self.open_mut()?.bundle_uploaded(&upload, answer)?;
                self.op = Op::Done(codes.map_or(Outcome::Done, Outcome::RecoveryCodes));
                Ok(())
            }
            Op::Sync(mut run) => {
                run.answer(self.open_mut()?, answer, rng)?;
                self.op = Op::Sync(run);
                Ok(())
            }
            Op::History { mut run, restore } => {
                run.answer(self.open_ref()?, answer)?;
                self.op = Op::History { run, restore };
                Ok(())
            }
        }
    }

    /// Abandons the operation in progress (an unlock gives the store back, locked).
    pub fn abort(&mut self) {
        if let Op::Unlock { fetch, .. } = std::mem::replace(&mut self.op, Op::Idle) {
            self.held = Held::Locked(fetch.into_store());
        }
        self.sent = false;
    }

    /// Ends the operation once [`next_call`](Self::next_call) returned `None`.
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`] before it is over; a delete's
    /// [`LocalDiaryError::Conflict`]; a restore's [`LocalDiaryError::NothingToRestore`].
    pub fn finish<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<Outcome, LocalDiaryError> {
        match std::mem::replace(&mut self.op, Op::Idle) {
            Op::Done(outcome) => Ok(outcome),
            Op::Sync(run) => Ok(Outcome::Report(run.finish(self.open_ref()?)?)),
            Op::History { run, restore } => {
                let id = *run.item();
                let revisions = run.finish();
                if restore {
                    self.open_mut()?.restore_from(&id, revisions, rng)?;
                    Ok(Outcome::Done)
                } else {
                    Ok(Outcome::History(revisions))
                }
            }
            other => {
                self.op = other;
                Err(out_of_order("the operation is not over"))
            }
        }
    }

    /// Locks the diary: keys and decrypted entries are dropped, the store stays.
    ///
    /// # Errors
    /// [`LocalDiaryError::OutOfOrder`] while an operation is in progress.
    pub fn lock(&mut self) -> Result<(), LocalDiaryError> {
        self.idle()?;
        self.held = match std::mem::replace(&mut self.held, Held::Lent) {
            Held::Open(diary) => Held::Locked(diary.into_store()),
            other => other,
        };
        Ok(())
    }
}

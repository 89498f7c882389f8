//! The local diary index (§9.6): filters by mood, tag and date range and full-text (prefix)
//! search, built on the device from decrypted entries. Search terms never leave the device.
//!
//! The index holds plaintext-derived terms, so the host persists it only encrypted (for
//! example with [`snapshot::seal`](crate::snapshot)): [`DiaryIndex::to_bytes`] gives the
//! plaintext to seal, [`DiaryIndex::from_bytes`] reads it back with every length checked.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use super::entry::{Entry, MAX_MOOD_LEN, MAX_TAG_LEN, MAX_TAGS};
use haven_protocol::encoding::{Reader, put_bytes_u32};

/// Version byte of the serialized index.
pub const INDEX_VERSION: u8 = 0x01;
/// Longest indexed term in characters (longer words are cut; prefix search still finds them).
pub const MAX_TERM_CHARS: usize = 64;
/// Most distinct terms indexed per entry.
pub const MAX_TERMS_PER_ENTRY: usize = 100_000;

/// Splits text into search terms: maximal runs of alphanumeric characters (Unicode letters
/// and digits, so "Café", "naïve", "日記" and "Ελλάδα" are words), lowercased (full Unicode
/// lowercase mapping), cut to [`MAX_TERM_CHARS`] characters.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = 0usize;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if chars < MAX_TERM_CHARS {
                cur.extend(c.to_lowercase());
                chars += 1;
            }
        } else if !cur.is_empty() {
            out.push(core::mem::take(&mut cur));
            chars = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn fold(s: &str) -> String {
    s.trim().chars().flat_map(char::to_lowercase).collect()
}

/// What the index keeps per entry.
#[derive(Clone, PartialEq, Eq)]
struct Indexed {
    mood: Option<String>,
    tags: Vec<String>,
    created_ms: u64,
    updated_ms: u64,
    terms: Vec<String>,
}

/// A query: every given criterion must hold. Text matches when every query term is a prefix of
/// some term of the entry (title, body, tags, mood).
#[derive(Clone, Default)]
pub struct DiaryQuery {
    /// Only entries with this mood (case-insensitive).
    pub mood: Option<String>,
    /// Only entries with this tag (case-insensitive).
    pub tag: Option<String>,
    /// Only entries created at or after this time (Unix ms).
    pub from_ms: Option<u64>,
    /// Only entries created before this time (Unix ms).
    pub until_ms: Option<u64>,
    /// Full-text prefix search.
    pub text: Option<String>,
}

/// The local index: entry facts plus an inverted term index.
#[derive(Clone, Default)]
pub struct DiaryIndex {
    entries: BTreeMap<[u8; 16], Indexed>,
    postings: BTreeMap<String, BTreeSet<[u8; 16]>>,
}

impl DiaryIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of indexed entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds or replaces the entry `item_id`.
    pub fn upsert(&mut self, item_id: [u8; 16], entry: &Entry) {
        let mut terms = BTreeSet::new();
        for part in [entry.title.as_str(), entry.body.as_str()] {
            terms.extend(tokenize(part));
        }
        for t in &entry.tags {
            terms.extend(tokenize(t));
        }
        if let Some(m) = &entry.mood {
            terms.extend(tokenize(m));
        }
        let indexed = Indexed {
            mood: entry.mood.as_deref().map(fold),
            tags: entry.tags.iter().map(|t| fold(t)).collect(),
            created_ms: entry.created_ms,
            updated_ms: entry.updated_ms,
            terms: terms.into_iter().take(MAX_TERMS_PER_ENTRY).collect(),
        };
        self.insert(item_id, indexed);
    }

    fn insert(&mut self, item_id: [u8; 16], indexed: Indexed) {
        self.remove(&item_id);
        for t in &indexed.terms {
            self.postings.entry(t.clone()).or_default().insert(item_id);
        }
        self.entries.insert(item_id, indexed);
    }

    /// Removes an entry (deleted or purged).
    pub fn remove(&mut self, item_id: &[u8; 16]) {
        if let Some(old) = self.entries.remove(item_id) {
            for t in &old.terms {
                if let Some(set) = self.postings.get_mut(t) {
                    set.remove(item_id);
                    if set.is_empty() {
                        self.postings.remove(t);
                    }
                }
            }
        }
    }

    /// Items whose terms start with `prefix`.
    fn prefix_matches(&self, prefix: &str) -> BTreeSet<[u8; 16]> {
        let mut out = BTreeSet::new();
        for (term, ids) in self.postings.range::<str, _>((
            core::ops::Bound::Included(prefix),
            core::ops::Bound::Unbounded,
        )) {
            if !term.starts_with(prefix) {
                break;
            }
            out.extend(ids.iter().copied());
        }
        out
    }

    /// Runs a query; results newest first (by creation time, then id).
    pub fn search(&self, query: &DiaryQuery) -> Vec<[u8; 16]> {
        let mut candidates: Option<BTreeSet<[u8; 16]>> = None;
        if let Some(text) = &query.text {
            for term in tokenize(text) {
                let hits = self.prefix_matches(&term);
                candidates = Some(match candidates {
                    Some(c) => c.intersection(&hits).copied().collect(),
                    None => hits,
                });
            }
        }
        let mood = query.mood.as_deref().map(fold);
        let tag = query.tag.as_deref().map(fold);
        let keep = |id: &[u8; 16], e: &Indexed| {
            candidates.as_ref().is_none_or(|c| c.contains(id))
                && mood.as_ref().is_none_or(|m| e.mood.as_ref() == Some(m))
                && tag.as_ref().is_none_or(|t| e.tags.contains(t))
                && query.from_ms.is_none_or(|f| e.created_ms >= f)
                && query.until_ms.is_none_or(|u| e.created_ms < u)
        };
        let mut hits: Vec<(u64, [u8; 16])> = self
            .entries
            .iter()
            .filter(|(id, e)| keep(id, e))
            .map(|(id, e)| (e.created_ms, *id))
            .collect();
        hits.sort_unstable_by(|a, b| b.cmp(a));
        hits.into_iter().map(|(_, id)| id).collect()
    }

    /// Serializes the index (plaintext: seal it before storing):
    /// `0x01 || count u32 || count × (item_id 16 || created_ms u64 || updated_ms u64 ||
    /// mood_flag u8 [|| mood] || tag_count u8 || tags || term_count u32 || terms)`, strings as
    /// u32-length-prefixed UTF-8.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.push(INDEX_VERSION);
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for (id, e) in &self.entries {
            out.extend_from_slice(id);
            out.extend_from_slice(&e.created_ms.to_be_bytes());
            out.extend_from_slice(&e.updated_ms.to_be_bytes());
            match &e.mood {
                Some(m) => {
                    out.push(1);
                    put_bytes_u32(&mut out, m.as_bytes());
                }
                None => out.push(0),
            }
            out.push(e.tags.len() as u8);
            for t in &e.tags {
                put_bytes_u32(&mut out, t.as_bytes());
            }
            out.extend_from_slice(&(e.terms.len() as u32).to_be_bytes());
            for t in &e.terms {
                put_bytes_u32(&mut out, t.as_bytes());
            }
        }
        out
    }

    /// Reads an index written by [`to_bytes`](Self::to_bytes); `None` if malformed.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let text = |r: &mut Reader<'_>, max: usize| -> Option<String> {
            String::from_utf8(r.bytes_u32(max)?.to_vec()).ok()
        };
        // Lowercasing can grow a character to 3 (and UTF-8 to 4) bytes per character.
        let max_term = MAX_TERM_CHARS * 12;
        let mut r = Reader::new(bytes);
        if r.u8()? != INDEX_VERSION {
            return None;
        }
        let count = r.u32()?;
        let mut index = Self::new();
        for _ in 0..count {
            let id = r.array::<16>()?;
            let created_ms = r.u64()?;
            let updated_ms = r.u64()?;
            let mood = match r.u8()? {
                0 => None,
                1 => Some(text(&mut r, MAX_MOOD_LEN * 3)?),
                _ => return None,
            };
            let tag_count = usize::from(r.u8()?);
            if tag_count > MAX_TAGS {
                return None;
            }
            let mut tags = Vec::with_capacity(tag_count);
            for _ in 0..tag_count {
                tags.push(text(&mut r, MAX_TAG_LEN * 3)?);
            }
            let term_count = usize::try_from(r.u32()?).ok()?;
            if term_count > MAX_TERMS_PER_ENTRY {
                return None;
            }
            let mut terms = Vec::new();
            for _ in 0..term_count {
                terms.push(text(&mut r, max_term)?);
            }
            if index.entries.contains_key(&id) {
                return None;
            }
            index.insert(
                id,
                Indexed {
                    mood,
                    tags,
                    created_ms,
                    updated_ms,
                    terms,
                },
            );
        }
        r.finish()?;
        Some(index)
    }
}

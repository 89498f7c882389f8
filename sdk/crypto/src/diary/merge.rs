//! Three-way merge of diary entries (§9.7): when two devices edited the same entry from a common
//! revision, their changes are combined line by line (and word by word inside a line both
//! changed); where both changed the same text differently, the merged text keeps *both* sides
//! between conflict markers, so nothing either user typed is lost.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::entry::{AttachmentRef, Entry, MAX_TAGS, MAX_TITLE_LEN};

/// Opens a conflict block; followed by this device's text.
pub const MARKER_OURS: &str = "<<<<<<< this device\n";
/// Separates the two sides of a conflict block.
pub const MARKER_SPLIT: &str = "=======\n";
/// Closes a conflict block.
pub const MARKER_THEIRS: &str = ">>>>>>> other device\n";
/// Largest LCS table (cells) computed for one region; beyond it the region is compared as a
/// whole (still lossless, only coarser), so merge time and memory stay bounded.
pub const MAX_DIFF_CELLS: usize = 4_000_000;

/// The result of a text merge.
#[derive(Clone, PartialEq, Eq)]
pub struct TextMerge {
    /// The merged text (with conflict blocks if `conflicts > 0`).
    pub text: String,
    /// Number of conflict blocks.
    pub conflicts: usize,
}

impl core::fmt::Debug for TextMerge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TextMerge")
            .field("len", &self.text.len())
            .field("conflicts", &self.conflicts)
            .finish()
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.split_inclusive('\n').collect()
}

/// Words and the whitespace between them, as separate tokens (concatenation gives `s` back).
fn words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<bool> = None;
    for (i, c) in s.char_indices() {
        let ws = c.is_whitespace();
        if prev.is_some_and(|p| p != ws) {
            out.push(&s[start..i]);
            start = i;
        }
        prev = Some(ws);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// For each index of `a`, the index of `b` it is matched to by a longest common subsequence
/// (common prefix and suffix first, then a bounded DP table on the middle).
fn matches(a: &[&str], b: &[&str]) -> Vec<Option<usize>> {
    let mut m = vec![None; a.len()];
    let mut pre = 0;
    while pre < a.len() && pre < b.len() && a[pre] == b[pre] {
        m[pre] = Some(pre);
        pre += 1;
    }
    let mut suf = 0;
    while suf < a.len() - pre && suf < b.len() - pre && a[a.len() - 1 - suf] == b[b.len() - 1 - suf]
    {
        m[a.len() - 1 - suf] = Some(b.len() - 1 - suf);
        suf += 1;
    }
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let (n, k) = (am.len(), bm.len());
    if n == 0 || k == 0 || n.saturating_mul(k) > MAX_DIFF_CELLS {
        return m;
    }
    // dp[i][j] = LCS length of am[i..] and bm[j..].
    let w = k + 1;
    let mut dp = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..k).rev() {
            dp[i * w + j] = if am[i] == bm[j] {
                dp[(i + 1) * w + j + 1] + 1
            } else {
                dp[(i + 1) * w + j].max(dp[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < k {
        if am[i] == bm[j] {
            m[pre + i] = Some(pre + j);
            i += 1;
            j += 1;
        } else if dp[(i + 1) * w + j] >= dp[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    m
}

fn push_all(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
}

fn ensure_newline(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// diff3 over token slices. At word level (`nested`) a conflict makes the whole call fail
/// (`None`) so the caller falls back to a line-level conflict block.
fn merge_tokens(
    base: &[&str],
    ours: &[&str],
    theirs: &[&str],
    nested: bool,
    out: &mut String,
    conflicts: &mut usize,
) -> Option<()> {
    let mo = matches(base, ours);
    let mt = matches(base, theirs);
    let (mut b, mut o, mut t) = (0, 0, 0);
    loop {
        // The next base token kept by both sides is a stable point.
        let next = (b..base.len()).find_map(|i| match (mo[i], mt[i]) {
            (Some(x), Some(y)) if x >= o && y >= t => Some((i, x, y)),
            _ => None,
        });
        let (b1, o1, t1) = next.unwrap_or((base.len(), ours.len(), theirs.len()));
        let (bc, oc, tc) = (&base[b..b1], &ours[o..o1], &theirs[t..t1]);
        if oc == bc {
            push_all(out, tc);
        } else if tc == bc || oc == tc {
            push_all(out, oc);
        } else if nested {
            return None;
        } else {
            let (bs, os, ts) = (bc.concat(), oc.concat(), tc.concat());
            let mut inner = String::new();
            let mut none = 0;
            let clean = merge_tokens(
                &words(&bs),
                &words(&os),
                &words(&ts),
                true,
                &mut inner,
                &mut none,
            );
            if clean.is_some() {
                out.push_str(&inner);
            } else {
                *conflicts += 1;
                ensure_newline(out);
                out.push_str(MARKER_OURS);
                out.push_str(&os);
                ensure_newline(out);
                out.push_str(MARKER_SPLIT);
                out.push_str(&ts);
                ensure_newline(out);
                out.push_str(MARKER_THEIRS);
            }
        }
        match next {
            Some((i, x, y)) => {
                out.push_str(base[i]);
                b = i + 1;
                o = x + 1;
                t = y + 1;
            }
            None => return Some(()),
        }
    }
}

/// Three-way merge of `ours` and `theirs`, both edited from `base`.
pub fn merge_text(base: &str, ours: &str, theirs: &str) -> TextMerge {
    if ours == theirs || theirs == base {
        return TextMerge {
            text: ours.into(),
            conflicts: 0,
        };
    }
    if ours == base {
        return TextMerge {
            text: theirs.into(),
            conflicts: 0,
        };
    }
    let mut text = String::with_capacity(ours.len().max(theirs.len()));
    let mut conflicts = 0;
    let _ = merge_tokens(
        &lines(base),
        &lines(ours),
        &lines(theirs),
        false,
        &mut text,
        &mut conflicts,
    );
    TextMerge { text, conflicts }
}

/// The result of merging two entries.
#[derive(Clone, Debug)]
pub struct EntryMerge {
    /// The merged entry.
    pub entry: Entry,
    /// Conflicts in the title, body, tags or mood (0: a clean merge).
    pub conflicts: usize,
}

fn merge_set<T: Clone + PartialEq>(base: &[T], ours: &[T], theirs: &[T]) -> Vec<T> {
    // Keep what neither side removed, plus what either side added; ours' order first.
    let mut out: Vec<T> = ours
        .iter()
        .filter(|x| theirs.contains(x) || !base.contains(x))
        .cloned()
        .collect();
    for x in theirs {
        if !base.contains(x) && !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// Three-way merge of two edits of one entry. `base` is the common revision (`None`: treat as
/// empty). Title and body merge as text; tags and attachments as sets (removed if either side
/// removed them, added if either added them); the mood of the later edit wins when both changed
/// it; `updated_ms` is the later of the two.
pub fn merge_entries(base: Option<&Entry>, ours: &Entry, theirs: &Entry) -> EntryMerge {
    let empty = Entry::default();
    let base = base.unwrap_or(&empty);
    let mut conflicts = 0;
    let mut body_prefix = String::new();
    let title = if ours.title == theirs.title || theirs.title == base.title {
        ours.title.clone()
    } else if ours.title == base.title {
        theirs.title.clone()
    } else {
        conflicts += 1;
        let both = alloc::format!("{} / {}", ours.title, theirs.title);
        if both.len() <= MAX_TITLE_LEN {
            both
        } else {
            body_prefix = alloc::format!("{}\n", theirs.title);
            ours.title.clone()
        }
    };
    let body = merge_text(&base.body, &ours.body, &theirs.body);
    conflicts += body.conflicts;
    let mood = if ours.mood == base.mood {
        theirs.mood.clone()
    } else if theirs.mood == base.mood || ours.updated_ms >= theirs.updated_ms {
        ours.mood.clone()
    } else {
        theirs.mood.clone()
    };
    let mut tags = merge_set(&base.tags, &ours.tags, &theirs.tags);
    if tags.len() > MAX_TAGS {
        // Both versions stay in the history (a conflict), the entry keeps the first MAX_TAGS.
        conflicts += 1;
        tags.truncate(MAX_TAGS);
    }
    let attachments: Vec<AttachmentRef> =
        merge_set(&base.attachments, &ours.attachments, &theirs.attachments);
    let mut text = body_prefix;
    text.push_str(&body.text);
    EntryMerge {
        entry: Entry {
            title,
            body: text,
            mood,
            tags,
            created_ms: ours.created_ms.min(theirs.created_ms),
            updated_ms: ours.updated_ms.max(theirs.updated_ms),
            attachments,
        },
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use alloc::format;
    use proptest::prelude::*;

    #[test]
    fn clean_merges_of_separate_edits() {
        let base = "one\ntwo\nthree\nfour\n";
        let ours = "one\ntwo changed\nthree\nfour\n";
        let theirs = "one\ntwo\nthree\nfour\nfive\n";
        let m = merge_text(base, ours, theirs);
        assert_eq!(m.conflicts, 0);
        assert_eq!(m.text, "one\ntwo changed\nthree\nfour\nfive\n");
        // Both edited the same line, different words: merged word by word.
        let m = merge_text(
            "the cat sat on the mat\n",
            "the black cat sat on the mat\n",
            "the cat sat on the red mat\n",
        );
        assert_eq!(m.conflicts, 0);
        assert_eq!(m.text, "the black cat sat on the red mat\n");
    }

    #[test]
    fn conflicts_keep_both_sides() {
        let m = merge_text("a\nb\nc\n", "a\nB1\nc\n", "a\nB2\nc\n");
        assert_eq!(m.conflicts, 1);
        assert_eq!(
            m.text,
            format!("a\n{MARKER_OURS}B1\n{MARKER_SPLIT}B2\n{MARKER_THEIRS}c\n")
        );
        // Without trailing newlines.
        let m = merge_text("x", "y", "z");
        assert_eq!(m.conflicts, 1);
        assert!(m.text.contains("y\n") && m.text.contains("z\n"));
    }

    #[test]
    fn entries_merge_fields() {
        let base = Entry {
            title: "Day".into(),
            body: "morning\n".into(),
            mood: Some("calm".into()),
            tags: vec!["a".into(), "b".into()],
            created_ms: 1,
            updated_ms: 1,
            attachments: Vec::new(),
        };
        let mut ours = base.clone();
        ours.body.push_str("lunch\n");
        ours.tags = vec!["a".into(), "c".into()];
        ours.updated_ms = 5;
        let mut theirs = base.clone();
        theirs.title = "Good day".into();
        theirs.mood = Some("happy".into());
        theirs.tags.push("d".into());
        theirs.updated_ms = 3;
        let m = merge_entries(Some(&base), &ours, &theirs);
        assert_eq!(m.conflicts, 0);
        assert_eq!(m.entry.title, "Good day");
        assert_eq!(m.entry.mood.as_deref(), Some("happy"));
        assert_eq!(m.entry.tags, ["a", "c", "d"]);
        assert_eq!(m.entry.body, "morning\nlunch\n");
        assert_eq!(m.entry.updated_ms, 5);
        theirs.title = "Bad day".into();
        ours.title = "Odd day".into();
        let m = merge_entries(Some(&base), &ours, &theirs);
        assert_eq!(m.conflicts, 1);
        assert_eq!(m.entry.title, "Odd day / Bad day");
    }

    fn edit(base: Vec<String>, ops: Vec<(u8, usize)>, tag: &str) -> Vec<String> {
        let mut v = base;
        for (n, (op, at)) in ops.into_iter().enumerate() {
            let at = if v.is_empty() { 0 } else { at % (v.len() + 1) };
            match op % 3 {
                0 => v.insert(at, format!("{tag}{n} typed\n")),
                1 if at < v.len() => {
                    v.remove(at);
                }
                _ if at < v.len() => v[at] = format!("{tag}{n} changed {}", v[at]),
                _ => v.push(format!("{tag}{n} end\n")),
            }
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every line either side typed (inserted or changed) is in the merge, clean or not,
        /// and merging with an unchanged side gives the other side exactly.
        #[test]
        fn nothing_typed_is_lost(
            base in proptest::collection::vec("[abc]{0,3}\n", 0..12),
            ours_ops in proptest::collection::vec((0u8..3, 0usize..16), 0..6),
            theirs_ops in proptest::collection::vec((0u8..3, 0usize..16), 0..6),
        ) {
            let ours = edit(base.clone(), ours_ops, "o");
            let theirs = edit(base.clone(), theirs_ops, "t");
            let (b, o, t) = (base.concat(), ours.concat(), theirs.concat());
            let m = merge_text(&b, &o, &t);
            let merged: Vec<&str> = m.text.split_inclusive('\n').collect();
            for line in ours.iter().chain(theirs.iter()) {
                if !base.contains(line) {
                    // Typed text survives as a line, or (word-merged) inside a line.
                    let words: Vec<&str> = line.split_whitespace().collect();
                    prop_assert!(
                        merged.contains(&line.as_str())
                            || words.iter().all(|w| m.text.contains(w)),
                        "lost {line:?}: base {b:?} ours {o:?} theirs {t:?} merged {:?}", m.text
                    );
                }
            }
            prop_assert_eq!(merge_text(&b, &b, &t).text, t.clone());
            prop_assert_eq!(merge_text(&b, &o, &b).text, o.clone());
            if m.conflicts == 0 {
                prop_assert!(!m.text.contains(MARKER_OURS));
            }
        }

        /// Merging never panics on arbitrary text.
        #[test]
        fn arbitrary_text_merges(b in ".{0,40}", o in ".{0,40}", t in ".{0,40}") {
            let m = merge_text(&b, &o, &t);
            prop_assert_eq!(m.conflicts == 0, !m.text.contains(MARKER_OURS) || o.contains(MARKER_OURS) || t.contains(MARKER_OURS));
        }
    }
}

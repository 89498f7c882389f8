//! The byte encoding of a password (`docs/PROTOCOL.md` §9.1.1): the one function every
//! platform's password goes through before it reaches a KDF (the diary's Argon2id, §9.1, and
//! OPAQUE, §11.3).
//!
//! The same password typed on two devices can arrive as different code points: `é` is U+00E9
//! from one keyboard and U+0065 U+0301 from another, and some keyboards insert U+00A0 (no-break
//! space) where others type U+0020. Hashing the raw bytes would lock a user out of their diary
//! on the other device. So, as RFC 8265's OpaqueString profile does, non-ASCII spaces are mapped
//! to U+0020 and the result is put in Unicode Normalization Form C; nothing else is changed (no
//! case or width mapping, no trimming, no refused characters).

use alloc::vec::Vec;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// The space characters (Unicode general category Zs) other than U+0020, each mapped to
/// U+0020. Zs has had exactly these members since Unicode 6.3 (which moved U+180E out of it).
pub const NON_ASCII_SPACES: [char; 16] = [
    '\u{00A0}', '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}',
    '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200A}', '\u{202F}', '\u{205F}', '\u{3000}',
];

/// The bytes a password contributes to a KDF: if `password` is valid UTF-8, the UTF-8 encoding
/// of its NFC form after mapping [`NON_ASCII_SPACES`] to U+0020; otherwise `password` unchanged
/// (only the byte-level Rust API can pass such input; every binding passes a string).
#[must_use]
pub fn normalize_password(password: &[u8]) -> Zeroizing<Vec<u8>> {
    let Ok(text) = core::str::from_utf8(password) else {
        return Zeroizing::new(password.to_vec());
    };
    let mut out = Zeroizing::new(Vec::with_capacity(password.len()));
    let mut buf = [0u8; 4];
    let mapped = text.chars().map(|c| {
        if NON_ASCII_SPACES.contains(&c) {
            ' '
        } else {
            c
        }
    });
    for c in mapped.nfc() {
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    buf.fill(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Vec<u8> {
        normalize_password(s.as_bytes()).to_vec()
    }

    #[test]
    fn composed_and_decomposed_forms_agree() {
        assert_eq!(n("caf\u{0065}\u{0301}"), "caf\u{00E9}".as_bytes());
        assert_eq!(n("caf\u{00E9}"), "caf\u{00E9}".as_bytes());
        // Hangul: conjoining jamo compose to the syllable.
        assert_eq!(n("\u{1100}\u{1161}"), "\u{AC00}".as_bytes());
        // Canonical reordering of combining marks (dot below before dot above).
        assert_eq!(n("q\u{0307}\u{0323}"), n("q\u{0323}\u{0307}"));
    }

    #[test]
    fn spaces_map_and_nothing_else_changes() {
        assert_eq!(n("a\u{00A0}b\u{3000}c\u{2000}d"), b"a b c d");
        for c in NON_ASCII_SPACES {
            assert_eq!(n(&c.to_string()), b" ", "{:04X}", c as u32);
        }
        // Case, width, surrounding spaces, tabs and compatibility forms are kept.
        assert_eq!(n(" PassWord\t"), b" PassWord\t");
        assert_eq!(n("\u{FF21}"), "\u{FF21}".as_bytes()); // fullwidth A: NFKC would change it
        assert_eq!(n("\u{FB01}"), "\u{FB01}".as_bytes()); // ligature fi: likewise
        assert_eq!(n(""), b"");
    }

    #[test]
    fn bytes_that_are_not_utf8_pass_unchanged() {
        let raw = [0x66, 0xFF, 0x65, 0xCC];
        assert_eq!(*normalize_password(&raw), raw);
    }
}

//! Username normalisation and keyed hashing. Usernames are never stored: only
//! `HMAC-SHA256(pepper, "haven/username/v1" || 0x00 || normalised)`.

use crate::secrets::Key32;

/// Minimum username length after normalisation.
pub const MIN_LEN: usize = 3;
/// Maximum username length after normalisation.
pub const MAX_LEN: usize = 32;

/// Errors from username validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsernameError {
    /// Length outside `MIN_LEN..=MAX_LEN`; carries the length seen.
    #[error("username must be {MIN_LEN} to {MAX_LEN} characters, got {0}")]
    Length(usize),
    /// A character outside `a-z 0-9 . _ -` (after lowercasing ASCII letters).
    #[error("username may only contain a-z, 0-9, '.', '_' and '-'")]
    Character,
}

/// Normalises a username: trims surrounding whitespace, lowercases ASCII letters, then requires
/// 3–32 characters from `a-z 0-9 . _ -`. (ASCII only, so there is no Unicode folding to specify.)
pub fn normalise(raw: &str) -> Result<String, UsernameError> {
    let name = raw.trim().to_ascii_lowercase();
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(UsernameError::Character);
    }
    if !(MIN_LEN..=MAX_LEN).contains(&name.len()) {
        return Err(UsernameError::Length(name.len()));
    }
    Ok(name)
}

/// The stored form of a username.
pub fn hash(pepper: &Key32, raw: &str) -> Result<[u8; 32], UsernameError> {
    let name = normalise(raw)?;
    Ok(pepper.hmac(b"haven/username/v1", name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_rules() {
        assert_eq!(normalise("  Alice "), Ok("alice".to_owned()));
        assert_eq!(normalise("a.b_c-9"), Ok("a.b_c-9".to_owned()));
        assert_eq!(normalise("ab"), Err(UsernameError::Length(2)));
        assert_eq!(normalise(&"a".repeat(33)), Err(UsernameError::Length(33)));
        assert_eq!(normalise("al ice"), Err(UsernameError::Character));
        assert_eq!(normalise("alïce"), Err(UsernameError::Character));
        let pepper = Key32::random();
        assert_eq!(hash(&pepper, "ALICE"), hash(&pepper, "alice"));
        assert_ne!(hash(&pepper, "alice"), hash(&Key32::random(), "alice"));
    }
}

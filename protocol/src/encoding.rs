//! Bounds-checked byte reader and writer helpers shared by every binary format of the protocol
//! (the relay's frames and the SDK's messages, keys and snapshots).
//!
//! Every read checks the remaining length first (`split_at_checked`), so a decoder built on
//! [`Reader`] cannot index out of range on untrusted input.

/// A cursor over untrusted bytes. Every method returns `None` when the input is too short.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` from its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.buf.split_at_checked(n)?;
        self.buf = tail;
        Some(head)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    /// Reads a u32-length-prefixed byte string of at most `max` bytes.
    pub fn bytes_u32(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        if len > max {
            return None;
        }
        self.take(len)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// Succeeds only if every byte was consumed (decoders reject trailing bytes).
    pub fn finish(self) -> Option<()> {
        self.buf.is_empty().then_some(())
    }
}

/// Appends a u32 length prefix and `bytes`.
///
/// Callers only pass buffers bounded by documented limits far below `u32::MAX`; the length
/// saturates rather than panics, and a saturated length is rejected by every decoder.
pub fn put_bytes_u32(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// What a signer signs in every signed format (sender certificate, device list, group change):
/// the format's context label, then its body, so a signature over one format can never be read
/// as one over another.
#[must_use]
pub fn signing_input(context: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(body);
    m
}

/// A signed encoding: `body || signature`.
#[must_use]
pub fn with_signature(mut body: Vec<u8>, signature: &[u8]) -> Vec<u8> {
    body.extend_from_slice(signature);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_short_and_trailing_input() {
        let mut r = Reader::new(&[0, 0, 0, 2, 7]);
        assert_eq!(r.bytes_u32(10), None);
        let mut r = Reader::new(&[0, 0, 0, 1, 7, 9]);
        assert_eq!(r.bytes_u32(10), Some(&[7u8][..]));
        assert_eq!(r.finish(), None);
        let mut r = Reader::new(&[0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(r.bytes_u32(2), None);
    }
}

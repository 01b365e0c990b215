//! `Text`: an immutable, shared string behind one thin pointer (the length sits in the
//! allocation beside the reference count); the keys on the dirty and parked lists.
//! Also `same`, the key comparison of the hot paths.

use std::fmt;
use std::ops::Deref;

use triomphe::ThinArc;

/// An immutable, reference-counted UTF-8 string, one pointer wide.
#[derive(Clone)]
pub(crate) struct Text(ThinArc<(), u8>);

impl Text {
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: a `Text` is only ever built from a `&str` (see `From<&str>`) and never
        // mutated, so its bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0.slice) }
    }
}

/// Whether two strings are equal: for the short keys and table names of the hot paths,
/// a few overlapping word loads instead of a call to `memcmp`.
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let u64_at = |s: &[u8], at: usize| s.get(at..at + 8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
    let u32_at = |s: &[u8], at: usize| s.get(at..at + 4).map(|w| u32::from_le_bytes(w.try_into().unwrap_or([0; 4])));
    // Each case reads words that together cover all `n` bytes (overlapping where `n`
    // is not a multiple of the word).
    match n {
        0..=3 => a == b,
        4..=7 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        8..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, n - 8) == u64_at(b, n - 8),
        17..=32 => [0, 8, n - 16, n - 8].iter().all(|&at| u64_at(a, at) == u64_at(b, at)),
        _ => a == b,
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(ThinArc::from_header_and_slice((), s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_is_one_pointer_wide() {
        for s in ["", "a", "call:0000000001", "é ✓ 𝄞", &"x".repeat(100_000)] {
            let t = Text::from(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(t.clone().as_str(), Text::from(s.to_owned()).as_str());
        }
        // Every length class, equal and differing at the first, a middle and the last byte.
        for n in 0..=40usize {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(same(&a, &a.clone()), "{a:?} == itself");
            for at in [0, n / 2, n.saturating_sub(1)].into_iter().filter(|_| n > 0) {
                let mut b = a.clone().into_bytes();
                b[at] = b'#';
                let b = String::from_utf8(b).expect("ascii");
                assert!(!same(&a, &b), "{a:?} != {b:?}");
            }
            assert!(!same(&a, &format!("{a}x")), "lengths differ");
        }
        assert_eq!(std::mem::size_of::<Option<Text>>(), std::mem::size_of::<usize>());
    }
}

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

/// Whether two strings are equal: for the short keys and names of the hot paths, two
/// overlapping word loads each instead of a call to `memcmp`.
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| s.get(at..at + 8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
    if (8..=16).contains(&n) { word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8) } else { a == b }
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
        for (a, b) in [("", ""), ("abc", "abc"), ("call:0000000001", "call:0000000001"), ("12345678", "12345678")] {
            assert!(same(a, b), "{a:?} == {b:?}");
        }
        for (a, b) in [
            ("", "a"),
            ("abc", "abd"),
            ("call:0000000001", "call:0000000002"),
            ("xall:0000000001", "call:0000000001"),
            ("12345678", "12345679"),
            ("1234567890123456", "1234567890123457"),
            ("1234567890123456", "0234567890123456"),
            (&"k".repeat(17), &"k".repeat(18)),
        ] {
            assert!(!same(a, b), "{a:?} != {b:?}");
        }
        assert_eq!(std::mem::size_of::<Option<Text>>(), std::mem::size_of::<usize>());
    }
}

//! [`Utf8Bytes`]: immutable UTF-8 text that clones in O(1).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// Immutable UTF-8 text backed by [`Bytes`].
///
/// Events are encoded once and read by many, and the decoder slices field values straight out of the
/// read buffer, so text here is reference-counted rather than copied. Cloning is a reference-count
/// increment; the bytes are guaranteed to be valid UTF-8.
///
/// # Examples
///
/// ```
/// use ssehub_wire::Utf8Bytes;
///
/// let text = Utf8Bytes::from("hello");
/// let copy = text.clone(); // no copy of the bytes
/// assert_eq!(copy, "hello");
/// assert_eq!(text.len(), 5);
/// assert!(copy.starts_with("he")); // every `str` method through `Deref`
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// The empty string, without allocating.
    ///
    /// ```
    /// assert!(ssehub_wire::Utf8Bytes::new().is_empty());
    /// ```
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// Wraps a `'static` string without copying it.
    ///
    /// ```
    /// const PING: ssehub_wire::Utf8Bytes = ssehub_wire::Utf8Bytes::from_static("ping");
    /// assert_eq!(PING, "ping");
    /// ```
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// Checks that `bytes` are UTF-8 and wraps them without copying.
    ///
    /// # Errors
    ///
    /// Returns the UTF-8 error, and the bytes are dropped, when they are not valid UTF-8.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use ssehub_wire::Utf8Bytes;
    ///
    /// assert_eq!(Utf8Bytes::try_from_bytes(Bytes::from_static(b"ok")).unwrap(), "ok");
    /// assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(b"\xff")).is_err());
    /// ```
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        if !is_utf8(&bytes) {
            // The slow check only to build the error that says where.
            std::str::from_utf8(&bytes)?;
        }
        Ok(Self(bytes))
    }

    /// Wraps `bytes`, replacing every invalid UTF-8 sequence with U+FFFD, as the WHATWG decoding
    /// rules require. Copies only when a replacement was needed.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use ssehub_wire::Utf8Bytes;
    ///
    /// let text = Utf8Bytes::from_bytes_lossy(Bytes::from_static(b"caf\xc3"));
    /// assert_eq!(text, "caf\u{FFFD}");
    /// ```
    pub fn from_bytes_lossy(bytes: Bytes) -> Self {
        if is_utf8(&bytes) {
            Self(bytes)
        } else {
            Self::from(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    /// The text as a string slice.
    ///
    /// ```
    /// let text = ssehub_wire::Utf8Bytes::from("abc");
    /// assert_eq!(text.as_str(), "abc");
    /// ```
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either checked the bytes with `str::from_utf8` or took them
        // from a `str`/`String`; the bytes are immutable afterwards.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes.
    ///
    /// ```
    /// let text = ssehub_wire::Utf8Bytes::from("abc");
    /// assert_eq!(text.as_bytes(), b"abc");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Gives back the underlying [`Bytes`].
    ///
    /// ```
    /// let bytes = ssehub_wire::Utf8Bytes::from("abc").into_bytes();
    /// assert_eq!(&bytes[..], b"abc");
    /// ```
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

/// SIMD validation: on large `data` values this is most of a decoder's work, and it runs about
/// twice as fast as `std::str::from_utf8` here (see `docs/benchmarks.md`).
fn is_utf8(bytes: &[u8]) -> bool {
    simdutf8::basic::from_utf8(bytes).is_ok()
}

impl Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<str> for Utf8Bytes {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// `Hash` must agree with `Borrow<str>`, so hash as a `str` does.
impl Hash for Utf8Bytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(text: &String) -> Self {
        Self::from(text.as_str())
    }
}

impl From<Box<str>> for Utf8Bytes {
    fn from(text: Box<str>) -> Self {
        Self::from(String::from(text))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(text: Utf8Bytes) -> Self {
        text.0
    }
}

impl From<Utf8Bytes> for String {
    fn from(text: Utf8Bytes) -> Self {
        text.as_str().to_owned()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Utf8Bytes {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Utf8Bytes> for str {
    fn eq(&self, other: &Utf8Bytes) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Utf8Bytes> for &str {
    fn eq(&self, other: &Utf8Bytes) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_keeps_valid_bytes_shared() {
        let bytes = Bytes::from_static(b"shared");
        let text = Utf8Bytes::from_bytes_lossy(bytes.clone());
        assert_eq!(text.as_bytes().as_ptr(), bytes.as_ptr());
    }

    #[test]
    fn lossy_replaces_each_maximal_invalid_subpart() {
        // WHATWG UTF-8 decode: a truncated sequence is one U+FFFD, a lone continuation byte is one.
        let text = Utf8Bytes::from_bytes_lossy(Bytes::from_static(b"a\xe2\x82b\x80c"));
        assert_eq!(text, "a\u{FFFD}b\u{FFFD}c");
    }

    #[test]
    fn hash_matches_str_for_map_lookups() {
        let mut map = std::collections::HashMap::new();
        map.insert(Utf8Bytes::from("key"), 1);
        assert_eq!(map.get("key"), Some(&1));
    }
}

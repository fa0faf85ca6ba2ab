//! Message content and wire frames, stored inline when small.
//!
//! Almost every WHISPER and SHOUT carries one content frame, and the node handles millions of them
//! per second. A `Vec<Bytes>` per message costs an allocation where the message is made and a free
//! where it is consumed, usually on another task: measured, those two calls were a quarter of the
//! receive path (`BENCHMARKS.md`, session 5). [`Content`] keeps up to one frame inline and spills
//! to the heap only for multi-frame messages; [`Frames`] (a ZRE frame plus its content) keeps two,
//! and is the same type the ZMTP transport hands out and takes, so no conversion happens between
//! the socket and the application.
//!
//! `Content` is a newtype rather than the `SmallVec` itself, so that the public API does not
//! depend on the `smallvec` crate's version, and it reads like the `Vec<Bytes>` it replaces
//! (it dereferences to `[Bytes]`, converts from and into `Vec<Bytes>`, compares with it).

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;
use smallvec::SmallVec;

/// A ZMTP message as a list of frames: two inline (a ZRE frame and one content frame), more on
/// the heap. The same type as `zmesh_zmtp::Frames`.
pub type Frames = SmallVec<[Bytes; 2]>;

/// The content of a WHISPER or SHOUT: one or more frames (ZRE requires at least one when
/// sending; a received message may have none, see [`crate::msg`]).
///
/// Build it from a [`Bytes`] (one frame, no allocation), a `Vec<Bytes>`, an array or an iterator
/// of frames; read it as a slice of frames (`content[0]`, `content.len()`, `content.iter()`).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Content(SmallVec<[Bytes; 1]>);

impl Content {
    /// No frames (not sendable: ZRE needs at least one).
    pub fn new() -> Content {
        Content(SmallVec::new())
    }

    /// One frame, stored inline.
    pub fn single(frame: impl Into<Bytes>) -> Content {
        let mut v = SmallVec::new();
        v.push(frame.into());
        Content(v)
    }

    /// Appends a frame.
    pub fn push(&mut self, frame: impl Into<Bytes>) {
        self.0.push(frame.into());
    }

    /// Removes and returns the last frame.
    pub fn pop(&mut self) -> Option<Bytes> {
        self.0.pop()
    }

    /// Removes and returns the frame at `index`, shifting the later ones down (panics if out of
    /// range, like `Vec::remove`).
    pub fn remove(&mut self, index: usize) -> Bytes {
        self.0.remove(index)
    }

    /// Removes the frame at `index`, replacing it with the last one (panics if out of range,
    /// like `Vec::swap_remove`).
    pub fn swap_remove(&mut self, index: usize) -> Bytes {
        self.0.swap_remove(index)
    }

    /// The frames as a `Vec` (allocates only if they were inline).
    pub fn into_vec(self) -> Vec<Bytes> {
        self.0.into_vec()
    }

    /// All frames joined into one buffer (a copy unless there is exactly one frame).
    pub fn concat(&self) -> Bytes {
        match self.0.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

impl Deref for Content {
    type Target = [Bytes];
    fn deref(&self) -> &[Bytes] {
        &self.0
    }
}

impl DerefMut for Content {
    fn deref_mut(&mut self) -> &mut [Bytes] {
        &mut self.0
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl From<Bytes> for Content {
    fn from(frame: Bytes) -> Content {
        Content::single(frame)
    }
}

impl From<Vec<Bytes>> for Content {
    fn from(frames: Vec<Bytes>) -> Content {
        if frames.len() <= 1 {
            Content(frames.into_iter().collect())
        } else {
            Content(SmallVec::from_vec(frames))
        }
    }
}

impl From<&[Bytes]> for Content {
    fn from(frames: &[Bytes]) -> Content {
        Content(frames.iter().cloned().collect())
    }
}

impl<const N: usize> From<[Bytes; N]> for Content {
    fn from(frames: [Bytes; N]) -> Content {
        Content(frames.into_iter().collect())
    }
}

impl From<Content> for Vec<Bytes> {
    fn from(c: Content) -> Vec<Bytes> {
        c.into_vec()
    }
}

impl FromIterator<Bytes> for Content {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Content {
        Content(iter.into_iter().collect())
    }
}

impl IntoIterator for Content {
    type Item = Bytes;
    type IntoIter = smallvec::IntoIter<[Bytes; 1]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Content {
    type Item = &'a Bytes;
    type IntoIter = std::slice::Iter<'a, Bytes>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl PartialEq<Vec<Bytes>> for Content {
    fn eq(&self, other: &Vec<Bytes>) -> bool {
        self.0.as_slice() == other.as_slice()
    }
}

impl PartialEq<[Bytes]> for Content {
    fn eq(&self, other: &[Bytes]) -> bool {
        self.0.as_slice() == other
    }
}

impl PartialEq<Content> for Vec<Bytes> {
    fn eq(&self, other: &Content) -> bool {
        self.as_slice() == other.0.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_is_inline_and_reads_like_a_vec() {
        let c = Content::from(Bytes::from_static(b"hi"));
        assert!(!c.0.spilled());
        assert_eq!(c.len(), 1);
        assert_eq!(&c[0][..], b"hi");
        assert_eq!(c, vec![Bytes::from_static(b"hi")]);
        assert_eq!(c.concat(), Bytes::from_static(b"hi"));
    }

    #[test]
    fn conversions_keep_every_frame_in_order() {
        let v = vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        let c = Content::from(v.clone());
        assert_eq!(c.len(), 2);
        assert_eq!(c.concat(), Bytes::from_static(b"abc"));
        assert_eq!(Vec::from(c.clone()), v);
        assert_eq!(c.into_iter().collect::<Vec<_>>(), v);
    }
}

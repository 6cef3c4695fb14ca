//! TCP sequence numbers: 32-bit counters that wrap, compared by their signed
//! distance (RFC 9293 §3.4, "serial number arithmetic" of RFC 1982).
use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// A TCP sequence number.
///
/// Ordering is by the wrapping difference taken as an `i32`: `a < b` when `b` is
/// less than 2^31 ahead of `a`. That is only meaningful for numbers within 2^31 of
/// each other (always true of one connection's live window), and it is not a total
/// order: exactly 2^31 apart, each is "less" than the other. Hence `PartialOrd`
/// only, and no `Ord`; do not sort by it or use it as a `BTreeMap` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// `self - other` as a signed distance: positive when `self` is after `other`.
    #[inline]
    pub const fn wrapping_diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// The later of the two (by the wrapping order).
    #[inline]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self.wrapping_diff(other) >= 0 {
            self
        } else {
            other
        }
    }

    /// The earlier of the two (by the wrapping order).
    #[inline]
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self.wrapping_diff(other) <= 0 {
            self
        } else {
            other
        }
    }
}

/// Advances by `rhs` bytes, wrapping. Lengths beyond 2^31 are meaningless for TCP
/// and are not rejected (they would be a caller bug, not hostile input).
impl Add<usize> for SeqNumber {
    type Output = SeqNumber;

    #[inline]
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;

    #[inline]
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl SubAssign<usize> for SeqNumber {
    #[inline]
    fn sub_assign(&mut self, rhs: usize) {
        *self = *self - rhs;
    }
}

/// The number of bytes from `rhs` up to `self`, saturating at 0 when `rhs` is after
/// `self` (never panics; use [`SeqNumber::wrapping_diff`] when the sign matters).
impl Sub<SeqNumber> for SeqNumber {
    type Output = usize;

    #[inline]
    fn sub(self, rhs: SeqNumber) -> usize {
        self.wrapping_diff(rhs).max(0) as usize
    }
}

impl PartialOrd for SeqNumber {
    #[inline]
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.wrapping_diff(*other).cmp(&0))
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_wraps() {
        let s = SeqNumber(u32::MAX - 1);
        assert_eq!(s + 3, SeqNumber(1));
        assert_eq!(SeqNumber(1) - 3, SeqNumber(u32::MAX - 1));
        let mut t = s;
        t += 2;
        assert_eq!(t, SeqNumber(0));
        t -= 1;
        assert_eq!(t, SeqNumber(u32::MAX));
        assert_eq!(SeqNumber(1) - s, 3);
        assert_eq!(s - SeqNumber(1), 0, "saturates instead of panicking");
        assert_eq!(s.wrapping_diff(SeqNumber(1)), -3);
        assert_eq!(SeqNumber(1).wrapping_diff(s), 3);
    }

    #[test]
    fn ordering_across_the_wrap() {
        let a = SeqNumber(0xffff_fff0);
        let b = SeqNumber(0x10);
        assert!(a < b);
        assert!(b > a);
        assert!(a <= b);
        assert!(b >= a);
        assert!(SeqNumber(5) < SeqNumber(6) && SeqNumber(6) > SeqNumber(5));
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert_eq!(b.max(a), b);
        assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
        // 2^31 - 1 ahead is still "after"; exactly 2^31 is the ambiguous point.
        assert!(SeqNumber(0) < SeqNumber(0x7fff_ffff));
        assert!(SeqNumber(0) > SeqNumber(0x8000_0001));
        let (x, y) = (SeqNumber(0), SeqNumber(0x8000_0000));
        assert!(
            x < y && y < x,
            "documented: not a total order at exactly 2^31"
        );
    }

    #[test]
    fn display_is_the_number() {
        assert_eq!(SeqNumber(4_271_207_097).to_string(), "4271207097");
        assert_eq!(format!("{:>5}", SeqNumber(7)), "    7");
    }
}

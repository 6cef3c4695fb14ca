//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The checksum is the ones'-complement of the ones'-complement sum of 16-bit
//! big-endian words. Because ones'-complement addition is associative and
//! commutative, partial sums of pieces (pseudo-header, header, payload) can be
//! computed separately and added; [`sum`] returns them already folded to 16 bits so
//! that adding a handful of them in a `u32` can never overflow.
use std::net::Ipv4Addr;

/// Ones'-complement sum of `data` as big-endian 16-bit words, folded to at most
/// `0xffff`. An odd trailing byte counts as the high byte of a word padded with zero
/// (RFC 1071 §4.1).
///
/// Sums native-endian 64-bit words with an end-around carry and fixes the byte order
/// once at the end (RFC 1071 §2(B): the sum is independent of byte order, up to a swap),
/// so a 20-byte IPv4 header costs two wide adds and one narrow one, with no loop in the
/// fold.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc = add_carry(acc, u64::from_ne_bytes(c.try_into().expect("eight bytes")));
    }
    let mut rest = chunks.remainder();
    if let [a, b, c, d, tail @ ..] = rest {
        acc = add_carry(acc, u64::from(u32::from_ne_bytes([*a, *b, *c, *d])));
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        acc = add_carry(acc, u64::from(u16::from_ne_bytes([*a, *b])));
        rest = tail;
    }
    if let [last] = rest {
        acc = add_carry(acc, u64::from(u16::from_ne_bytes([*last, 0])));
    }
    // 64 -> 33 -> 17 -> 16 bits (the last step can carry once more, hence four).
    let mut s = (acc >> 32) + (acc & 0xffff_ffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    // The words were read in memory order: their sum's bytes, in memory order, are the
    // big-endian sum.
    u32::from(u16::from_be_bytes((s as u16).to_ne_bytes()))
}

/// `a + b` with the carry out of bit 63 added back in (ones'-complement addition).
#[inline]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// Folds the carries of a 32-bit accumulation back into 16 bits (end-around carry).
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to store for `data` (computed with the checksum field zeroed).
/// Over data that includes a correct checksum it yields 0, which is how receivers
/// verify.
#[inline]
pub fn internet(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The partial sum of the IPv4 pseudo-header that TCP and UDP checksums cover
/// (RFC 9293 §3.1): source, destination, zero + protocol, and the L4 length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(proto) + u32::from(len)
}

/// The checksum after one 16-bit word of the covered data changed from `old` to
/// `new`, without touching the rest of the data: RFC 1624 eqn. 3,
/// `HC' = ~(~HC + ~m + m')`.
///
/// Unlike the older `~(HC - m + m')` form, starting from a correct checksum this
/// never produces the 0xffff ("-0") that only an all-zero message may carry. The one case where it differs from a
/// full recomputation is when the *new* data is entirely zero: then a full
/// recomputation gives 0xffff and this gives 0. No header the switch patches (IPv4
/// has a non-zero version nibble; an ICMP echo reply has the request's identifier,
/// sequence and data) can be all zero in practice.
#[inline]
pub fn update16(old_csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!old_csum) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for an aligned 32-bit field (an IPv4 address, a TCP sequence
/// number), treated as its two words.
#[inline]
pub fn update32(old_csum: u16, old: u32, new: u32) -> u16 {
    let acc = u32::from(!old_csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(acc)
}

/// [`update16`] for many changed words at once, folded once at the end:
/// `HC' = ~(~HC + Σ(~m + m'))`. Folding once instead of per word gives the same
/// checksum (every partial result is the same value modulo 0xffff, and both end in
/// 1..=0xffff before the complement) at a fraction of the instructions: the splice
/// path patches a dozen words per segment.
#[derive(Debug, Clone, Copy)]
pub struct Incremental(u64);

impl Incremental {
    /// No change yet, and no checksum: changes to apply to one or more later
    /// ([`applied_to`](Self::applied_to)).
    #[inline]
    pub fn changes() -> Self {
        Incremental(0)
    }

    /// The same changes applied to a checksum that was `old_csum` (changes shared by two
    /// checksums, as addresses are by the IP header's and the TCP pseudo-header's).
    #[inline]
    pub fn applied_to(self, old_csum: u16) -> Self {
        Incremental(self.0 + u64::from(!old_csum))
    }

    /// Starts from the checksum stored before the changes.
    #[inline]
    pub fn new(old_csum: u16) -> Self {
        Incremental(u64::from(!old_csum))
    }

    /// One 16-bit word changed from `old` to `new`.
    #[inline]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// An aligned 32-bit field changed (its two words).
    #[inline]
    pub fn dword(&mut self, old: u32, new: u32) {
        // One 32-bit step: modulo 0xffff, a 32-bit word is the sum of its two halves and
        // `!old` is minus `old` (0xffff_ffff = 0xffff * 0x10001), as for the halves.
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// The checksum to store now.
    #[inline]
    pub fn finish(self) -> u16 {
        let mut s = self.0;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift64 so the tests need no `rand` and always see the same
    /// cases.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// A word-at-a-time reference sum, the way RFC 1071 writes it.
    fn reference_sum(data: &[u8]) -> u32 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(internet(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn wide_sum_matches_reference_at_every_length() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for len in 0..300 {
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert_eq!(fold(sum(&data)), fold(reference_sum(&data)), "len {len}");
            assert!(sum(&data) <= 0xffff);
        }
        // All-ones data exercises the carries hardest.
        let ones = vec![0xff; 65_535];
        assert_eq!(fold(sum(&ones)), fold(reference_sum(&ones)));
    }

    #[test]
    fn checksum_over_correct_data_is_zero() {
        // A real IPv4 header (from the ICMP echo request fixture).
        let hdr = &crate::wire::fixtures::ICMP_ECHO_REQUEST[14..34];
        assert_eq!(internet(hdr), 0);
        let mut zeroed = hdr.to_vec();
        zeroed[10..12].fill(0);
        assert_eq!(internet(&zeroed), 0xb168);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(10, 250, 0, 1);
        let dst = Ipv4Addr::new(10, 250, 0, 2);
        let bytes = [10, 250, 0, 1, 10, 250, 0, 2, 0, 6, 0x05, 0xdc];
        assert_eq!(fold(pseudo_header_v4(src, dst, 6, 1500)), fold(sum(&bytes)));
    }

    /// Full recomputation with the checksum field (bytes 0..2) excluded.
    fn full(data: &[u8]) -> u16 {
        internet(&data[2..])
    }

    fn check_update16(data: &mut [u8], at: usize, new: u16) {
        let csum = full(data);
        let old = u16::from_be_bytes([data[at], data[at + 1]]);
        data[at..at + 2].copy_from_slice(&new.to_be_bytes());
        let incremental = update16(csum, old, new);
        let recomputed = full(data);
        if data[2..].iter().all(|&b| b == 0) {
            // The documented RFC 1624 corner: -0 versus +0.
            assert_eq!((incremental, recomputed), (0, 0xffff));
        } else {
            assert_eq!(
                incremental, recomputed,
                "csum {csum:#06x} word {old:#06x}->{new:#06x}"
            );
            data[0..2].copy_from_slice(&incremental.to_be_bytes());
            assert_eq!(internet(data), 0, "stored checksum verifies");
        }
    }

    #[test]
    fn update16_equals_recompute_random() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for case in 0..20_000 {
            let len = 4 + 2 * (rng.next() % 40) as usize;
            // Mostly random data; every eighth case is sparse, so sums near 0 and
            // 0xffff (checksums 0xffff and 0) come up often.
            let sparse = case % 8 == 0;
            let mut data: Vec<u8> = (0..len)
                .map(|_| {
                    if sparse && rng.next() & 3 != 0 {
                        0
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            let at = 2 + 2 * (rng.next() as usize % ((len - 2) / 2));
            let new = match rng.next() % 4 {
                0 => 0,
                1 => 0xffff,
                _ => rng.next() as u16,
            };
            check_update16(&mut data, at, new);
        }
    }

    #[test]
    fn update16_edge_cases() {
        // Data summing to 0xffff: checksum 0x0000.
        let mut d = [0, 0, 0xff, 0xff, 0x00, 0x00];
        assert_eq!(full(&d), 0);
        check_update16(&mut d, 4, 0x0001);
        // Back to a sum of 0xffff from a different split.
        let mut d = [0, 0, 0x80, 0x00, 0x7f, 0xfe];
        check_update16(&mut d, 4, 0x7fff);
        assert_eq!(full(&d), 0);
        // Words 0x0000 <-> 0xffff are the same ones'-complement value.
        let mut d = [0, 0, 0x12, 0x34, 0x00, 0x00];
        check_update16(&mut d, 4, 0xffff);
        check_update16(&mut d, 4, 0x0000);
        // The only word becomes zero: the documented -0 corner.
        let mut d = [0, 0, 0x00, 0x08, 0x00, 0x00];
        check_update16(&mut d, 2, 0x0000);
        // And back out of an all-zero message (old checksum 0xffff).
        let mut d = [0, 0, 0, 0, 0, 0];
        assert_eq!(full(&d), 0xffff);
        check_update16(&mut d, 2, 0x0800);
    }

    #[test]
    fn update32_equals_recompute_random() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        for _ in 0..20_000 {
            let len = 8 + 4 * (rng.next() % 20) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Aligned 32-bit field after the 2-byte checksum and 2 bytes of padding.
            let at = 4 + 4 * (rng.next() as usize % ((len - 4) / 4));
            let csum = full(&data);
            let old = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            let new = match rng.next() % 4 {
                0 => 0,
                1 => u32::MAX,
                _ => rng.next() as u32,
            };
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let recomputed = full(&data);
            let incremental = update32(csum, old, new);
            if data[2..].iter().all(|&b| b == 0) {
                assert_eq!((incremental, recomputed), (0, 0xffff));
            } else {
                assert_eq!(incremental, recomputed);
            }
        }
    }

    #[test]
    fn update32_is_two_update16s() {
        let mut rng = XorShift(77);
        for _ in 0..10_000 {
            let (c, old, new) = (rng.next() as u16, rng.next() as u32, rng.next() as u32);
            let two = update16(
                update16(c, (old >> 16) as u16, (new >> 16) as u16),
                old as u16,
                new as u16,
            );
            // Equal as ones'-complement values (0 and 0xffff both mean zero).
            let norm = |x: u16| if x == 0xffff { 0 } else { x };
            assert_eq!(norm(update32(c, old, new)), norm(two));
        }
    }

    #[test]
    fn incremental_equals_recomputation_for_many_words() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for len in [20usize, 32, 40, 60, 1460] {
            for _ in 0..200 {
                let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                data[0] |= 0x40; // never all zero (see `update16`)
                data[2] = 0;
                data[3] = 0;
                let c = internet(&data);
                data[2..4].copy_from_slice(&c.to_be_bytes());
                let mut inc = Incremental::new(c);
                for i in 0..12 {
                    if i % 2 == 0 {
                        let w = 4 + 2 * (rng.next() as usize % (len / 2 - 2));
                        let old = u16::from_be_bytes([data[w], data[w + 1]]);
                        let new = rng.next() as u16;
                        data[w..w + 2].copy_from_slice(&new.to_be_bytes());
                        inc.word(old, new);
                    } else {
                        // A 32-bit field at any even offset (a TCP option's may be unaligned
                        // to 4).
                        let w = 4 + 2 * (rng.next() as usize % (len / 2 - 3));
                        let old = u32::from_be_bytes(data[w..w + 4].try_into().unwrap());
                        let new = rng.next() as u32;
                        data[w..w + 4].copy_from_slice(&new.to_be_bytes());
                        inc.dword(old, new);
                    }
                }
                data[2..4].copy_from_slice(&inc.finish().to_be_bytes());
                assert_eq!(fold(sum(&data)), 0xffff, "verifies");
                let stored = u16::from_be_bytes([data[2], data[3]]);
                data[2] = 0;
                data[3] = 0;
                assert_eq!(stored, internet(&data), "bit for bit a recomputation");
            }
        }
    }
}

use super::*;
use crate::xorshift::XorShift;

const HEAD: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 10.250.0.2:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

fn buffer(capacity: usize, base: u32) -> HeadBuffer {
    let mut b = HeadBuffer::new(capacity);
    b.reset(SeqNumber(base));
    b
}

/// `data` cut into segments of `size` bytes as (seq, bytes).
fn segments(base: u32, data: &[u8], size: usize) -> Vec<(SeqNumber, &[u8])> {
    data.chunks(size)
        .enumerate()
        .map(|(i, c)| (SeqNumber(base) + i * size, c))
        .collect()
}

#[test]
fn in_order() {
    let mut b = buffer(1024, 4_271_207_098);
    assert_eq!((b.contiguous_len(), b.window()), (0, 1024));
    assert_eq!(b.ack_seq(), SeqNumber(4_271_207_098));
    let mut len = 0;
    for (seq, seg) in segments(4_271_207_098, HEAD, 10) {
        len += seg.len();
        assert_eq!(b.insert(seq, seg), Insert::Added { contiguous: len });
        assert_eq!(b.ack_seq(), SeqNumber(4_271_207_098) + len);
        assert_eq!(b.window(), 1024 - len);
    }
    assert_eq!(b.contiguous(), HEAD);
    assert_eq!(b.out_of_order().count(), 0);
    assert_eq!((b.capacity(), b.base()), (1024, SeqNumber(4_271_207_098)));
}

#[test]
fn reversed() {
    let base = 1000;
    let mut b = buffer(512, base);
    let segs = segments(base, HEAD, 7);
    let n = segs.len();
    for (i, &(seq, seg)) in segs.iter().enumerate().rev() {
        let got = b.insert(seq, seg);
        if i > 0 {
            // Each one joins the range after it: always one range, no ACK progress.
            assert_eq!(got, Insert::Added { contiguous: 0 });
            assert_eq!(b.out_of_order().count(), 1);
            assert_eq!(
                b.out_of_order().next(),
                Some((seq, SeqNumber(base) + HEAD.len()))
            );
            assert_eq!(b.ack_seq(), SeqNumber(base));
            assert_eq!(b.window(), 512, "held out-of-order bytes do not shrink it");
        } else {
            assert_eq!(
                got,
                Insert::Added {
                    contiguous: HEAD.len()
                }
            );
        }
    }
    assert_eq!(n, HEAD.len().div_ceil(7));
    assert_eq!(b.contiguous(), HEAD);
    assert_eq!(b.out_of_order().count(), 0);
}

#[test]
fn overlapping_and_first_copy_wins() {
    let mut b = buffer(64, 0);
    assert_eq!(
        b.insert(SeqNumber(10), b"KLMNOP"),
        Insert::Added { contiguous: 0 }
    );
    // Overlaps the start of the range and a gap before it; the overlapping part
    // carries different bytes, which are ignored.
    assert_eq!(
        b.insert(SeqNumber(5), b"fghijklm"),
        Insert::Added { contiguous: 0 }
    );
    assert_eq!(
        b.out_of_order().collect::<Vec<_>>(),
        [(SeqNumber(5), SeqNumber(16))]
    );
    // Covers everything from 0 to 20, overlapping the whole range.
    assert_eq!(
        b.insert(SeqNumber(0), b"abcde_____________uv"),
        Insert::Added { contiguous: 20 }
    );
    assert_eq!(b.contiguous(), b"abcdefghijKLMNOP__uv");
    // A segment spanning held and new bytes at the end adds only the new ones.
    assert_eq!(
        b.insert(SeqNumber(18), b"xxwx"),
        Insert::Added { contiguous: 22 }
    );
    assert_eq!(&b.contiguous()[18..], b"uvwx");
}

#[test]
fn duplicates() {
    let mut b = buffer(64, 500);
    assert_eq!(
        b.insert(SeqNumber(500), b"hello"),
        Insert::Added { contiguous: 5 }
    );
    assert_eq!(b.insert(SeqNumber(500), b"hello"), Insert::Duplicate);
    assert_eq!(b.insert(SeqNumber(501), b"ell"), Insert::Duplicate);
    assert_eq!(
        b.insert(SeqNumber(520), b"world"),
        Insert::Added { contiguous: 5 }
    );
    assert_eq!(b.insert(SeqNumber(520), b"world"), Insert::Duplicate);
    assert_eq!(b.insert(SeqNumber(522), b"rl"), Insert::Duplicate);
    assert_eq!(b.insert(SeqNumber(510), b""), Insert::Duplicate, "empty");
    assert_eq!(b.contiguous(), b"hello");
    // A retransmission that starts before the base (with the SYN's number) is
    // trimmed.
    assert_eq!(
        b.insert(SeqNumber(499), b"Xhello!"),
        Insert::Added { contiguous: 6 }
    );
    assert_eq!(b.contiguous(), b"hello!");
}

#[test]
fn wrap_around_sequence_space() {
    let base = u32::MAX - 20;
    let mut b = buffer(256, base);
    let segs = segments(base, HEAD, 16);
    assert!(
        segs.iter().any(|(s, _)| s.0 < 100),
        "some segment is past 0"
    );
    // Odd ones first, then even ones, then everything again.
    for (i, &(seq, seg)) in segs.iter().enumerate() {
        if i % 2 == 1 {
            assert!(matches!(b.insert(seq, seg), Insert::Added { .. }));
        }
    }
    for (i, &(seq, seg)) in segs.iter().enumerate() {
        if i % 2 == 0 {
            assert!(matches!(b.insert(seq, seg), Insert::Added { .. }));
        }
    }
    for &(seq, seg) in &segs {
        assert_eq!(b.insert(seq, seg), Insert::Duplicate);
    }
    assert_eq!(b.contiguous(), HEAD);
    assert_eq!(b.ack_seq(), SeqNumber(base.wrapping_add(HEAD.len() as u32)));
}

#[test]
fn overflow_at_capacity() {
    let mut b = buffer(16, 100);
    assert_eq!(
        b.insert(SeqNumber(100), b"0123456789"),
        Insert::Added { contiguous: 10 }
    );
    assert_eq!(b.window(), 6);
    // Runs 4 bytes past the capacity: the 6 that fit are kept.
    assert_eq!(b.insert(SeqNumber(110), b"abcdefghij"), Insert::Overflow);
    assert_eq!(b.contiguous(), b"0123456789abcdef");
    assert!(b.is_full());
    assert_eq!((b.window(), b.ack_seq()), (0, SeqNumber(116)));
    // Full: a retransmission of the tail is still Overflow, new data is out of window.
    assert_eq!(b.insert(SeqNumber(110), b"abcdefghij"), Insert::Overflow);
    assert_eq!(b.insert(SeqNumber(112), b"cd"), Insert::Duplicate);
    assert_eq!(b.insert(SeqNumber(116), b"k"), Insert::OutOfWindow);
    assert_eq!(b.insert(SeqNumber(100_000), b"k"), Insert::OutOfWindow);
    // Before the base entirely.
    assert_eq!(b.insert(SeqNumber(90), b"0123456789"), Insert::OutOfWindow);
    // A zero-capacity buffer holds nothing and does not panic.
    let mut z = buffer(0, 5);
    assert_eq!(z.insert(SeqNumber(5), b"x"), Insert::OutOfWindow);
    assert_eq!(z.insert(SeqNumber(4), b"xy"), Insert::Overflow);
    assert!(z.is_full() && z.contiguous().is_empty());
}

#[test]
fn out_of_order_overflow_keeps_what_fits() {
    let mut b = buffer(16, 0);
    assert_eq!(b.insert(SeqNumber(12), b"CDEFGH"), Insert::Overflow);
    assert_eq!(
        b.out_of_order().collect::<Vec<_>>(),
        [(SeqNumber(12), SeqNumber(16))]
    );
    assert_eq!(
        b.insert(SeqNumber(0), b"0123456789AB"),
        Insert::Added { contiguous: 16 }
    );
    assert_eq!(b.contiguous(), b"0123456789ABCDEF");
}

#[test]
fn holes() {
    let mut b = buffer(200, 0);
    // Eight separate out-of-order ranges: 10..15, 30..35, ..., 150..155.
    for i in 0..MAX_RANGES {
        let seq = SeqNumber(10 + 20 * i as u32);
        assert_eq!(b.insert(seq, b"holey"), Insert::Added { contiguous: 0 });
    }
    assert_eq!(b.out_of_order().count(), MAX_RANGES);
    // A ninth is refused and changes nothing.
    assert_eq!(b.insert(SeqNumber(180), b"x"), Insert::TooFragmented);
    assert_eq!(b.out_of_order().count(), MAX_RANGES);
    // But data joining an existing range, or the prefix, is fine.
    assert_eq!(
        b.insert(SeqNumber(15), b"+"),
        Insert::Added { contiguous: 0 }
    );
    assert_eq!(
        b.insert(SeqNumber(0), b"0123456789"),
        Insert::Added { contiguous: 16 }
    );
    assert_eq!(b.out_of_order().count(), MAX_RANGES - 1);
    // One segment filling several holes at once merges the ranges it spans.
    let fill = [b'.'; 100];
    assert_eq!(
        b.insert(SeqNumber(16), &fill),
        Insert::Added { contiguous: 116 }
    );
    assert_eq!(
        b.out_of_order().collect::<Vec<_>>(),
        [
            (SeqNumber(130), SeqNumber(135)),
            (SeqNumber(150), SeqNumber(155))
        ]
    );
    assert_eq!(&b.contiguous()[..16], b"0123456789holey+");
    assert_eq!(&b.contiguous()[30..35], b"holey", "held bytes kept");
    assert_eq!(&b.contiguous()[35..50], &[b'.'; 15]);
    // A segment exactly touching two ranges bridges them.
    assert_eq!(
        b.insert(SeqNumber(135), &[b'-'; 15]),
        Insert::Added { contiguous: 116 }
    );
    assert_eq!(
        b.out_of_order().collect::<Vec<_>>(),
        [(SeqNumber(130), SeqNumber(155))]
    );
    assert!(format!("{b:?}").contains("contiguous: 116"));
}

#[test]
fn reset_and_clear_reuse_the_buffer() {
    let mut b = buffer(32, 10);
    b.insert(SeqNumber(10), b"secret stuff");
    b.insert(SeqNumber(30), b"more");
    b.clear();
    assert_eq!((b.contiguous_len(), b.base()), (0, SeqNumber(10)));
    assert_eq!(b.out_of_order().count(), 0);
    b.reset(SeqNumber(7_000));
    assert!(b.contiguous().is_empty());
    assert_eq!(b.window(), 32);
    // The stale bytes behind a hole are never exposed.
    assert_eq!(
        b.insert(SeqNumber(7_005), b"x"),
        Insert::Added { contiguous: 0 }
    );
    assert_eq!(
        b.insert(SeqNumber(7_000), b"abcde"),
        Insert::Added { contiguous: 6 }
    );
    assert_eq!(b.contiguous(), b"abcdex");
}

/// Random segmentations of a stream, delivered shuffled with duplicates,
/// retransmissions with other boundaries and garbage outside the stream, compared
/// with a byte-per-offset model.
#[test]
fn generated_against_a_model() {
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    for case in 0..3_000 {
        let cap = 1 + rng.below(300);
        let base = SeqNumber(rng.next() as u32);
        let stream: Vec<u8> = (0..cap + rng.below(50)).map(|_| rng.next() as u8).collect();
        let mut b = HeadBuffer::new(cap);
        b.reset(base);
        let mut model: Vec<Option<u8>> = vec![None; cap];
        for _ in 0..rng.below(40) + 1 {
            let start = rng.below(stream.len() + 20) as i64 - 10;
            let len = rng.below(60);
            let seq = base + start as usize; // wraps for negative starts
            let seg: Vec<u8> = (start..start + len as i64)
                .map(|o| {
                    usize::try_from(o)
                        .ok()
                        .and_then(|o| stream.get(o).copied())
                        .unwrap_or(0xee)
                })
                .collect();
            let contiguous_before = b.contiguous_len();
            let ranges_before: Vec<_> = b.out_of_order().collect();
            let got = b.insert(seq, &seg);
            match got {
                Insert::TooFragmented => {
                    assert_eq!(b.contiguous_len(), contiguous_before);
                    assert_eq!(b.out_of_order().collect::<Vec<_>>(), ranges_before);
                    continue;
                }
                Insert::OutOfWindow => {
                    assert!(len == 0 || start + len as i64 <= 0 || start >= cap as i64);
                }
                Insert::Overflow => assert!(start + len as i64 > cap as i64),
                _ => {}
            }
            let mut added = false;
            for (i, &byte) in seg.iter().enumerate() {
                let o = start + i as i64;
                if (0..cap as i64).contains(&o) && model[o as usize].is_none() {
                    model[o as usize] = Some(byte);
                    added = true;
                }
            }
            if let Insert::Added { contiguous } = got {
                assert!(added);
                assert_eq!(contiguous, b.contiguous_len());
            }
            if got == Insert::Duplicate {
                assert!(!added, "case {case}");
            }
        }
        let prefix = model.iter().take_while(|m| m.is_some()).count();
        assert_eq!(b.contiguous_len(), prefix, "case {case}");
        let want: Vec<u8> = model[..prefix].iter().map(|m| m.unwrap()).collect();
        assert_eq!(b.contiguous(), &want[..]);
        assert_eq!(b.ack_seq(), base + prefix);
        assert_eq!(b.window(), cap - prefix);
        // The out-of-order ranges are exactly the held runs after the prefix.
        let mut runs = Vec::new();
        let mut o = prefix;
        while o < cap {
            if model[o].is_some() {
                let s = o;
                while o < cap && model[o].is_some() {
                    o += 1;
                }
                runs.push((base + s, base + o));
            } else {
                o += 1;
            }
        }
        assert_eq!(b.out_of_order().collect::<Vec<_>>(), runs, "case {case}");
        for (l, r) in runs {
            let (s, e) = (l - base, r - base);
            let held: Vec<u8> = model[s..e].iter().map(|m| m.unwrap()).collect();
            assert_eq!(&b.buf[s..e], &held[..]);
        }
    }
}

#[test]
fn truncate_keeps_the_prefix_and_forgets_the_rest() {
    let mut h = HeadBuffer::new(64);
    h.reset(SeqNumber(100));
    h.insert(SeqNumber(100), b"GET / HTTP/1.1\r\n\r\nGET /2");
    h.insert(SeqNumber(140), b"later");
    h.truncate(18);
    assert_eq!(h.contiguous(), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(h.out_of_order().count(), 0);
    assert_eq!(h.ack_seq(), SeqNumber(118));
}

#[test]
fn advance_to_slides_the_base_and_keeps_out_of_order_bytes() {
    let mut h = HeadBuffer::new(16);
    h.reset(SeqNumber(u32::MAX - 3)); // wraps while sliding
    h.insert(SeqNumber(u32::MAX - 3), b"abcd");
    h.insert(SeqNumber(u32::MAX - 3) + 6, b"gh");
    h.advance_to(SeqNumber(u32::MAX - 3) + 3);
    assert_eq!(h.base(), SeqNumber(u32::MAX - 3) + 3);
    assert_eq!(h.contiguous(), b"d");
    let ooo: Vec<_> = h.out_of_order().collect();
    assert_eq!(
        ooo,
        [(SeqNumber(u32::MAX - 3) + 6, SeqNumber(u32::MAX - 3) + 8)]
    );
    // The hole fills: everything is in order again, from the new base.
    h.insert(SeqNumber(u32::MAX - 3) + 4, b"ef");
    assert_eq!(h.contiguous(), b"defgh");
    // Room freed at the front is usable at the back.
    h.advance_to(SeqNumber(u32::MAX - 3) + 8);
    assert!(matches!(
        h.insert(SeqNumber(u32::MAX - 3) + 8, &[b'x'; 16]),
        Insert::Added { contiguous: 16 }
    ));
    h.advance_to(SeqNumber(u32::MAX - 3) + 100); // past everything held
    assert_eq!(h.contiguous_len(), 0);
    assert_eq!(h.out_of_order().count(), 0);
}

#[test]
fn advance_to_into_an_out_of_order_range_keeps_its_tail() {
    let mut h = HeadBuffer::new(32);
    h.reset(SeqNumber(1000));
    h.insert(SeqNumber(1000), b"ab");
    h.insert(SeqNumber(1010), b"0123456789");
    // The reader skipped to the middle of the second range: it is in order now.
    h.advance_to(SeqNumber(1014));
    assert_eq!(h.contiguous(), b"456789");
    // Skipping into a hole leaves nothing in order.
    h.advance_to(SeqNumber(1030));
    assert_eq!(h.contiguous_len(), 0);
    assert_eq!(h.base(), SeqNumber(1030));
}

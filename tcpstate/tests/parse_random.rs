//! The stable-Rust stand-in for the `parse_frame` fuzz target (tcpstate/fuzz), run
//! by CI: 200,000 deterministic inputs through `wire::parse_all`, which must return
//! for every one of them. The inputs are built to get past the outer layers, where
//! plain random bytes would almost all stop: mutations of the real captured frames
//! (bit flips, interesting values, truncation, extension), random bytes behind
//! valid Ethernet/IPv4 headers, and random TCP option areas.
use tcpstate::wire::{checksum, parse_all, WireError};

#[path = "../src/wire/fixtures.rs"]
mod fixtures;

const CASES: usize = 200_000;

/// Deterministic xorshift64: the same inputs on every run, no `rand`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Values that sit on the boundaries parsers get wrong.
const INTERESTING: [u8; 10] = [0x00, 0x01, 0x02, 0x04, 0x0f, 0x10, 0x45, 0x7f, 0x80, 0xff];

fn mutate(rng: &mut XorShift, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if f.is_empty() {
            break;
        }
        let at = rng.below(f.len());
        match rng.below(6) {
            0 | 1 => f[at] ^= 1 << rng.below(8),
            2 => f[at] = INTERESTING[rng.below(INTERESTING.len())],
            3 => f[at] = rng.byte(),
            4 => f.truncate(at),
            _ => {
                let extra = rng.below(16);
                f.extend((0..extra).map(|_| rng.byte()));
            }
        }
    }
    // Half the time keep the IPv4 header checksum right, so checksum-dependent
    // paths (Ipv4Repr round trip with verification) see mutated but valid headers.
    if rng.below(2) == 0 && f.len() >= 34 && f[12..14] == [0x08, 0x00] {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        if ihl >= 20 && f.len() >= 14 + ihl {
            f[24..26].fill(0);
            let c = checksum::internet(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
    }
    f
}

/// Ethernet + a valid option-less IPv4 header (ICMP or TCP), then random bytes.
fn random_behind_headers(rng: &mut XorShift) -> Vec<u8> {
    let body_len = rng.below(80);
    let mut f = fixtures::TCP_SYN[..34].to_vec();
    f[23] = if rng.below(2) == 0 { 1 } else { 6 };
    f[16..18].copy_from_slice(&((20 + body_len) as u16).to_be_bytes());
    f.extend((0..body_len).map(|_| rng.byte()));
    if body_len > 12 && f[23] == 6 {
        // A plausible data offset so the options area is reached.
        f[34 + 12] = ((5 + rng.below(11)) as u8) << 4;
    }
    f
}

/// A captured TCP segment with its option area refilled with random or
/// option-shaped bytes.
fn random_options(rng: &mut XorShift) -> Vec<u8> {
    let mut f = fixtures::TCP_SYN.to_vec();
    for b in &mut f[54..74] {
        *b = match rng.below(4) {
            0 => [0, 1, 2, 3, 4, 5, 8][rng.below(7)],
            1 => rng.below(12) as u8,
            _ => rng.byte(),
        };
    }
    f
}

#[test]
fn parse_all_never_panics() {
    let mut rng = XorShift(0x5eed_f00d_u64);
    let (mut ok, mut truncated, mut other_err) = (0usize, 0usize, 0usize);
    for case in 0..CASES {
        let input = match case % 8 {
            0 => (0..rng.below(128)).map(|_| rng.byte()).collect(),
            1 => random_behind_headers(&mut rng),
            2 => random_options(&mut rng),
            _ => {
                let base = fixtures::ALL[rng.below(fixtures::ALL.len())];
                mutate(&mut rng, base)
            }
        };
        match parse_all(&input) {
            Ok(()) => ok += 1,
            Err(WireError::Truncated) => truncated += 1,
            Err(_) => other_err += 1,
        }
    }
    assert_eq!(ok + truncated + other_err, CASES);
    // The generators must reach past the outer layers, or the test proves little.
    assert!(ok > CASES / 4, "only {ok} inputs walked to the end");
    assert!(
        truncated > CASES / 50 && other_err > CASES / 50,
        "{truncated} truncated, {other_err} other errors"
    );
}

#[test]
fn every_truncation_and_single_bit_flip_of_every_fixture() {
    for frame in fixtures::ALL {
        for len in 0..=frame.len() {
            let _ = parse_all(&frame[..len]);
        }
        let mut f = frame.to_vec();
        for bit in 0..f.len() * 8 {
            f[bit / 8] ^= 1 << (bit % 8);
            let _ = parse_all(&f);
            f[bit / 8] ^= 1 << (bit % 8);
        }
    }
}

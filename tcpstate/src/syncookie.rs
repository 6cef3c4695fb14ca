//! SYN cookies (D. J. Bernstein's scheme as Linux and DPVS implement it): the
//! switch answers a SYN with a SYN-ACK whose initial sequence number *is* the state
//! it would otherwise have kept, so a SYN flood allocates nothing. The client's ACK
//! (ack = our ISN + 1) brings the state back and proves the client saw our SYN-ACK,
//! i.e. owns its source address.
//!
//! # The ISN (Linux `secure_tcp_syn_cookie` / `__cookie_v4_check`)
//!
//! ```text
//! isn = H1(key, tuple, client_isn)
//!     + (counter mod 256) << 24
//!     + (H2(key, tuple, client_isn, counter, mss_index) mod 2^22) << 2
//!     + mss_index
//! ```
//!
//! `counter` is `now_ms / 64_000` (Linux's one-minute `tcp_cookie_time`, rounded to
//! 64 s). H1 hides the counter and the MSS index from anyone without the key; H2 is
//! a 22-bit MAC over the tuple, the client's ISN, the counter and the MSS index. H1
//! and H2 are SipHash-2-4 (what Linux uses since 4.13), with distinct inputs per
//! role.
//!
//! One deliberate difference from Linux, which adds the MSS index to its hash
//! instead of hashing it: there, flipping the lowest bits of a valid cookie yields
//! another valid cookie with a different MSS. Here the index is authenticated, so
//! any change to the acknowledgment number fails (a forger's odds are the same
//! 2^-22 per secret and age as with Linux's 4 valid values in 2^24).
//!
//! # The options (Linux `cookie_init_timestamp` / `cookie_timestamp_decode`)
//!
//! Only the MSS fits in the ISN. When the client offered timestamps it will echo our
//! TSval in every later segment, so the low 6 bits of our SYN-ACK's TSval carry the
//! rest: window scale (4 bits, 0xf = none), SACK-permitted (1 bit) and a "cookie
//! options present" marker (1 bit, always set). The other 26 bits are the
//! millisecond clock, rounded down so the TSval never runs ahead of `now_ms`.
//! Without timestamps the client gets no window scaling and no SACK: the well-known
//! price of SYN cookies, the same as with Linux.
//!
//! # Secrets
//!
//! Two 128-bit keys, current and previous. Cookies are made with the current one and
//! accepted with either, so a rotation never invalidates the cookies in flight as
//! long as the rotation period is at least the cookie lifetime
//! ([`MAX_AGE_PERIODS`] + 1 counter periods, about 3 min). The caller supplies fresh
//! randomness: this module reads no clock and no entropy source.
use std::fmt;
use std::net::Ipv4Addr;

use crate::wire::SeqNumber;

/// MSS values a cookie can carry (Linux's `msstab` for IPv4): the common Ethernet
/// values, and 536, the default every IPv4 host must accept (RFC 9293 §3.7.1).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// Length of one counter period.
pub const COUNTER_PERIOD_MS: u64 = 64_000;

/// A cookie is accepted when its counter is at most this many periods behind the
/// current one: between 2 and 3 periods (128 to 192 s) of validity.
pub const MAX_AGE_PERIODS: u64 = 2;

/// Bits of the ISN below the counter: the MAC and the MSS index.
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Bits of the MSS index, the lowest of the ISN.
const MSS_BITS: u32 = 2;
const MSS_MASK: u32 = (1 << MSS_BITS) - 1;
const MAC_MASK: u32 = COOKIE_MASK >> MSS_BITS;
/// Counter values are compared modulo 2^(32 - COOKIE_BITS).
const COUNTER_MASK: u64 = (1 << (32 - COOKIE_BITS)) - 1;

/// The low TSval bits holding options.
const TS_OPT_BITS: u32 = 6;
const TS_OPT_MASK: u32 = (1 << TS_OPT_BITS) - 1;
const TS_WSCALE_MASK: u32 = 0x0f;
const TS_SACK: u32 = 0x10;
const TS_USED: u32 = 0x20;

/// The largest window shift RFC 7323 §2.3 allows; larger offers are read as 14.
const MAX_WINDOW_SCALE: u8 = 14;

/// What the client's SYN negotiated, as far as a SYN-ACK answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SynOptions {
    /// To [`SynCookies::make`]: the client's MSS option (536 when absent). From
    /// [`SynCookies::check`]: the MSS the cookie carried, a [`MSS_TABLE`] value.
    pub mss: u16,
    /// The client's window shift, if it offered window scaling.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: bool,
}

/// What to put into the SYN-ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    /// Our initial sequence number.
    pub isn: SeqNumber,
    /// Our TSval, when the client offered timestamps (echo its TSval as TSecr).
    pub tsval: Option<u32>,
    /// The MSS the cookie encodes, the largest [`MSS_TABLE`] value not above the
    /// client's (536 when the client's is smaller still): what the connection will
    /// use, so the SYN-ACK should announce no more than the switch's own MSS and the
    /// switch should send no more than this.
    pub mss: u16,
}

/// Why an ACK is not a valid answer to one of our cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CookieError {
    /// No secret and no recent counter explain the acknowledgment number: a forged
    /// or damaged cookie, a different 4-tuple or client ISN, or a stray ACK.
    BadHash,
    /// A genuine cookie, but older than [`MAX_AGE_PERIODS`] (reported only while the
    /// counter has not wrapped, i.e. up to 256 periods; older ones are `BadHash`).
    Expired,
    /// The cookie is genuine but the echoed TSecr does not carry our option bits
    /// (every TSval we put in a SYN-ACK does): the client did not echo our TSval.
    BadTimestamp,
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CookieError::BadHash => "SYN cookie does not verify",
            CookieError::Expired => "SYN cookie expired",
            CookieError::BadTimestamp => "SYN cookie timestamp echo lacks the option bits",
        })
    }
}

impl std::error::Error for CookieError {}

/// The millisecond TSval clock the cookies use: the caller's `now_ms`, modulo 2^32
/// (RFC 7323 allows 1 ms to 1 s per tick). A cookie's TSval is never ahead of it, so
/// a connection that goes on stamping segments with this clock is monotonic from
/// the SYN-ACK on, as the client's PAWS check requires.
#[inline]
pub fn timestamp_clock(now_ms: u64) -> u32 {
    now_ms as u32
}

/// The secrets and the rotation schedule. One per worker core (or shared
/// read-only): `make` and `check` take `&self`.
#[derive(Clone)]
pub struct SynCookies {
    current: SipKey,
    previous: SipKey,
    rotate_every_ms: u64,
    /// When the current secret was installed; `None` until the first
    /// [`maybe_rotate`](Self::maybe_rotate) or [`rotate`](Self::rotate) starts the
    /// schedule.
    rotated_at_ms: Option<u64>,
}

/// Secrets are never printed.
impl fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SynCookies")
            .field("rotate_every_ms", &self.rotate_every_ms)
            .field("rotated_at_ms", &self.rotated_at_ms)
            .finish_non_exhaustive()
    }
}

impl SynCookies {
    /// `seed` gives the first current (bytes 0..16) and previous (16..32) secrets.
    /// `rotate_every_ms` should be at least `(MAX_AGE_PERIODS + 1) *
    /// COUNTER_PERIOD_MS` (192 s): a shorter period cuts the life of cookies made
    /// just before two quick rotations.
    pub fn new(seed: [u8; 32], rotate_every_ms: u64) -> Self {
        let mut current = [0; 16];
        let mut previous = [0; 16];
        current.copy_from_slice(&seed[..16]);
        previous.copy_from_slice(&seed[16..]);
        SynCookies {
            current: SipKey::new(current),
            previous: SipKey::new(previous),
            rotate_every_ms,
            rotated_at_ms: None,
        }
    }

    pub fn rotate_every_ms(&self) -> u64 {
        self.rotate_every_ms
    }

    /// Makes `fresh` the current secret; the current one becomes the previous one
    /// (still accepted), the previous one is forgotten.
    pub fn rotate(&mut self, now_ms: u64, fresh: [u8; 16]) {
        self.previous = self.current;
        self.current = SipKey::new(fresh);
        self.rotated_at_ms = Some(now_ms);
    }

    /// Rotates when `rotate_every_ms` has passed since the last rotation, and says
    /// whether it did. The first call only starts the schedule (the caller's clock
    /// may start anywhere), so `fresh` is unused then.
    pub fn maybe_rotate(&mut self, now_ms: u64, fresh: [u8; 16]) -> bool {
        match self.rotated_at_ms {
            None => {
                self.rotated_at_ms = Some(now_ms);
                false
            }
            Some(at) if now_ms.saturating_sub(at) >= self.rotate_every_ms => {
                self.rotate(now_ms, fresh);
                true
            }
            Some(_) => false,
        }
    }

    /// The cookie answering a SYN from `src:sport` to `dst:dport` with sequence
    /// number `client_isn` and options `opts`.
    #[allow(clippy::too_many_arguments)] // the 4-tuple as the segment carries it
    pub fn make(
        &self,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        client_isn: SeqNumber,
        opts: &SynOptions,
        now_ms: u64,
    ) -> Cookie {
        let tuple = Tuple::new(src, sport, dst, dport, client_isn);
        let counter = now_ms / COUNTER_PERIOD_MS;
        let index = mss_index(opts.mss);
        let h1 = tuple.hash(&self.current, Role::Mask);
        let mac = tuple.hash(&self.current, Role::Auth(counter, index as u8));
        let isn = h1
            .wrapping_add(((counter & COUNTER_MASK) as u32) << COOKIE_BITS)
            .wrapping_add((mac & MAC_MASK) << MSS_BITS)
            .wrapping_add(index as u32);
        let tsval = opts.timestamps.then(|| {
            let mut options = match opts.window_scale {
                Some(shift) => u32::from(shift.min(MAX_WINDOW_SCALE)),
                None => TS_WSCALE_MASK,
            };
            if opts.sack_permitted {
                options |= TS_SACK;
            }
            options |= TS_USED;
            // As Linux: the clock with its low bits replaced, moved back one step if
            // that would put it ahead of the clock.
            let clock = timestamp_clock(now_ms);
            let mut ts = (clock & !TS_OPT_MASK) | options;
            if options > clock & TS_OPT_MASK {
                ts = ts.wrapping_sub(1 << TS_OPT_BITS);
            }
            ts
        });
        Cookie {
            isn: SeqNumber(isn),
            tsval,
            mss: MSS_TABLE[index],
        }
    }

    /// Checks the client's ACK completing a handshake we answered with a cookie:
    /// `client_seq` is its sequence number (the client's ISN + 1), `ack` its
    /// acknowledgment number (our ISN + 1), `tsecr` its echoed timestamp if it sent
    /// the timestamps option. The tuple is the same client-to-switch orientation as
    /// in [`make`](Self::make).
    ///
    /// On success the options the client's SYN negotiated: the cookie's MSS, and
    /// window scale and SACK only if the ACK carries timestamps (as with Linux).
    #[allow(clippy::too_many_arguments)] // the 4-tuple as the segment carries it
    pub fn check(
        &self,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        client_seq: SeqNumber,
        ack: SeqNumber,
        tsecr: Option<u32>,
        now_ms: u64,
    ) -> Result<SynOptions, CookieError> {
        let tuple = Tuple::new(src, sport, dst, dport, client_seq - 1);
        let cookie = (ack - 1).0;
        let now = now_ms / COUNTER_PERIOD_MS;
        let mut expired = false;
        let mut found = None;
        for key in [&self.current, &self.previous] {
            let v = cookie.wrapping_sub(tuple.hash(key, Role::Mask));
            let age = (now.wrapping_sub(u64::from(v >> COOKIE_BITS))) & COUNTER_MASK;
            // A counter "from the future" (a clock before the cookie's) cannot be ours.
            let Some(made) = now.checked_sub(age) else {
                continue;
            };
            let index = v & MSS_MASK;
            let mac = tuple.hash(key, Role::Auth(made, index as u8));
            if (v & COOKIE_MASK) >> MSS_BITS == mac & MAC_MASK {
                if age <= MAX_AGE_PERIODS {
                    found = Some(MSS_TABLE[index as usize]);
                    break;
                }
                expired = true;
            }
        }
        let Some(mss) = found else {
            return Err(if expired {
                CookieError::Expired
            } else {
                CookieError::BadHash
            });
        };
        let mut opts = SynOptions {
            mss,
            ..SynOptions::default()
        };
        if let Some(ecr) = tsecr {
            if ecr & TS_USED == 0 {
                return Err(CookieError::BadTimestamp);
            }
            opts.timestamps = true;
            opts.sack_permitted = ecr & TS_SACK != 0;
            let shift = (ecr & TS_WSCALE_MASK) as u8;
            opts.window_scale = (u32::from(shift) != TS_WSCALE_MASK).then_some(shift);
        }
        Ok(opts)
    }
}

/// The index of the largest table MSS not above `mss`; 0 (536) below the table.
fn mss_index(mss: u16) -> usize {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0)
}

/// What each hash is for: H1 masks the counter and index; H2 authenticates the
/// counter and the MSS index.
#[derive(Clone, Copy)]
enum Role {
    Mask,
    Auth(u64, u8),
}

/// The hash input common to both roles.
struct Tuple([u8; 26]);

impl Tuple {
    fn new(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, client_isn: SeqNumber) -> Self {
        let mut m = [0u8; 26];
        m[0..4].copy_from_slice(&src.octets());
        m[4..8].copy_from_slice(&dst.octets());
        m[8..10].copy_from_slice(&sport.to_be_bytes());
        m[10..12].copy_from_slice(&dport.to_be_bytes());
        m[12..16].copy_from_slice(&client_isn.0.to_be_bytes());
        Tuple(m)
    }

    /// Bytes 16..24 hold the counter, byte 24 the role and byte 25 the MSS index
    /// (all 0 for the mask), so the two hashes never share an input.
    fn hash(&self, key: &SipKey, role: Role) -> u32 {
        let mut m = self.0;
        let (counter, tag, index) = match role {
            Role::Mask => (0, 0, 0),
            Role::Auth(counter, index) => (counter, 1, index),
        };
        m[16..24].copy_from_slice(&counter.to_le_bytes());
        m[24] = tag;
        m[25] = index;
        key.hash(&m) as u32
    }
}

/// A SipHash-2-4 key (Aumasson and Bernstein, 2012), kept as its two words.
#[derive(Clone, Copy)]
struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    fn new(key: [u8; 16]) -> Self {
        let (a, b) = key.split_at(8);
        SipKey {
            k0: u64::from_le_bytes(a.try_into().expect("8 bytes")),
            k1: u64::from_le_bytes(b.try_into().expect("8 bytes")),
        }
    }

    /// SipHash-2-4 of `msg`: two compression rounds per 8-byte word, four
    /// finalization rounds.
    fn hash(&self, msg: &[u8]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut words = msg.chunks_exact(8);
        for w in &mut words {
            let m = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            v[3] ^= m;
            sip_round(&mut v);
            sip_round(&mut v);
            v[0] ^= m;
        }
        let mut last = (msg.len() as u64) << 56;
        for (i, &b) in words.remainder().iter().enumerate() {
            last |= u64::from(b) << (8 * i);
        }
        v[3] ^= last;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= last;
        v[2] ^= 0xff;
        for _ in 0..4 {
            sip_round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

#[inline]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests;

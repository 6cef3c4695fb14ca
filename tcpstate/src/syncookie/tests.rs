use super::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
const SPORT: u16 = 33800;
const DPORT: u16 = 80;
/// Some time well into a counter period, so tests can move a few periods either way.
const T0: u64 = 1_000 * COUNTER_PERIOD_MS + 12_345;

fn seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    s
}

fn cookies() -> SynCookies {
    SynCookies::new(seed(), 10 * 60_000)
}

fn opts(mss: u16, window_scale: Option<u8>, sack: bool, ts: bool) -> SynOptions {
    SynOptions {
        mss,
        window_scale,
        sack_permitted: sack,
        timestamps: ts,
    }
}

/// Makes a cookie and checks the ACK a well-behaved client would send for it.
fn round_trip(
    c: &SynCookies,
    isn: SeqNumber,
    o: &SynOptions,
    made_ms: u64,
    checked_ms: u64,
) -> Result<SynOptions, CookieError> {
    let cookie = c.make(CLIENT, SPORT, VIP, DPORT, isn, o, made_ms);
    c.check(
        CLIENT,
        SPORT,
        VIP,
        DPORT,
        isn + 1,
        cookie.isn + 1,
        cookie.tsval,
        checked_ms,
    )
}

#[test]
fn siphash_reference_vectors() {
    // The paper's appendix: key 00..0f, message 00..0e.
    let mut key = [0u8; 16];
    for (i, b) in key.iter_mut().enumerate() {
        *b = i as u8;
    }
    let k = SipKey::new(key);
    let msg: Vec<u8> = (0..15).collect();
    assert_eq!(k.hash(&msg), 0xa129_ca61_49be_45e5);
    // The first line of the reference implementation's vectors (empty message).
    assert_eq!(k.hash(&[]), 0x726f_db47_dd0e_0e31);
}

#[test]
fn round_trip_every_option_combination() {
    let c = cookies();
    let mss_cases = [
        (0, 536),
        (88, 536),
        (535, 536),
        (536, 536),
        (537, 536),
        (1299, 536),
        (1300, 1300),
        (1439, 1300),
        (1440, 1440),
        (1459, 1440),
        (1460, 1460),
        (8960, 1460),
        (65535, 1460),
    ];
    let mut scales: Vec<Option<u8>> = vec![None];
    scales.extend((0..=15).map(Some));
    let mut isn = SeqNumber(0xffff_fff0);
    for (i, &(mss, want_mss)) in mss_cases.iter().enumerate() {
        for &ws in &scales {
            for sack in [false, true] {
                for ts in [false, true] {
                    isn += 7919;
                    let now = T0 + (i as u64) * 997;
                    let o = opts(mss, ws, sack, ts);
                    let cookie = c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, now);
                    assert_eq!(cookie.mss, want_mss);
                    assert_eq!(cookie.tsval.is_some(), ts);
                    let got = round_trip(&c, isn, &o, now, now).unwrap();
                    let want = if ts {
                        opts(want_mss, ws.map(|s| s.min(14)), sack, true)
                    } else {
                        // No timestamps: only the MSS survives, as with Linux.
                        opts(want_mss, None, false, false)
                    };
                    assert_eq!(got, want, "{o:?}");
                }
            }
        }
    }
}

#[test]
fn tsval_is_the_clock_never_ahead() {
    let c = cookies();
    let isn = SeqNumber(42);
    let mut last = 0u32;
    // Across the 2^32 ms wrap of the TS clock, too.
    let start = (1u64 << 32) - 500;
    for step in 0..1_000u64 {
        let now = start + step;
        for o in [
            opts(1460, Some(14), true, true),
            opts(1460, None, false, true),
            opts(536, Some(0), false, true),
        ] {
            let ts = c
                .make(CLIENT, SPORT, VIP, DPORT, isn, &o, now)
                .tsval
                .unwrap();
            let clock = timestamp_clock(now);
            let behind = clock.wrapping_sub(ts);
            assert!(behind < 64, "TSval {ts} vs clock {clock}");
            assert_ne!(ts & TS_USED, 0);
            if step > 64 {
                // Monotonic once a full option step has passed (by serial order).
                assert!(ts.wrapping_sub(last) as i32 > -64);
            }
            last = ts;
        }
    }
}

#[test]
fn every_flipped_bit_fails() {
    let c = cookies();
    let isn = SeqNumber(4_271_207_097);
    let o = opts(1460, Some(7), true, true);
    let cookie = c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0);
    for bit in 0..32 {
        let forged = SeqNumber(cookie.isn.0 ^ (1 << bit)) + 1;
        assert_eq!(
            c.check(CLIENT, SPORT, VIP, DPORT, isn + 1, forged, cookie.tsval, T0),
            Err(CookieError::BadHash),
            "bit {bit}"
        );
        // The client's ISN is authenticated too.
        let seq = SeqNumber((isn + 1).0 ^ (1 << bit));
        assert_eq!(
            c.check(
                CLIENT,
                SPORT,
                VIP,
                DPORT,
                seq,
                cookie.isn + 1,
                cookie.tsval,
                T0
            ),
            Err(CookieError::BadHash),
            "client seq bit {bit}"
        );
    }
}

#[test]
fn tuple_change_fails() {
    let c = cookies();
    let isn = SeqNumber(1);
    let o = opts(1440, None, false, false);
    let cookie = c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0);
    let ack = cookie.isn + 1;
    let other = Ipv4Addr::new(10, 250, 0, 3);
    let cases = [
        (other, SPORT, VIP, DPORT),
        (CLIENT, SPORT + 1, VIP, DPORT),
        (CLIENT, SPORT, other, DPORT),
        (CLIENT, SPORT, VIP, DPORT + 1),
        // Swapped orientation: the ACK must come from the SYN's sender.
        (VIP, DPORT, CLIENT, SPORT),
    ];
    for (src, sport, dst, dport) in cases {
        assert_eq!(
            c.check(src, sport, dst, dport, isn + 1, ack, None, T0),
            Err(CookieError::BadHash),
            "{src}:{sport} > {dst}:{dport}"
        );
    }
    assert!(c
        .check(CLIENT, SPORT, VIP, DPORT, isn + 1, ack, None, T0)
        .is_ok());
}

#[test]
fn valid_for_two_periods_expired_after_three() {
    let c = cookies();
    let isn = SeqNumber(77);
    let o = opts(1300, Some(2), true, true);
    let start = (T0 / COUNTER_PERIOD_MS) * COUNTER_PERIOD_MS; // start of a period
    for made in [start, start + COUNTER_PERIOD_MS - 1] {
        let period_end = start + COUNTER_PERIOD_MS;
        // Valid to the end of the period two after the one it was made in.
        for checked in [made, period_end, period_end + 2 * COUNTER_PERIOD_MS - 1] {
            assert!(round_trip(&c, isn, &o, made, checked).is_ok());
        }
        for checked in [
            period_end + 2 * COUNTER_PERIOD_MS,
            made + 3 * COUNTER_PERIOD_MS,
            made + 100 * COUNTER_PERIOD_MS,
        ] {
            assert_eq!(
                round_trip(&c, isn, &o, made, checked),
                Err(CookieError::Expired),
                "made {made}, checked {checked}"
            );
        }
    }
    // After the 8-bit counter wraps the cookie cannot be told from garbage.
    assert_eq!(
        round_trip(&c, isn, &o, start, start + 256 * COUNTER_PERIOD_MS),
        Err(CookieError::BadHash)
    );
    // A cookie from the future (clock went back) is not accepted either.
    assert!(round_trip(&c, isn, &o, start + COUNTER_PERIOD_MS, start).is_err());
}

#[test]
fn counter_wrap() {
    let c = cookies();
    let isn = SeqNumber(0xdead_beef);
    let o = opts(1460, Some(9), false, true);
    // Counter 255 is 0xff in the cookie; 256 and 257 read as 0 and 1.
    for made_counter in [255u64, 511, 254] {
        let made = made_counter * COUNTER_PERIOD_MS + 5;
        for (age, ok) in [(0, true), (1, true), (2, true), (3, false)] {
            let checked = made + age * COUNTER_PERIOD_MS;
            let got = round_trip(&c, isn, &o, made, checked);
            if ok {
                assert_eq!(got, Ok(opts(1460, Some(9), false, true)));
            } else {
                assert_eq!(got, Err(CookieError::Expired));
            }
        }
    }
    // The very first periods of the caller's clock work too.
    assert!(round_trip(&c, isn, &o, 0, 2 * COUNTER_PERIOD_MS).is_ok());
}

#[test]
fn rotation_keeps_previous_valid() {
    let mut c = cookies();
    let isn = SeqNumber(5);
    let o = opts(1460, None, true, true);
    let a = c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0);
    let check = |c: &SynCookies, k: &Cookie| {
        c.check(CLIENT, SPORT, VIP, DPORT, isn + 1, k.isn + 1, k.tsval, T0)
    };
    assert!(check(&c, &a).is_ok());
    c.rotate(T0, [0x11; 16]);
    assert!(check(&c, &a).is_ok(), "made with the now previous secret");
    let b = c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0);
    assert_ne!(a.isn, b.isn, "the new secret makes other cookies");
    assert!(check(&c, &b).is_ok());
    c.rotate(T0, [0x22; 16]);
    assert_eq!(
        check(&c, &a),
        Err(CookieError::BadHash),
        "two rotations ago"
    );
    assert!(check(&c, &b).is_ok());
}

#[test]
fn maybe_rotate_follows_the_period() {
    let mut c = SynCookies::new(seed(), 300_000);
    assert_eq!(c.rotate_every_ms(), 300_000);
    let isn = SeqNumber(9);
    let o = opts(536, None, false, false);
    let first = c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0);
    // The first call starts the schedule without rotating.
    assert!(!c.maybe_rotate(T0, [1; 16]));
    assert!(!c.maybe_rotate(T0 + 299_999, [1; 16]));
    assert_eq!(c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0), first);
    assert!(c.maybe_rotate(T0 + 300_000, [1; 16]));
    assert_ne!(c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0), first);
    assert!(!c.maybe_rotate(T0 + 599_999, [2; 16]));
    assert!(c.maybe_rotate(T0 + 600_000, [2; 16]));
    // A clock that went backwards does not rotate (nor panic).
    assert!(!c.maybe_rotate(0, [3; 16]));
    // Secrets stay out of debug output.
    let shown = format!("{c:?}");
    assert!(shown.contains("rotate_every_ms") && !shown.contains("k0"));
}

#[test]
fn timestamp_echo_rules() {
    let c = cookies();
    let isn = SeqNumber(1000);
    let o = opts(1460, Some(7), true, true);
    let k = c.make(CLIENT, SPORT, VIP, DPORT, isn, &o, T0);
    let ts = k.tsval.unwrap();
    let check = |ecr: Option<u32>| c.check(CLIENT, SPORT, VIP, DPORT, isn + 1, k.isn + 1, ecr, T0);
    assert_eq!(check(Some(ts)), Ok(o));
    // An ACK without timestamps loses window scaling and SACK (Linux does the same).
    assert_eq!(check(None), Ok(opts(1460, None, false, false)));
    // An echo that is not one of our TSvals.
    assert_eq!(check(Some(ts & !TS_USED)), Err(CookieError::BadTimestamp));
    // The hash is checked first: a bad cookie is BadHash whatever the echo.
    assert_eq!(
        c.check(CLIENT, SPORT, VIP, DPORT, isn + 1, k.isn + 2, Some(0), T0),
        Err(CookieError::BadHash)
    );
}

#[test]
fn random_acks_are_rejected() {
    // A blind attacker guessing acknowledgment numbers: the cookie's 24-bit
    // authenticator makes a hit about 4 in 2^24 per secret and age.
    let c = cookies();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut accepted = 0;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ack = SeqNumber(x as u32);
        let seq = SeqNumber((x >> 32) as u32);
        if c.check(CLIENT, SPORT, VIP, DPORT, seq, ack, None, T0)
            .is_ok()
        {
            accepted += 1;
        }
    }
    assert!(accepted <= 1, "{accepted} random ACKs accepted");
}

#[test]
fn errors_display() {
    assert_eq!(CookieError::Expired.to_string(), "SYN cookie expired");
    assert_eq!(
        CookieError::BadHash.to_string(),
        "SYN cookie does not verify"
    );
}

//! Issue 16 point 5 end to end: pre-allocation at SYN time (paper 002,
//! `vips[].preallocate`).
//!
//! When the switch answers a SYN on the handoff VIP it guesses a backend of the default
//! pool (a hash of the client's address and port over the members that can take it) and
//! has that backend's agent replay the handshake into its kernel at once. A first request
//! whose pool has the guessed backend goes there and finds the kernel connection ready
//! (`prealloc_hits`); one for another pool cancels the guess with a RST
//! (`prealloc_cancelled`), and a client that never sends a request leaves a prepared flow
//! that its agent resets after `PREPARED_MS` (`prepared_expired`).
//!
//! Checked with one and with two switch workers: content from each rule's pool, the
//! counters adding up (every prepare used or cancelled, but the one of the silent
//! client, which expires), and no kernel connection left established on any backend.
use std::time::Duration;

use webswitch_tests::handoff::*;
use webswitch_tests::{counter, root_or_skip, testbed_lock, Testbed};

/// Established TCP connections from the client to the VIP in backend `b`'s kernel.
fn established(tb: &Testbed, b: u8) -> usize {
    let filter = format!("( sport = :80 and dst {} )", tb.ip(0, 2));
    let out = tb.exec(
        &format!("be{b}"),
        &["ss", "-Htn", "state", "established", &filter],
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn scenario(tb: &Testbed, workers: usize) {
    let mut config = switch_config(tb, workers);
    config["vips"][0]["preallocate"] = true.into();
    let (agents, sw) = start_all_with(tb, &config);
    let vip = tb.ip(0, 10);

    // The default pool (the guess is always in it), the images pool (be1) and the apps
    // pool (be2): the guess is used when the request's pool has it, cancelled if not.
    for i in 0..12 {
        let url = format!("http://{vip}/session/p{i}");
        let (be, body) = tb.curl_backend("pa", 30, &[&url]);
        assert_eq!(body, format!("session on {be}: PHPSESSID=\n"));
    }
    for i in 0..6 {
        let (be, _) = tb.curl_backend(
            "pi",
            30,
            &["-o", "/dev/null", &format!("http://{vip}/img/logo.png")],
        );
        assert_eq!(be, "be1", "image {i}");
        let (be, body) = tb.curl_backend("pp", 30, &[&format!("http://{vip}/app/x{i}")]);
        assert_eq!(
            (be.as_str(), body.as_str()),
            ("be2", format!("app on be2: /app/x{i}\n").as_str())
        );
    }
    // A client that connects and says nothing: its prepared flow expires.
    let script = format!(
        "import socket, time\ns = socket.create_connection(('{vip}', 80), timeout=5)\n\
         time.sleep(0.5)\ns.close()\nprint('ok')"
    );
    let out = tb.exec("cli", &["python3", "-c", &script], Duration::from_secs(20));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    // Past PREPARED_MS (3 s) and a sweep: nothing is left open in any kernel.
    std::thread::sleep(Duration::from_millis(4000));
    for b in BACKENDS {
        assert_eq!(established(tb, b), 0, "be{b} keeps a client connection");
    }
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    let prepared = counter(t, &["prealloc_prepared"]);
    let hits = counter(t, &["prealloc_hits"]);
    let cancelled = counter(t, &["prealloc_cancelled"]);
    // One prepare per connection (the wait for readiness made one or more too), each
    // used or cancelled by its first request but the silent client's.
    assert!(prepared >= 25, "{t}");
    assert_eq!(counter(t, &["prealloc_limited"]), 0, "{t}");
    assert!(hits >= 12, "every default-pool request: {t}");
    assert_eq!(hits + cancelled + 1, prepared, "{t}");
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    // A clean link: no head had to be sent twice. (A response the client dropped, e.g.
    // for a timestamp that went back past the switch's, shows up here as resends.)
    assert_eq!(counter(t, &["handoff_heads_resent"]), 0, "{t}");
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    let sums = stop_agents_counting(agents, &["prepared", "prepared_expired", "handoffs_taken"]);
    assert_eq!(sums[0], prepared, "the agents got every prepare");
    assert_eq!(sums[1], 1, "only the silent client's prepare expired");
    // Every request was taken once more after a cancel (a fresh handoff elsewhere).
    assert_eq!(sums[2], prepared + cancelled, "{sums:?}");
}

#[test]
fn handoff_preallocate_one_worker() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hpre1", 227);
    scenario(&tb, 1);
}

#[test]
fn handoff_preallocate_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hpre2", 228);
    scenario(&tb, 2);
}

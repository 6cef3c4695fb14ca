//! Issue 16 point 3 end to end: handoff to a routed backend through IP-in-IP and GRE.
//!
//! On the handoff testbed, be4 sits in its own subnet (10.N.2.0/24) behind the router: the
//! switch reaches it only through its backend port's gateway. With `"tunnel": "ipip"` (or
//! `"gre"`) the switch wraps the request head it hands off, and every later client segment,
//! in an outer IPv4 header (and a GRE header) to be4's address; be4's agent takes them off
//! in userspace (the kernel has no tunnel devices) and its kernel answers the client
//! directly, past the switch. IP-in-IP is checked with one switch worker, GRE with two (and
//! both encapsulations by the unit tests of `tcpstate::wire::tunnel`): content from be4, a
//! 100 MB download and a 20 MB
//! PUT byte-exact, the agent decapsulating, nothing spliced, and the on-link backends still
//! reached by MAC rewrite beside it. The control-connection transport is checked through
//! IP-in-IP with two workers: its handoff requests and acks are plain datagrams the router
//! carries, the client's later segments still go through the tunnel.
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webswitch_tests::handoff::agent_config;
use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Switch, Testbed};

/// An agent on backend `b` (1..=4), registering with the switch.
fn agent(tb: &Testbed, b: u8) -> Switch {
    Switch::start_in(
        tb,
        &format!("be{b}"),
        &format!("{}-agent{b}", tb.name),
        &agent_config(tb, b),
    )
}

fn switch_config(tb: &Testbed, workers: usize, tunnel: &str, transport: &str) -> Value {
    let mut c = tb.config(workers);
    c["vips"][0]["mode"] = "handoff".into();
    c["handoff"]["transport"] = transport.into();
    c["health"] = json!({ "interval_ms": 300, "timeout_ms": 250 });
    c["tcp"]["fin_timeout_ms"] = 1000.into();
    c["tcp"]["closed_linger_ms"] = 300.into();
    c["ports"][1]["gateway"] = tb.ip(1, 254).into();
    c["backends"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "be4", "address": tb.ip(2, 14), "port": 80, "tunnel": tunnel }));
    c["pools"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "routed", "backends": ["be4"], "scheduler": "round_robin" }));
    c["rules"].as_array_mut().unwrap().insert(
        0,
        json!({ "name": "routed",
                "match": { "header": { "name": "X-Route", "value_regex": "^be4$" } },
                "pool": "routed" }),
    );
    c
}

/// Waits until `path` (with curl arguments `extra`) is answered 200 through the switch
/// (the backends' MACs and, for be4, the gateway's are learned by the health checks).
fn wait_for(tb: &Testbed, path: &str, extra: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://{}{path}", tb.ip(0, 10));
    loop {
        let mut args = vec![
            "curl",
            "-s",
            "--max-time",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = tb.exec("cli", &args, Duration::from_secs(10));
        if String::from_utf8_lossy(&out.stdout) == "200" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: no handed-off answer within 30 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn scenario(tb: &Testbed, workers: usize, tunnel: &str, transport: &str) {
    let dir = format!("/tmp/{}-testbed", tb.name);
    let agents: Vec<Switch> = [1u8, 2, 3, 4].iter().map(|&b| agent(tb, b)).collect();
    let sw = Switch::start(tb, &switch_config(tb, workers, tunnel, transport));
    wait_for(tb, "/whoami", &[]);
    wait_for(tb, "/whoami", &["-H", "X-Route: be4"]);
    let vip = tb.ip(0, 10);
    let to_be4 = ["-H", "X-Route: be4"];

    // Through the tunnel (the rule picks be4 by a header), and beside it by MAC rewrite.
    let url = format!("http://{vip}/whoami");
    let (be, text) = tb.curl_backend("who4", 30, &[to_be4[0], to_be4[1], &url]);
    assert_eq!((be.as_str(), text.as_str()), ("be4", "be4\n"));
    let (be, _) = tb.curl_backend(
        "img",
        30,
        &["-o", "/dev/null", &format!("http://{vip}/img/logo.png")],
    );
    assert_eq!(be, "be1");

    // Bulk: 100 MB down and a 20 MB PUT through the tunnel, byte-exact.
    let body = format!("/tmp/{}-tun-body", tb.name);
    let url = format!("http://{vip}/big/100M.bin");
    let (be, _) = tb.curl_backend("big4", 120, &[to_be4[0], to_be4[1], "-o", &body, &url]);
    assert_eq!(be, "be4");
    let want = std::fs::read_to_string(format!("{dir}/be4/www/big/100M.bin.sha256")).unwrap();
    assert_eq!(sha256_file(&body), want.trim(), "100 MB from be4");
    let _ = std::fs::remove_file(&body);

    let up = format!("/tmp/{}-tun-up", tb.name);
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    std::fs::write(&up, &data).unwrap();
    let url = format!("http://{vip}/upload/t{workers}.bin");
    let (be, _) = tb.curl_backend("put4", 120, &[to_be4[0], to_be4[1], "-T", &up, &url]);
    assert_eq!(be, "be4");
    assert_eq!(
        sha256_file(&format!("{dir}/be4/www/upload/t{workers}.bin")),
        sha256_file(&up),
        "20 MB PUT to be4"
    );
    let _ = std::fs::remove_file(&up);

    std::thread::sleep(Duration::from_millis(2500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    assert_eq!(counter(t, &["spliced_bytes_b2c"]), 0, "{t}");
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    assert_eq!(counter(t, &["flows_live"]), 0, "{t}");
    let started = counter(t, &["handoffs_started"]);
    let taken = counter(t, &["handoff_acks"]) + counter(t, &["handoff_heard_of"]);
    if transport == "control" {
        assert_eq!(taken, started, "each handoff taken once: {t}");
    } else {
        assert_eq!(counter(t, &["handoff_requests_sent"]), 0, "{t}");
    }
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    // The client received 120 MB; the switch sent it handshakes and acks only.
    let tx = counter(&stats["ports"]["client"], &["tx_bytes"]);
    assert!(tx < 1 << 20, "the switch sent the client {tx} bytes");
    for (i, a) in agents.into_iter().enumerate() {
        let s = a.stop();
        eprintln!("agent be{}: {s}", i + 1);
        for k in [
            "drop_bad_option",
            "drop_bad_syn_ack",
            "drop_no_mbuf",
            "drop_table_full",
        ] {
            assert_eq!(counter(&s, &[k]), 0, "be{}: {k}: {s}", i + 1);
        }
        let decap = counter(&s, &["decapsulated"]);
        if i == 3 {
            // Every handed-off segment to be4 came through the tunnel: the 20 MB PUT alone
            // is over 14,000 of them.
            assert!(decap > 14_000, "be4 decapsulated {decap}");
            assert!(counter(&s, &["handoffs_established"]) >= 4, "{s}");
            if transport == "control" {
                // Its requests came through the router, not the tunnel.
                assert!(counter(&s, &["handoff_requests"]) >= 4, "{s}");
            }
        } else {
            assert_eq!(decap, 0, "be{} is on the LAN: no tunnel", i + 1);
        }
    }
}

#[test]
fn handoff_through_ipip_one_worker() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hotn1", 219);
    scenario(&tb, 1, "ipip", "inline");
}

#[test]
fn handoff_through_gre_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hotn2", 220);
    scenario(&tb, 2, "gre", "inline");
}

#[test]
fn handoff_control_transport_through_ipip_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hotc2", 196);
    scenario(&tb, 2, "ipip", "control");
}

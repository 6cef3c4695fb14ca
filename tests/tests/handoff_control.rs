//! Issue 16, the control-connection transport (`handoff.transport: "control"`, paper 004)
//! when its channel loses datagrams: an nft rule on the backend bridge drops every other
//! handoff request (UDP to the agents' control port) and every other ack (UDP from it),
//! deterministically, so that requests must be sent again and agents must repeat acks for
//! heads they already took (or the switch learns from the client's acknowledgments that
//! the kernel has the connection). Every transfer still completes byte-exact from the
//! right backend, no handoff fails, each handoff is taken exactly once at the switch, and
//! every datagram either way is accounted for.
//! (`tests/tests/handoff.rs` runs the whole handoff scenario, clean and impaired, through
//! this transport too.)
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::handoff::*;
use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Testbed};

/// The nft table on the backend bridge that loses the channel's datagrams.
const TABLE: &str = "ws_chan_loss";

fn lose_every_other_datagram(tb: &Testbed) {
    let rules = format!(
        "table bridge {TABLE} {{
  chain lose {{
    type filter hook forward priority 0; policy accept;
    udp dport 7947 numgen inc mod 2 == 0 counter drop
    udp sport 7947 numgen inc mod 2 == 0 counter drop
  }}
}}
"
    );
    let path = format!("/tmp/{}-chan-loss.nft", tb.name);
    std::fs::write(&path, rules).unwrap();
    let out = tb.exec("br", &["nft", "-f", &path], Duration::from_secs(10));
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (requests dropped, acks dropped) by the rule, and the table removed.
fn lost_and_removed(tb: &Testbed) -> (u64, u64) {
    let out = tb.exec(
        "br",
        &["nft", "-j", "list", "table", "bridge", TABLE],
        Duration::from_secs(10),
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
    let drops: Vec<u64> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .map(|r| {
            r["expr"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
                .unwrap_or(0)
        })
        .collect();
    let del = tb.exec(
        "br",
        &["nft", "delete", "table", "bridge", TABLE],
        Duration::from_secs(10),
    );
    assert!(del.status.success());
    assert_eq!(drops.len(), 2, "{v}");
    (drops[0], drops[1])
}

fn scenario(tb: &Testbed, workers: usize) {
    let dir = format!("/tmp/{}-testbed", tb.name);
    let mut config = switch_config(tb, workers);
    config["handoff"]["transport"] = "control".into();
    let (agents, sw) = start_all_with(tb, &config);
    lose_every_other_datagram(tb);

    let body = format!("/tmp/{}-hcl-body", tb.name);
    // New connections one after another, each a handoff whose request or ack may be lost.
    for i in 0..6 {
        let (path, file) = match i % 3 {
            0 => ("/img/logo.png", "img/logo.png"),
            1 => ("/big/5M.bin", "big/5M.bin"),
            _ => ("/big/1M.bin", "big/1M.bin"),
        };
        let be = get(tb, "chan", path, &body);
        assert_eq!(
            sha256_file(&body),
            sha256_file(&format!("{dir}/{be}/www/{file}")),
            "{path} from {be} (round {i})"
        );
        if i % 3 == 0 {
            assert_eq!(be, "be1", "{path}: the images pool");
        }
    }
    let _ = std::fs::remove_file(&body);
    // Keep-alive with a move: each request from its own pool's backend, the move's new
    // head a request of its own on the lossy channel.
    let lines = keep_alive(
        tb,
        &[
            "GET /img/logo.png HTTP/1.1\r\nHost: ws\r\n\r\n",
            "GET /app/after HTTP/1.1\r\nHost: ws\r\n\r\n",
        ],
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("be1"), "{lines:?}");
    assert!(lines[1].contains("be2"), "{lines:?}");

    let (requests_lost, acks_lost) = lost_and_removed(tb);
    eprintln!("channel: {requests_lost} requests and {acks_lost} acks lost");
    std::thread::sleep(Duration::from_millis(2500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    assert!(
        requests_lost >= 1 && acks_lost >= 1,
        "{requests_lost} {acks_lost}"
    );
    let started = counter(t, &["handoffs_started"]);
    assert!(started >= 8, "{t}");
    let acks = counter(t, &["handoff_acks"]);
    assert_eq!(
        acks + counter(t, &["handoff_heard_of"]),
        started,
        "each handoff taken once: {t}"
    );
    assert!(counter(t, &["handoff_heads_resent"]) >= 1, "{t}");
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    assert_eq!(counter(t, &["handoff_moves_failed"]), 0, "{t}");
    assert_eq!(counter(t, &["drops", "handoff_held_full"]), 0, "{t}");
    assert_eq!(counter(t, &["flows_live"]), 0, "{t}");
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    let sums = stop_agents_counting(agents, &["handoff_acks_sent", "handoff_requests"]);
    // Every datagram accounted for: each request the switch sent was lost or taken by an
    // agent; each ack an agent sent (again for a head it had, when a request came again)
    // was lost, taken, or found stale at the switch.
    assert_eq!(
        sums[1] + requests_lost,
        counter(t, &["handoff_requests_sent"]),
        "{t}"
    );
    assert_eq!(
        sums[0],
        acks + acks_lost + counter(t, &["drops", "handoff_ack_stale"]),
        "{t}"
    );
}

#[test]
fn lossy_control_channel_one_worker() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hcl1", 194);
    scenario(&tb, 1);
}

#[test]
fn lossy_control_channel_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hcl2", 195);
    scenario(&tb, 2);
}

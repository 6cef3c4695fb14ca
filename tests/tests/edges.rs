//! Issue 14, point 7 end to end: TCP edges as Linux does them, against the real switch
//! (DPDK) with nginx backends, in both VIP modes (splice and presplice), with one and two
//! workers. A raw-socket client (`tests/tools/rawtcp.py`) in the client namespace speaks
//! TCP by hand: it announces a zero window (the backends' and the switch's own answers
//! send nothing but probes until it opens, then everything), sends an in-window RST that
//! is not exact (a challenge ACK, and the connection still answers its next request) and
//! an exact one (it ends the connection), a SYN on an established connection (a
//! challenge ACK, never a SYN-ACK), and a request with its FIN in one segment (answered
//! in full, FIN both ways, without the client ever retransmitting). The same edges hold
//! against a handoff VIP (issue 16), where the backend's kernel answers through its agent.
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::{counter, root_or_skip, testbed_lock, workspace_root, Switch, Testbed};

/// One scenario of the raw client; its JSON report.
fn raw(tb: &Testbed, scenario: &str, path: &str) -> Value {
    let tool = workspace_root().join("tests/tools/rawtcp.py");
    let vip = tb.ip(0, 10);
    let out = tb.exec(
        "cli",
        &["python3", tool.to_str().unwrap(), &vip, scenario, path],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "rawtcp {scenario}: {}\n{}\nthe switch's counters then: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        switch_stats(tb)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("  {}", text.trim());
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("rawtcp JSON {e}: {text}"))
}

/// The running switch's `stats` totals, read from its management socket by name, for a
/// failure's message: what it received, answered and dropped when a scenario went wrong.
fn switch_stats(tb: &Testbed) -> String {
    use std::io::{BufRead, BufReader, Write};
    let path = format!("/run/webswitch/ws-{}.sock", tb.name);
    let ask = || -> std::io::Result<String> {
        let s = std::os::unix::net::UnixStream::connect(&path)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        (&s).write_all(b"{\"id\": 1, \"cmd\": \"stats\", \"args\": null}\n")?;
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply)?;
        Ok(reply)
    };
    match ask() {
        Ok(reply) => serde_json::from_str::<Value>(&reply)
            .map(|v| v["result"]["total"].to_string())
            .unwrap_or(reply),
        Err(e) => format!("({path}: {e})"),
    }
}

fn check_all(tb: &Testbed, mode: &str) {
    check_edges(tb, mode);
    check_pipeline_bound(tb, mode);
}

/// What holds in every VIP mode, handoff included, where after the handoff the agent's
/// kernel is the endpoint and the switch only forwards: zero windows, RSTs and SYNs as
/// RFC 5961 has them, and a request sent with its FIN.
fn check_edges(tb: &Testbed, mode: &str) {
    eprintln!("mode {mode}:");
    // Zero window against a backend's answer: the window reaches the backend as zero,
    // so it sends nothing but probes, then everything once the window opens.
    let r = raw(tb, "zero_window", "/whoami");
    assert_eq!(r["bytes_in_closed_window"], 0, "{mode}: {r}");
    assert!(r["probes"].as_u64().unwrap() >= 1, "{mode}: no probe: {r}");
    assert!(r["complete"].as_bool().unwrap(), "{mode}: {r}");
    assert!(
        r["status"].as_str().unwrap().contains(" 200 "),
        "{mode}: {r}"
    );
    assert!(r["fin"].as_bool().unwrap(), "{mode}: {r}");
    // ...and against the switch's own answer (a 400 for a malformed request).
    let r = raw(tb, "zero_window_own", "/");
    assert_eq!(r["bytes_in_closed_window"], 0, "{mode}: {r}");
    assert!(r["probes"].as_u64().unwrap() >= 2, "{mode}: {r}");
    let times: Vec<f64> = r["probe_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0] * 1.5),
        "{mode}: probes back off exponentially: {times:?}"
    );
    assert!(
        r["status"].as_str().unwrap().contains(" 400 "),
        "{mode}: {r}"
    );
    assert!(
        r["complete"].as_bool().unwrap() && r["fin"].as_bool().unwrap(),
        "{mode}: {r}"
    );

    // An in-window RST that is not exact: challenged, and the connection lives on.
    let r = raw(tb, "rst_inexact", "/whoami");
    assert!(r["first"].as_bool().unwrap(), "{mode}: {r}");
    assert!(r["challenge_ack"].as_bool().unwrap(), "{mode}: {r}");
    assert!(r["second"].as_bool().unwrap(), "{mode}: next request: {r}");
    // An exact RST ends it: the next request gets no answer.
    let r = raw(tb, "rst_exact", "/whoami");
    assert!(r["first"].as_bool().unwrap(), "{mode}: {r}");
    assert!(!r["challenge_ack"].as_bool().unwrap(), "{mode}: {r}");
    assert!(!r["second"].as_bool().unwrap(), "{mode}: {r}");

    // A SYN on an established connection: a challenge ACK, no SYN-ACK, still alive.
    let r = raw(tb, "syn_established", "/whoami");
    assert!(r["challenge_ack"].as_bool().unwrap(), "{mode}: {r}");
    assert!(!r["syn_ack"].as_bool().unwrap(), "{mode}: {r}");
    assert!(r["second"].as_bool().unwrap(), "{mode}: {r}");

    // A request and its FIN in one segment, never retransmitted: the full answer, its
    // FIN, and our FIN acked.
    let r = raw(tb, "request_fin", "/whoami");
    assert!(r["complete"].as_bool().unwrap(), "{mode}: {r}");
    assert!(
        r["status"].as_str().unwrap().contains(" 200 "),
        "{mode}: {r}"
    );
    assert!(r["fin"].as_bool().unwrap(), "{mode}: {r}");
    assert!(r["our_fin_acked"].as_bool().unwrap(), "{mode}: {r}");
}

/// What the switch holds for a next request, splice and presplice modes (a handoff VIP
/// frames later requests with its watch instead, tests/tests/handoff.rs).
fn check_pipeline_bound(tb: &Testbed, mode: &str) {
    // Pipelined requests past what the switch holds for the next round (one head
    // buffer, `max_head_bytes`), while the first response is unacknowledged: every
    // byte the window let through is acknowledged (held), and the window closes at
    // the bound; once the client acknowledges, every request is answered in order.
    //
    // In splice mode the bound may sit one request further: a request whose head comes
    // whole, in order, right after a complete response goes straight to the connection's
    // backend without waiting for the client's ACK of that response (presplice waits,
    // since its next round may go elsewhere). If the backend's answer to the first
    // request is in before the first pipelined segment, the second request is the
    // current one and the held bytes start after it: one pipelined request (999 bytes)
    // more is let in, never more.
    let r = raw(tb, "pipeline_bound", "/whoami");
    let closed = &r["closed"];
    let slack = if mode == "splice" {
        PIPELINED_REQUEST
    } else {
        0
    };
    let bound_ok = |v: &Value| {
        v.as_u64()
            .is_some_and(|b| (MAX_HEAD_BYTES..=MAX_HEAD_BYTES + slack).contains(&b))
    };
    assert_eq!(closed["unacked"], 0, "{mode}: sent bytes left unacked: {r}");
    assert!(
        bound_ok(&closed["acked"]),
        "{mode}: held bytes acknowledged up to the bound: {r}"
    );
    assert_eq!(
        closed["right_edge"], closed["acked"],
        "{mode}: a zero window at the bound: {r}"
    );
    assert!(
        bound_ok(&closed["bound"]),
        "{mode}: no window past the bound: {r}"
    );
    assert_eq!(r["sent"], r["total"], "{mode}: {r}");
    assert_eq!(r["answers"], 21, "{mode}: {r}");
    assert!(r["all_200"].as_bool().unwrap(), "{mode}: {r}");
}

/// Segments with a wrong checksum (issue 15, point 2): the switch acts on none of them,
/// and the one it carries unverified (body bytes it does not read) is dropped by the
/// backend, so the echo of the body is exact once the segment comes again right. (A
/// handoff VIP verifies every segment it forwards: the corrupt one is dropped there.)
fn check_corrupt(tb: &Testbed, mode: &str) {
    let r = raw(tb, "corrupt", "/whoami");
    assert_eq!(r["synack_to_bad_syn"], false, "{mode}: {r}");
    assert_eq!(r["answer_to_bad_request"], false, "{mode}: {r}");
    assert_eq!(r["first"], true, "{mode}: {r}");
    assert_eq!(
        r["reply_to_bad_control"], false,
        "{mode}: a corrupt RST, SYN, ACK or FIN was answered: {r}"
    );
    assert_eq!(r["second"], true, "{mode}: the connection lives on: {r}");
    assert_eq!(r["echo_complete"], true, "{mode}: {r}");
    assert_eq!(r["echo_exact"], true, "{mode}: {r}");
}

/// The testbed config's `tcp.max_head_bytes` (the default): the size of every head
/// buffer, and so of what is held for a connection's next request.
const MAX_HEAD_BYTES: u64 = 8192;

/// The size of each pipelined request `rawtcp.py pipeline_bound` sends
/// (`GET /whoami?n=N HTTP/1.1`, a Host line and a 950-byte X-Pad, for N < 10).
const PIPELINED_REQUEST: u64 = 999;

fn scenario(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    tb.drop_kernel_rsts("cli");
    for mode in ["splice", "presplice"] {
        let mut c = tb.config(workers);
        c["tcp"]["closed_linger_ms"] = 300.into();
        if mode == "presplice" {
            c["vips"][0]["mode"] = mode.into();
        }
        let sw = Switch::start(&tb, &c);
        check_all(&tb, mode);
        check_corrupt(&tb, mode);
        std::thread::sleep(Duration::from_secs(2));
        let stats = sw.stop();
        let t = &stats["total"];
        eprintln!(
            "{mode}: challenge_acks_sent={} limited={} drops rst_not_exact={} syn_on_established={}",
            counter(t, &["challenge_acks_sent"]),
            counter(t, &["challenge_acks_limited"]),
            counter(t, &["drops", "rst_not_exact"]),
            counter(t, &["drops", "syn_on_established"]),
        );
        assert!(counter(t, &["drops", "rst_not_exact"]) >= 1, "{stats}");
        assert!(counter(t, &["drops", "syn_on_established"]) >= 1, "{stats}");
        // The corrupt scenario's: a SYN, a request, RST, SYN, ACK, FIN (six at least)
        // verified and dropped; its corrupt body segment carried.
        assert!(counter(t, &["drops", "bad_tcp_checksum"]) >= 6, "{stats}");
        assert!(counter(t, &["tcp_carried_unverified"]) >= 1, "{stats}");
        assert_eq!(
            counter(t, &["presplice_hold_refused"]),
            0,
            "{mode}: pipelined bytes past the bound were sent: {stats}"
        );
    }
}

#[test]
fn edges_one_worker() {
    scenario("edg1", 181, 1);
}

#[test]
fn edges_two_workers() {
    scenario("edg2", 182, 2);
}

/// The same edges against a handoff VIP (issue 16), on the handoff testbed: after the
/// handoff the backend's kernel answers through its agent, straight to the client. A RST
/// or SYN the client sends on the handed-off connection goes through the switch and the
/// agent to the kernel, which judges it as Linux does: an inexact RST or a SYN gets the
/// kernel's challenge ACK and the connection lives on (neither the switch nor the agent
/// may end their entries for them: a blind RST would otherwise cut the client off); an
/// exact RST ends it everywhere. A request sent with its FIN reaches the kernel with the
/// FIN (the switch acknowledged both and the client never sends them again).
fn handoff_scenario(name: &str, net: u8, workers: usize, transport: &str) {
    use webswitch_tests::handoff::{start_all_with, stop_agents, switch_config};
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up_handoff(name, net);
    tb.drop_kernel_rsts("cli");
    let mut config = switch_config(&tb, workers);
    config["handoff"]["transport"] = transport.into();
    let (agents, sw) = start_all_with(&tb, &config);
    let mode = format!("handoff ({transport})");
    check_edges(&tb, &mode);
    check_corrupt(&tb, &mode);
    std::thread::sleep(Duration::from_secs(2));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("handoff switch: {t}");
    assert!(counter(t, &["handoffs_started"]) >= 7, "{t}");
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    // Every handed-off segment was verified: the corrupt ones (SYN, request, RST, SYN,
    // ACK, FIN and the body segment) all dropped here.
    assert!(counter(t, &["drops", "bad_tcp_checksum"]) >= 7, "{t}");
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    let taken = stop_agents(agents);
    assert!(taken >= 7, "agents established {taken} handoffs");
}

#[test]
fn edges_handoff_one_worker() {
    handoff_scenario("edh1", 183, 1, "inline");
}

#[test]
fn edges_handoff_two_workers() {
    handoff_scenario("edh2", 184, 2, "inline");
}

/// The same edges through paper 004's control-connection transport: the head goes to the
/// agent as handoff requests, and the client's segments wait on the switch for the ack.
#[test]
fn edges_handoff_control_transport_two_workers() {
    handoff_scenario("edhc", 175, 2, "control");
}

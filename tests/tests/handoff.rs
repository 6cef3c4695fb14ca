//! Issue 16 end to end: TCP handoff with a backend agent, through DWSR's inline transport
//! and TCPHA's control-connection transport.
//!
//! The handoff testbed (`testbed.sh up --handoff`): the backends' answers return to the
//! client through a router namespace, past the switch. A webswitch agent (real DPDK: its
//! NIC is the backend's veth over af_packet, its kernel side the TAP `wsa0`) runs in each
//! backend namespace in front of the unmodified kernel and nginx, which hold the VIP on
//! `lo`. The switch, with its VIP in `mode: "handoff"`, answers the client's handshake,
//! routes the request and hands the connection to the chosen backend's agent.
//!
//! Checked, with one and with two switch workers: content from the right backend, bulk
//! downloads and an upload byte-exact (sha256 at both ends), response bytes not crossing
//! the switch (its client port transmits a small fraction of what the client receives,
//! and nothing is spliced), the host's own service still reachable through the agent,
//! and every agent and switch counter of drops at zero where nothing should drop.
//!
//! The agents register with the switch and send it heartbeats (`agents.list` shows each
//! alive under its name before any request); a backend without an agent is never handed
//! a connection, and one whose agent stopped cleanly (its `leave`) is skipped at once: a
//! pool left without a live agent answers 503 at once instead of hanging.
use std::time::{Duration, Instant};

use serde_json::json;
use webswitch_tests::handoff::*;
use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Switch, Testbed};

fn keep_alive_rules(tb: &Testbed) {
    let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: ws\r\n\r\n");
    // Every request to its own pool on one keep-alive connection: the connection moves
    // between agents (the current one lets it go once its response is acknowledged, the
    // next kernel's answer continues the client's stream where the last one ended).
    let r = keep_alive(
        tb,
        &[
            &req("/app/a"),
            &req("/app/b"),
            &req("/img/logo.png"),
            &req("/app/c"),
            &req("/img/photo.jpg"),
            &req("/img/logo.png"),
            &req("/app/d"),
        ],
    );
    assert_eq!(r.len(), 7, "{r:?}");
    assert_eq!(r[0], "ok HTTP/1.1 200 OK be2 app on be2: /app/a");
    assert_eq!(r[1], "ok HTTP/1.1 200 OK be2 app on be2: /app/b");
    assert!(r[2].starts_with("ok HTTP/1.1 200 OK be1 "), "{r:?}");
    assert_eq!(r[3], "ok HTTP/1.1 200 OK be2 app on be2: /app/c");
    assert!(r[4].starts_with("ok HTTP/1.1 200 OK be1 "), "{r:?}");
    assert!(r[5].starts_with("ok HTTP/1.1 200 OK be1 "), "{r:?}");
    assert_eq!(r[6], "ok HTTP/1.1 200 OK be2 app on be2: /app/d");
    // Pipelined, two pools in one write: the second waits for the first's response to be
    // acknowledged, then moves; answers in order, each from its pool.
    let pipelined = req("/app/p1") + &req("/img/logo.png") + &req("/app/p2");
    let r = keep_alive(tb, &[&pipelined, "", ""]);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0], "ok HTTP/1.1 200 OK be2 app on be2: /app/p1");
    assert!(r[1].starts_with("ok HTTP/1.1 200 OK be1 "), "{r:?}");
    assert_eq!(r[2], "ok HTTP/1.1 200 OK be2 app on be2: /app/p2");
    // The same with a response its server writes in two pieces, 0.3 s apart: between
    // them the kernel is idle and the client has every byte, yet the move waits for
    // the response's last chunk (the agent frames the kernel's responses).
    let pipelined = req("/app/p1") + &req("/img/pause/x") + &req("/app/p2");
    let r = keep_alive(tb, &[&pipelined, "", ""]);
    assert_eq!(
        r,
        [
            "ok HTTP/1.1 200 OK be2 app on be2: /app/p1",
            "ok HTTP/1.1 200 OK be1 first piece on be1 / second piece on be1: /img/pause/x",
            "ok HTTP/1.1 200 OK be2 app on be2: /app/p2",
        ]
    );
    // A HEAD among them: its response's Content-Length describes no body, so the switch
    // gives the agent no count, and the move waits for the kernel's silence (250 ms).
    let pipelined = "HEAD /app/h HTTP/1.1\r\nHost: ws\r\n\r\n".to_string()
        + &req("/img/pause/y")
        + &req("/app/p3");
    let r = keep_alive_heads(tb, &[&pipelined, "", ""], &[0]);
    assert_eq!(
        r,
        [
            "ok HTTP/1.1 200 OK be2 ",
            "ok HTTP/1.1 200 OK be1 first piece on be1 / second piece on be1: /img/pause/y",
            "ok HTTP/1.1 200 OK be2 app on be2: /app/p3",
        ]
    );
    let chunked = "POST /app/c HTTP/1.1\r\nHost: ws\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let with_body = "POST /app/d HTTP/1.1\r\nHost: ws\r\nContent-Length: 11\r\n\r\nGET /admin/";
    for spelling in ["/admin/x", "/%61dmin/x", "//admin/x", "/app/../admin/x"] {
        for first in [req("/app/a"), chunked.to_string(), with_body.to_string()] {
            // The refused request with another behind it in the same write.
            let refused = req(spelling) + &req("/app/never");
            let r = keep_alive(tb, &[&first, &refused]);
            assert_eq!(r.len(), 2, "{first:?} then {spelling}: {r:?}");
            assert!(
                r[0].starts_with("ok HTTP/1.1 200 OK be2 app on be2"),
                "{r:?}"
            );
            assert!(r[1] == "reset" || r[1] == "closed", "{spelling}: {r:?}");
        }
    }
    // The backend never saw a denied request, nor anything after one.
    let log = std::fs::read_to_string(format!("/tmp/{}-testbed/be2/access.log", tb.name)).unwrap();
    assert!(
        !log.contains("admin"),
        "a denied request reached be2:\n{log}"
    );
    assert!(
        !log.contains("/app/never"),
        "a request after a refused one reached be2"
    );
    assert!(
        log.contains("POST /app/c"),
        "the chunked POST did not reach be2"
    );
}

/// `handoff.transport` for a switch config.
fn with_transport(mut config: serde_json::Value, transport: &str) -> serde_json::Value {
    config["handoff"]["transport"] = transport.into();
    config
}

/// What a run's switch counters say of the transport it used: the control transport
/// sent requests and took an ack for every handoff it started; the inline one sent none.
fn check_transport(t: &serde_json::Value, transport: &str) {
    let (started, requests, acks) = (
        counter(t, &["handoffs_started"]),
        counter(t, &["handoff_requests_sent"]),
        counter(t, &["handoff_acks"]),
    );
    if transport == "control" {
        assert!(requests >= started && started > 0, "{t}");
        // Each handoff taken once: by the agent's ack, or (the ack lost) by the client's
        // acknowledgment of the kernel's bytes.
        assert_eq!(
            acks + counter(t, &["handoff_heard_of"]),
            started,
            "every handoff taken once: {t}"
        );
        assert_eq!(counter(t, &["drops", "handoff_held_full"]), 0, "{t}");
    } else {
        assert_eq!(
            (requests, acks, counter(t, &["handoff_heard_of"])),
            (0, 0, 0),
            "{t}"
        );
    }
}

fn scenario(tb: &Testbed, workers: usize, transport: &str) {
    let dir = format!("/tmp/{}-testbed", tb.name);
    let (agents, sw) = start_all_with(tb, &with_transport(switch_config(tb, workers), transport));
    // Every agent was alive before the first request: no handoff found none.
    let no_agent = no_agent_count(&sw);

    // Content from the rule's backend: /img/ is be1's pool, /app/ be2's.
    let body = format!("/tmp/{}-hof-body", tb.name);
    assert_eq!(get(tb, "img", "/img/logo.png", &body), "be1");
    assert_eq!(
        sha256_file(&body),
        sha256_file(&format!("{dir}/be1/www/img/logo.png"))
    );
    let url = format!("http://{}/app/x?y=1", tb.ip(0, 10));
    let (be, text) = tb.curl_backend("app", 30, &[&url]);
    assert_eq!(
        (be.as_str(), text.as_str()),
        ("be2", "app on be2: /app/x?y=1\n")
    );

    // Keep-alive: the connection stays with the first request's backend (the pool is
    // chosen per connection in handoff mode, as in splice mode).
    let urls = [
        format!("http://{}/app/one", tb.ip(0, 10)),
        format!("http://{}/app/two", tb.ip(0, 10)),
    ];
    let out = tb.exec(
        "cli",
        &["curl", "-sS", "--max-time", "30", &urls[0], &urls[1]],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "app on be2: /app/one\napp on be2: /app/two\n"
    );

    // A deny is access control on every request: later requests on a handed-off
    // keep-alive connection are checked too (bodies framed, chunked included, and the
    // path normalised); a refused one never reaches the backend, and the connection is
    // reset (the switch cannot answer inside the backend's stream).
    keep_alive_rules(tb);

    // Bulk: 100 MB and 5 MB down from the default pool, byte-exact.
    let mut received = 0u64;
    for (f, size) in [("100M", 100u64 << 20), ("5M", 5 << 20)] {
        let be = get(tb, f, &format!("/big/{f}.bin"), &body);
        let want = std::fs::read_to_string(format!("{dir}/{be}/www/big/{f}.bin.sha256")).unwrap();
        assert_eq!(sha256_file(&body), want.trim(), "{f} from {be}");
        received += size;
    }
    let _ = std::fs::remove_file(&body);

    // Up: 20 MB PUT (curl's own `Expect: 100-continue`), byte-exact on the backend.
    let up = format!("/tmp/{}-hof-up", tb.name);
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&up, &data).unwrap();
    let url = format!("http://{}/upload/w{workers}.bin", tb.ip(0, 10));
    let (be, _) = tb.curl_backend("put", 120, &["-T", &up, &url]);
    assert_eq!(
        sha256_file(&format!("{dir}/{be}/www/upload/w{workers}.bin")),
        sha256_file(&up),
        "20 MB PUT to {be}"
    );
    let _ = std::fs::remove_file(&up);

    // The host's own service is still reachable through the agent's bridge.
    let own = tb.exec(
        "rt",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{}/whoami", tb.ip(1, 11)),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(String::from_utf8_lossy(&own.stdout), "be1\n");

    // ARP for the VIP is answered by the switch on the client's link, by nobody on the
    // backends' LAN (their kernels hold the VIP on lo with arp_ignore; the agents pass
    // ARP through untouched).
    let vip = tb.ip(0, 10);
    let on_client = tb.exec(
        "cli",
        &["arping", "-c", "2", "-I", "cli0", &vip],
        Duration::from_secs(15),
    );
    let text = String::from_utf8_lossy(&on_client.stdout).to_lowercase();
    assert!(
        text.contains(&sw.port_mac("client").to_lowercase()),
        "the switch did not answer ARP for the VIP: {text}"
    );
    let on_lan = tb.exec(
        "rt",
        &["arping", "-c", "3", "-I", "rt-be", &vip],
        Duration::from_secs(15),
    );
    let text = String::from_utf8_lossy(&on_lan.stdout).to_lowercase();
    assert!(
        !on_lan.status.success() && !text.contains("bytes from"),
        "someone on the backend LAN answered ARP for the VIP: {text}"
    );

    // Let the handed-off entries end (client FINs, then the FIN timeout).
    std::thread::sleep(Duration::from_millis(2500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    eprintln!("switch ports: {}", stats["ports"]);
    assert!(counter(t, &["handoffs_started"]) >= 7, "{t}");
    check_transport(t, transport);
    assert_eq!(
        counter(t, &["spliced_bytes_b2c"]),
        0,
        "nothing spliced: {t}"
    );
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    assert!(counter(t, &["handoff_moves"]) >= 4, "{t}");
    assert_eq!(counter(t, &["handoff_moves_failed"]), 0, "{t}");

    assert_eq!(counter(t, &["flows_live"]), 0, "{t}");
    // The agents' beats arrived and were taken; none went missing after the start.
    assert!(counter(t, &["agent_beats"]) > 0, "{t}");
    assert_eq!(counter(t, &["handoff_no_agent"]), no_agent, "{t}");
    assert_eq!(no_agent, 0, "{t}");
    for d in ["bad_agent_beat", "agent_beat_unknown"] {
        assert_eq!(counter(t, &["drops", d]), 0, "{d}: {t}");
    }
    // Response bytes do not cross the switch: its client port sent handshakes and acks
    // only, a small fraction of what the client received.
    let tx = counter(&stats["ports"]["client"], &["tx_bytes"]);
    assert!(
        tx * 100 < received,
        "switch sent the client {tx} bytes of {received} received"
    );
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");

    let taken = stop_agents(agents);
    assert!(taken >= 7, "agents established {taken} handoffs");
}

#[test]
fn handoff_one_worker() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hof1", 213);
    scenario(&tb, 1, "inline");
}

#[test]
fn handoff_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hof2", 214);
    scenario(&tb, 2, "inline");
}

/// The same through paper 004's control-connection transport (handoff requests and
/// acks on a per-agent channel; the client's later segments wait for the ack).
#[test]
fn handoff_control_transport_one_worker() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofc1", 188);
    scenario(&tb, 1, "control");
}

/// Loss, duplication, reordering and delay on every link a handed-off connection
/// crosses (client, backends, and the way back past the switch): 100 MB down, a 20 MB
/// PUT and 10 parallel 5 MB downloads, every byte checked.
fn impaired(tb: &Testbed, workers: usize, transport: &str) {
    let dir = format!("/tmp/{}-testbed", tb.name);
    // Two rules for the keep-alive walk below: 1 MB objects from be1, and what asks for
    // the apps pool by a header from be2.
    let mut config = with_transport(switch_config(tb, workers), transport);
    let rules = config["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        json!({ "name": "one-mb", "match": { "path_prefix": "/big/1M" }, "pool": "images" }),
    );
    rules.insert(
        0,
        json!({ "name": "to-apps",
                "match": { "header": { "name": "X-Pool", "value_regex": "^apps$" } },
                "pool": "apps" }),
    );
    let (agents, sw) = start_all_with(tb, &config);
    tb.script(&[
        "impair",
        "--loss",
        "2",
        "--dup",
        "1",
        "--reorder",
        "25",
        "--delay",
        "2",
        "--seed",
        "16",
    ]);
    let started = Instant::now();
    let body = format!("/tmp/{}-hofi-body", tb.name);
    let be = get(tb, "big", "/big/100M.bin", &body);
    let want = std::fs::read_to_string(format!("{dir}/{be}/www/big/100M.bin.sha256")).unwrap();
    assert_eq!(sha256_file(&body), want.trim(), "100 MB from {be}");
    let _ = std::fs::remove_file(&body);
    eprintln!("impaired 100 MB down: {:?}", started.elapsed());

    let up = format!("/tmp/{}-hofi-up", tb.name);
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    std::fs::write(&up, &data).unwrap();
    let url = format!("http://{}/upload/imp{workers}.bin", tb.ip(0, 10));
    let t = Instant::now();
    let (be, _) = tb.curl_backend("iput", 180, &["-T", &up, &url]);
    assert_eq!(
        sha256_file(&format!("{dir}/{be}/www/upload/imp{workers}.bin")),
        sha256_file(&up),
        "20 MB PUT to {be}"
    );
    let _ = std::fs::remove_file(&up);
    eprintln!("impaired 20 MB up: {:?}", t.elapsed());

    // Ten at once, each file checked against the backend that served it.
    let url = format!("http://{}/big/5M.bin", tb.ip(0, 10));
    let mut args: Vec<String> = [
        "curl",
        "-sS",
        "--max-time",
        "180",
        "--parallel",
        "--parallel-max",
        "10",
        "-w",
        "%{filename_effective} %header{x-backend}\n",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..10 {
        args.extend([
            "-o".into(),
            format!("/tmp/{}-hofi-p{i}", tb.name),
            url.clone(),
        ]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tb.exec("cli", &argv, Duration::from_secs(240));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listing.lines().count(), 10, "{listing}");
    for line in listing.lines() {
        let (file, be) = line.split_once(' ').expect("file backend");
        let want =
            std::fs::read_to_string(format!("{dir}/{}/www/big/5M.bin.sha256", be.trim())).unwrap();
        assert_eq!(sha256_file(file), want.trim(), "{file} from {be}");
        let _ = std::fs::remove_file(file);
    }

    // Moves and switch-backs: one keep-alive connection alternating between be1 (1 MB)
    // and be2 (5 MB, and an app page), each body hashed against the file it came from.
    let t = Instant::now();
    let one = "GET /big/1M.bin HTTP/1.1\r\nHost: ws\r\n\r\n";
    let five = "GET /big/5M.bin HTTP/1.1\r\nHost: ws\r\nX-Pool: apps\r\n\r\n";
    let app = "GET /app/last HTTP/1.1\r\nHost: ws\r\n\r\n";
    let walk = [one, five, one, five, one, app];
    let lines = keep_alive_hashed(tb, &walk, 240);
    eprintln!("impaired keep-alive walk: {:?}: {lines:?}", t.elapsed());
    assert_eq!(lines.len(), walk.len(), "{lines:?}");
    let app_file = format!("/tmp/{}-hofi-app", tb.name);
    std::fs::write(&app_file, "app on be2: /app/last\n").unwrap();
    let app_sha = sha256_file(&app_file);
    let _ = std::fs::remove_file(&app_file);
    let sha = |be: &str, file: &str| {
        std::fs::read_to_string(format!("{dir}/{be}/www/big/{file}.sha256"))
            .unwrap()
            .trim()
            .to_string()
    };
    for (i, line) in lines.iter().enumerate() {
        let (be, want) = match walk[i] {
            r if r == one => ("be1", sha("be1", "1M.bin")),
            r if r == five => ("be2", sha("be2", "5M.bin")),
            _ => ("be2", app_sha.clone()),
        };
        assert_eq!(
            line,
            &format!("ok HTTP/1.1 200 OK {be} {want}"),
            "request {i}: {lines:?}"
        );
    }

    tb.impairment_off_checked(2000);
    std::thread::sleep(Duration::from_millis(2500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    assert_eq!(counter(t, &["spliced_bytes_b2c"]), 0, "{t}");
    check_transport(t, transport);
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    assert_eq!(counter(t, &["handoff_refused"]), 0, "{t}");
    assert_eq!(counter(t, &["handoff_moves_failed"]), 0, "{t}");
    assert!(counter(t, &["handoff_moves"]) >= 5, "{t}");
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    let sums = stop_agents_counting(agents, &["handoffs_established", "resumed"]);
    assert!(sums[0] >= 12, "agents established {} handoffs", sums[0]);
    // be1 and be2 take the connection back without a handshake at requests 3 to 6.
    assert!(
        sums[1] >= 4,
        "agents resumed {} parked connections",
        sums[1]
    );
}

#[test]
fn handoff_impaired_one_worker() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofi1", 215);
    impaired(&tb, 1, "inline");
}

#[test]
fn handoff_impaired_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofi2", 216);
    impaired(&tb, 2, "inline");
}

#[test]
fn handoff_control_transport_impaired_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofc2", 189);
    impaired(&tb, 2, "control");
}

/// Agents on be1 and be2 only, none on be3; health checks off, so that only the agents'
/// beats can keep be3 out (a health check would take the cut-off host down too).
fn absent_agent(tb: &Testbed, workers: usize) {
    let mut agents = start_agents(tb, &[1, 2]);
    let mut config = switch_config(tb, workers);
    config["health"]["enabled"] = false.into();
    let sw = Switch::start(tb, &config);
    wait_agents(&sw, &["be1", "be2"]);
    let be3 = agent_row(&sw, "be3");
    assert_eq!(
        (&be3["alive"], &be3["registered"], &be3["beats"]),
        (&json!(false), &json!(false), &json!(0)),
        "{be3}"
    );
    wait_ready(tb);

    // The default pool is least_connections over be1, be2, be3, which hands sequential
    // requests round: be3, without an agent, is skipped every time.
    let url = format!("http://{}/big/1M.bin", tb.ip(0, 10));
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..12 {
        let (be, code) = tb.curl_backend(
            &format!("abs{i}"),
            30,
            &["-o", "/dev/null", "-w", "%{http_code}", &url],
        );
        assert_eq!(code, "200", "request {i} from {be}");
        *seen.entry(be).or_insert(0) += 1;
    }
    assert!(
        seen.keys().all(|b| b == "be1" || b == "be2") && seen.len() == 2,
        "{seen:?}"
    );
    assert_eq!(no_agent_count(&sw), 0, "be1 and be2 were alive all along");

    // be2's agent stops cleanly: its leave marks it gone at once (not after the timeout).
    let be2 = agents.remove(1).stop();
    assert!(counter(&be2, &["beats_sent"]) >= 2, "{be2}");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let row = agent_row(&sw, "be2");
        if row["alive"] == false {
            assert_eq!(row["registered"], false, "a leave, not a timeout: {row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "be2 still alive 1 s after its leave: {row}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // /app/ goes to the apps pool, be2 alone: 503 at once, no 12.6 s of silence.
    let started = Instant::now();
    let code = http_code(tb, "/app/x", 10);
    let took = started.elapsed();
    assert_eq!(code, "503");
    assert!(took < Duration::from_secs(2), "the 503 took {took:?}");
    assert!(no_agent_count(&sw) > 0);
    // be1 still takes the default pool.
    let (be, _) = tb.curl_backend("abs-after", 30, &["-o", "/dev/null", &url]);
    assert_eq!(be, "be1");

    std::thread::sleep(Duration::from_millis(2500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    assert!(counter(t, &["handoffs_started"]) >= 13, "{t}");
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    assert!(counter(t, &["handoff_no_agent"]) >= 1, "{t}");
    assert!(counter(t, &["agent_beats"]) > 0, "{t}");
    assert_eq!(counter(t, &["drops", "bad_agent_beat"]), 0, "{t}");
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    let taken = stop_agents(agents);
    assert!(taken >= 6, "be1's agent established {taken} handoffs");
}

#[test]
fn agent_absent_backend_is_skipped() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofa", 217);
    absent_agent(&tb, 1);
}

#[test]
fn agent_absent_backend_is_skipped_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofa2", 223);
    absent_agent(&tb, 2);
}

/// An agent restarted mid-run (issue 16's test): the connections handed to it end at once
/// with a RST (its `leave`, then its new `register`, tell the switch that it holds none of
/// them), new ones succeed once it is back, and a download from another backend in the
/// meantime is untouched.
#[test]
fn agent_restart_ends_its_connections_cleanly() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofr", 222);
    agent_restart(&tb, 1);
}

/// The same with two switch workers: each core resets the connections it holds.
#[test]
fn agent_restart_ends_its_connections_cleanly_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofr2", 224);
    agent_restart(&tb, 2);
}

fn agent_restart(tb: &Testbed, workers: usize) {
    let dir = format!("/tmp/{}-testbed", tb.name);
    let mut agents = start_agents(tb, &BACKENDS);
    let mut config = switch_config(tb, workers);
    for (b, pool) in [("be1", "images"), ("be2", "apps")] {
        config["rules"].as_array_mut().unwrap().insert(
            0,
            json!({ "name": format!("pin-{b}"),
                    "match": { "header": { "name": "X-Pin", "value_regex": format!("^{b}$") } },
                    "pool": pool }),
        );
    }
    let sw = Switch::start(tb, &config);
    wait_agents(&sw, &["be1", "be2", "be3"]);
    wait_ready(tb);

    // Two slow 100 MB downloads: one from be1 (whose agent restarts), one from be2.
    let url = format!("http://{}/big/100M.bin", tb.ip(0, 10));
    let download = |b: &str, out: &str| {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &tb.ns("cli"),
                "curl",
                "-sS",
                "--max-time",
                "120",
            ])
            .args([
                "--limit-rate",
                "8M",
                "-H",
                &format!("X-Pin: {b}"),
                "-o",
                out,
                &url,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("curl")
    };
    let out1 = format!("/tmp/{}-restart-be1", tb.name);
    let out2 = format!("/tmp/{}-restart-be2", tb.name);
    let mut d1 = download("be1", &out1);
    let mut d2 = download("be2", &out2);
    std::thread::sleep(Duration::from_millis(1500));

    // be1's agent stops (its leave resets the connection handed to it) and comes back.
    let started = Instant::now();
    let be1 = agents.remove(0);
    let s = be1.stop();
    eprintln!("be1's first agent: {s}");
    // The clean stop took the TAP down, and the kernel its routes; the agent put them
    // back as it went, so the next one starts in front of a host that still answers.
    let ns = tb.ns("be1");
    let routes = std::process::Command::new("ip")
        .args(["-n", &ns, "route", "show", "default"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains(&format!("via {} dev wsa0", tb.ip(1, 254))),
        "be1's default route is gone after its agent's clean stop: {routes:?}"
    );
    agents.insert(
        0,
        Switch::start_in(
            tb,
            "be1",
            &format!("{}-agent1b", tb.name),
            &agent_config(tb, 1),
        ),
    );

    // The download from be1 ended with a reset, promptly (not at curl's 120 s).
    let end1 = loop {
        if let Some(st) = d1.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the download from be1 hangs"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    d1.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(
        !end1.success(),
        "the download from be1 completed across the restart?"
    );
    assert!(
        err.contains("reset") || err.contains("Recv failure"),
        "curl: {err}"
    );
    eprintln!(
        "be1's download ended after {:?}: {}",
        started.elapsed(),
        err.trim()
    );

    // New connections to be1 succeed once its agent is back.
    wait_agents(&sw, &["be1", "be2", "be3"]);
    let url1 = format!("http://{}/whoami", tb.ip(0, 10));
    let (be, text) = tb.curl_backend("after", 30, &["-H", "X-Pin: be1", &url1]);
    assert_eq!((be.as_str(), text.as_str()), ("be1", "be1\n"));

    // The download from be2 was not affected.
    let end2 = d2.wait().unwrap();
    assert!(end2.success(), "the download from be2 failed");
    let want = std::fs::read_to_string(format!("{dir}/be2/www/big/100M.bin.sha256")).unwrap();
    assert_eq!(sha256_file(&out2), want.trim(), "be2's 100 MB");
    let _ = std::fs::remove_file(&out1);
    let _ = std::fs::remove_file(&out2);

    std::thread::sleep(Duration::from_millis(1500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    assert!(counter(t, &["handoff_agent_resets"]) >= 1, "{t}");
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    for a in agents {
        let s = a.stop();
        eprintln!("agent: {s}");
    }
}

/// The page a real browser loads in `a_browser_gets_each_object_from_its_pool`: 30
/// objects of the images pool and 30 of the apps pool, asked for all at once, as a page's
/// subresources are (Chromium opens at most six connections to the VIP, so each carries
/// requests for both pools in turn). It writes what each answer was into the page.
const BROWSER_PAGE: &str = r#"<!doctype html>
<html><head><title>handoff objects</title></head><body><pre id="out">pending</pre><script>
const paths = [];
for (let i = 0; i < 30; i++) { paths.push('/img/logo.png?i=' + i); paths.push('/app/o' + i); }
Promise.all(paths.map(p => fetch(p, { cache: 'no-store' })
    .then(r => r.arrayBuffer().then(b => [p, r.status, r.headers.get('X-Backend'),
        new TextDecoder().decode(b.slice(0, 40)), b.byteLength]))
    .catch(e => [p, 0, String(e), '', 0])))
  .then(rs => { document.getElementById('out').textContent = 'RESULT' + JSON.stringify(rs) + 'END'; });
</script></body></html>
"#;

/// Headless Chromium in the client namespace loads a page from a handoff VIP whose
/// objects belong to two pools: every object comes from its pool's backend, whole, over
/// the few keep-alive connections the browser opens, which move between the two agents
/// request by request (issue 16's browser-like client, with a real browser). One and
/// two switch workers.
#[test]
fn a_browser_gets_each_object_from_its_pool() {
    if !root_or_skip() {
        return;
    }
    if std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("chromium is missing: dpdk-env/scripts/deps.sh installs it");
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hofb", 206);
    let dir = format!("/tmp/{}-testbed", tb.name);
    for b in ["be1", "be2", "be3"] {
        std::fs::write(format!("{dir}/{b}/www/browse.html"), BROWSER_PAGE).unwrap();
    }
    let logo = std::fs::metadata(format!("{dir}/be1/www/img/logo.png"))
        .unwrap()
        .len();
    let profile = format!("/tmp/{}-chromium", tb.name);
    // The agents run throughout (a stopped agent takes its TAP and the kernel's routes
    // with it); the switch starts afresh with each worker count and they register again.
    let agents = start_agents(&tb, &BACKENDS);
    for workers in [1, 2] {
        let sw = Switch::start(&tb, &switch_config(&tb, workers));
        wait_agents(&sw, &["be1", "be2", "be3"]);
        wait_ready(&tb);
        let _ = std::fs::remove_dir_all(&profile);
        let url = format!("http://{}/browse.html", tb.ip(0, 10));
        let out = tb.exec(
            "cli",
            &[
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                &format!("--user-data-dir={profile}"),
                "--virtual-time-budget=15000",
                "--dump-dom",
                &url,
            ],
            Duration::from_secs(90),
        );
        let _ = std::fs::remove_dir_all(&profile);
        let dom = String::from_utf8_lossy(&out.stdout).to_string();
        let json = dom
            .split("RESULT")
            .nth(1)
            .and_then(|s| s.split("END").next())
            .unwrap_or_else(|| {
                panic!(
                    "{workers} worker(s): the page did not finish: {dom}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        // The DOM escapes what JSON needs no escape for in text: only & < > here.
        let json = json
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{workers} worker(s): {e}: {json}"));
        assert_eq!(rows.len(), 60, "{json}");
        for r in &rows {
            let path = r[0].as_str().unwrap();
            assert_eq!(r[1], 200, "{workers} worker(s): {r}");
            if path.starts_with("/img/") {
                assert_eq!(r[2], "be1", "{workers} worker(s): {r}");
                assert_eq!(r[4].as_u64(), Some(logo), "{workers} worker(s): {r}");
            } else {
                assert_eq!(r[2], "be2", "{workers} worker(s): {r}");
                let text = format!("app on be2: {path}\n");
                assert_eq!(r[3].as_str(), Some(text.as_str()), "{r}");
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        let stats = sw.stop();
        let t = &stats["total"];
        eprintln!("{workers} worker(s), browser: {t}");
        // The page and its 60 objects, each routed by its own head.
        assert!(counter(t, &["requests_routed"]) >= 61, "{t}");
        assert!(counter(t, &["handoff_moves"]) >= 1, "{t}");
        assert_eq!(counter(t, &["handoff_moves_failed"]), 0, "{t}");
        assert_eq!(counter(t, &["handoff_refused"]), 0, "{t}");
        assert_eq!(
            counter(t, &["spliced_bytes_b2c"]),
            0,
            "nothing spliced: {t}"
        );
        assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    }
    stop_agents(agents);
    tb.down();
}

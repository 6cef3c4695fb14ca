//! End to end: webswitch-bench (issue 6) in its back-to-back mode and against a real
//! webswitch over net_memif, with every response body checked against its URL; the JSON
//! report parses, its figures add up, and the SVG plots beside it parse as SVG, as does the
//! comparison `webswitch-bench compare` draws from the reports.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::{root_or_skip, run_with_timeout, testbed_lock, workspace_root, Switch};

/// The webswitch-bench binary: `$WEBSWITCH_BENCH_BIN`, or the workspace's debug build
/// (built once on first use).
fn bench_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("WEBSWITCH_BENCH_BIN") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-q",
                "-p",
                "webswitch-bench",
                "--bin",
                "webswitch-bench",
            ])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p webswitch-bench failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join("webswitch-bench")
    })
    .clone()
}

/// Removes, by exact name, what a run may leave behind: DPDK runtime directories, memif
/// sockets, the scratch directory.
struct Cleanup {
    paths: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.paths {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn run_bench(args: &[&str]) -> Output {
    let mut cmd = Command::new(bench_bin());
    cmd.args(args);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(90));
    eprintln!(
        "webswitch-bench {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("JSON report written");
    serde_json::from_str(&text).expect("report is JSON")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The report's figures add up: every connection and request ends one way, errors by
/// kind sum to the kinds' counters, rates are counts over the window.
fn check_figures(r: &Value) {
    // the window's unfinished are those open at its end, so it adds up as the totals do
    for part in ["totals", "window"] {
        let t = &r[part];
        assert_eq!(
            n(&t["conn_attempts"]),
            n(&t["conn_established"])
                + n(&t["conn_refused"])
                + n(&t["conn_timeout"])
                + n(&t["conn_reset"])
                + n(&t["conn_unfinished"]),
            "{part}: connections add up"
        );
        let req_ends: u64 = [
            "req_ok",
            "req_reset",
            "req_timeout",
            "req_integrity",
            "req_http",
            "req_misrouted",
            "req_closed",
            "req_unfinished",
        ]
        .iter()
        .map(|k| n(&t[*k]))
        .sum();
        assert_eq!(n(&t["req_sent"]), req_ends, "{part}: requests add up");
    }
    let t = &r["totals"];
    let errors = r["errors"].as_object().expect("errors by kind");
    assert_eq!(
        n(&errors["reset"]),
        n(&t["conn_reset"]) + n(&t["req_reset"]) + n(&t["conn_reset_idle"])
    );
    assert_eq!(
        n(&errors["timeout"]),
        n(&t["conn_timeout"]) + n(&t["req_timeout"])
    );
    assert_eq!(n(&errors["refused"]), n(&t["conn_refused"]));
    assert_eq!(n(&errors["integrity"]), n(&t["req_integrity"]));
    let load_s = r["load_s"].as_f64().unwrap();
    assert!(load_s > 0.5, "load window {load_s}");
    let w = &r["window"];
    let rates = &r["rates"];
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    assert!(close(
        rates["requests_per_s"].as_f64().unwrap(),
        n(&w["req_ok"]) as f64 / load_s
    ));
    assert!(close(
        rates["connections_per_s"].as_f64().unwrap(),
        n(&w["conn_established"]) as f64 / load_s
    ));
    let pkts = n(&w["client_tx_pkts"])
        + n(&w["client_rx_pkts"])
        + n(&w["server_tx_pkts"])
        + n(&w["server_rx_pkts"]);
    assert!(close(
        rates["packets_per_s"].as_f64().unwrap(),
        pkts as f64 / load_s
    ));
    for name in ["connect", "ttfb", "response"] {
        let p = &r["latency"][name];
        let (p50, p99, max) = (
            p["p50_us"].as_f64().unwrap(),
            p["p99_us"].as_f64().unwrap(),
            p["max_us"].as_f64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{name}: {p}");
    }
    assert!(!r["timeline"].as_array().unwrap().is_empty());
}

/// No error of any kind, requests served, bodies checked.
fn check_clean(r: &Value) {
    assert_eq!(r["ok"], true, "report not ok: {}", r["problems"]);
    for (kind, count) in r["errors"].as_object().unwrap() {
        assert_eq!(n(count), 0, "errors of kind {kind}");
    }
    let t = &r["totals"];
    assert!(n(&t["req_ok"]) > 50, "too few requests: {}", t["req_ok"]);
    assert!(n(&t["body_bytes_checked"]) > 0);
    assert_eq!(n(&t["srv_body_integrity"]), 0);
}

/// The SVG plots written beside the report parse as SVG.
fn check_svgs(json: &Path) {
    let stem = json.file_stem().unwrap().to_string_lossy().to_string();
    let dir = json.parent().unwrap();
    for suffix in ["rates", "latency"] {
        let p = dir.join(format!("{stem}-{suffix}.svg"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{} is not XML: {e}", p.display()));
        assert_eq!(
            doc.root_element().tag_name().name(),
            "svg",
            "{}",
            p.display()
        );
        assert!(
            doc.descendants()
                .any(|n| n.has_tag_name("polyline") || n.has_tag_name("path")),
            "{} has no lines",
            p.display()
        );
    }
}

/// `webswitch-bench compare` on reports the runs wrote: the SVG parses as SVG, has bars, and
/// names every report by its label; the table on stdout lists them too.
fn check_compare(out: &Path, reports: &[(&str, &Path)]) {
    let mut args = vec![
        "compare".to_string(),
        "--out".to_string(),
        out.display().to_string(),
    ];
    args.extend(
        reports
            .iter()
            .map(|(label, p)| format!("{label}={}", p.display())),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = run_bench(&args);
    assert!(res.status.success(), "webswitch-bench compare failed");
    let table = String::from_utf8_lossy(&res.stdout);
    let text = std::fs::read_to_string(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}", out.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for (label, _) in reports {
        assert!(
            texts.contains(label),
            "{} does not name {label:?}: {texts:?}",
            out.display()
        );
        assert!(table.contains(label), "table lacks {label:?}:\n{table}");
    }
    for legend in ["requests/s", "new connections/s", "ttfb p99"] {
        assert!(texts.contains(&legend), "no legend {legend:?}");
    }
    // two bars per report in each of the two panels, besides the legends' swatches
    let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert!(
        rects >= 4 * reports.len(),
        "{rects} rects for {} reports",
        reports.len()
    );
    // a bad argument fails with a message, not a panic
    let bad = run_bench(&[
        "compare",
        "--out",
        out.to_str().unwrap(),
        "x=/nonexistent.json",
    ]);
    assert_eq!(bad.status.code(), Some(2), "compare of a missing report");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent.json"));
}

#[test]
fn back_to_back_mode_is_clean_and_its_report_adds_up() {
    if !root_or_skip() {
        return;
    }
    let _lock = testbed_lock();
    let dir = std::env::temp_dir().join(format!("ws-bench-b2b-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = "ws-bench-b2b";
    let _cleanup = Cleanup {
        paths: vec![dir.clone(), Path::new("/run/dpdk").join(prefix)],
    };
    let json = dir.join("b2b.json");
    let out = run_bench(&[
        "--mode",
        "back-to-back",
        "--file-prefix",
        prefix,
        "--duration",
        "3",
        "--concurrency",
        "6",
        "--requests-per-conn",
        "3",
        "--sizes",
        "0,100,1460,5000,70000",
        "--request-body",
        "300",
        "--mix",
        "img:1,app:1,other:2",
        "--strict",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "webswitch-bench failed");
    let r = read_report(&json);
    assert_eq!(r["mode"], "back-to-back");
    check_clean(&r);
    check_figures(&r);
    let t = &r["totals"];
    // three requests per connection: at least two thirds of the requests reused one
    assert!(n(&t["req_sent"]) >= 2 * n(&t["conn_established"]));
    assert_eq!(
        n(&t["srv_requests"]),
        n(&t["req_sent"]) - n(&t["req_unfinished"])
    );
    check_svgs(&json);
    assert!(!Path::new("/run/dpdk").join(prefix).exists());
    check_compare(&dir.join("compare.svg"), &[("back-to-back", &json)]);
}

/// A scratch directory `/run/<tag>-<pid>` for a run's memif sockets, and what removes it
/// (with the sockets and both DPDK prefixes' runtime directories) when dropped.
fn memif_dirs(tag: &str, sw_prefix: &str, bench_prefix: &str) -> (PathBuf, Cleanup) {
    let sock_dir = PathBuf::from(format!("/run/{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&sock_dir).unwrap();
    let cleanup = Cleanup {
        paths: vec![
            sock_dir.join("client.sock"),
            sock_dir.join("server.sock"),
            sock_dir.clone(),
            Path::new("/run/dpdk").join(sw_prefix),
            Path::new("/run/dpdk").join(bench_prefix),
        ],
    };
    (sock_dir, cleanup)
}

/// The example config with its memif sockets in `sock_dir` and its own prefixes.
fn memif_config(sock_dir: &Path, prefix: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join("examples/memif.json"))
        .expect("examples/memif.json");
    let text = text.replace("/run/webswitch-bench/", &format!("{}/", sock_dir.display()));
    let mut v: Value = serde_json::from_str(&text).expect("example is JSON");
    v["eal"]["file_prefix"] = Value::from(prefix);
    v["web"]["listen"] = Value::from("127.0.0.1:9187");
    v
}

/// Runs the harness through a switch whose memif sockets are in `sock_dir`, with `args`.
fn run_through(sock_dir: &Path, bench_prefix: &str, args: &[&str]) -> Output {
    let client_dev = memif_dev("net_memif0", &sock_dir.join("client.sock"));
    let server_dev = memif_dev("net_memif1", &sock_dir.join("server.sock"));
    let mut all = vec![
        "--client-dev",
        &client_dev,
        "--server-dev",
        &server_dev,
        "--file-prefix",
        bench_prefix,
    ];
    all.extend_from_slice(args);
    run_bench(&all)
}

fn memif_dev(name: &str, sock: &Path) -> String {
    format!(
        "{name},role=client,id=0,socket={},socket-abstract=no",
        sock.display()
    )
}

#[test]
fn through_webswitch_over_memif_every_response_checks_out() {
    if !root_or_skip() {
        return;
    }
    let _lock = testbed_lock();
    let (sw_prefix, bench_prefix) = ("ws-bench-sw", "ws-bench-cl");
    let (sock_dir, _cleanup) = memif_dirs("ws-bench-e2e", sw_prefix, bench_prefix);
    let json = sock_dir.join("switch.json");
    let sw = Switch::start_local("ws-bench", &memif_config(&sock_dir, sw_prefix));
    let out = run_through(
        &sock_dir,
        bench_prefix,
        &[
            "--duration",
            "3",
            "--concurrency",
            "8",
            "--requests-per-conn",
            "2",
            "--sizes",
            "10,2000,30000",
            "--check-routing",
            "--strict",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let r = read_report(&json);
    // SYN flood with legitimate clients: every legitimate request still succeeds
    let flood_json = sock_dir.join("flood.json");
    let flood = run_through(
        &sock_dir,
        bench_prefix,
        &[
            "--duration",
            "2",
            "--concurrency",
            "4",
            "--syn-flood",
            "5000",
            "--strict",
            "--no-plots",
            "--json",
            flood_json.to_str().unwrap(),
        ],
    );
    let stats = sw.stop();
    assert!(
        out.status.success(),
        "webswitch-bench through the switch failed"
    );
    assert_eq!(r["mode"], "switch");
    check_clean(&r);
    check_figures(&r);
    check_svgs(&json);
    let t = &r["totals"];
    assert_eq!(n(&t["req_misrouted"]), 0);
    let routed = stats["total"]["requests_routed"].as_u64().unwrap_or(0);
    assert!(
        routed >= n(&t["req_ok"]),
        "switch routed {routed} < harness ok {}",
        t["req_ok"]
    );
    assert!(flood.status.success(), "SYN-flood run failed");
    let f = read_report(&flood_json);
    check_clean(&f);
    check_figures(&f);
    let ft = &f["totals"];
    assert!(
        n(&ft["flood_syns"]) > 1000,
        "flood sent {}",
        ft["flood_syns"]
    );
    assert!(
        n(&ft["flood_synacks"]) > 0,
        "the switch answered no spoofed SYN (cookies)"
    );
    for p in ["/run/dpdk/ws-bench-sw", "/run/dpdk/ws-bench-cl"] {
        assert!(!Path::new(p).exists(), "{p} left behind");
    }
    check_compare(
        &sock_dir.join("compare.svg"),
        &[
            ("webswitch splice", &json),
            ("with a SYN flood", &flood_json),
        ],
    );
}

/// Presplice with warm pools, one new connection after another (one request each): every
/// request but those before the pools first filled is spliced onto a warm connection.
/// Each client connection uses up its backend connection (its FIN goes on to the
/// backend), so the pool must replace it before the next client's request; taken one at
/// a time, the replacement's handshake is over before the next request can arrive (the
/// harness answers the switch's SYN before it answers the head that preceded it, and the
/// next request waits for that answer), so this holds at any speed. It failed when only
/// the 10 ms sweep refilled the pools, at most 8 per backend: 5-12% of requests found a
/// warm connection at harness rates.
#[test]
fn presplice_warm_pools_keep_up_with_new_connections() {
    if !root_or_skip() {
        return;
    }
    let _lock = testbed_lock();
    let (sw_prefix, bench_prefix) = ("ws-bench-wsw", "ws-bench-wcl");
    let (sock_dir, _cleanup) = memif_dirs("ws-bench-warm", sw_prefix, bench_prefix);
    let json = sock_dir.join("warm.json");
    let mut cfg = memif_config(&sock_dir, sw_prefix);
    cfg["vips"][0]["mode"] = Value::from("presplice");
    for p in cfg["pools"].as_array_mut().unwrap() {
        p["warm"] = serde_json::json!({ "min_idle": 4, "max_idle": 64 });
    }
    let sw = Switch::start_local("ws-bench-warm", &cfg);
    let out = run_through(
        &sock_dir,
        bench_prefix,
        &[
            "--duration",
            "2",
            "--concurrency",
            "1",
            "--requests-per-conn",
            "1",
            "--check-routing",
            "--strict",
            "--no-plots",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let stats = sw.stop();
    assert!(
        out.status.success(),
        "webswitch-bench through the switch failed"
    );
    let r = read_report(&json);
    check_clean(&r);
    let t = &stats["total"];
    let get = |k: &str| t[k].as_u64().unwrap_or(0);
    let (routed, warm, connects) = (
        get("requests_routed"),
        get("warm_attached"),
        get("backend_connects"),
    );
    eprintln!(
        "requests_routed {routed}, warm_attached {warm}, backend_connects {connects}, warm_opened {}",
        get("warm_opened")
    );
    assert!(routed >= 200, "only {routed} requests");
    assert_eq!(warm + connects, routed, "{t}");
    // The first requests may come before the pools' first handshakes are done.
    assert!(
        connects * 20 <= routed,
        "{connects} of {routed} requests paid a backend handshake"
    );
}

/// The real clients beside an attack: 4 at a time, one 1 KB request per new connection.
const REAL_CLIENTS: [&str; 7] = [
    "--concurrency",
    "4",
    "--requests-per-conn",
    "1",
    "--sizes",
    "1024",
    "--no-plots",
];

/// Issue 15, point 6: a SYN flood at the harness's full rate (it sends spoofed SYNs as
/// fast as its loop allows, asked for a million a second) beside real clients opening
/// one connection per request: at least 99% of the real requests succeed, the switch
/// answers spoofed SYNs by cookie and keeps no state for them (no connection accepted
/// beyond the real ones). Cookie rotation under load is a unit test (syncookie): the
/// shortest period the config allows is 192 s.
#[test]
fn syn_flood_at_harness_rate_beside_real_clients() {
    if !root_or_skip() {
        return;
    }
    let _lock = testbed_lock();
    let (sw_prefix, bench_prefix) = ("ws-flood-sw", "ws-flood-cl");
    let (sock_dir, _cleanup) = memif_dirs("ws-flood-e2e", sw_prefix, bench_prefix);
    let mut config = memif_config(&sock_dir, sw_prefix);
    config["web"]["listen"] = Value::from("127.0.0.1:9188");
    let sw = Switch::start_local("ws-flood", &config);
    let json = sock_dir.join("flood.json");
    let out = run_through(
        &sock_dir,
        bench_prefix,
        &[
            &REAL_CLIENTS[..],
            &["--duration", "3", "--syn-flood", "1000000"],
            &["--json", json.to_str().unwrap()],
        ]
        .concat(),
    );
    let stats = sw.stop();
    assert!(out.status.success(), "the flood run failed to run");
    let r = read_report(&json);
    check_figures(&r);
    let t = &r["totals"];
    let (sent, ok) = (n(&t["req_sent"]), n(&t["req_ok"]));
    let (syns, synacks) = (n(&t["flood_syns"]), n(&t["flood_synacks"]));
    let load_s = r["load_s"].as_f64().unwrap();
    let s = &stats["total"];
    let accepted = s["conns_accepted"].as_u64().unwrap_or(0);
    eprintln!(
        "SYN flood: {syns} spoofed SYNs ({:.0}/s), {synacks} cookies back; real requests {ok} ok of \
         {sent}; switch: conns_accepted {accepted}, syn_received {}, flows_live at stop {}",
        syns as f64 / load_s,
        s["syn_received"],
        s["flows_live"]
    );
    assert!(syns > 10_000, "the flood sent only {syns} SYNs");
    assert!(synacks > 0, "no spoofed SYN was answered (cookies)");
    assert!(sent > 100, "only {sent} real requests");
    assert!(
        ok as f64 >= 0.99 * sent as f64,
        "real requests under the flood: {ok} ok of {sent}"
    );
    // No state per SYN: every accepted connection is a real one (a spoofed source never
    // completes a handshake).
    assert!(
        accepted <= n(&t["conn_attempts"]),
        "the switch accepted {accepted} connections for {} real attempts",
        t["conn_attempts"]
    );
}

/// Issue 15, point 6: slowloris and idle keep-alive connections at harness rate beside
/// real clients. 2,000 slowloris connections (a head a header line at a time) and 2,000
/// idle ones (one request, then silence) from 20 addresses, under a per-client cap of
/// 150: per address 100 slow ones and 50 idle ones are admitted and the other 50 idle
/// ones refused with a RST; every admitted slow one is answered 408 at the head deadline;
/// the real clients, from their own addresses, are all served.
#[test]
fn slowloris_and_idle_at_harness_rate_beside_real_clients() {
    if !root_or_skip() {
        return;
    }
    let _lock = testbed_lock();
    let (sw_prefix, bench_prefix) = ("ws-slow-sw", "ws-slow-cl");
    let (sock_dir, _cleanup) = memif_dirs("ws-slow-e2e", sw_prefix, bench_prefix);
    let mut config = memif_config(&sock_dir, sw_prefix);
    config["web"]["listen"] = Value::from("127.0.0.1:9189");
    config["tcp"]["max_conns_per_client"] = Value::from(150);
    config["tcp"]["head_timeout_ms"] = Value::from(2000);
    let sw = Switch::start_local("ws-slow", &config);
    let json = sock_dir.join("slowloris.json");
    let out = run_through(
        &sock_dir,
        bench_prefix,
        &[
            &REAL_CLIENTS[..],
            &[
                "--duration",
                "5",
                "--slowloris",
                "2000",
                "--idle-conns",
                "2000",
            ],
            &[
                "--background-ips",
                "10.99.0.20-10.99.0.39",
                "--trickle-ms",
                "300",
            ],
            &["--json", json.to_str().unwrap()],
        ]
        .concat(),
    );
    let stats = sw.stop();
    assert!(out.status.success(), "the slowloris run failed to run");
    let r = read_report(&json);
    check_figures(&r);
    let t = &r["totals"];
    let s = &stats["total"];
    eprintln!(
        "slowloris run: real {} ok of {}, ttfb p99 {} us; background {}; switch: client_conn_cap {}, \
         http_408_sent {}, memory {}",
        t["req_ok"],
        t["req_sent"],
        r["latency"]["ttfb"]["p99_us"],
        serde_json::json!({
            "attempts": t["bg_attempts"], "established": t["bg_established"], "reset": t["bg_reset"],
            "slow_408": t["slow_408"], "slow_other": t["slow_other"], "slow_closed": t["slow_closed"],
            "idle_answered": t["idle_answered"],
        }),
        s["drops"]["client_conn_cap"],
        s["http_408_sent"],
        stats["memory"]
    );
    // The real clients: every request served.
    let (sent, ok) = (n(&t["req_sent"]), n(&t["req_ok"]));
    assert!(sent > 100, "only {sent} real requests");
    assert_eq!(ok, sent, "real requests beside the slow and idle clients");
    assert_eq!(n(&t["bg_attempts"]), 4000);
    // Per address 100 slow + 50 idle admitted: 1,000 idle ones refused by the cap.
    assert_eq!(n(&t["slow_408"]), 2000, "{t}");
    assert_eq!(n(&t["slow_other"]) + n(&t["slow_closed"]), 0, "{t}");
    assert_eq!(n(&t["idle_answered"]), 1000, "{t}");
    assert_eq!(n(&t["bg_reset"]), 1000, "{t}");
    assert!(n(&s["drops"]["client_conn_cap"]) >= 1000, "{s}");
    assert!(
        n(&stats["memory"]["head_buffers"]) > 0,
        "{}",
        stats["memory"]
    );
}

//! Issue 9 (points 1–3) end to end: the switch's read-only HTTP listener on the testbed.
//! A real Prometheus (Debian's package) scrapes `/metrics` and its query API agrees with
//! the switch's own figures; headless Chromium renders the stats page while wrk runs
//! (DOM after the scripts ran, and a screenshot as an artifact); the listener refuses
//! what it should and stays up, and is not reachable from the client namespace.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webswitch_tests::{root_or_skip, testbed_lock, workspace_root, Switch, Testbed};

fn config(tb: &Testbed, port: u16, extra: Value) -> Value {
    let mut c = tb.config(1);
    let mut web = json!({ "listen": format!("127.0.0.1:{port}") });
    if let (Some(w), Some(e)) = (web.as_object_mut(), extra.as_object()) {
        w.extend(e.clone());
    }
    c["web"] = web;
    c
}

/// `curl` inside the switch namespace: (HTTP status, body). Status 0: no answer.
fn curl(tb: &Testbed, args: &[&str]) -> (u16, String) {
    let mut all = vec!["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = tb.exec("sw", &all, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn stats_json(tb: &Testbed, port: u16) -> Value {
    let (code, body) = curl(tb, &[&format!("http://127.0.0.1:{port}/stats.json")]);
    assert_eq!(code, 200, "stats.json: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats.json {body:?}: {e}"))
}

fn wrk(tb: &Testbed, secs: u32) -> String {
    let out = tb.exec(
        "cli",
        &[
            "wrk",
            "-t1",
            "-c10",
            "-H",
            "Connection: close",
            &format!("-d{secs}s"),
            &format!("http://{}/whoami", tb.ip(0, 10)),
        ],
        Duration::from_secs(u64::from(secs) + 30),
    );
    assert!(out.status.success(), "wrk failed");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is not installed: run dpdk-env/scripts/deps.sh"
    );
}

/// A process in a namespace, killed by pid and its scratch directory removed on drop.
struct Scoped {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Scoped {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn prom_query(tb: &Testbed, prom: &str, q: &str) -> Option<f64> {
    let out = tb.exec(
        "sw",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-G",
            &format!("http://{prom}/api/v1/query"),
            "--data-urlencode",
            &format!("query={q}"),
        ],
        Duration::from_secs(10),
    );
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let s = v["data"]["result"][0]["value"][1].as_str()?;
    s.parse().ok()
}

#[test]
fn prometheus_scrapes_metrics_that_agree() {
    if !root_or_skip() {
        return;
    }
    need("prometheus");
    need("promtool");
    let _guard = testbed_lock();
    let tb = Testbed::up("webp", 150);
    let port = 9180;
    let sw = Switch::start(&tb, &config(&tb, port, json!({})));
    // One request per connection, so every request is routed (and counted) on its own.
    let report = wrk(&tb, 2);
    let sent: u64 = report
        .split(" requests in ")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("wrk report: {report}"));
    // The exposition as Prometheus will see it: promtool accepts it.
    let (code, metrics) = curl(&tb, &[&format!("http://127.0.0.1:{port}/metrics")]);
    assert_eq!(code, 200);
    for name in [
        "webswitch_requests_routed_total{core=\"0\"}",
        "webswitch_rx_packets_total{core=\"0\"}",
        "webswitch_drops_total{core=\"0\",reason=\"bad_tcp\"}",
        "webswitch_backend_health{backend=\"be1\",state=",
        "webswitch_time_to_first_byte_seconds_bucket{le=\"0.001\"}",
        "webswitch_core_seconds_total{core=\"0\",state=\"busy\"}",
        "webswitch_rule_hits_total{rule=\"images-by-extension\"}",
        "webswitch_pool_requests_total{pool=\"default\"}",
        "webswitch_pool_queue_length{pool=\"default\"}",
        "webswitch_retries_total{core=\"0\"}",
        "webswitch_backend_requests_total{backend=\"be1\"}",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
    }
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What Prometheus itself asks for: OpenMetrics, ending in `# EOF`.
    let (code, open) = curl(
        &tb,
        &[
            "-H",
            "Accept: application/openmetrics-text;version=1.0.0",
            &format!("http://127.0.0.1:{port}/metrics"),
        ],
    );
    assert_eq!(code, 200);
    assert!(open.ends_with("# EOF\n") && open.contains("# TYPE webswitch_rx_packets counter"));

    let requests = stats_json(&tb, port)["totals"]["requests_routed"]
        .as_u64()
        .unwrap();
    assert!(requests > 100, "wrk got few requests through: {requests}");
    // wrk counts completed responses; requests cut at its deadline were routed too.
    assert!(
        requests >= sent && requests <= sent + 10,
        "switch routed {requests}, wrk completed {sent}"
    );

    let dir = fresh_dir("webswitch-test-prom");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: webswitch\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let prom_addr = "127.0.0.1:9190";
    let child = Command::new("ip")
        .args(["netns", "exec", &tb.ns("sw"), "prometheus"])
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let prom = Scoped {
        child: Some(child),
        dir: dir.clone(),
    };
    // Bounded wait for scrapes to land with the final figure.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = prom_query(&tb, prom_addr, "sum(webswitch_requests_routed_total)");
        if seen == Some(requests as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        seen,
        Some(requests as f64),
        "Prometheus's request counter vs the switch's; prometheus log:\n{}",
        log()
    );
    // Every routed request went to some pool: the per-pool counters add up to it, in
    // the page's JSON and in Prometheus.
    let pools = stats_json(&tb, port)["pools"].clone();
    let by_pool: u64 = pools
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(by_pool, requests, "pools: {pools}");
    // ... and every one went to some backend (no retries here).
    let backends = stats_json(&tb, port)["backends"].clone();
    let by_backend: u64 = backends
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(by_backend, requests, "backends: {backends}");
    assert_eq!(
        prom_query(&tb, prom_addr, "sum(webswitch_pool_requests_total)"),
        Some(requests as f64)
    );
    let p50_us = stats_json(&tb, port)["latency_us"]["ttfb"]["p50"]
        .as_u64()
        .unwrap();
    let q = prom_query(
        &tb,
        prom_addr,
        "histogram_quantile(0.5, sum by (le) (webswitch_time_to_first_byte_seconds_bucket))",
    )
    .unwrap_or_else(|| panic!("no quantile; prometheus log:\n{}", log()));
    assert!(q.is_finite() && q > 0.0, "quantile {q}");
    // Both read the same buckets: within the coarser Prometheus bucket (1-2.5-5 steps).
    let ratio = q / (p50_us.max(1) as f64 / 1e6);
    assert!(
        (0.2..=5.0).contains(&ratio),
        "Prometheus p50 {q} s vs the switch's {p50_us} µs"
    );
    let count = prom_query(
        &tb,
        prom_addr,
        "sum(webswitch_time_to_first_byte_seconds_count)",
    );
    assert!(count.unwrap_or(0.0) > 0.0, "ttfb count {count:?}");
    drop(prom);
    assert!(!dir.exists(), "prometheus scratch dir left behind");
    sw.stop();
    tb.down();
}

#[test]
fn chromium_renders_the_stats_page_under_traffic() {
    if !root_or_skip() {
        return;
    }
    need("chromium");
    let _guard = testbed_lock();
    let tb = Testbed::up("webb", 151);
    let port = 9181;
    let cfg = config(&tb, port, json!({}));
    let sw = Switch::start(&tb, &cfg);
    let mut traffic = Command::new("ip")
        .args([
            "netns",
            "exec",
            &tb.ns("cli"),
            "wrk",
            "-t1",
            "-c10",
            "-d25s",
            "-H",
            "Connection: close",
        ])
        .arg(format!("http://{}/whoami", tb.ip(0, 10)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrk");
    let traffic_guard = Scoped {
        child: None,
        dir: fresh_dir("webswitch-test-chrome"),
    };
    // The sampler has a full second of traffic to report.
    std::thread::sleep(Duration::from_millis(2500));
    let profile = traffic_guard.dir.join("profile");
    let chromium = |extra: &[&str]| {
        let mut args = vec![
            "chromium".to_string(),
            "--headless=new".into(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=5000".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("http://127.0.0.1:{port}/"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tb.exec("sw", &refs, Duration::from_secs(90))
    };
    let out = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("id=\"backends\""),
        "no page: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for b in cfg["backends"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        assert!(
            dom.contains(&format!("<td>{name}</td>")),
            "backend {name} not in the rendered table:\n{dom}"
        );
    }
    let rps = dom
        .split("id=\"k-rps\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or("")
        .replace(',', "");
    let rps: f64 = rps.parse().unwrap_or(0.0);
    assert!(rps > 0.0, "requests/s on the page is not positive:\n{dom}");
    assert!(
        dom.contains("images-by-extension"),
        "rules table missing:\n{dom}"
    );

    let artifacts = workspace_root().join("target/web-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for (file, size) in [
        ("stats-page.png", "1280,1000"),
        ("stats-page-narrow.png", "390,1600"),
    ] {
        let path = artifacts.join(file);
        let _ = std::fs::remove_file(&path);
        chromium(&[
            &format!("--screenshot={}", path.display()),
            &format!("--window-size={size}"),
            "--hide-scrollbars",
        ]);
        let png = std::fs::read(&path).unwrap_or_default();
        assert!(
            png.len() > 1000 && png.starts_with(b"\x89PNG"),
            "no screenshot at {}",
            path.display()
        );
    }
    copy_to_docs(&artifacts.join("stats-page.png"));
    let _ = traffic.wait();
    drop(traffic_guard);
    sw.stop();
    tb.down();
}

/// Refreshes docs/stats-page.png only when asked (`WS_UPDATE_DOCS=1`): a test run must
/// not change tracked files; the artifact is always in target/web-artifacts/.
fn copy_to_docs(png: &Path) {
    if std::env::var_os("WS_UPDATE_DOCS").is_none() {
        return;
    }
    let docs = workspace_root().join("docs/stats-page.png");
    std::fs::copy(png, &docs).expect("copy the screenshot to docs/");
}

#[test]
fn listener_refuses_and_stays_up() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up("webh", 152);
    let port = 9182;
    let sw = Switch::start(
        &tb,
        &config(
            &tb,
            port,
            json!({ "max_connections": 2, "request_timeout_ms": 1000 }),
        ),
    );
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(curl(&tb, &[&format!("{base}/metrics")]).0, 200);
    assert_eq!(curl(&tb, &["-I", &format!("{base}/")]).0, 200, "HEAD");
    assert_eq!(curl(&tb, &[&format!("{base}/etc/passwd")]).0, 404);
    assert_eq!(
        curl(&tb, &[&format!("{base}/../stats.json")]).0,
        200,
        "curl normalises .."
    );
    assert_eq!(
        curl(&tb, &["-X", "POST", &format!("{base}/metrics")]).0,
        405
    );
    assert_eq!(curl(&tb, &["-X", "DELETE", &format!("{base}/")]).0, 405);
    assert_eq!(
        curl(
            &tb,
            &["--data", "x=1", "-X", "GET", &format!("{base}/metrics")]
        )
        .0,
        413,
        "a body is refused"
    );
    let long = format!("{base}/{}", "a".repeat(64 * 1024));
    let (code, _) = curl(&tb, &[&long]);
    assert_eq!(code, 431, "64 KiB URL");
    let long = format!("{base}/metrics?{}", "a".repeat(4000));
    assert_eq!(curl(&tb, &[&long]).0, 414, "URL over 2 KiB");
    // A silent client is cut after the request timeout.
    let py = format!(
        "import socket,time\ns=socket.create_connection(('127.0.0.1',{port}))\nt=time.time()\nd=s.recv(100)\nprint(round(time.time()-t,1), len(d))"
    );
    let out = tb.exec("sw", &["python3", "-c", &py], Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let waited: f64 = text
        .split_whitespace()
        .next()
        .unwrap_or("99")
        .parse()
        .unwrap();
    assert!(
        (0.8..=2.5).contains(&waited),
        "idle connection lived {text}"
    );
    // At most max_connections at once: the third gets a 503.
    let py = format!(
        "import socket,time\na=[socket.create_connection(('127.0.0.1',{port})) for _ in range(2)]\ntime.sleep(0.3)\nc=socket.create_connection(('127.0.0.1',{port}))\nprint(c.recv(100).decode().split('\\r\\n')[0])"
    );
    let out = tb.exec("sw", &["python3", "-c", &py], Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "HTTP/1.1 503 Service Unavailable"
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Still up.
    let s = stats_json(&tb, port);
    assert!(s["backends"].as_array().is_some_and(|b| b.len() == 3));
    // Not reachable from the client side: neither the switch's client address nor the VIP.
    for host in [tb.ip(0, 1), tb.ip(0, 10)] {
        let out = tb.exec(
            "cli",
            &[
                "curl",
                "-sS",
                "--max-time",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{host}:{port}/metrics"),
            ],
            Duration::from_secs(10),
        );
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !out.status.success() && code.trim() == "000",
            "{host}:{port} answered from the client namespace: {code}"
        );
    }
    sw.stop();
    tb.down();
}

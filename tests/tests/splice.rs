//! Issue 3 end to end: real clients (curl, wrk, python sockets) in the client
//! namespace, real nginx backends, webswitch splicing between them with real DPDK, with
//! one and with two worker cores. Every response's content proves which backend served
//! it; bulk transfers are checked byte for byte with sha256 at both ends; the switch's
//! own answers (400, 408, 431, 503, RST) are checked, with the backends' access logs
//! showing they never saw those requests; and at the end the flow table is empty and
//! every mbuf is back in the pool.
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::{
    counter, root_or_skip, sha256_file, testbed_lock, workspace_root, Switch, Testbed,
};

/// The testbed config plus what these tests need: a short head timeout (slowloris), a
/// short linger (so the table empties quickly), and a pool whose only backend does not
/// exist (503).
fn config(tb: &Testbed, workers: usize) -> Value {
    let mut c = tb.config(workers);
    c["tcp"]["head_timeout_ms"] = 1500.into();
    c["tcp"]["closed_linger_ms"] = 300.into();
    c["backends"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "ghost", "address": tb.ip(1, 14), "port": 80
        }));
    c["pools"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "dead", "backends": ["ghost"], "scheduler": "round_robin"
    }));
    c["rules"].as_array_mut().unwrap().insert(
        0,
        serde_json::json!({ "name": "dead", "match": { "path_prefix": "/dead/" }, "pool": "dead" }),
    );
    c
}

struct Client<'a> {
    tb: &'a Testbed,
    vip: String,
}

impl Client<'_> {
    /// `curl` in the client namespace; returns (stdout, headers).
    fn curl(&self, path: &str, extra: &[&str]) -> (Vec<u8>, String) {
        let hdr = format!("/tmp/{}-curl-headers", self.tb.name);
        let url = format!("http://{}{path}", self.vip);
        let mut args = vec!["curl", "-sS", "--max-time", "60", "-D", &hdr];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = self.tb.exec("cli", &args, Duration::from_secs(90));
        assert!(
            out.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let headers = std::fs::read_to_string(&hdr).unwrap_or_default();
        (out.stdout, headers)
    }

    fn backend_of(headers: &str) -> String {
        headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("X-Backend: ")
                    .or_else(|| l.strip_prefix("x-backend: "))
            })
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no X-Backend in {headers:?}"))
    }

    /// Sends raw bytes on a fresh connection with python; returns what came back
    /// (until the switch closes or `wait_s` passes) and whether the connection was reset.
    fn raw(&self, request: &str, wait_s: f64) -> (String, bool) {
        let script = format!(
            r#"
import socket, sys, time
s = socket.create_connection(("{vip}", 80), timeout=10)
s.sendall(bytes.fromhex("{hex}"))
s.settimeout({wait})
data = b""
reset = False
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
except ConnectionResetError:
    reset = True
except socket.timeout:
    pass
sys.stdout.write(data.decode("latin-1"))
sys.stdout.write("\n@@RESET@@" if reset else "")
"#,
            vip = self.vip,
            hex = hex(request.as_bytes()),
            wait = wait_s
        );
        let out = self
            .tb
            .exec("cli", &["python3", "-c", &script], Duration::from_secs(30));
        assert!(
            out.status.success(),
            "python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let reset = text.ends_with("@@RESET@@");
        (text.trim_end_matches("\n@@RESET@@").to_string(), reset)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn access_log_lines(tb: &Testbed) -> usize {
    (1..=3)
        .map(|i| {
            std::fs::read_to_string(format!("/tmp/{}-testbed/be{i}/access.log", tb.name))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        })
        .sum()
}

fn scenario(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    let sw = Switch::start(&tb, &config(&tb, workers));
    let c = Client {
        tb: &tb,
        vip: tb.ip(0, 10),
    };
    let dir = format!("/tmp/{}-testbed", tb.name);

    // Content routing: each answer names (and is the content of) the backend it came from.
    let (body, h) = c.curl("/img/logo.png", &[]);
    assert_eq!(
        Client::backend_of(&h),
        "be1",
        "/img/ goes to the images pool"
    );
    assert_eq!(
        body,
        std::fs::read(format!("{dir}/be1/www/img/logo.png")).unwrap(),
        "logo.png byte-exact"
    );
    let (_, h) = c.curl("/img/photo.jpg", &[]);
    assert_eq!(Client::backend_of(&h), "be1");
    let (body, h) = c.curl("/app/run.cgi?x=1", &[]);
    assert_eq!(Client::backend_of(&h), "be2", "/app/ goes to the apps pool");
    assert!(
        String::from_utf8_lossy(&body).contains("app on be2"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    for _ in 0..3 {
        let (body, h) = c.curl("/static/app.js", &[]);
        let b = Client::backend_of(&h);
        assert_eq!(
            body,
            std::fs::read(format!("{dir}/{b}/www/static/app.js")).unwrap(),
            "app.js from {b}"
        );
    }
    let (body, h) = c.curl("/whoami", &["-H", "Connection: close"]);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        Client::backend_of(&h),
        "backend closes first"
    );

    // After the splice, a keep-alive connection stays with its backend: the second
    // request (which the rules would send to be2) rides the first one's connection to be1.
    let out = tb.exec(
        "cli",
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            &format!("http://{}/img/logo.png", c.vip),
            &format!("http://{}/app/run.cgi", c.vip),
        ],
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let backends: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("X-Backend: "))
        .map(str::trim)
        .collect();
    assert_eq!(
        backends,
        ["be1", "be1"],
        "one connection, one backend: {text}"
    );

    // A client reusing its port at once while the switch's entry for the old connection
    // still lingers (the client resets its first connection, so it keeps no TIME_WAIT):
    // the new SYN starts a new connection instead of being dropped until the linger ends
    // (the 1 s timeout is shorter than the client's first SYN retransmission).
    let script = format!(
        "import socket, struct\n\
         for i in range(2):\n\
         \x20   s = socket.socket()\n\
         \x20   s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         \x20   s.bind(('', 61500))\n\
         \x20   s.settimeout(1)\n\
         \x20   s.connect(('{vip}', 80))\n\
         \x20   s.sendall(b'GET /whoami HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n\
         \x20   assert b' 200 ' in s.recv(4096)\n\
         \x20   s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
         \x20   s.close()\n",
        vip = c.vip
    );
    let out = tb.exec("cli", &["python3", "-c", &script], Duration::from_secs(10));
    assert!(
        out.status.success(),
        "port reuse within the linger: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 100 MB down and up, byte-exact.
    let file = format!("/tmp/{}-dl.bin", tb.name);
    let (_, h) = c.curl("/big/100M.bin", &["-o", &file]);
    let b = Client::backend_of(&h);
    let want = std::fs::read_to_string(format!("{dir}/{b}/www/big/100M.bin.sha256")).unwrap();
    assert_eq!(
        sha256_file(&file),
        want.split_whitespace().next().unwrap(),
        "100 MB download from {b}"
    );
    let (_, h) = c.curl("/upload/up.bin", &["-T", &file]);
    let b = Client::backend_of(&h);
    let stored = format!("{dir}/{b}/www/upload/up.bin");
    assert_eq!(
        sha256_file(&stored),
        sha256_file(&file),
        "100 MB upload stored on {b}"
    );
    let _ = std::fs::remove_file(&file);

    // Many concurrent connections.
    let out = tb.exec(
        "cli",
        &[
            "bash",
            "-c",
            &format!(
                "ulimit -n 65536; wrk -t2 -c1000 -d3s --timeout 5s http://{}/whoami",
                c.vip
            ),
        ],
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Socket errors"),
        "wrk saw socket errors:\n{text}"
    );
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw non-2xx answers:\n{text}"
    );
    assert!(text.contains("requests in"), "{text}");

    // The switch's own answers: no backend sees any of these requests.
    // wrk's last requests may still be logging: wait for the logs to settle.
    let mut seen_before = access_log_lines(&tb);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(300));
        let now = access_log_lines(&tb);
        if now == seen_before {
            break;
        }
        seen_before = now;
    }
    let (resp, _) = c.raw("GARBAGE\r\n\r\n", 5.0);
    assert!(resp.starts_with("HTTP/1.1 400"), "malformed head: {resp:?}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (resp, _) = c.raw(&big, 5.0);
    assert!(resp.starts_with("HTTP/1.1 431"), "oversized head: {resp:?}");
    let (resp, _) = c.raw("GET / HTTP/1.1\r\nHost: slow\r\n", 4.0);
    assert!(resp.starts_with("HTTP/1.1 408"), "slowloris: {resp:?}");
    let (resp, _) = c.raw("GET /dead/x HTTP/1.1\r\nHost: x\r\n\r\n", 5.0);
    assert!(resp.starts_with("HTTP/1.1 503"), "no backend: {resp:?}");
    assert_eq!(
        access_log_lines(&tb),
        seen_before,
        "a backend saw a request the switch answered itself"
    );

    // A closed port gets a RST: connection refused at once.
    let out = tb.exec(
        "cli",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{}:81/", c.vip),
        ],
        Duration::from_secs(10),
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "port 81: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The client resets a spliced connection: the backend is told, nothing breaks.
    let script = format!(
        "import socket, struct\ns = socket.create_connection(('{}', 80), timeout=5)\ns.sendall(b'GET /big/100M.bin HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\ns.recv(65536)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\ns.close()\n",
        c.vip
    );
    let out = tb.exec("cli", &["python3", "-c", &script], Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, _) = c.curl("/whoami", &[]);
    assert!(
        String::from_utf8_lossy(&body).starts_with("be"),
        "still serving after a client RST"
    );

    // Blind injection into a spliced connection: RSTs and data with the right 4-tuple
    // but a sequence number far outside the window are dropped (and counted); the
    // transfer they aimed at completes intact.
    let victim = {
        let (name, vip, dir2) = (tb.name.clone(), c.vip.clone(), dir.clone());
        std::thread::spawn(move || {
            let file = format!("/tmp/{name}-victim.bin");
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("{name}-cli"),
                    "curl",
                    "-sS",
                    "--max-time",
                    "60",
                ])
                .args([
                    "--local-port",
                    "61400",
                    "--limit-rate",
                    "20M",
                    "-D",
                    &format!("{file}.h"),
                    "-o",
                    &file,
                ])
                .arg(format!("http://{vip}/big/100M.bin"))
                .output()
                .expect("curl");
            let h = std::fs::read_to_string(format!("{file}.h")).unwrap_or_default();
            let b = h
                .lines()
                .find_map(|l| l.strip_prefix("X-Backend: "))
                .unwrap_or("")
                .trim()
                .to_string();
            let want = std::fs::read_to_string(format!("{dir2}/{b}/www/big/100M.bin.sha256"))
                .unwrap_or_default();
            let ok = out.status.success()
                && sha256_file(&file) == want.split_whitespace().next().unwrap_or("-");
            let _ = std::fs::remove_file(&file);
            let _ = std::fs::remove_file(format!("{file}.h"));
            ok
        })
    };
    // Inject only once the victim's connection is established (bounded wait). Its fixed
    // client port is above the kernel's ephemeral range (32768-60999), so no earlier
    // connection of this test (wrk's thousand) can still hold it in TIME_WAIT.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = tb.exec(
            "cli",
            &["ss", "-Htn", "state", "established", "sport", "= :61400"],
            Duration::from_secs(5),
        );
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the victim download never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let inject = workspace_root().join("tests/tools/inject.py");
    let client_mac = sw.port_mac("client");
    for (seq, flags, len) in [("far", "R", "0"), ("far", "RA", "0"), ("far", "PA", "100")] {
        let out = tb.exec(
            "cli",
            &[
                "python3",
                inject.to_str().unwrap(),
                "cli0",
                &client_mac,
                &tb.ip(0, 2),
                "61400",
                &c.vip,
                "80",
                seq,
                flags,
                "3",
                len,
            ],
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "inject: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        victim.join().unwrap(),
        "the download under blind injection must complete byte-exact"
    );

    // The backend resets a spliced connection mid-transfer (`ss -K` destroys its
    // socket, which sends a RST): the client sees the reset, not a hang.
    let slow = {
        let (name, vip) = (tb.name.clone(), c.vip.clone());
        std::thread::spawn(move || {
            let url = format!("http://{vip}/big/100M.bin");
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("{name}-cli"),
                    "curl",
                    "-sS",
                    "--max-time",
                    "30",
                ])
                .args(["--limit-rate", "200k", "-o", "/dev/null", &url])
                .output()
                .expect("curl");
            out.status.code()
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    for b in 1..=3 {
        tb.exec(
            &format!("be{b}"),
            &["ss", "-K", "dst", &tb.ip(1, 1)],
            Duration::from_secs(5),
        );
    }
    assert_eq!(
        slow.join().unwrap(),
        Some(56),
        "curl must see the backend's reset (exit 56)"
    );

    // Let every connection close and linger out, then stop.
    std::thread::sleep(Duration::from_millis(2500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("final totals: {t}");
    assert_eq!(
        counter(t, &["flows_live"]),
        0,
        "flow table empty once timers passed"
    );
    assert_eq!(
        counter(&stats, &["mbufs_in_use"]),
        0,
        "every mbuf back in the pool"
    );
    assert_eq!(
        counter(t, &["conns_accepted"]),
        counter(t, &["conns_closed"])
    );
    assert_eq!(counter(t, &["http_4xx_sent"]), 3, "400, 431, 408");
    assert_eq!(counter(t, &["http_5xx_sent"]), 1, "503");
    for status in ["400", "408", "431", "503"] {
        assert_eq!(
            counter(t, &[&format!("http_{status}_sent")]),
            1,
            "one {status}"
        );
    }
    assert!(counter(t, &["drops", "tcp_closed_port"]) >= 1);
    assert!(
        counter(t, &["tuple_reused"]) >= 1,
        "the reused client port started a new connection"
    );
    assert!(
        counter(t, &["drops", "out_of_window"]) >= 9,
        "the 9 injected segments are dropped"
    );
    assert!(counter(t, &["spliced_bytes_b2c"]) > 100_000_000);
    assert!(counter(t, &["spliced_bytes_c2b"]) > 100_000_000);
    assert_eq!(counter(t, &["drops", "bad_tcp"]), 0);
    assert_eq!(counter(t, &["drops", "tx_full"]), 0);
    if workers > 1 {
        assert!(
            counter(t, &["steered_to_peer"]) > 0,
            "two cores but nothing crossed between them"
        );
        assert_eq!(
            counter(t, &["steered_to_peer"]),
            counter(t, &["steered_from_peer"])
        );
    }
    tb.down();
}

#[test]
fn splice_one_worker() {
    scenario("ts1", 111, 1);
}

#[test]
fn splice_two_workers() {
    scenario("ts2", 112, 2);
}

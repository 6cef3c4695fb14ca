//! Issue 8 end to end: what operators expect on day one, against real nginx backends on
//! the testbed and the real switch.
//!
//! * The client's address reaches the backend: nginx's `realip` module rewrites
//!   `$remote_addr` from the switch's `X-Forwarded-For` (backends' port 8080) or PROXY
//!   protocol v1/v2 header (port 8081), and its access log must show the client
//!   namespace's address, for one request and for every request of a keep-alive
//!   connection; a spoofed `X-Forwarded-For` is removed or appended to as the pool says;
//!   100 MB stay byte-exact both ways with the insertion, with and without impairment.
//! * Rule actions: deny, redirect and respond answer exactly what the config says, and no
//!   backend sees those requests.
//! * `max_connections` with a queue: no backend ever serves more than its limit at once
//!   (proved from the nginx log's request intervals), queued requests complete, a queue
//!   past its timeout or length answers 503.
//! * Retries: a stopped backend costs no client a failure; a POST whose backend died is
//!   answered 502 and never replayed; a GET reset before any response byte is retried.
//!
//! Requests are routed to the test's pools by an `X-Pool` header (a `header` rule per
//! pool), so every nginx path (`/whoami`, `/big/`, `/upload/`, `/slow/`) is usable with
//! every pool. Each request carries a marker in its query or path to find its log line.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Switch, Testbed};

// ---- the management socket --------------------------------------------------------------

/// A JSON-lines client of the management socket (as in mgmt.rs).
struct Ctl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Ctl {
    fn connect(sw: &Switch) -> Ctl {
        let path = sw.ready["socket"].as_str().expect("socket in ready event");
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Ctl {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            next_id: 1,
        }
    }

    fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({ "id": id, "cmd": cmd, "args": args }).to_string();
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).expect("reply line");
        let r: Value =
            serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"));
        assert_eq!(r["ok"], true, "{cmd} failed: {r}");
        r["result"].clone()
    }

    fn stats(&mut self) -> Value {
        self.ok("stats", json!({}))
    }
}

/// `stats.total.<name>`.
fn total(stats: &Value, name: &str) -> u64 {
    counter(stats, &["total", name])
}

/// The element named `name` of `stats[array]` (`rules`, `pools`).
fn named<'a>(stats: &'a Value, array: &str, name: &str) -> &'a Value {
    stats[array]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| {
            panic!(
                "no {array}[name={name}] in the stats reply: {}",
                stats[array]
            )
        })
}

// ---- config ----------------------------------------------------------------------------

/// Adds backends `be1x..be3x` (the backends' X-Forwarded-For servers, port 8080) and
/// `be1p..be3p` (their PROXY protocol servers, port 8081), with extra fields per name.
fn add_backends(tb: &Testbed, c: &mut Value, extra: &[(&str, Value)]) {
    let list = c["backends"].as_array_mut().unwrap();
    for i in 1..=3u8 {
        for (suffix, port) in [("x", 8080), ("p", 8081)] {
            let name = format!("be{i}{suffix}");
            let mut b = json!({ "name": name, "address": tb.ip(1, 10 + i), "port": port });
            for (n, fields) in extra {
                if *n == name {
                    for (k, v) in fields.as_object().unwrap() {
                        b[k] = v.clone();
                    }
                }
            }
            list.push(b);
        }
    }
}

/// Adds `pool` and, first in the rules, `to-<name>`: requests with `X-Pool: <name>` go there.
fn add_pool(c: &mut Value, pool: Value) {
    let name = pool["name"].as_str().unwrap().to_string();
    c["pools"].as_array_mut().unwrap().push(pool);
    c["rules"].as_array_mut().unwrap().insert(
        0,
        json!({
            "name": format!("to-{name}"),
            "match": { "header": { "name": "X-Pool", "value_regex": format!("^{name}$") } },
            "pool": name
        }),
    );
}

// ---- clients ---------------------------------------------------------------------------

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One curl run's outcome.
struct Resp {
    status: u16,
    headers: String,
    body: Vec<u8>,
    secs: f64,
}

impl Resp {
    /// The value of header `name` (case-insensitive) in the last response.
    fn header(&self, name: &str) -> Option<String> {
        let last = self.headers.rsplit("HTTP/").next().unwrap_or("");
        last.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn backend(&self) -> String {
        self.header("X-Backend")
            .unwrap_or_else(|| panic!("no X-Backend in {:?}", self.headers))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// `curl` in the client namespace with `args` (URLs included); curl must succeed.
fn curl(tb: &Testbed, args: &[&str]) -> Resp {
    curl_to(tb, None, args)
}

/// As [`curl`], the body written to `out` if given (then `Resp::body` is empty).
fn curl_to(tb: &Testbed, to: Option<&str>, args: &[&str]) -> Resp {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let hdr = format!("/tmp/{}-op-{n}.h", tb.name);
    let tmp = format!("/tmp/{}-op-{n}.b", tb.name);
    let body = to.unwrap_or(&tmp).to_string();
    let mut all = vec![
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-D",
        &hdr,
        "-o",
        &body,
        "-w",
        "%{http_code} %{time_total}",
    ];
    all.extend_from_slice(args);
    let out = tb.exec("cli", &all, Duration::from_secs(150));
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl {args:?}: {}{w}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut it = w.split_whitespace();
    let status = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let secs = it.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let r = Resp {
        status,
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
        body: if to.is_none() {
            std::fs::read(&body).unwrap_or_default()
        } else {
            Vec::new()
        },
        secs,
    };
    let _ = std::fs::remove_file(&hdr);
    let _ = std::fs::remove_file(&tmp);
    r
}

/// curl with several URLs on one (keep-alive) connection; returns stdout (all bodies in
/// order) and the response headers of all of them.
fn curl_keepalive(tb: &Testbed, args: &[&str]) -> (Vec<u8>, String) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let hdr = format!("/tmp/{}-op-{n}.h", tb.name);
    let mut all = vec!["curl", "-sS", "--max-time", "30", "-D", &hdr];
    all.extend_from_slice(args);
    let out = tb.exec("cli", &all, Duration::from_secs(40));
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = std::fs::read_to_string(&hdr).unwrap_or_default();
    let _ = std::fs::remove_file(&hdr);
    (out.stdout, h)
}

/// Runs a bash script in the client namespace; returns its stdout.
fn cli_bash(tb: &Testbed, script: &str, timeout: Duration) -> String {
    let out = tb.exec("cli", &["bash", "-c", script], timeout);
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

// ---- the backends' access logs -------------------------------------------------------------

/// One line of a backend's access log (format `ws` of testbed.sh).
#[derive(Debug, Clone)]
struct LogLine {
    /// `$remote_addr`, after realip: the client's address on ports 8080/8081.
    remote: String,
    method: String,
    target: String,
    status: u16,
    xff: String,
    xfp: String,
    conn: u64,
    req: u64,
    port: u16,
    /// `$realip_remote_addr`: the TCP peer (the switch).
    peer: String,
    /// `$proxy_protocol_addr:$proxy_protocol_port`.
    pp: String,
    /// When the request started and ended (s).
    start: f64,
    end: f64,
    raw: String,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let quoted = format!(" {key}=\"");
    if let Some(i) = line.find(&quoted) {
        let rest = &line[i + quoted.len()..];
        return &rest[..rest.find('"').unwrap_or(rest.len())];
    }
    let plain = format!(" {key}=");
    let i = line
        .find(&plain)
        .unwrap_or_else(|| panic!("no {key}= in access log line {line:?} (testbed.sh too old?)"));
    let rest = &line[i + plain.len()..];
    &rest[..rest.find(' ').unwrap_or(rest.len())]
}

fn parse_line(raw: &str) -> LogLine {
    let (addr, rest) = raw.split_once(' ').expect("access log line");
    let remote = addr.rsplit_once(':').map_or(addr, |(a, _)| a).to_string();
    let q1 = rest.find('"').expect("request in quotes");
    let q2 = q1 + 1 + rest[q1 + 1..].find('"').expect("closing quote");
    let request = &rest[q1 + 1..q2];
    let mut parts = request.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let status = rest[q2 + 1..]
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end: f64 = field(raw, "t").parse().expect("t=");
    let rt: f64 = field(raw, "rt").parse().expect("rt=");
    LogLine {
        remote,
        method,
        target,
        status,
        xff: field(raw, "xff").to_string(),
        xfp: field(raw, "xfp").to_string(),
        conn: field(raw, "conn").parse().expect("conn="),
        req: field(raw, "req").parse().expect("req="),
        port: field(raw, "port").parse().expect("port="),
        peer: field(raw, "peer").to_string(),
        pp: field(raw, "pp").to_string(),
        start: end - rt,
        end,
        raw: raw.to_string(),
    }
}

fn access_log(tb: &Testbed, backend: &str) -> Vec<LogLine> {
    std::fs::read_to_string(format!("/tmp/{}-testbed/{backend}/access.log", tb.name))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

/// The log lines of all three backends whose request target contains `marker`, with the
/// backend's name.
fn lines_with(tb: &Testbed, marker: &str) -> Vec<(String, LogLine)> {
    let mut v = Vec::new();
    for b in ["be1", "be2", "be3"] {
        for l in access_log(tb, b) {
            if l.target.contains(marker) {
                v.push((b.to_string(), l));
            }
        }
    }
    v
}

/// Waits (bounded) until `n` log lines carry `marker`; returns them.
fn wait_lines(tb: &Testbed, marker: &str, n: usize) -> Vec<(String, LogLine)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        got = lines_with(tb, marker);
        if got.len() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        got.len(),
        n,
        "access log lines with {marker}: {:#?}",
        got.iter()
            .map(|(b, l)| format!("{b}: {}", l.raw))
            .collect::<Vec<_>>()
    );
    got
}

/// The most requests in progress at once among `lines` (intervals shrunk by 2 ms, the
/// log's rounding).
fn max_overlap(lines: &[LogLine]) -> usize {
    let mut ev: Vec<(f64, i32)> = Vec::new();
    for l in lines {
        ev.push((l.start + 0.002, 1));
        ev.push((l.end, -1));
    }
    // ends before starts at the same instant
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn pids_in(tb: &Testbed, role: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "pids", &tb.ns(role)])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Stops backend `b`'s nginx: `signal` to every process in its namespace (TERM: a
/// graceful stop; KILL: the kernel closes its sockets), then waits until none is left.
fn stop_nginx(tb: &Testbed, b: &str, signal: &str) {
    let pids = pids_in(tb, b);
    assert!(!pids.is_empty(), "no nginx runs in {}", tb.ns(b));
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(&pids)
        .status();
    wait_for(
        &format!("{b}'s nginx to exit"),
        Duration::from_secs(10),
        || pids_in(tb, b).is_empty(),
    );
}

/// Starts backend `b`'s nginx again (as testbed.sh does) and waits until it answers.
fn start_nginx(tb: &Testbed, b: &str) {
    let d = format!("/tmp/{}-testbed/{b}", tb.name);
    let out = tb.exec(
        b,
        &[
            "nginx",
            "-p",
            &d,
            "-c",
            &format!("{d}/nginx.conf"),
            "-e",
            &format!("{d}/error.log"),
        ],
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "start nginx in {b}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ip = tb.ip(1, 10 + b[2..].parse::<u8>().unwrap());
    wait_for(
        &format!("{b}'s nginx to answer"),
        Duration::from_secs(10),
        || {
            let out = tb.exec(
                b,
                &[
                    "curl",
                    "-s",
                    "--max-time",
                    "1",
                    &format!("http://{ip}/whoami"),
                ],
                Duration::from_secs(5),
            );
            String::from_utf8_lossy(&out.stdout).trim() == b
        },
    );
}

/// Whether `role`'s namespace has an established TCP connection on local port `port`.
fn has_established(tb: &Testbed, role: &str, port: u16) -> bool {
    let out = tb.exec(
        role,
        &[
            "ss",
            "-Htn",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ],
        Duration::from_secs(5),
    );
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// Stops the switch after its connections closed and lingered out; checks nothing leaked.
fn stop_clean(sw: Switch) -> Value {
    std::thread::sleep(Duration::from_millis(2500));
    let fin = sw.stop();
    eprintln!("final totals: {}", fin["total"]);
    assert_eq!(
        counter(&fin, &["mbufs_in_use"]),
        0,
        "every mbuf back in the pool"
    );
    assert_eq!(counter(&fin, &["total", "drops", "bad_tcp"]), 0);
    fin
}

// ---- 1. the client's address -------------------------------------------------------------

fn client_address(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    let mut c = tb.config(workers);
    c["tcp"]["closed_linger_ms"] = 300.into();
    add_backends(&tb, &mut c, &[]);
    add_pool(
        &mut c,
        json!({ "name": "xff", "backends": ["be1x", "be2x", "be3x"], "client_address": "x-forwarded-for" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "xffa", "backends": ["be1x"], "client_address": "x-forwarded-for", "client_xff": "append" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "pp1", "backends": ["be1p", "be2p", "be3p"], "client_address": "proxy-v1" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "pp2", "backends": ["be1p", "be2p", "be3p"], "client_address": "proxy-v2" }),
    );
    let sw = Switch::start(&tb, &c);
    let mut ctl = Ctl::connect(&sw);
    let vip = tb.ip(0, 10);
    let client = tb.ip(0, 2);
    let switch = tb.ip(1, 1);
    let url = |path: &str| format!("http://{vip}{path}");
    // X-Forwarded-For insertions (one per request) and PROXY headers (one per backend
    // connection).
    let (mut xff_conns, mut pp_conns) = (0u64, 0u64);

    // X-Forwarded-For, one request: nginx (realip on 8080) logs the client's address.
    let r = curl(&tb, &["-H", "X-Pool: xff", &url("/whoami?m=opa-x1")]);
    assert_eq!(r.status, 200);
    let b = r.backend();
    assert_eq!(r.text(), format!("{b}\n"));
    let (lb, l) = &wait_lines(&tb, "m=opa-x1", 1)[0];
    assert_eq!(lb, &b);
    assert_eq!(l.port, 8080, "{}", l.raw);
    assert_eq!(l.remote, client, "remote_addr after realip: {}", l.raw);
    assert_eq!(l.xff, client, "inserted X-Forwarded-For: {}", l.raw);
    assert_eq!(l.xfp, "http", "inserted X-Forwarded-Proto: {}", l.raw);
    assert_eq!(l.peer, switch, "the TCP peer is the switch: {}", l.raw);
    xff_conns += 1;

    // A spoofed X-Forwarded-For is removed in a `remove` pool (the default) ...
    let r = curl(
        &tb,
        &[
            "-H",
            "X-Pool: xff",
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            &url("/whoami?m=opa-x2"),
        ],
    );
    assert_eq!(r.status, 200);
    let (_, l) = &wait_lines(&tb, "m=opa-x2", 1)[0];
    assert_eq!(l.xff, client, "the spoofed address must be gone: {}", l.raw);
    assert_eq!(l.remote, client, "{}", l.raw);
    xff_conns += 1;
    // ... and so is a spoofed X-Forwarded-Proto.
    let r = curl(
        &tb,
        &[
            "-H",
            "X-Pool: xff",
            "-H",
            "X-Forwarded-Proto: https",
            &url("/whoami?m=opa-x3"),
        ],
    );
    assert_eq!(r.status, 200);
    let (_, l) = &wait_lines(&tb, "m=opa-x3", 1)[0];
    assert_eq!(l.xfp, "http", "the spoofed proto must be gone: {}", l.raw);
    assert_eq!(l.xff, client, "{}", l.raw);
    xff_conns += 1;

    // ... and kept and appended to in an `append` pool (realip takes the last address).
    let r = curl(
        &tb,
        &[
            "-H",
            "X-Pool: xffa",
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            &url("/whoami?m=opa-x4"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "be1");
    let (_, l) = &wait_lines(&tb, "m=opa-x4", 1)[0];
    assert_eq!(l.xff, format!("6.6.6.6, {client}"), "{}", l.raw);
    assert_eq!(l.remote, client, "{}", l.raw);
    xff_conns += 1;
    let removed_so_far = total(&ctl.stats(), "xff_removed");

    // A keep-alive connection through the insertion: every answer arrives intact (the
    // insertion shifts the sequence numbers of everything after it), the first request
    // carries the client's address. (In splice mode the later requests pass untouched.)
    let (out, h) = curl_keepalive(
        &tb,
        &[
            "--local-port",
            "61711",
            "-H",
            "X-Pool: xff",
            &url("/whoami?m=opa-k1"),
            &url("/static/app.js?m=opa-k2"),
            &url("/whoami?m=opa-k3"),
        ],
    );
    let bs: Vec<String> = h
        .lines()
        .filter_map(|l| l.strip_prefix("X-Backend: "))
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(bs.len(), 3, "{h}");
    assert!(
        bs.iter().all(|x| *x == bs[0]),
        "one connection, one backend: {h}"
    );
    let b = &bs[0];
    let js = std::fs::read(format!("/tmp/{}-testbed/{b}/www/static/app.js", tb.name)).unwrap();
    let mut want = format!("{b}\n").into_bytes();
    want.extend_from_slice(&js);
    want.extend_from_slice(format!("{b}\n").as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want),
        "keep-alive answers after the insertion"
    );
    let ls: Vec<LogLine> = ["m=opa-k1", "m=opa-k2", "m=opa-k3"]
        .iter()
        .map(|m| wait_lines(&tb, m, 1)[0].1.clone())
        .collect();
    for (i, l) in ls.iter().enumerate() {
        eprintln!("keep-alive xff request {}: {}", i + 1, l.raw);
        assert_eq!(l.conn, ls[0].conn, "one backend connection: {}", l.raw);
        assert_eq!(l.req, i as u64 + 1, "{}", l.raw);
        assert_eq!(l.status, 200, "{}", l.raw);
        // Every request of the connection is rewritten (issue 14 point 5), on one
        // backend connection.
        assert_eq!(l.xff, client, "{}", l.raw);
        assert_eq!(l.remote, client, "{}", l.raw);
    }
    xff_conns += 3;

    // PROXY v1 and v2: one request, then three on one keep-alive connection; every
    // request shows the client's address and port (nginx reads the header once per
    // connection, so all requests of the connection have it).
    for (pool, port1, port3) in [("pp1", 61712u16, 61713u16), ("pp2", 61714, 61715)] {
        let m = format!("m=opa-{pool}-1");
        let r = curl(
            &tb,
            &[
                "--local-port",
                &port1.to_string(),
                "-H",
                &format!("X-Pool: {pool}"),
                &url(&format!("/whoami?{m}")),
            ],
        );
        assert_eq!(r.status, 200, "{pool}");
        let b = r.backend();
        assert_eq!(r.text(), format!("{b}\n"));
        let (lb, l) = &wait_lines(&tb, &m, 1)[0];
        assert_eq!(lb, &b);
        assert_eq!(l.port, 8081, "{pool}: {}", l.raw);
        assert_eq!(
            l.remote, client,
            "{pool}: remote_addr from the PROXY header: {}",
            l.raw
        );
        assert_eq!(l.pp, format!("{client}:{port1}"), "{pool}: {}", l.raw);
        assert_eq!(l.peer, switch, "{pool}: {}", l.raw);
        pp_conns += 1;

        let ms: Vec<String> = (1..=3).map(|i| format!("m=opa-{pool}-ka{i}")).collect();
        let urls: Vec<String> = ms.iter().map(|m| url(&format!("/whoami?{m}"))).collect();
        let pool_h = format!("X-Pool: {pool}");
        let p3 = port3.to_string();
        let mut args = vec!["--local-port", &p3, "-H", &pool_h];
        args.extend(urls.iter().map(String::as_str));
        let (out, h) = curl_keepalive(&tb, &args);
        let b = h
            .lines()
            .find_map(|l| l.strip_prefix("X-Backend: "))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(String::from_utf8_lossy(&out), format!("{b}\n{b}\n{b}\n"));
        let ls: Vec<LogLine> = ms
            .iter()
            .map(|m| wait_lines(&tb, m, 1)[0].1.clone())
            .collect();
        for (i, l) in ls.iter().enumerate() {
            assert_eq!(l.conn, ls[0].conn, "{pool}: one connection: {}", l.raw);
            assert_eq!(l.req, i as u64 + 1, "{pool}: {}", l.raw);
            assert_eq!(l.remote, client, "{pool}: request {}: {}", i + 1, l.raw);
            assert_eq!(l.pp, format!("{client}:{port3}"), "{pool}: {}", l.raw);
        }
        pp_conns += 1;
    }

    // The counters agree with what was sent.
    let st = ctl.stats();
    eprintln!("totals: {}", st["total"]);
    eprintln!("rules: {}\npools: {}", st["rules"], st["pools"]);
    assert_eq!(total(&st, "xff_inserted"), xff_conns, "xff_inserted");
    assert_eq!(
        total(&st, "proxy_headers_sent"),
        pp_conns,
        "proxy_headers_sent"
    );
    assert!(
        (1..=2).contains(&removed_so_far),
        "xff_removed after one spoofed X-Forwarded-For and one X-Forwarded-Proto: {removed_so_far}"
    );
    assert_eq!(
        total(&st, "xff_removed"),
        removed_so_far,
        "nothing to remove since"
    );
    // Every request is checked against the rules, keep-alive ones too (issue 14 point 5):
    // three of each keep-alive connection's requests count.
    for (rule, hits) in [("to-xff", 6), ("to-xffa", 1), ("to-pp1", 4), ("to-pp2", 4)] {
        assert_eq!(named(&st, "rules", rule)["hits"], hits, "hits of {rule}");
    }
    for (pool, requests) in [("xff", 6), ("xffa", 1), ("pp1", 4), ("pp2", 4)] {
        assert_eq!(
            named(&st, "pools", pool)["requests"],
            requests,
            "requests of pool {pool}"
        );
    }
    drop(ctl);
    let fin = stop_clean(sw);
    assert_eq!(counter(&fin, &["total", "flows_live"]), 0);
    tb.down();
}

#[test]
fn client_address_one_worker() {
    client_address("opa1", 161, 1);
}

#[test]
fn client_address_two_workers() {
    client_address("opa2", 162, 2);
}

/// Request heads of several segments (a 6000-byte cookie) through a plain pool and the
/// three client-address pools: each is answered, and the backend logs the client's address.
#[test]
fn large_heads_with_client_address() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up("opf", 168);
    let mut c = tb.config(1);
    add_backends(&tb, &mut c, &[]);
    add_pool(&mut c, json!({ "name": "plain", "backends": ["be1x"] }));
    add_pool(
        &mut c,
        json!({ "name": "xff", "backends": ["be1x"], "client_address": "x-forwarded-for" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "pp1", "backends": ["be1p"], "client_address": "proxy-v1" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "pp2", "backends": ["be1p"], "client_address": "proxy-v2" }),
    );
    let sw = Switch::start(&tb, &c);
    let vip = tb.ip(0, 10);
    let client = tb.ip(0, 2);
    let cookie = format!("Cookie: big={}", "c".repeat(6000));
    let mut failed = Vec::new();
    for pool in ["plain", "xff", "pp1", "pp2"] {
        let m = format!("m=opf-{pool}");
        let out = tb.exec(
            "cli",
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("X-Pool: {pool}"),
                "-H",
                &cookie,
                &format!("http://{vip}/whoami?{m}"),
            ],
            Duration::from_secs(20),
        );
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        eprintln!("{pool}: 6 KB head: {code} {err}");
        if code != "200" {
            failed.push(format!("{pool}: {code} {err}"));
            continue;
        }
        let (_, l) = &wait_lines(&tb, &m, 1)[0];
        if pool != "plain" {
            assert_eq!(l.remote, client, "{pool}: {}", l.raw);
        }
        assert!(
            l.raw.contains(" len=6"),
            "the whole head arrived: {}",
            l.raw
        );
    }
    assert!(
        failed.is_empty(),
        "6 KB request heads not answered: {failed:#?}"
    );
    stop_clean(sw);
    tb.down();
}

// ---- 2. 100 MB both ways through the insertion ---------------------------------------------

/// 100 MB down and up through `pool`, byte-exact; then 1 MB down and up again on one
/// keep-alive connection (the second request rides the first one's shifted numbers).
fn transfer_round(tb: &Testbed, pool: &str, tag: &str) {
    let vip = tb.ip(0, 10);
    let dir = format!("/tmp/{}-testbed", tb.name);
    let pool_h = format!("X-Pool: {pool}");
    let file = format!("/tmp/{}-{tag}.bin", tb.name);
    let r = curl_to(
        tb,
        Some(&file),
        &[
            "--max-time",
            "120",
            "-H",
            &pool_h,
            &format!("http://{vip}/big/100M.bin?m=opb-{tag}-dl"),
        ],
    );
    assert_eq!(r.status, 200, "{tag}: 100 MB download");
    let b = r.backend();
    let want = std::fs::read_to_string(format!("{dir}/{b}/www/big/100M.bin.sha256")).unwrap();
    assert_eq!(
        sha256_file(&file),
        want.split_whitespace().next().unwrap(),
        "{tag}: 100 MB download from {b} through {pool}"
    );
    let r = curl(
        tb,
        &[
            "--max-time",
            "120",
            "-H",
            &pool_h,
            "-T",
            &file,
            &format!("http://{vip}/upload/opb-{tag}.bin"),
        ],
    );
    assert!(
        r.status == 201 || r.status == 204,
        "{tag}: upload: {}",
        r.status
    );
    let b = r.backend();
    assert_eq!(
        sha256_file(&format!("{dir}/{b}/www/upload/opb-{tag}.bin")),
        sha256_file(&file),
        "{tag}: 100 MB upload to {b} through {pool}"
    );
    let _ = std::fs::remove_file(&file);

    // keep-alive: GET 1 MB, then PUT it back, on one connection
    let small = format!("/tmp/{}-{tag}-1M.bin", tb.name);
    let hdr = format!("/tmp/{}-{tag}-ka.h", tb.name);
    let out = tb.exec(
        "cli",
        &[
            "curl",
            "-sS",
            "--max-time",
            "60",
            "-D",
            &hdr,
            "-H",
            &pool_h,
            "-o",
            &small,
            &format!("http://{vip}/big/1M.bin?m=opb-{tag}-ka1"),
            "--next",
            "-sS",
            "--max-time",
            "60",
            "-D",
            &hdr,
            "-H",
            &pool_h,
            "-o",
            "/dev/null",
            "-T",
            &small,
            &format!("http://{vip}/upload/opb-{tag}-ka.bin?m=opb-{tag}-ka2"),
        ],
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "{tag}: keep-alive GET+PUT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = std::fs::read_to_string(&hdr).unwrap_or_default();
    let _ = std::fs::remove_file(&hdr);
    let b = h
        .lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .unwrap_or_else(|| panic!("{tag}: no X-Backend in {h}"))
        .trim()
        .to_string();
    let want = std::fs::read_to_string(format!("{dir}/{b}/www/big/1M.bin.sha256")).unwrap();
    assert_eq!(
        sha256_file(&small),
        want.split_whitespace().next().unwrap(),
        "{tag}: 1 MB GET on the keep-alive connection"
    );
    let l1 = wait_lines(tb, &format!("m=opb-{tag}-ka1"), 1)[0].clone();
    let l2 = wait_lines(tb, &format!("m=opb-{tag}-ka2"), 1)[0].clone();
    assert_eq!(l1.0, l2.0, "{tag}: one connection, one backend");
    assert_eq!(
        l1.1.conn, l2.1.conn,
        "{tag}: one connection: {} / {}",
        l1.1.raw, l2.1.raw
    );
    assert_eq!(
        sha256_file(&format!("{dir}/{}/www/upload/opb-{tag}-ka.bin", l1.0)),
        sha256_file(&small),
        "{tag}: 1 MB PUT on the keep-alive connection"
    );
    let _ = std::fs::remove_file(&small);
    // the address arrived with every request
    let client = tb.ip(0, 2);
    assert_eq!(l1.1.remote, client, "{tag}: {}", l1.1.raw);
    assert_eq!(l2.1.remote, client, "{tag}: {}", l2.1.raw);
    let dl = wait_lines(tb, &format!("m=opb-{tag}-dl"), 1)[0].1.clone();
    assert_eq!(dl.remote, client, "{tag}: {}", dl.raw);
}

#[test]
fn big_transfers_with_client_address() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up("opb", 163);
    let mut c = tb.config(1);
    add_backends(&tb, &mut c, &[]);
    add_pool(
        &mut c,
        json!({ "name": "xff", "backends": ["be1x", "be2x", "be3x"], "client_address": "x-forwarded-for" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "pp2", "backends": ["be1p", "be2p", "be3p"], "client_address": "proxy-v2" }),
    );
    let sw = Switch::start(&tb, &c);
    let mut ctl = Ctl::connect(&sw);

    transfer_round(&tb, "xff", "xff-clean");
    transfer_round(&tb, "pp2", "pp2-clean");

    tb.script(&[
        "impair",
        "--loss",
        "2",
        "--dup",
        "1",
        "--reorder",
        "2",
        "--seed",
        "8",
    ]);
    transfer_round(&tb, "xff", "xff-impaired");
    tb.impairment_off_checked(10_000);

    let st = ctl.stats();
    eprintln!("totals: {}", st["total"]);
    // xff-clean and xff-impaired: 2 connections each (100 MB down, 100 MB up) + a
    // keep-alive one with 2 requests, each rewritten
    assert_eq!(total(&st, "xff_inserted"), 8, "xff_inserted");
    assert_eq!(total(&st, "proxy_headers_sent"), 3, "proxy_headers_sent");
    drop(ctl);
    let fin = stop_clean(sw);
    let t = &fin["total"];
    assert!(counter(t, &["spliced_bytes_b2c"]) > 300_000_000);
    assert!(counter(t, &["spliced_bytes_c2b"]) > 300_000_000);
    tb.down();
}

// ---- 3. rule actions -----------------------------------------------------------------------

/// A 5000-byte HTML page (several segments), the same every run.
fn maintenance_page() -> String {
    let mut s =
        String::from("<!DOCTYPE html>\n<html><head><title>Maintenance</title></head><body>\n");
    let mut i = 0;
    while s.len() < 4980 {
        s.push_str(&format!(
            "<p>line {i:04}: we are back soon &mdash; webswitch</p>\n"
        ));
        i += 1;
    }
    s.truncate(4980);
    s.push_str("\n</body></html>\n");
    while s.len() < 5000 {
        s.push(' ');
    }
    s.truncate(5000);
    s
}

/// Sends `request` on a fresh connection with python; returns what came back and how the
/// connection ended: "eof" (FIN), "reset" or "timeout".
fn raw_exchange(tb: &Testbed, request: &str) -> (String, String) {
    let hex: String = request.bytes().map(|x| format!("{x:02x}")).collect();
    let script = format!(
        r#"
import socket, sys
s = socket.create_connection(("{vip}", 80), timeout=5)
s.sendall(bytes.fromhex("{hex}"))
data, end = b"", "timeout"
try:
    while True:
        b = s.recv(65536)
        if not b:
            end = "eof"
            break
        data += b
except ConnectionResetError:
    end = "reset"
except socket.timeout:
    pass
sys.stdout.write(end + "\n" + data.decode("latin-1"))
"#,
        vip = tb.ip(0, 10)
    );
    let out = tb.exec("cli", &["python3", "-c", &script], Duration::from_secs(20));
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (end, data) = text.split_once('\n').unwrap_or((&text, ""));
    (data.to_string(), end.to_string())
}

#[test]
fn rule_actions() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up("opc", 164);
    let page = maintenance_page();
    assert_eq!(page.len(), 5000);
    let mut c = tb.config(1);
    c["tcp"]["closed_linger_ms"] = 300.into();
    let actions = json!([
        { "name": "deny-admin", "match": { "path_prefix": "/admin/" }, "action": { "deny": {} } },
        { "name": "deny-gone", "match": { "path_prefix": "/gone/" }, "action": { "deny": { "status": 410 } } },
        { "name": "moved", "match": { "path_prefix": "/old/" }, "action": { "redirect": {
            "status": 301, "location": "https://{host}{path}",
            "replace_prefix": { "from": "/old/", "to": "/new/" } } } },
        { "name": "elsewhere", "match": { "path_prefix": "/go" }, "action": { "redirect": {
            "location": "http://other.example/landing" } } },
        { "name": "maint", "match": { "path_prefix": "/maint/" }, "action": { "respond": {
            "status": 503, "headers": { "Retry-After": "120", "X-Maint": "yes" },
            "content_type": "text/html; charset=utf-8", "body": page } } },
        { "name": "hello", "match": { "path_prefix": "/hello" }, "action": { "respond": { "body": "hello\n" } } }
    ]);
    let rules = c["rules"].as_array_mut().unwrap();
    for (i, r) in actions.as_array().unwrap().iter().enumerate() {
        rules.insert(i, r.clone());
    }
    let sw = Switch::start(&tb, &c);
    let mut ctl = Ctl::connect(&sw);
    let vip = tb.ip(0, 10);
    let url = |path: &str| format!("http://{vip}{path}");

    // a control request: the backends log what reaches them
    let r = curl(&tb, &[&url("/whoami?m=opc-control")]);
    assert_eq!(r.status, 200);
    wait_lines(&tb, "m=opc-control", 1);

    // deny: default 403 and a configured status; the reason phrase as the body
    let r = curl(&tb, &[&url("/admin/opc-1")]);
    assert_eq!(r.status, 403, "{}", r.headers);
    assert_eq!(r.text(), "Forbidden\n");
    assert_eq!(r.header("Content-Length").as_deref(), Some("10"));
    assert_eq!(
        r.header("Connection")
            .map(|s| s.to_ascii_lowercase())
            .as_deref(),
        Some("close"),
        "{}",
        r.headers
    );
    assert!(r.header("X-Backend").is_none(), "no backend answered");
    assert!(r.secs < 2.0, "the switch answers at once: {:.2} s", r.secs);
    let r = curl(&tb, &["-d", "user=admin&opc=2", &url("/admin/opc-2")]);
    assert_eq!(r.status, 403, "a POST with a body: {}", r.headers);
    assert_eq!(r.text(), "Forbidden\n");
    let r = curl(&tb, &[&url("/gone/opc-3")]);
    assert_eq!(r.status, 410, "{}", r.headers);
    assert_eq!(r.text(), "Gone\n");

    // redirect: host template and prefix replacement, query kept
    let r = curl(
        &tb,
        &[
            "-H",
            "Host: shop.example:8080",
            &url("/old/a/opc-4?x=1&y=2"),
        ],
    );
    let loc = "https://shop.example:8080/new/a/opc-4?x=1&y=2";
    assert_eq!(r.status, 301, "{}", r.headers);
    assert_eq!(r.header("Location").as_deref(), Some(loc), "{}", r.headers);
    assert_eq!(r.text(), format!("Redirecting to {loc}\n"));
    let r = curl(&tb, &[&url("/golf/opc-5")]);
    assert_eq!(r.status, 302, "default redirect status: {}", r.headers);
    assert_eq!(
        r.header("Location").as_deref(),
        Some("http://other.example/landing")
    );

    // respond: status, custom headers, content type, a 5000-byte body byte-exact
    for i in 0..3 {
        let r = curl(&tb, &[&url(&format!("/maint/opc-6-{i}"))]);
        assert_eq!(r.status, 503, "{}", r.headers);
        assert_eq!(r.header("Retry-After").as_deref(), Some("120"));
        assert_eq!(r.header("X-Maint").as_deref(), Some("yes"));
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(r.header("Content-Length").as_deref(), Some("5000"));
        assert_eq!(r.body, page.as_bytes(), "maintenance page byte-exact");
    }
    let r = curl(&tb, &[&url("/hello?opc-7")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type").as_deref(), Some("text/plain"));
    assert_eq!(r.text(), "hello\n");

    // the switch ends its answer with a FIN (not a reset, not a hang)
    let (resp, end) = raw_exchange(&tb, "GET /hello/opc-8 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp:?}");
    assert!(resp.ends_with("\r\n\r\nhello\n"), "{resp:?}");
    assert_eq!(end, "eof", "the answer ends with a FIN");
    // a keep-alive request is answered the same, and the connection closed after it
    let (resp, end) = raw_exchange(
        &tb,
        "GET /admin/opc-9 HTTP/1.1\r\nHost: x\r\n\r\nGET /whoami?opc-9b HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp:?}");
    assert_eq!(resp.matches("HTTP/1.1").count(), 1, "{resp:?}");
    assert!(
        end == "eof" || end == "reset",
        "the switch closes after its answer: {end}"
    );

    // no backend saw any of these
    std::thread::sleep(Duration::from_millis(300));
    let seen = lines_with(&tb, "opc-");
    assert!(
        seen.iter().all(|(_, l)| l.target.contains("m=opc-control")),
        "a backend saw a request the switch answered: {:#?}",
        seen.iter()
            .map(|(b, l)| format!("{b}: {}", l.raw))
            .collect::<Vec<_>>()
    );

    let st = ctl.stats();
    eprintln!("rules: {}", st["rules"]);
    for (rule, hits) in [
        ("deny-admin", 3),
        ("deny-gone", 1),
        ("moved", 1),
        ("elsewhere", 1),
        ("maint", 3),
        ("hello", 2),
    ] {
        assert_eq!(named(&st, "rules", rule)["hits"], hits, "hits of {rule}");
    }
    assert_eq!(total(&st, "rule_answers"), 11, "rule_answers");
    // 403 x 3 and 410; 503 x 3 (the 3xx and 200 answers are neither)
    assert_eq!(total(&st, "http_4xx_sent"), 4, "http_4xx_sent");
    assert_eq!(total(&st, "http_5xx_sent"), 3, "http_5xx_sent");
    drop(ctl);
    let fin = stop_clean(sw);
    assert_eq!(counter(&fin, &["total", "flows_live"]), 0);
    tb.down();
}

// ---- 4. max_connections and the queue ------------------------------------------------------

/// Runs `n` curls at once (each its own connection) to `path_fmt` with `{i}` replaced by
/// 1..=n, `gap` seconds apart; returns (i, status, seconds) for each, sorted by i.
fn concurrent(
    tb: &Testbed,
    pool: &str,
    path_fmt: &str,
    n: usize,
    gap: f64,
) -> Vec<(usize, u16, f64)> {
    let vip = tb.ip(0, 10);
    let path = path_fmt.replace("{i}", "$i");
    let script = format!(
        "for i in $(seq 1 {n}); do \
           (curl -s --max-time 60 -o /dev/null -H 'X-Pool: {pool}' \
              -w \"$i %{{http_code}} %{{time_total}}\\n\" \"http://{vip}{path}\") & \
           sleep {gap}; \
         done; wait"
    );
    let out = cli_bash(tb, &script, Duration::from_secs(120));
    let mut v: Vec<(usize, u16, f64)> = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect();
    v.sort_by_key(|x| x.0);
    assert_eq!(v.len(), n, "every curl reported: {out}");
    v
}

fn max_conns(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    let mut c = tb.config(workers);
    // The default closed_linger_ms (2 s): a slot is free when its backend connection
    // closed, not when the switch forgets the flow.
    add_backends(
        &tb,
        &mut c,
        &[
            ("be1x", json!({ "max_connections": 2 })),
            ("be2x", json!({ "max_connections": 2 })),
            ("be3x", json!({ "max_conns": 1 })),
        ],
    );
    add_pool(
        &mut c,
        json!({ "name": "lim", "backends": ["be1x", "be2x"], "scheduler": "round_robin", "queue_timeout_ms": 20000 }),
    );
    add_pool(
        &mut c,
        json!({ "name": "tight", "backends": ["be3x"], "queue_timeout_ms": 500 }),
    );
    add_pool(
        &mut c,
        json!({ "name": "short", "backends": ["be3x"], "queue_length": 1, "queue_timeout_ms": 10000 }),
    );
    let sw = Switch::start(&tb, &c);
    let mut ctl = Ctl::connect(&sw);
    let st = ctl.stats();
    assert_eq!(named(&st, "pools", "lim")["queued"], 0);

    // 20 concurrent 1-second requests on 2 backends x 2 connections: all complete, in
    // about 5 rounds, and no backend ever serves more than 2 at once.
    let t0 = Instant::now();
    let res = concurrent(&tb, "lim", "/slow/1/opd-a-{i}", 20, 0.0);
    let took = t0.elapsed().as_secs_f64();
    eprintln!("20 x 1 s through 4 slots: {took:.2} s: {res:?}");
    assert!(
        res.iter().all(|r| r.1 == 200),
        "every queued request completes: {res:?}"
    );
    assert!(took >= 4.0, "20 x 1 s on 4 slots cannot take {took:.2} s");
    assert!(
        took < 9.0,
        "20 x 1 s on 4 slots took {took:.2} s: are slots freed only after the closed linger?"
    );
    let lines = wait_lines(&tb, "/slow/1/opd-a-", 20);
    let mut most = 0;
    for b in ["be1", "be2"] {
        let mine: Vec<LogLine> = lines
            .iter()
            .filter(|(x, _)| x == b)
            .map(|(_, l)| l.clone())
            .collect();
        let m = max_overlap(&mine);
        eprintln!("{b}: {} requests, at most {m} at once", mine.len());
        assert!(
            m <= 2,
            "{b} served {m} requests at once (max_connections 2): {:#?}",
            mine.iter().map(|l| &l.raw).collect::<Vec<_>>()
        );
        most = most.max(m);
    }
    assert_eq!(most, 2, "the limit was reached");
    assert!(lines.iter().all(|(b, _)| b != "be3"));
    let st = ctl.stats();
    eprintln!("pools: {}", st["pools"]);
    assert!(
        total(&st, "requests_queued") >= 10,
        "requests_queued: {}",
        total(&st, "requests_queued")
    );
    assert_eq!(named(&st, "pools", "lim")["queued"], 0, "the queue drained");
    assert_eq!(total(&st, "queue_timeouts"), 0);

    // A queue past its timeout: be3x takes one connection; three wait 0.5 s, then 503.
    let res = concurrent(&tb, "tight", "/slow/2/opd-b-{i}", 4, 0.0);
    eprintln!("4 x 2 s on 1 slot, queue timeout 0.5 s: {res:?}");
    let ok: Vec<_> = res.iter().filter(|r| r.1 == 200).collect();
    let late: Vec<_> = res.iter().filter(|r| r.1 == 503).collect();
    assert_eq!((ok.len(), late.len()), (1, 3), "{res:?}");
    for r in &late {
        assert!(
            (0.4..2.0).contains(&r.2),
            "a 503 after the 0.5 s queue timeout, not {:.3} s: {res:?}",
            r.2
        );
    }
    assert!(ok[0].2 >= 1.9, "{res:?}");
    let st = ctl.stats();
    assert_eq!(total(&st, "queue_timeouts"), 3, "queue_timeouts");
    assert_eq!(named(&st, "pools", "tight")["queue_timeouts"], 3);
    assert_eq!(total(&st, "queue_full"), 0);
    wait_lines(&tb, "/slow/2/opd-b-", 1);

    // A full queue: one served, one queued (served after it), the third 503 at once.
    let res = concurrent(&tb, "short", "/slow/2/opd-c-{i}", 3, 0.3);
    eprintln!("3 x 2 s on 1 slot, queue length 1: {res:?}");
    assert_eq!(res[0].1, 200, "{res:?}");
    assert_eq!(res[1].1, 200, "the queued one is served: {res:?}");
    assert!(res[1].2 >= 3.0, "it waited for the first: {res:?}");
    assert!(
        res[1].2 < 5.0,
        "served as soon as the first's connection closed: {res:?}"
    );
    assert_eq!(res[2].1, 503, "queue full: {res:?}");
    assert!(res[2].2 < 0.5, "a full queue answers at once: {res:?}");
    let st = ctl.stats();
    assert_eq!(total(&st, "queue_full"), 1, "queue_full");
    assert_eq!(total(&st, "queue_timeouts"), 3);
    assert_eq!(total(&st, "http_503_sent"), 4, "3 timeouts + 1 full");
    let lines = wait_lines(&tb, "/slow/2/opd-c-", 2);
    let be3: Vec<LogLine> = lines.into_iter().map(|(_, l)| l).collect();
    assert_eq!(max_overlap(&be3), 1, "be3x (max 1) served one at a time");
    drop(ctl);
    stop_clean(sw);
    tb.down();
}

#[test]
fn max_conns_one_worker() {
    max_conns("opd1", 165, 1);
}

#[test]
fn max_conns_two_workers() {
    max_conns("opd2", 166, 2);
}

// ---- 5. retries ----------------------------------------------------------------------------

#[test]
fn retries_and_no_replay() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up("ope", 167);
    let mut c = tb.config(1);
    // no active checks: only retries can save the requests
    c["health"] = json!({ "enabled": false });
    add_backends(&tb, &mut c, &[]);
    add_pool(
        &mut c,
        json!({ "name": "rt", "backends": ["be1", "be2", "be3"], "scheduler": "round_robin" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "post", "backends": ["be2x", "be1x"], "scheduler": "round_robin" }),
    );
    add_pool(
        &mut c,
        json!({ "name": "get", "backends": ["be2p", "be1p"], "scheduler": "round_robin", "client_address": "proxy-v1" }),
    );
    let sw = Switch::start(&tb, &c);
    let mut ctl = Ctl::connect(&sw);
    let vip = tb.ip(0, 10);

    // be2's nginx stopped: 30 new connections all succeed, through retries.
    stop_nginx(&tb, "be2", "TERM");
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..30 {
        let r = curl(
            &tb,
            &[
                "-H",
                "X-Pool: rt",
                &format!("http://{vip}/whoami?m=ope-rt-{i}"),
            ],
        );
        assert_eq!(r.status, 200, "request {i} with be2 stopped: {}", r.headers);
        *seen.entry(r.text().trim().to_string()).or_insert(0) += 1;
    }
    eprintln!("answers with be2 stopped: {seen:?}");
    assert!(!seen.contains_key("be2"));
    let st = ctl.stats();
    eprintln!("totals: {}", st["total"]);
    assert!(total(&st, "retries") > 0, "retries counted");
    assert!(
        total(&st, "backend_connect_failures") > 0,
        "backend_connect_failures counted"
    );
    assert_eq!(total(&st, "http_503_sent"), 0);
    assert_eq!(total(&st, "http_502_sent"), 0);

    // A POST that reached be2 (round robin: the pool's first pick), be2 killed while it
    // sleeps: the client gets 502, and be1 never sees the POST.
    start_nginx(&tb, "be2");
    let post = {
        let (name, vip) = (tb.name.clone(), vip.clone());
        std::thread::spawn(move || {
            let out = Command::new("ip")
                .args(["netns", "exec", &format!("{name}-cli")])
                .args(["curl", "-s", "--max-time", "20", "-o", "/dev/null"])
                .args(["-w", "%{http_code} %{time_total}", "-H", "X-Pool: post"])
                .args(["--data-binary", "order=42&opq=post"])
                .arg(format!("http://{vip}/slow/3/ope-post"))
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    wait_for(
        "the POST to reach be2 (the pool's first pick)",
        Duration::from_secs(5),
        || has_established(&tb, "be2", 8080),
    );
    assert!(
        !has_established(&tb, "be1", 8080),
        "the POST went to be1: the first pick of pool [be2x, be1x] was not be2x"
    );
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    stop_nginx(&tb, "be2", "KILL");
    let got = post.join().unwrap();
    eprintln!(
        "POST: {got} ({:.2} s after the kill)",
        killed_at.elapsed().as_secs_f64()
    );
    assert!(
        got.starts_with("502 "),
        "the POST's client gets 502: {got:?}"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(2),
        "the 502 comes when the backend dies, not after the sleep"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lines_with(&tb, "ope-post").is_empty(),
        "the POST was replayed: {:#?}",
        lines_with(&tb, "ope-post")
    );
    assert!(
        access_log(&tb, "be1").iter().all(|l| l.method != "POST"),
        "be1 saw a POST"
    );
    let st = ctl.stats();
    assert_eq!(total(&st, "http_502_sent"), 1, "http_502_sent");

    // A GET reset before any response byte is retried on the next backend: be2 is
    // started again, takes the GET (first pick of [be2p, be1p]), and is killed while
    // it sleeps; be1 answers the client.
    start_nginx(&tb, "be2");
    let retries_before = total(&st, "retries");
    let get = {
        let (name, vip) = (tb.name.clone(), vip.clone());
        std::thread::spawn(move || {
            let out = Command::new("ip")
                .args(["netns", "exec", &format!("{name}-cli")])
                .args(["curl", "-s", "--max-time", "20"])
                .args(["-w", "\n%{http_code}", "-H", "X-Pool: get"])
                .arg(format!("http://{vip}/slow/2/ope-get"))
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    wait_for(
        "the GET to reach be2 (the pool's first pick)",
        Duration::from_secs(5),
        || has_established(&tb, "be2", 8081),
    );
    std::thread::sleep(Duration::from_millis(300));
    stop_nginx(&tb, "be2", "KILL");
    let got = get.join().unwrap();
    eprintln!("GET: {got:?}");
    assert!(
        got.ends_with("\n200") && got.starts_with("slow on be1: /slow/2/ope-get"),
        "the GET is retried on be1: {got:?}"
    );
    let l = wait_lines(&tb, "ope-get", 1);
    assert_eq!(l[0].0, "be1");
    assert_eq!(l[0].1.remote, tb.ip(0, 2), "{}", l[0].1.raw);
    let st = ctl.stats();
    assert!(
        total(&st, "retries") > retries_before,
        "the GET's retry counted"
    );
    assert_eq!(total(&st, "http_502_sent"), 1, "no 502 for the GET");

    // be2 back for the teardown
    start_nginx(&tb, "be2");
    drop(ctl);
    stop_clean(sw);
    tb.down();
}

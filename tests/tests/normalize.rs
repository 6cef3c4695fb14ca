//! Issue 14 point 6 end to end: a `deny` of `/admin/` holds against every spelling of
//! it that nginx behind would serve as `/admin/...` (decoded escapes, dot segments,
//! repeated slashes), paths that cannot be normalised are answered 400 by the switch,
//! and no backend sees any of those requests. The VIP has `forward_normalized_path`,
//! so an allowed request spelled oddly reaches nginx normalised.
//!
//! Requests go out as raw bytes from python (one connection each), so that no client
//! library tidies the path first, and once through `curl --path-as-is`. Each carries a
//! marker in its query to find it in the backends' access logs.
use std::time::Duration;

use serde_json::json;
use webswitch_tests::{counter, root_or_skip, testbed_lock, Switch, Testbed};

/// Targets nginx serves as `/admin/...`: the switch must answer 403.
const DENIED: &[&str] = &[
    "/admin/",
    "//admin/",
    "/./admin/",
    "/x/../admin/",
    "/x/./../admin/.",
    "/%61dmin/",
    "/adm%69n/",
    "/x/%2e%2e/admin/",
    "/x/.%2E/admin/",
    "/admin/./",
    "/admin//x/..",
    "/%61%64%6d%69%6e/secret",
];

/// Targets the switch cannot normalise: 400.
const REFUSED: &[&str] = &[
    "/admin%2f",
    "/admin/..%2f",
    "/%2e%2e/admin/",
    "/../admin/",
    "/a%00",
    "/%zz",
    "/adm%4",
];

/// curl printing only the status of its answer.
const CURL_STATUS: &[&str] = &[
    "curl",
    "-sS",
    "--max-time",
    "10",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
];

/// The status of the switch's or backend's answer to each raw `GET {target}?m={mark}`.
fn statuses(tb: &Testbed, targets: &[(&str, String)]) -> Vec<u16> {
    statuses_after(tb, None, targets)
}

/// As [`statuses`], each request sent on a keep-alive connection after `first` (an
/// allowed request whose whole answer is read first) when it is given.
fn statuses_after(tb: &Testbed, first: Option<&str>, targets: &[(&str, String)]) -> Vec<u16> {
    let reqs: Vec<String> = targets
        .iter()
        .map(|(t, mark)| {
            let head = format!("GET {t}?m={mark} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            head.bytes().map(|b| format!("{b:02x}")).collect()
        })
        .collect();
    let script = format!(
        r#"
import socket
first = {first:?}
for h in {reqs:?}:
    s = socket.create_connection(("{vip}", 80), timeout=5)
    if first:
        # A first request on the same connection, its answer read whole.
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % first).encode())
        f = s.makefile("rb")
        n = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        f.read(n)
    s.sendall(bytes.fromhex(h))
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    print(line.split(" ")[1] if line.startswith("HTTP/1.") else "0")
"#,
        vip = tb.ip(0, 10),
        first = first.unwrap_or("")
    );
    let out = tb.exec("cli", &["python3", "-c", &script], Duration::from_secs(60));
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect()
}

/// The access-log lines of all backends that contain `marker`.
fn logged(tb: &Testbed, marker: &str) -> Vec<String> {
    ["be1", "be2", "be3"]
        .iter()
        .flat_map(|b| {
            std::fs::read_to_string(format!("/tmp/{}-testbed/{b}/access.log", tb.name))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(marker))
                .map(|l| format!("{b}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Stops the switch past the closed connections' linger and checks that nothing was
/// left behind and that the switch itself answered `answers` requests by a rule.
fn stop_clean(sw: Switch, answers: u64) -> serde_json::Value {
    std::thread::sleep(Duration::from_millis(1000));
    let fin = sw.stop();
    assert_eq!(counter(&fin, &["total", "flows_live"]), 0);
    assert_eq!(counter(&fin, &["mbufs_in_use"]), 0);
    assert_eq!(counter(&fin, &["total", "rule_answers"]), answers);
    fin
}

#[test]
fn deny_holds_on_every_spelling() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up("wsnrm", 185);
    let mut c = tb.config(1);
    c["vips"][0]["forward_normalized_path"] = true.into();
    c["tcp"]["closed_linger_ms"] = 300.into();
    let rules = c["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        json!({ "name": "deny-admin", "match": { "path_prefix": "/admin/" },
                "action": { "deny": {} } }),
    );
    let sw = Switch::start(&tb, &c);

    // Allowed, spelled oddly: reaches a backend, normalised.
    let got = statuses(&tb, &[("/x/..//who%61mi", "wsn-fwd".to_string())]);
    assert_eq!(got, [200], "/x/..//who%61mi is /whoami");
    std::thread::sleep(Duration::from_millis(300));
    let seen = logged(&tb, "m=wsn-fwd");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(
        seen[0].contains("GET /whoami?m=wsn-fwd "),
        "the backend got the normalised target: {}",
        seen[0]
    );

    for (targets, status, tag) in [(DENIED, 403, "d"), (REFUSED, 400, "r")] {
        let marked: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, format!("wsn-{tag}{i}")))
            .collect();
        let got = statuses(&tb, &marked);
        assert_eq!(got.len(), targets.len(), "{got:?}");
        for (t, s) in targets.iter().zip(&got) {
            assert_eq!(*s, status, "{t}");
        }
    }

    // curl, with its own path handling off.
    let url = format!("http://{}/static/../%61dmin/x?m=wsn-curl", tb.ip(0, 10));
    let mut curl = CURL_STATUS.to_vec();
    curl.extend(["--path-as-is", url.as_str()]);
    let out = tb.exec("cli", &curl, Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    std::thread::sleep(Duration::from_millis(300));
    let seen = logged(&tb, "m=wsn-");
    assert!(
        seen.iter().all(|l| l.contains("m=wsn-fwd")),
        "a backend saw a denied or refused request: {seen:#?}"
    );
    let fin = stop_clean(sw, DENIED.len() as u64 + 1);
    assert_eq!(
        counter(&fin, &["total", "http_400_sent"]),
        REFUSED.len() as u64
    );
    tb.down();
}

/// Issue 14 point 5: the deny holds on every request of a keep-alive connection, not
/// only the first, in both modes: each spelling of `/admin/` sent as the second request
/// after an allowed one gets 403 from the switch, and no backend sees it.
fn deny_on_keep_alive(name: &str, net: u8, mode: &str, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    let mut c = tb.config(workers);
    c["vips"][0]["mode"] = mode.into();
    c["tcp"]["closed_linger_ms"] = 300.into();
    c["rules"].as_array_mut().unwrap().insert(
        0,
        json!({ "name": "deny-admin", "match": { "path_prefix": "/admin/" },
                "action": { "deny": {} } }),
    );
    let sw = Switch::start(&tb, &c);
    let marked: Vec<_> = DENIED
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, format!("wsk-{i}")))
        .collect();
    let got = statuses_after(&tb, Some("/index.html?m=wsk-first"), &marked);
    assert_eq!(got.len(), DENIED.len(), "{got:?}");
    for (t, s) in DENIED.iter().zip(&got) {
        assert_eq!(
            *s, 403,
            "{t} as the second request of a keep-alive connection"
        );
    }
    // Pipelined: an allowed request, a denied one and another behind it in one write.
    // The first is answered by a backend, the second by the switch (403, and it closes:
    // the third is never answered), and no backend sees the denied one.
    let script = format!(
        r#"
import re, socket
s = socket.create_connection(("{vip}", 80), timeout=10)
s.sendall(b"GET /index.html?m=wsk-first HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /x/../admin/?m=wsk-piped HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /index.html?m=wsk-after HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
except (ConnectionResetError, socket.timeout):
    pass
print(" ".join(m.decode() for m in re.findall(rb"HTTP/1\.1 (\d\d\d) ", data)))
"#,
        vip = tb.ip(0, 10)
    );
    let out = tb.exec("cli", &["python3", "-c", &script], Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200 403",
        "pipelined allowed, denied, allowed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::thread::sleep(Duration::from_millis(300));
    let seen = logged(&tb, "m=wsk-");
    assert_eq!(
        seen.iter().filter(|l| l.contains("m=wsk-first")).count(),
        DENIED.len() + 1,
        "every first request reached a backend: {seen:#?}"
    );
    assert!(
        seen.iter().all(|l| l.contains("m=wsk-first")),
        "a backend saw a denied request: {seen:#?}"
    );
    stop_clean(sw, DENIED.len() as u64 + 1);
    tb.down();
}

#[test]
fn deny_on_keep_alive_splice_one_worker() {
    deny_on_keep_alive("wsk1", 186, "splice", 1);
}

#[test]
fn deny_on_keep_alive_presplice_two_workers() {
    deny_on_keep_alive("wsk2", 187, "presplice", 2);
}

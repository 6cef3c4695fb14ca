//! What the handoff tests share: agents in the backend namespaces, a switch with a
//! handoff VIP, waits for both to be ready, and a keep-alive client.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{counter, Switch, Testbed};

pub const BACKENDS: [u8; 3] = [1, 2, 3];

/// An agent on backend `b` (1..=4): be4's NIC is on 10.N.2.0/24 behind the router, the
/// others' on 10.N.1.0/24.
pub fn agent_config(tb: &Testbed, b: u8) -> Value {
    let (subnet, host) = if b == 4 { (2, 14) } else { (1, 10 + b) };
    json!({
        "role": "agent",
        "eal": {
            "args": ["--no-huge", "-m", "256", "--no-pci", "--no-telemetry",
                     "--log-level", "lib.eal:warning"],
            "file_prefix": format!("wsa-{}-be{b}", tb.name),
        },
        "lcores": { "main": 0, "workers": [1] },
        "mempool": { "mbufs": 8191, "cache": 256 },
        "nic": { "device": "net_af_packet0,iface=eth0,qpairs=1,framecnt=4096" },
        // The TAP keeps the MAC the testbed gave it (eth0's): the LAN learned that one.
        "kernel": { "device": format!("net_tap0,iface=wsa0,mac=02:00:0a:{:02x}:{subnet:02x}:{host:02x}", tb.net) },
        "vips": [ { "address": tb.ip(0, 10), "tcp_ports": [80] } ],
        "idle_max_sleep_us": 1000,
        // The switch's address on the backends' LAN; beats every 200 ms (default 500).
        "switch": { "address": tb.ip(1, 1), "port": 7946, "capacity": 1000,
                    "heartbeat_ms": 200, "name": format!("be{b}") },
    })
}

pub fn switch_config(tb: &Testbed, workers: usize) -> Value {
    let mut c = tb.config(workers);
    c["vips"][0]["mode"] = "handoff".into();
    c["health"] = json!({ "interval_ms": 300, "timeout_ms": 250 });
    c["tcp"]["fin_timeout_ms"] = 1000.into();
    c["rules"].as_array_mut().unwrap().insert(
        0,
        json!({ "name": "deny-admin", "match": { "path_prefix": "/admin/" },
                "action": { "deny": {} } }),
    );
    c["tcp"]["closed_linger_ms"] = 300.into();
    c["handoff"] = json!({ "agent_port": 7946, "agent_timeout_ms": 1500 });
    c
}

/// The switch's `agents.list` row of each backend, by name.
pub fn agent_rows(sw: &Switch) -> Vec<Value> {
    sw.call("agents.list", json!({}))["agents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn agent_row(sw: &Switch, backend: &str) -> Value {
    agent_rows(sw)
        .into_iter()
        .find(|a| a["name"] == backend)
        .unwrap_or(Value::Null)
}

/// Waits until the switch lists the agents of `backends` as registered and alive, each
/// under its own name.
pub fn wait_agents(sw: &Switch, backends: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = agent_rows(sw);
        let alive = |b: &str| {
            rows.iter().any(|a| {
                a["name"] == b && a["alive"] == true && a["registered"] == true && a["agent"] == b
            })
        };
        if backends.iter().all(|b| alive(b)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agents of {backends:?} not alive within 10 s: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The switch's `handoff_no_agent` so far.
pub fn no_agent_count(sw: &Switch) -> u64 {
    counter(&sw.call("stats", json!({}))["total"], &["handoff_no_agent"])
}

/// curl in the client namespace: (X-Backend, body file's sha256 or body).
pub fn get(tb: &Testbed, tag: &str, path: &str, out: &str) -> String {
    let url = format!("http://{}{path}", tb.ip(0, 10));
    let (be, _) = tb.curl_backend(tag, 120, &["-o", out, &url]);
    be
}

/// The HTTP status of a GET of `path` on the VIP from the client (curl's `%{http_code}`:
/// `000` when no answer came within `max_s` seconds).
pub fn http_code(tb: &Testbed, path: &str, max_s: u64) -> String {
    let url = format!("http://{}{path}", tb.ip(0, 10));
    let max = max_s.to_string();
    let out = tb.exec(
        "cli",
        &[
            "curl",
            "-s",
            "--max-time",
            &max,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
        Duration::from_secs(max_s + 10),
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Waits until the switch has handed a request off successfully (the backends' MACs are
/// learned by the health checks through the agents' bridges).
pub fn wait_ready(tb: &Testbed) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let code = http_code(tb, "/whoami", 2);
        if code == "200" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no handed-off answer within 20 s (last: {code:?})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Python on one keep-alive connection: each step sends a request and reads its
/// response (Content-Length), printing `ok <status line> <X-Backend> <first body line>`,
/// or `reset`/`closed` when the connection ended instead.
pub fn keep_alive(tb: &Testbed, requests: &[&str]) -> Vec<String> {
    keep_alive_with(tb, requests, false, 60, &[])
}

/// [`keep_alive`] where the responses numbered in `heads` (from 0) answer HEAD requests:
/// their length headers describe no body.
pub fn keep_alive_heads(tb: &Testbed, requests: &[&str], heads: &[usize]) -> Vec<String> {
    keep_alive_with(tb, requests, false, 60, heads)
}

/// The same with the body's SHA-256 (hex) in place of its first line, and `max_s`
/// seconds in all (each read waits up to 30 s): for large objects, on impaired links.
pub fn keep_alive_hashed(tb: &Testbed, requests: &[&str], max_s: u64) -> Vec<String> {
    keep_alive_with(tb, requests, true, max_s, &[])
}

fn keep_alive_with(
    tb: &Testbed,
    requests: &[&str],
    hashed: bool,
    max_s: u64,
    heads: &[usize],
) -> Vec<String> {
    let hexes: Vec<String> = requests
        .iter()
        .map(|r| r.bytes().map(|b| format!("{b:02x}")).collect())
        .collect();
    let script = format!(
        r#"
import hashlib, socket
s = socket.create_connection(("{vip}", 80), timeout={read_s})
buf = b""
def more():
    global buf
    d = s.recv(65536)
    if not d:
        raise EOFError
    buf += d
def line():
    global buf
    while b"\r\n" not in buf:
        more()
    l, _, buf = buf.partition(b"\r\n")
    return l
def take(n):
    global buf
    while len(buf) < n:
        more()
    b, buf = buf[:n], buf[n:]
    return b
for i, h in enumerate({hexes:?}):
    s.sendall(bytes.fromhex(h))
    try:
        while b"\r\n\r\n" not in buf:
            more()
        head, _, buf = buf.partition(b"\r\n\r\n")
        fields = [l.lower() for l in head.split(b"\r\n")[1:]]
        if i in {heads:?}:
            body = b""
            text = ""
        elif any(l.startswith(b"transfer-encoding:") and b"chunked" in l for l in fields):
            # Chunk by chunk (the agent's move waits for the last one); the body's lines
            # are printed joined, so every piece is checked.
            body = b""
            while True:
                n = int(line().split(b";")[0], 16)
                if n == 0:
                    while line():
                        pass
                    break
                body += take(n)
                line()
            text = " / ".join(body.decode(errors="replace").splitlines())
        else:
            n = 0
            for l in fields:
                if l.startswith(b"content-length:"):
                    n = int(l.split(b":")[1])
            body = take(n)
            lines = body.decode(errors="replace").splitlines()
            text = lines[0] if lines else ""
        be = [l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n")
              if l.lower().startswith(b"x-backend:")]
        last = hashlib.sha256(body).hexdigest() if {hashed} else text
        print("ok", head.split(b"\r\n")[0].decode(), (be or ["-"])[0], last)
    except ConnectionResetError:
        print("reset"); break
    except EOFError:
        print("closed"); break
    except TimeoutError:
        print("timeout", repr(buf[:300])); break
    except ValueError:
        # Not HTTP where a chunk size should be: another response's bytes in the body.
        print("garbled", repr(buf[:300])); break
"#,
        vip = tb.ip(0, 10),
        read_s = if hashed { 30 } else { 10 },
        hashed = if hashed { "True" } else { "False" },
    );
    let out = tb.exec(
        "cli",
        &["python3", "-c", &script],
        Duration::from_secs(max_s),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Starts an agent in each of `backends`.
pub fn start_agents(tb: &Testbed, backends: &[u8]) -> Vec<Switch> {
    backends
        .iter()
        .map(|&b| {
            Switch::start_in(
                tb,
                &format!("be{b}"),
                &format!("{}-agent{b}", tb.name),
                &agent_config(tb, b),
            )
        })
        .collect()
}

/// Starts an agent in every backend, then the switch; waits until every agent is alive
/// at the switch and a request is handed off end to end.
pub fn start_all(tb: &Testbed, workers: usize) -> (Vec<Switch>, Switch) {
    start_all_with(tb, &switch_config(tb, workers))
}

/// The same with the switch's config given.
pub fn start_all_with(tb: &Testbed, config: &Value) -> (Vec<Switch>, Switch) {
    let agents = start_agents(tb, &BACKENDS);
    let sw = Switch::start(tb, config);
    wait_agents(&sw, &["be1", "be2", "be3"]);
    wait_ready(tb);
    (agents, sw)
}

/// Stops the agents, checking none of them dropped what it should not have; returns the
/// handoffs they established in all.
pub fn stop_agents(agents: Vec<Switch>) -> u64 {
    stop_agents_counting(agents, &["handoffs_established"])[0]
}

/// The same, returning the agents' sums of the counters `names`.
pub fn stop_agents_counting(agents: Vec<Switch>, names: &[&str]) -> Vec<u64> {
    let mut taken = vec![0; names.len()];
    for a in agents {
        let s = a.stop();
        eprintln!("agent: {s}");
        for (sum, name) in taken.iter_mut().zip(names) {
            *sum += counter(&s, &[name]);
        }
        assert!(counter(&s, &["beats_sent"]) >= 2, "register and beats: {s}");
        for k in [
            "drop_bad_option",
            "drop_bad_syn_ack",
            "drop_no_mbuf",
            "drop_table_full",
            "beat_send_failures",
            "drop_bad_request",
            "drop_channel_stranger",
        ] {
            assert_eq!(counter(&s, &[k]), 0, "{k}: {s}");
        }
    }
    taken
}

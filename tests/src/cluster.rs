//! The cluster testbed (`testbed.sh up --cluster`, issue 17): two webswitch instances
//! behind an ECMP router, each with BIRD on its exception TAP. Shared by the cluster
//! tests: instance configs, the router's next hops for the VIP, and requests from the
//! router's client.
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{counter, workspace_root, Switch, Testbed};

/// The cluster VIP of a testbed (on no link: reached only through the BGP routes).
pub fn vip(tb: &Testbed) -> String {
    tb.ip(5, 10)
}

/// Instance `i`'s config: examples/cluster.json on this testbed, its own addresses and
/// DPDK file prefix, `workers` workers.
pub fn instance_config(tb: &Testbed, i: u8, workers: usize) -> Value {
    let text = std::fs::read_to_string(workspace_root().join("examples/cluster.json"))
        .expect("examples/cluster.json");
    let text = text.replace("10.99.", &format!("10.{}.", tb.net));
    let mut c: Value = serde_json::from_str(&text).expect("cluster config is JSON");
    c["eal"]["file_prefix"] = format!("ws-{}-i{i}", tb.name).into();
    c["ports"][0]["addresses"][0] = format!("{}/24", tb.ip(4, 30 + i)).into();
    c["ports"][1]["addresses"][0] = format!("{}/24", tb.ip(1, i)).into();
    // This instance's BIRD announces the VIP only when webswitch says it can serve.
    let ctl = bird_socket(tb, &format!("sw{i}"));
    c["cluster"]["announce"] = serde_json::json!(["birdc", "-s", ctl, "enable", "vip"]);
    c["cluster"]["withdraw"] = serde_json::json!(["birdc", "-s", ctl, "disable", "vip"]);
    if workers == 2 {
        c["lcores"] =
            serde_json::json!({ "main": 0, "workers": [1, 2], "cpus": { "0": 0, "1": 1, "2": 0 } });
        for p in c["ports"].as_array_mut().unwrap() {
            let d = p["device"]
                .as_str()
                .unwrap()
                .replace("qpairs=1", "qpairs=2");
            p["device"] = d.into();
        }
    }
    c
}

/// Stops every instance cleanly and checks that none leaked a buffer.
pub fn stop_all_checked(switches: impl IntoIterator<Item = Switch>) {
    for s in switches {
        let fin = s.stop();
        assert_eq!(counter(&fin, &["mbufs_in_use"]), 0, "mbufs leaked");
    }
}

/// The router's next hops for the VIP now (empty when it has no route).
pub fn next_hops(tb: &Testbed) -> Vec<String> {
    let out = tb.exec(
        "fr",
        &["ip", "-4", "route", "show", &vip(tb)],
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut hops: Vec<String> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    hops.sort();
    hops
}

/// Waits (bounded) until the router's next hops for the VIP are exactly `want`;
/// returns how long that took.
pub fn await_next_hops(tb: &Testbed, want: &[String], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let hops = next_hops(tb);
        if hops == want {
            return start.elapsed();
        }
        if start.elapsed() > within {
            let bird = tb.exec(
                "fr",
                &[
                    "birdc",
                    "-s",
                    &bird_socket(tb, "fr"),
                    "show",
                    "protocols",
                    "all",
                ],
                Duration::from_secs(10),
            );
            panic!(
                "next hops {hops:?}, not {want:?}, after {within:?}; router's BIRD:\n{}",
                String::from_utf8_lossy(&bird.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn bird_socket(tb: &Testbed, name: &str) -> String {
    format!("/tmp/{}-testbed/cluster.d/{name}.ctl", tb.name)
}

/// The testbed's memcached (on the router's front bridge), for `cluster.state_store`.
pub fn store_address(tb: &Testbed) -> String {
    format!("{}:11211", tb.ip(4, 254))
}

pub fn host(tb: &Testbed, i: u8) -> String {
    tb.ip(4, 20 + i)
}

/// `n` requests from the router's client, each on a new connection (a new source port:
/// a new ECMP hash), alternating `/img/logo.png` (pool images: be1) and `/whoami`
/// (default pool). Returns (status, X-Backend, path) per request.
pub fn requests(tb: &Testbed, n: usize) -> Vec<(String, String, String)> {
    let v = vip(tb);
    let script = format!(
        "for i in $(seq 1 {n}); do \
           if [ $((i % 2)) = 0 ]; then p=/img/logo.png; else p=/whoami; fi; \
           r=$(curl -s -o /dev/null --max-time 5 -w '%{{http_code}} %header{{x-backend}}' http://{v}$p) || r=\"fail -\"; \
           echo \"$r $p\"; \
         done"
    );
    let out = tb.exec(
        "fc",
        &["sh", "-c", &script],
        Duration::from_secs(n as u64 * 6 + 30),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f.first().unwrap_or(&"").to_string(),
                f.get(1).unwrap_or(&"").to_string(),
                f.get(2).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

/// Every request answered 200 by its rule's pool.
pub fn assert_all_served(got: &[(String, String, String)], n: usize, what: &str) {
    assert_eq!(got.len(), n, "{what}: {got:?}");
    for (code, be, path) in got {
        assert_eq!(code, "200", "{what}: {path} answered {code} ({got:?})");
        if path == "/img/logo.png" {
            assert_eq!(be, "be1", "{what}: {path} from {be}, outside pool images");
        } else {
            assert!(
                ["be1", "be2", "be3"].contains(&be.as_str()),
                "{what}: {path} from {be:?}"
            );
        }
    }
}

pub fn accepted(sw: &Switch) -> u64 {
    counter(&sw.call("stats", Value::Null), &["total", "conns_accepted"])
}

/// Waits (bounded) until `sw`'s ownership table gives new connections to exactly the
/// members in `mask` (a bit per index in `cluster.members`).
pub fn await_owning(sw: &Switch, mask: u64, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let c = sw.call("cluster", Value::Null);
        if c["membership"]["owning"].as_u64() == Some(mask) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "owning members not {mask:#b} after {within:?}: {c}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /big/100M.bin` through the VIP from the router's client, checked against the sha256
/// of the backend that served it (`X-Backend`: the default pool has three); returns that
/// backend's name.
pub fn download_100m_checked(tb: &Testbed) -> String {
    let hdr = format!("/tmp/{}-big-headers", tb.name);
    let big = tb.exec(
        "fc",
        &[
            "sh",
            "-c",
            &format!(
                "curl -sf --max-time 120 -D {hdr} http://{}/big/100M.bin | sha256sum",
                vip(tb)
            ),
        ],
        Duration::from_secs(150),
    );
    let headers = std::fs::read_to_string(&hdr).unwrap_or_default();
    let _ = std::fs::remove_file(&hdr);
    let be = headers
        .lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .map(|b| b.trim().to_string())
        .unwrap_or_else(|| panic!("no X-Backend in {headers:?}"));
    let want = std::fs::read_to_string(format!(
        "/tmp/{}-testbed/{be}/www/big/100M.bin.sha256",
        tb.name
    ))
    .expect("100M.bin.sha256");
    assert_eq!(
        String::from_utf8_lossy(&big.stdout)
            .split_whitespace()
            .next()
            .unwrap_or(""),
        want.split_whitespace().next().unwrap(),
        "100 MiB from {be} through the VIP"
    );
    be
}

/// Waits (bounded) until `sw` sees exactly the members in `live` (names) as live.
pub fn await_members(sw: &Switch, live: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let c = sw.call("cluster", Value::Null);
        let seen: Vec<&str> = c["membership"]["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter(|m| m["live"] == true)
                    .filter_map(|m| m["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if seen == live {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "members live {seen:?}, not {live:?}, after {within:?}: {c}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both instances started, announced, each seeing the other and owning half; returns them
/// with their configs.
pub fn start_pair(tb: &Testbed, name: &str, workers: usize) -> (Switch, Switch, Value, Value) {
    start_pair_with(tb, name, workers, |_| {})
}

/// [`start_pair`] with both configs changed by `edit` first.
pub fn start_pair_with(
    tb: &Testbed,
    name: &str,
    workers: usize,
    edit: impl Fn(&mut Value),
) -> (Switch, Switch, Value, Value) {
    start_pair_mixed(tb, name, (workers, workers), edit)
}

/// [`start_pair_with`] with instance 1's and instance 2's worker counts apart.
pub fn start_pair_mixed(
    tb: &Testbed,
    name: &str,
    (w1, w2): (usize, usize),
    edit: impl Fn(&mut Value),
) -> (Switch, Switch, Value, Value) {
    let mut c1 = instance_config(tb, 1, w1);
    let mut c2 = instance_config(tb, 2, w2);
    edit(&mut c1);
    edit(&mut c2);
    let s1 = Switch::start_in(tb, "sw", &format!("{name}-i1"), &c1);
    let s2 = Switch::start_in(tb, "sw2", &format!("{name}-i2"), &c2);
    await_next_hops(tb, &[host(tb, 1), host(tb, 2)], Duration::from_secs(20));
    for s in [&s1, &s2] {
        await_members(s, &["sw1", "sw2"], Duration::from_secs(5));
        await_owning(s, 0b11, Duration::from_secs(5));
    }
    (s1, s2, c1, c2)
}

//! Issue 17, point 7: paper 001's stateless front tier as a mode of webswitch
//! (`cluster.front`), for sites without ECMP routers. On the cluster testbed, instance 1 is
//! the front: only it announces the VIP, so the router sends it every client segment; it
//! owns no connection and hands every segment to the member that owns it by the Maglev
//! table (here instance 2, which does not announce the VIP), and instance 2 answers the
//! client directly through the router. One and two workers per instance.
//!
//! A third test gives two owners the front's connections by their workload factors
//! (`cluster.balance: "workload"`).
//!
//! Checked: every new connection is accepted by instance 2 and none by the front, each
//! request by its rule's pool; a 100 MiB download is byte-exact (its data never crosses
//! the front, only the client's ACKs do); a keep-alive load sees no failure; both stop
//! without a leaked buffer.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use webswitch_tests::cluster::{
    accepted, assert_all_served, await_next_hops, await_owning, download_100m_checked, host,
    instance_config, requests, stop_all_checked, vip,
};
use webswitch_tests::{counter, root_or_skip, testbed_lock, workspace_root, Switch, Testbed};

const N: usize = 40;

fn scenario(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up_cluster(name, net);
    let mut c1 = instance_config(&tb, 1, workers);
    c1["cluster"]["front"] = true.into();
    let mut c2 = instance_config(&tb, 2, workers);
    // Instance 2 owns connections but is not announced: only the front is.
    let c = c2["cluster"].as_object_mut().unwrap();
    c.remove("announce");
    c.remove("withdraw");
    let front = Switch::start_in(&tb, "sw", &format!("{name}-f"), &c1);
    let owner = Switch::start_in(&tb, "sw2", &format!("{name}-o"), &c2);
    await_next_hops(&tb, &[host(&tb, 1)], Duration::from_secs(20));
    for s in [&front, &owner] {
        await_owning(s, 0b10, Duration::from_secs(5));
    }

    let got = requests(&tb, N);
    assert_all_served(&got, N, "through the front");
    let (a1, a2) = (accepted(&front), accepted(&owner));
    let handed = counter(
        &front.call("stats", Value::Null),
        &["total", "cluster_handed_over"],
    );
    eprintln!("accepted: front {a1}, owner {a2}; the front handed over {handed} segments");
    assert_eq!(
        (a1, a2),
        (0, N as u64),
        "the front owns nothing, the owner everything"
    );
    assert!(
        handed >= 3 * N as u64,
        "SYN, ACK and request of every connection"
    );

    // A large object: its data goes from the owner to the client past the front.
    let before = counter(&front.call("stats", Value::Null), &["total", "tx_bytes"]);
    download_100m_checked(&tb);
    let sent = counter(&front.call("stats", Value::Null), &["total", "tx_bytes"]) - before;
    eprintln!("the front sent {sent} bytes while 100 MiB went to the client");
    assert!(
        sent < 20 << 20,
        "the response crossed the front: {sent} bytes"
    );

    // Keep-alive load through the front.
    let out = tb.exec(
        "fc",
        &[
            "python3",
            workspace_root()
                .join("tests/tools/keepalive_load.py")
                .to_str()
                .unwrap(),
            &vip(&tb),
            "80",
            "/whoami",
            "16",
            "5",
        ],
        Duration::from_secs(60),
    );
    let load: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("load output: {e}"));
    eprintln!("keep-alive load through the front: {load}");
    assert!(counter(&load, &["requests"]) > 100, "{load}");
    assert_eq!(counter(&load, &["failures"]), 0, "{load}");

    for s in [front, owner] {
        let fin = s.stop();
        assert_eq!(counter(&fin, &["mbufs_in_use"]), 0, "mbufs leaked");
    }
    tb.down();
}

/// Point 7's workload-weighted choice: a front (instance 1) and two owners (instances 2
/// and 3), all with `cluster.balance: "workload"`. Owner 3 has a small flow table
/// (`tcp.max_flows_per_core` 100 with one worker, 50 with two); persistent connections
/// held through the VIP fill about 60% of it (of its fullest core's), so its beats report less capacity, and the front (and every member) gives it
/// a smaller share of the table. New connections then split as the shares say, not
/// evenly; the held connections all still answer; the table goes back to equal shares
/// once they close.
fn weighted(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up_cluster(name, net);
    let members = serde_json::json!([
        { "name": "sw1", "address": tb.ip(4, 31) },
        { "name": "sw2", "address": tb.ip(4, 32) },
        { "name": "sw3", "address": tb.ip(4, 33) },
    ]);
    let configs: Vec<Value> = (1..=3u8)
        .map(|i| {
            let mut c = instance_config(&tb, i, workers);
            c["cluster"]["members"] = members.clone();
            c["cluster"]["balance"] = "workload".into();
            if i == 1 {
                c["cluster"]["front"] = true.into();
            } else {
                // Only the front is announced; the owners answer the client directly.
                let cl = c["cluster"].as_object_mut().unwrap();
                cl.remove("announce");
                cl.remove("withdraw");
            }
            if i == 3 {
                c["tcp"]["max_flows_per_core"] = (100 / workers).into();
            }
            c
        })
        .collect();
    let front = Switch::start_in(&tb, "sw", &format!("{name}-f"), &configs[0]);
    let o2 = Switch::start_in(&tb, "sw2", &format!("{name}-o2"), &configs[1]);
    let o3 = Switch::start_in(&tb, "sw3", &format!("{name}-o3"), &configs[2]);
    await_next_hops(&tb, &[host(&tb, 1)], Duration::from_secs(20));
    for s in [&front, &o2, &o3] {
        await_owning(s, 0b110, Duration::from_secs(10));
    }
    let shares = |s: &Switch| {
        let c = s.call("cluster", Value::Null);
        let m = &c["membership"]["members"];
        (
            m[1]["share"].as_f64().unwrap_or(-1.0),
            m[2]["share"].as_f64().unwrap_or(-1.0),
            c,
        )
    };
    let (s2, s3, c) = shares(&front);
    assert!(
        (s2 - 0.5).abs() < 0.01 && (s3 - 0.5).abs() < 0.01,
        "equal at first: {c}"
    );

    // Load that stays: 120 persistent connections, about 60 on each owner.
    let mut hold = Command::new("ip")
        .args(["netns", "exec", &tb.ns("fc"), "python3"])
        .arg(workspace_root().join("tests/tools/hold_connections.py"))
        .args([vip(&tb).as_str(), "80", "/whoami", "120", "120"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("hold_connections.py");
    let lines = {
        let (tx, rx) = std::sync::mpsc::channel();
        let out = hold.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let opened: Value = serde_json::from_str(
        &lines
            .recv_timeout(Duration::from_secs(90))
            .expect("hold_connections.py opened its connections"),
    )
    .unwrap();
    eprintln!("held: {opened}");
    assert_eq!(counter(&opened, &["held"]), 120, "{opened}");
    let flows = |s: &Switch| counter(&s.call("stats", Value::Null), &["total", "flows_live"]);
    eprintln!("flows: owner 2 {}, owner 3 {}", flows(&o2), flows(&o3));

    // Owner 3's factor falls (smoothed, then held 3 s); every member's table follows.
    let start = Instant::now();
    let (s2, s3) = loop {
        let (s2, s3, c) = shares(&front);
        if s3 < 0.4 {
            eprintln!("after {:?}: {c}", start.elapsed());
            break (s2, s3);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "owner 3's share did not fall: {c}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The owners follow within a few beats: each rebuilds its table from the factors its
    // own beats brought, up to a beat and a rebuild (about 200 ms) after the front (a
    // suite run caught owner 2 still on the equal table right after the front changed).
    let agreed = Instant::now();
    loop {
        let front_s3 = shares(&front).1;
        let (o2_s3, o3_s3) = (shares(&o2).1, shares(&o3).1);
        if (o2_s3 - front_s3).abs() < 0.05 && (o3_s3 - front_s3).abs() < 0.05 {
            break;
        }
        assert!(
            agreed.elapsed() < Duration::from_secs(3),
            "the owners build the front's table: {front_s3} at the front, {o2_s3} and {o3_s3}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // New connections split by the shares.
    let (a2, a3) = (accepted(&o2), accepted(&o3));
    let got = requests(&tb, N_WEIGHTED);
    assert_all_served(&got, N_WEIGHTED, "with weighted shares");
    let (d2, d3) = (accepted(&o2) - a2, accepted(&o3) - a3);
    let (_, s3_after, c) = shares(&front);
    let want = (s3 + s3_after) / 2.0;
    let frac3 = d3 as f64 / (d2 + d3) as f64;
    eprintln!(
        "new connections: owner 2 {d2}, owner 3 {d3} ({:.1}%; its share {:.1}% then {:.1}%; owner 2 {:.1}%)",
        frac3 * 100.0,
        s3 * 100.0,
        s3_after * 100.0,
        s2 * 100.0
    );
    assert_eq!(
        d2 + d3,
        N_WEIGHTED as u64,
        "every new connection accepted by an owner"
    );
    assert!(
        (frac3 - want).abs() < 0.1,
        "owner 3 accepted {frac3:.3} of new connections, its share is {want:.3}: {c}"
    );

    // The held connections were never disturbed by the change of shares.
    drop(hold.stdin.take());
    let closed: Value = serde_json::from_str(
        &lines
            .recv_timeout(Duration::from_secs(60))
            .expect("hold_connections.py closed its connections"),
    )
    .unwrap();
    let _ = hold.wait();
    eprintln!("held connections at the end: {closed}");
    assert_eq!(
        (
            counter(&closed, &["still_answered"]),
            counter(&closed, &["lost"])
        ),
        (120, 0),
        "{closed}"
    );
    // With them gone, owner 3 gets its full share back.
    let start = Instant::now();
    loop {
        let (_, s3, c) = shares(&front);
        if (s3 - 0.5).abs() < 0.01 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "owner 3's share did not come back: {c}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_all_checked([front, o2, o3]);
    tb.down();
}

#[test]
fn a_front_gives_new_connections_by_the_owners_workload_factors_one_worker() {
    weighted("wcw1", 247, 1);
}

#[test]
fn a_front_gives_new_connections_by_the_owners_workload_factors_two_workers() {
    weighted("wcw2", 248, 2);
}

/// New connections measured with weighted shares (enough that 10 points of share is more
/// than three standard deviations).
const N_WEIGHTED: usize = 200;

#[test]
fn a_front_hands_every_connection_to_its_owner_one_worker() {
    scenario("wcf1", 236, 1);
}

#[test]
fn a_front_hands_every_connection_to_its_owner_two_workers() {
    scenario("wcf2", 237, 2);
}

//! Issue 17, point 7: paper 001's stateless front tier as a mode of webswitch
//! (`cluster.front`), for sites without ECMP routers. On the cluster testbed, instance 1 is
//! the front: only it announces the VIP, so the router sends it every client segment; it
//! owns no connection and hands every segment to the member that owns it by the Maglev
//! table (here instance 2, which does not announce the VIP), and instance 2 answers the
//! client directly through the router. One and two workers per instance.
//!
//! Checked: every new connection is accepted by instance 2 and none by the front, each
//! request by its rule's pool; a 100 MiB download is byte-exact (its data never crosses
//! the front, only the client's ACKs do); a keep-alive load sees no failure; both stop
//! without a leaked buffer.
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::cluster::{
    accepted, assert_all_served, await_next_hops, await_owning, download_100m_checked, host,
    instance_config, requests, vip,
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

#[test]
fn a_front_hands_every_connection_to_its_owner_one_worker() {
    scenario("wcf1", 236, 1);
}

#[test]
fn a_front_hands_every_connection_to_its_owner_two_workers() {
    scenario("wcf2", 237, 2);
}

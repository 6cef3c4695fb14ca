use super::*;
use std::net::Ipv4Addr;

const EXAMPLE: &str = include_str!("../../../examples/testbed.json");
const EXAMPLE2: &str = include_str!("../../../examples/testbed-2workers.json");

fn err_of(text: &str) -> ConfigError {
    Config::from_json(text).expect_err("config should be refused")
}

/// Applies `edit` to the example config (as a JSON value) and returns the error.
fn err_after(edit: impl FnOnce(&mut serde_json::Value)) -> ConfigError {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    edit(&mut v);
    err_of(&v.to_string())
}

#[test]
fn examples_parse_and_roundtrip() {
    for text in [EXAMPLE, EXAMPLE2] {
        let c = Config::from_json(text).expect("example is valid");
        let again = Config::from_json(&c.to_json_pretty()).expect("saved config is valid");
        assert_eq!(c, again);
    }
    let c = Config::from_json(EXAMPLE2).unwrap();
    assert_eq!(c.lcores.eal_lcores(), "0@0,1@1,2@0");
    assert_eq!(c.ports[0].dpdk_name(), "net_af_packet0");
    assert!(!c.ports[0].is_pci());
}

#[test]
fn unknown_field_is_named() {
    let e = err_after(|v| {
        v["ports"][1]["adresses"] = serde_json::json!(["10.0.0.1/24"]);
    });
    assert_eq!(e.field, "ports[1].adresses");
    assert!(e.message.contains("unknown field `adresses`"), "{e}");
}

#[test]
fn bad_address_is_named() {
    let e = err_after(|v| v["ports"][0]["addresses"][0] = "10.99.0.300/24".into());
    assert_eq!(e.field, "ports[0].addresses[0]");
    assert!(e.message.contains("not an IPv4 address"), "{e}");
    let e = err_after(|v| v["vips"][0]["address"] = "nope".into());
    assert_eq!(e.field, "vips[0].address");
    let e = err_after(|v| v["ports"][0]["addresses"][0] = "10.99.0.1".into());
    assert!(e.message.contains("ADDRESS/PREFIX"), "{e}");
}

#[test]
fn missing_and_dangling_references() {
    let e = err_after(|v| {
        v.as_object_mut().unwrap().remove("ports");
    });
    assert!(e.message.contains("missing field `ports`"), "{e}");
    let e = err_after(|v| v["vips"][0]["port"] = "nowhere".into());
    assert_eq!(e.field, "vips[0].port");
    let e = err_after(|v| v["ports"] = serde_json::json!([]));
    assert_eq!(e.field, "ports");
    let e = err_after(|v| v["ports"][0]["gateway"] = "192.168.5.1".into());
    assert_eq!(e.field, "ports[0].gateway");
}

#[test]
fn lcores_checked() {
    let e = err_after(|v| v["lcores"]["workers"] = serde_json::json!([]));
    assert_eq!(e.field, "lcores.workers");
    let e = err_after(|v| v["lcores"]["workers"] = serde_json::json!([1, 1]));
    assert_eq!(e.field, "lcores.workers[1]");
    let e = err_after(|v| v["lcores"]["workers"] = serde_json::json!([0]));
    assert_eq!(e.field, "lcores.workers[0]");
    let e = err_after(|v| v["lcores"]["cpus"] = serde_json::json!({"7": 0}));
    assert_eq!(e.field, "lcores.cpus.7");
}

#[test]
fn duplicates_and_ranges() {
    let e = err_after(|v| v["ports"][1]["name"] = "client".into());
    assert_eq!(e.field, "ports[1].name");
    let e = err_after(|v| v["vips"][0]["address"] = "10.99.1.1".into());
    assert_eq!(e.field, "vips[0].address");
    let e = err_after(|v| v["vips"][0]["tcp_ports"] = serde_json::json!([0]));
    assert_eq!(e.field, "vips[0].tcp_ports");
    let e = err_after(|v| v["ports"][0]["rx_descriptors"] = 1000.into());
    assert_eq!(e.field, "ports[0].rx_descriptors");
    let e = err_after(|v| v["eal"]["args"] = serde_json::json!(["--vdev", "net_null0"]));
    assert_eq!(e.field, "eal.args[0]");
    let e = err_after(|v| v["ports"][1]["role"] = "client".into());
    assert_eq!(e.field, "ports");
    let e = err_after(|v| v["ports"][0]["role"] = "sideways".into());
    assert_eq!(e.field, "ports[0].role");
}

#[test]
fn cidr_math() {
    let c: Cidr = "10.99.0.1/24".parse().unwrap();
    assert!(c.contains("10.99.0.200".parse().unwrap()));
    assert!(!c.contains("10.99.1.2".parse().unwrap()));
    assert_eq!(c.to_string(), "10.99.0.1/24");
    assert!("10.0.0.1/33".parse::<Cidr>().is_err());
}

#[test]
fn not_json_is_an_error() {
    let e = err_of("{ not json");
    assert!(e.to_string().contains("config"), "{e}");
}

#[test]
fn example_routing_sections() {
    let c = Config::from_json(EXAMPLE).unwrap();
    assert_eq!(c.backends.len(), 3);
    assert_eq!(c.backends[0].name, "be1");
    assert_eq!(c.backends[2].address, Ipv4Addr::new(10, 99, 1, 13));
    assert_eq!(c.backends[0].weight, 1);
    assert_eq!(c.pool_index("default"), Some(2));
    assert_eq!(c.backend_index("be3"), Some(2));
    assert_eq!(c.pools[2].scheduler, Scheduler::LeastConnections);
    assert_eq!(c.default_pool.as_deref(), Some("default"));
    assert_eq!(c.tcp, TcpConfig::default());
    // Both examples route alike.
    let c2 = Config::from_json(EXAMPLE2).unwrap();
    assert_eq!(
        (&c.backends, &c.pools, &c.rules, &c.default_pool),
        (&c2.backends, &c2.pools, &c2.rules, &c2.default_pool)
    );
}

#[test]
fn routing_defaults() {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["backends"] = serde_json::json!([{ "name": "x", "address": "10.99.1.50" }]);
    v["pools"] = serde_json::json!([{ "name": "p", "backends": ["x"] }]);
    v["rules"] = serde_json::json!([]);
    v["default_pool"] = "p".into();
    v.as_object_mut().unwrap().remove("tcp");
    let c = Config::from_json(&v.to_string()).unwrap();
    let b = &c.backends[0];
    assert_eq!((b.port, b.weight, b.max_connections), (80, 1, None));
    assert_eq!(c.pools[0].scheduler, Scheduler::RoundRobin);
    assert_eq!(
        c.pools[0].lard_thresholds(),
        LardConfig { low: 25, high: 65 }
    );
    let t = &c.tcp;
    assert_eq!(
        (
            t.max_flows_per_core,
            t.max_head_bytes,
            t.head_timeout_ms,
            t.connect_timeout_ms
        ),
        (65536, 8192, 10_000, 1000)
    );
    assert_eq!(
        (
            t.connect_attempts,
            t.idle_timeout_ms,
            t.fin_timeout_ms,
            t.closed_linger_ms
        ),
        (3, 300_000, 30_000, 2000)
    );
    assert_eq!(
        (t.mss, t.window_scale, t.syn_cookie_rotate_s),
        (1460, 7, 300)
    );
    let again = Config::from_json(&c.to_json_pretty()).unwrap();
    assert_eq!(c, again);
    // A LARD pool with thresholds, and a catch-all rule instead of default_pool.
    v["pools"] = serde_json::json!([
        { "name": "p", "backends": ["x"], "scheduler": "lard", "lard": { "high": 10, "low": 3 } }
    ]);
    v["rules"] = serde_json::json!([{ "match": {}, "pool": "p" }]);
    v.as_object_mut().unwrap().remove("default_pool");
    let c = Config::from_json(&v.to_string()).unwrap();
    assert_eq!(
        c.pools[0].lard_thresholds(),
        LardConfig { low: 3, high: 10 }
    );
    assert_eq!(c, Config::from_json(&c.to_json_pretty()).unwrap());
}

#[test]
fn backend_errors_are_named() {
    let e = err_after(|v| v["backends"][1]["address"] = "192.168.7.7".into());
    assert_eq!(e.field, "backends[1].address");
    assert!(e.message.contains("gateway"), "{e}");
    // Off-link is fine once a backend-facing port has a gateway.
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["backends"][1]["address"] = "192.168.7.7".into();
    v["ports"][1]["gateway"] = "10.99.1.254".into();
    Config::from_json(&v.to_string()).expect("routed backend");
    // A gateway on the client-facing port does not count.
    let e = err_after(|v| {
        v["backends"][1]["address"] = "192.168.7.7".into();
        v["ports"][0]["gateway"] = "10.99.0.254".into();
    });
    assert_eq!(e.field, "backends[1].address");
    let e = err_after(|v| v["backends"][1]["address"] = "10.99.1.1".into());
    assert_eq!(e.field, "backends[1].address");
    assert!(e.message.contains("own"), "{e}");
    let e = err_after(|v| v["backends"][2]["address"] = "10.99.1.11".into());
    assert_eq!(e.field, "backends[2].address");
    let e = err_after(|v| v["backends"][1]["address"] = "255.255.255.255".into());
    assert_eq!(e.field, "backends[1].address");
    let e = err_after(|v| v["backends"][1]["address"] = "10.99.1".into());
    assert_eq!(e.field, "backends[1].address");
    let e = err_after(|v| v["backends"][1]["name"] = "be1".into());
    assert_eq!(e.field, "backends[1].name");
    let e = err_after(|v| v["backends"][0]["port"] = 0.into());
    assert_eq!(e.field, "backends[0].port");
    let e = err_after(|v| v["backends"][0]["port"] = 70000.into());
    assert_eq!(e.field, "backends[0].port");
    let e = err_after(|v| v["backends"][0]["weight"] = 2_000_000.into());
    assert_eq!(e.field, "backends[0].weight");
    let e = err_after(|v| v["backends"][0]["max_connections"] = 0.into());
    assert_eq!(e.field, "backends[0].max_connections");
    let e = err_after(|v| v["backends"][0]["wieght"] = 1.into());
    assert_eq!(e.field, "backends[0].wieght");
}

#[test]
fn pool_errors_are_named() {
    let e = err_after(|v| v["pools"][0]["backends"] = serde_json::json!(["be1", "be9"]));
    assert_eq!(e.field, "pools[0].backends[1]");
    assert!(e.message.contains("be9"), "{e}");
    let e = err_after(|v| v["pools"][2]["backends"] = serde_json::json!(["be1", "be2", "be1"]));
    assert_eq!(e.field, "pools[2].backends[2]");
    let e = err_after(|v| v["pools"][0]["backends"] = serde_json::json!([]));
    assert_eq!(e.field, "pools[0].backends");
    let e = err_after(|v| v["pools"][1]["name"] = "images".into());
    assert_eq!(e.field, "pools[1].name");
    let e = err_after(|v| v["pools"][0]["scheduler"] = "fastest".into());
    assert_eq!(e.field, "pools[0].scheduler");
    let e = err_after(|v| v["pools"][0]["lard"] = serde_json::json!({}));
    assert_eq!(e.field, "pools[0].lard");
    let e = err_after(|v| {
        v["pools"][0]["scheduler"] = "lard".into();
        v["pools"][0]["lard"] = serde_json::json!({ "low": 70 });
    });
    assert_eq!(e.field, "pools[0].lard.low");
    let e = err_after(|v| {
        v["pools"][0]["scheduler"] = "lard".into();
        v["pools"][0]["lard"] = serde_json::json!({ "low": 0, "high": 0 });
    });
    assert_eq!(e.field, "pools[0].lard.high");
    // No pools, no rules, no default: requests would have nowhere to go.
    let e = err_after(|v| {
        v["pools"] = serde_json::json!([]);
        v["rules"] = serde_json::json!([]);
        v.as_object_mut().unwrap().remove("default_pool");
    });
    assert_eq!(e.field, "default_pool");
}

#[test]
fn rule_errors_are_named() {
    let e = err_after(|v| v["rules"][2]["pool"] = "nope".into());
    assert_eq!(e.field, "rules[2].pool");
    let e = err_after(|v| v["rules"][0]["match"] = serde_json::json!({ "path_regex": "a(b" }));
    assert_eq!(e.field, "rules[0].match.path_regex");
    let e = err_after(|v| v["default_pool"] = "gone".into());
    assert_eq!(e.field, "default_pool");
}

#[test]
fn operator_fields_parse_and_bad_ones_are_named() {
    use serde_json::json;
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["backends"][0]["max_conns"] = 2.into();
    v["pools"][0]["client_address"] = "proxy-v2".into();
    v["pools"][1]["client_address"] = "x-forwarded-for".into();
    v["pools"][1]["client_xff"] = "append".into();
    v["pools"][1]["retries"] = 1.into();
    v["pools"][1]["queue_length"] = 0.into();
    v["rules"][0] =
        json!({ "name": "deny", "match": { "path_prefix": "/admin" }, "action": { "deny": {} } });
    v["rules"][1] = json!({ "match": { "path_prefix": "/old/" },
        "action": { "redirect": { "location": "https://{host}{path}", "replace_prefix": { "from": "/old/", "to": "/new/" } } } });
    let c = Config::from_json(&v.to_string()).unwrap();
    assert_eq!(c.backends[0].max_connections, Some(2));
    assert_eq!(c.pools[0].client_address, super::ClientAddress::ProxyV2);
    assert_eq!(c.pools[1].client_xff, super::ClientXff::Append);
    assert_eq!((c.pools[1].retries, c.pools[1].queue_length), (Some(1), 0));
    assert_eq!(c.pools[2].queue_timeout_ms, 5000, "defaults");
    assert!(matches!(
        c.rules[0].action,
        Some(super::RuleAction::Deny { status: 403 })
    ));
    // Round trip: what `config save` writes, `webswitch run` reads back the same.
    let again = Config::from_json(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);

    let e = err_after(|v| v["pools"][0]["client_address"] = "x-real-ip".into());
    assert_eq!(e.field, "pools[0].client_address");
    let e = err_after(|v| v["pools"][0]["client_xff"] = "append".into());
    assert_eq!(e.field, "pools[0].client_xff");
    let e = err_after(|v| v["pools"][0]["retries"] = 17.into());
    assert_eq!(e.field, "pools[0].retries");
    let e = err_after(|v| v["pools"][0]["queue_timeout_ms"] = 0.into());
    assert_eq!(e.field, "pools[0].queue_timeout_ms");
    let e = err_after(|v| v["pools"][0]["queue_length"] = 100_000.into());
    assert_eq!(e.field, "pools[0].queue_length");
    let e = err_after(|v| {
        v["pools"][0]["client_address"] = "proxy-v1".into();
        v["pools"][0]["warm"] = json!({ "min_idle": 2 });
    });
    assert_eq!(e.field, "pools[0].warm");
    assert!(
        e.message.contains("pools[0].client_address"),
        "names both: {e}"
    );
    let e = err_after(|v| v["pools"][0]["warm"] = json!({ "min_idle": 5, "max_idle": 2 }));
    assert_eq!(e.field, "pools[0].warm");
    let e = err_after(|v| v["rules"][0]["action"] = json!({ "deny": { "status": 200 } }));
    assert_eq!(e.field, "rules[0].pool", "both pool and action: {e}");
    let action = |a: serde_json::Value| {
        move |v: &mut serde_json::Value| {
            v["rules"][0].as_object_mut().unwrap().remove("pool");
            v["rules"][0]["action"] = a.clone();
        }
    };
    let e = err_after(action(json!({ "deny": { "status": 200 } })));
    assert_eq!(e.field, "rules[0].action.deny.status");
    let e = err_after(action(
        json!({ "redirect": { "status": 200, "location": "/x" } }),
    ));
    assert_eq!(e.field, "rules[0].action.redirect.status");
    let e = err_after(action(
        json!({ "redirect": { "location": "https://{hots}/" } }),
    ));
    assert_eq!(e.field, "rules[0].action.redirect.location");
    assert!(e.message.contains("hots"), "{e}");
    let e = err_after(action(json!({ "redirect": { "location": "a\r\nb" } })));
    assert_eq!(e.field, "rules[0].action.redirect.location");
    let e = err_after(action(
        json!({ "respond": { "headers": { "Content-Length": "5" } } }),
    ));
    assert_eq!(e.field, "rules[0].action.respond.headers.Content-Length");
    let e = err_after(action(json!({ "respond": { "status": 204 } })));
    assert_eq!(e.field, "rules[0].action.respond.status");
    let e = err_after(action(json!({ "respond": { "body": "x".repeat(40_000) } })));
    assert_eq!(e.field, "rules[0].action.respond.body");
    let e = err_after(action(json!({ "forward": {} })));
    assert!(e.field.starts_with("rules[0].action"), "{e}");
    let e = err_after(|v| {
        v["rules"][0].as_object_mut().unwrap().remove("pool");
    });
    assert_eq!(e.field, "rules[0].pool");
}

#[test]
fn tcp_ranges_are_named() {
    for (field, bad) in [
        ("max_head_bytes", 512u64),
        ("max_head_bytes", 70_000),
        ("max_flows_per_core", 0),
        ("max_conns_per_client", 1 << 25),
        ("connect_attempts", 0),
        ("mss", 100),
        ("mss", 9001),
        ("window_scale", 15),
        ("syn_cookie_rotate_s", 0),
        ("head_timeout_ms", 0),
    ] {
        let e = err_after(|v| v["tcp"][field] = bad.into());
        assert_eq!(e.field, format!("tcp.{field}"), "{e}");
    }
    let e = err_after(|v| v["tcp"]["max_head"] = 4096.into());
    assert_eq!(e.field, "tcp.max_head");
}

#[test]
fn forward_normalized_path_per_vip() {
    let c = Config::from_json(EXAMPLE).unwrap();
    let vip = c.vips[0].address;
    assert!(!c.vips[0].forward_normalized_path, "off by default");
    assert!(!c.forwards_normalized_path(vip));
    assert!(
        !c.to_json_pretty().contains("forward_normalized_path"),
        "the default is not written out"
    );
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["vips"][0]["forward_normalized_path"] = true.into();
    let c = Config::from_json(&v.to_string()).unwrap();
    assert!(c.forwards_normalized_path(vip));
    assert!(!c.forwards_normalized_path(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
    let e = err_after(|v| v["vips"][0]["forward_normalized_path"] = "yes".into());
    assert_eq!(e.field, "vips[0].forward_normalized_path");
    let e = err_after(|v| v["vips"][0]["forward_normalised_path"] = true.into());
    assert_eq!(e.field, "vips[0].forward_normalised_path");
}

#[test]
fn handoff_block_defaults_and_named_errors() {
    let c = Config::from_json(EXAMPLE).unwrap();
    assert_eq!(c.handoff, HandoffConfig::default());
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["handoff"] = serde_json::json!({ "agent_port": 9000, "agent_timeout_ms": 800 });
    let c = Config::from_json(&v.to_string()).unwrap();
    assert_eq!(
        (c.handoff.agent_port, c.handoff.agent_timeout_ms),
        (9000, 800)
    );
    assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
    let e = err_after(|v| v["handoff"] = serde_json::json!({ "agent_port": 0 }));
    assert_eq!(e.field, "handoff.agent_port");
    let e = err_after(|v| v["handoff"] = serde_json::json!({ "agent_timeout_ms": 50 }));
    assert_eq!(e.field, "handoff.agent_timeout_ms");
    let e = err_after(|v| v["handoff"] = serde_json::json!({ "agent_ports": 1 }));
    assert_eq!(e.field, "handoff.agent_ports");
}

#[test]
fn session_cookie_only_on_handoff_vips_and_named() {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["vips"][0]["mode"] = "handoff".into();
    v["vips"][0]["session_cookie"] = "PHPSESSID".into();
    let c = Config::from_json(&v.to_string()).unwrap();
    let vip = c.vips[0].address;
    assert_eq!(c.session_cookie(vip), Some("PHPSESSID"));
    assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
    for bad in ["SID", "PHP SESSID", "PHPSESS;D", ""] {
        let e = err_after(|v| {
            v["vips"][0]["mode"] = "handoff".into();
            v["vips"][0]["session_cookie"] = bad.into();
        });
        assert_eq!(e.field, "vips[0].session_cookie", "{bad:?}");
    }
    // A splice VIP sees its responses; cookie-name rewriting is the agents' work.
    let e = err_after(|v| v["vips"][0]["session_cookie"] = "PHPSESSID".into());
    assert_eq!(e.field, "vips[0].session_cookie");
    assert!(e.message.contains("handoff"), "{}", e.message);
}

#[test]
fn preallocate_only_on_handoff_vips() {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["vips"][0]["mode"] = "handoff".into();
    v["vips"][0]["preallocate"] = true.into();
    let c = Config::from_json(&v.to_string()).unwrap();
    assert!(c.preallocates(c.vips[0].address));
    assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
    let e = err_after(|v| v["vips"][0]["preallocate"] = true.into());
    assert_eq!(e.field, "vips[0].preallocate");
}

const CLUSTER: &str = include_str!("../../../examples/cluster.json");

/// Applies `edit` to examples/cluster.json and returns the error.
fn cluster_err_after(edit: impl FnOnce(&mut serde_json::Value)) -> ConfigError {
    let mut v: serde_json::Value = serde_json::from_str(CLUSTER).unwrap();
    edit(&mut v);
    err_of(&v.to_string())
}

#[test]
fn cluster_example_parses_and_finds_itself() {
    let c = Config::from_json(CLUSTER).expect("examples/cluster.json is valid");
    assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
    assert_eq!(c.cluster.me(&c.ports), Some((0, 0)));
    assert_eq!(c.ports[0].exception.as_ref().unwrap().tap, "wsx0");
    assert_eq!(
        (
            c.cluster.port,
            c.cluster.heartbeat_ms,
            c.cluster.dead_after_ms
        ),
        (7947, 100, 500)
    );
}

#[test]
fn cluster_members_are_checked_by_field() {
    let field = |e: ConfigError| e.field;
    // This instance must be exactly one member.
    let e = cluster_err_after(|v| v["cluster"]["members"][0]["address"] = "10.99.4.33".into());
    assert_eq!(field(e), "cluster.members");
    let e = cluster_err_after(|v| v["cluster"]["members"][1]["name"] = "sw1".into());
    assert_eq!(field(e), "cluster.members[1].name");
    let e = cluster_err_after(|v| v["cluster"]["members"][1]["address"] = "10.99.4.31".into());
    assert_eq!(field(e), "cluster.members[1].address");
    // Peers must be on the members' port's link; VIPs on that port.
    let e = cluster_err_after(|v| v["cluster"]["members"][1]["address"] = "10.99.9.32".into());
    assert_eq!(field(e), "cluster.members[1].address");
    let e = cluster_err_after(|v| {
        v["cluster"]["members"][0]["address"] = "10.99.1.1".into();
    });
    assert_eq!(
        field(e),
        "cluster.members[0].address",
        "a backend-facing port"
    );
    let e = cluster_err_after(|v| v["cluster"]["heartbeat_ms"] = 5.into());
    assert_eq!(field(e), "cluster.heartbeat_ms");
    let e = cluster_err_after(|v| v["cluster"]["dead_after_ms"] = 150.into());
    assert_eq!(field(e), "cluster.dead_after_ms");
    let e = cluster_err_after(|v| v["cluster"]["port"] = 7946.into());
    assert_eq!(field(e), "cluster.port");
    let e = cluster_err_after(|v| v["ports"][0]["exception"]["tap"] = "no/slash".into());
    assert_eq!(field(e), "ports[0].exception.tap");
    let e = cluster_err_after(|v| {
        v["cluster"]["withdraw"] = serde_json::json!([]);
    });
    assert_eq!(field(e), "cluster.withdraw");
    // A front needs someone to hand its connections to.
    let e = cluster_err_after(|v| {
        v["cluster"]["front"] = true.into();
        v["cluster"]["members"] = serde_json::json!([{ "name": "sw1", "address": "10.99.4.31" }]);
    });
    assert_eq!(field(e), "cluster.front");
    // A state store: an address to reach, a TTL memcached takes as relative.
    let e = cluster_err_after(|v| {
        v["cluster"]["state_store"] = serde_json::json!({ "memcached": "0.0.0.0:11211" });
    });
    assert_eq!(field(e), "cluster.state_store.memcached");
    let e = cluster_err_after(|v| {
        v["cluster"]["state_store"] =
            serde_json::json!({ "memcached": "10.99.4.254:11211", "ttl_s": 2_592_001 });
    });
    assert_eq!(field(e), "cluster.state_store.ttl_s");
    let e = cluster_err_after(|v| {
        v["cluster"]["state_store"] = serde_json::json!({ "memcached": "10.99.4.254:11211" });
        v["cluster"]["members"] = serde_json::json!([]);
    });
    assert_eq!(field(e), "cluster.state_store");
    let mut v: serde_json::Value = serde_json::from_str(CLUSTER).unwrap();
    v["cluster"]["state_store"] = serde_json::json!({ "memcached": "10.99.4.254:11211" });
    let store = Config::from_json(&v.to_string())
        .unwrap()
        .cluster
        .state_store;
    assert_eq!(store.map(|s| s.ttl_s), Some(3600));
    let mut v: serde_json::Value = serde_json::from_str(CLUSTER).unwrap();
    v["cluster"]["front"] = true.into();
    assert!(Config::from_json(&v.to_string()).unwrap().cluster.front);
    // Shares of new connections: equal unless the workload factor is asked for.
    let e = cluster_err_after(|v| v["cluster"]["balance"] = "weighted".into());
    assert_eq!(field(e), "cluster.balance");
    let c = Config::from_json(CLUSTER).unwrap();
    assert_eq!(c.cluster.balance, super::Balance::Equal);
    let mut v: serde_json::Value = serde_json::from_str(CLUSTER).unwrap();
    v["cluster"]["balance"] = "workload".into();
    let c = Config::from_json(&v.to_string()).unwrap();
    assert_eq!(c.cluster.balance, super::Balance::Workload);
    assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
}

#[test]
fn local_backend_needs_its_ports_exception_tap() {
    // The backend port of the example has no exception path.
    let e = err_after(|c| c["backends"][2]["local"] = true.into());
    assert_eq!(e.field, "backends[2].local");
    assert!(e.message.contains("without an `exception` TAP"), "{e}");
    // With one, the same backend is accepted...
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["ports"][1]["exception"] = serde_json::json!({ "tap": "wsl0" });
    v["backends"][2]["local"] = true.into();
    let c = Config::from_json(&v.to_string()).expect("a local backend on a TAP port");
    assert!(c.backends[2].local && !c.backends[0].local);
    // ...but never with a tunnel, nor off every backend port's subnet.
    v["backends"][2]["tunnel"] = "ipip".into();
    let e = err_of(&v.to_string());
    assert_eq!(e.field, "backends[2].local");
    assert!(e.message.contains("tunnel"), "{e}");
    v["backends"][2]["tunnel"] = serde_json::Value::Null;
    v["ports"][1]["gateway"] = "10.99.1.254".into();
    v["backends"][2]["address"] = "10.99.7.13".into();
    let e = err_of(&v.to_string());
    assert_eq!(e.field, "backends[2].local");
    assert!(e.message.contains("no subnet"), "{e}");
}

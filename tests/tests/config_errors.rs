//! Bad configs given to the real binary: each exits non-zero (2) with a message naming
//! the field, before anything is started. The parse and validation cases need no root;
//! the ones that reach DPDK (a CPU we may not use, a device with too few queues, a
//! device that does not exist) run the EAL and need root.
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::{root_or_skip, run_with_timeout, webswitch_bin, workspace_root};

fn example() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("examples/testbed.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs `webswitch VERB --config <config>`; returns (exit code, stderr).
fn webswitch(verb: &str, config: &str, tag: &str) -> (i32, String) {
    let path = std::env::temp_dir().join(format!("ws-cfgtest-{}-{tag}.json", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let out = run_with_timeout(
        Command::new(webswitch_bin())
            .args([verb, "--config"])
            .arg(&path)
            .env("WEBSWITCH_LOG", "warn"),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_rejected(verb: &str, config: &str, tag: &str, field: &str, words: &str) {
    let (code, err) = webswitch(verb, config, tag);
    assert_eq!(code, 2, "{tag}: want exit 2, stderr:\n{err}");
    if !field.is_empty() {
        assert!(
            err.contains(&format!("`{field}")),
            "{tag}: error must name `{field}`:\n{err}"
        );
    }
    assert!(
        err.contains(words),
        "{tag}: error must say {words:?}:\n{err}"
    );
    assert!(!err.contains("panicked"), "{tag}: panicked:\n{err}");
}

#[test]
fn the_example_config_checks_clean() {
    let text = std::fs::read_to_string(workspace_root().join("examples/testbed.json")).unwrap();
    let (code, err) = webswitch("check", &text, "ok");
    // `check` also verifies the lcores' CPUs; the example uses CPUs 0 and 1.
    assert_eq!(code, 0, "{err}");
}

#[test]
fn parse_and_validation_errors_name_the_field() {
    let mut v = example();
    v["ports"][1]["adresses"] = v["ports"][1]["addresses"].take();
    v["ports"][1].as_object_mut().unwrap().remove("addresses");
    assert_rejected("run", &v.to_string(), "unknown", "ports[1]", "adresses");

    let mut v = example();
    v["ports"][0]["addresses"][0] = "10.99.0.300/24".into();
    assert_rejected(
        "run",
        &v.to_string(),
        "badaddr",
        "ports[0].addresses[0]",
        "10.99.0.300",
    );

    let mut v = example();
    v["vips"][0]["port"] = "uplink".into();
    assert_rejected("run", &v.to_string(), "noport", "vips[0].port", "uplink");

    let mut v = example();
    v["ports"] = Value::Array(vec![]);
    assert_rejected("check", &v.to_string(), "noports", "ports", "");

    assert_rejected("check", "{ not json", "notjson", "", "");
}

#[test]
fn an_unusable_cpu_is_named_before_the_eal_starts() {
    let mut v = example();
    v["lcores"]["workers"] = serde_json::json!([1, 5]);
    v["lcores"]["cpus"] = serde_json::json!({ "5": 250 });
    assert_rejected("run", &v.to_string(), "cpu", "lcores.workers[1]", "CPU 250");
}

#[test]
fn dpdk_level_errors_name_the_port() {
    if !root_or_skip() {
        return;
    }
    // Two workers on a device with one queue pair: the hint names qpairs.
    let mut v = example();
    v["eal"]["file_prefix"] = format!("ws-cfgq-{}", std::process::id()).into();
    v["lcores"] =
        serde_json::json!({ "main": 0, "workers": [1, 2], "cpus": { "0": 0, "1": 1, "2": 0 } });
    v["ports"][0]["device"] = "net_af_packet0,iface=lo,qpairs=1".into();
    v["ports"][1]["device"] = "net_af_packet1,iface=lo,qpairs=2".into();
    assert_rejected(
        "run",
        &v.to_string(),
        "qpairs",
        "ports[0].device",
        "qpairs=2",
    );
    assert!(!std::path::Path::new(&format!("/run/dpdk/ws-cfgq-{}", std::process::id())).exists());

    // An interface that does not exist in the switch's namespace.
    let mut v = example();
    v["eal"]["file_prefix"] = format!("ws-cfgd-{}", std::process::id()).into();
    v["ports"][0]["device"] = "net_af_packet0,iface=lo".into();
    v["ports"][1]["device"] = "net_af_packet1,iface=ws-no-such-if".into();
    assert_rejected(
        "run",
        &v.to_string(),
        "nodev",
        "ports[1].device",
        "ws-no-such-if",
    );
    assert!(!std::path::Path::new(&format!("/run/dpdk/ws-cfgd-{}", std::process::id())).exists());
}

use super::*;

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

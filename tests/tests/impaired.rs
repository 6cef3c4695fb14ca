//! Byte-exact delivery through the splice under loss, reordering and duplication,
//! injected on the client's and the backends' links in both directions (no netem in
//! this kernel: `testbed.sh impair` uses nftables and an NFQUEUE reorderer, see
//! docs/testbed.md). The test prints what was injected and asserts that every kind of
//! impairment actually happened in every direction, so a pass proves the switch
//! carried the transfer through it.
use std::time::Duration;

use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Switch, Testbed};

fn curl(tb: &Testbed, args: &[&str]) -> String {
    tb.curl_backend("imp", 120, args).0
}

fn scenario(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    let sw = Switch::start(&tb, &tb.config(workers));
    tb.script(&[
        "impair",
        "--loss",
        "2",
        "--dup",
        "1",
        "--reorder",
        "2",
        "--seed",
        "7",
    ]);

    let vip = tb.ip(0, 10);
    let dir = format!("/tmp/{}-testbed", tb.name);
    let file = format!("/tmp/{}-imp.bin", tb.name);
    let b = curl(&tb, &["-o", &file, &format!("http://{vip}/big/100M.bin")]);
    let want = std::fs::read_to_string(format!("{dir}/{b}/www/big/100M.bin.sha256")).unwrap();
    assert_eq!(
        sha256_file(&file),
        want.split_whitespace().next().unwrap(),
        "100 MB download from {b} under impairment"
    );
    let b = curl(&tb, &["-T", &file, &format!("http://{vip}/upload/imp.bin")]);
    assert_eq!(
        sha256_file(&format!("{dir}/{b}/www/upload/imp.bin")),
        sha256_file(&file),
        "100 MB upload to {b} under impairment"
    );
    let _ = std::fs::remove_file(&file);
    // A handful of short requests too: handshakes and heads through the impairment.
    for _ in 0..20 {
        curl(
            &tb,
            &["-o", "/dev/null", &format!("http://{vip}/static/style.css")],
        );
    }

    tb.impairment_off_checked(10_000);
    std::thread::sleep(Duration::from_millis(2500));
    let fin = sw.stop();
    let t = &fin["total"];
    eprintln!("final totals: {t}");
    assert_eq!(counter(&fin, &["mbufs_in_use"]), 0);
    assert_eq!(counter(t, &["drops", "bad_tcp"]), 0);
    assert!(counter(t, &["spliced_bytes_b2c"]) > 100_000_000);
    tb.down();
}

#[test]
fn impaired_one_worker() {
    scenario("ti1", 121, 1);
}

#[test]
fn impaired_two_workers() {
    scenario("ti2", 122, 2);
}

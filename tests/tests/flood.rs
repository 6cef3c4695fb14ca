//! Issue 15, point 6 (the connection flood, functional): more client connections than
//! the flow table holds. The ones past it are shed (a RST, counted as
//! `drops.flow_table_full`), the established download beside them is unharmed (byte-exact),
//! and once the flood lets go, new clients are served at once. One and two workers.
use std::time::{Duration, Instant};

use serde_json::Value;
use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Switch, Testbed};

/// Flow table entries per core in this test (the default is 65,536).
const FLOWS: u64 = 64;
/// Connections the flood opens: well past every core's table.
const FLOOD: u64 = 300;

/// Opens N connections that send nothing (each one an entry, by cookie, once its ACK
/// arrives), holds them HOLD s, then sees which were reset, and closes them all.
const FLOOD_PY: &str = r#"
import json, socket, sys, time
vip, n, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
socks, refused, errors = [], 0, {}
for _ in range(n):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((vip, 80))
        socks.append(s)
    except OSError as e:
        refused += 1
        errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
        s.close()
time.sleep(hold)
reset = open_ = 0
for s in socks:
    s.setblocking(False)
    try:
        s.recv(1)
        reset += 1  # an answer or a FIN: not held open either
    except BlockingIOError:
        open_ += 1
    except OSError:
        reset += 1
for s in socks:
    s.close()
print(json.dumps({"connected": len(socks), "refused": refused, "errors": errors, "reset": reset, "open": open_}))
"#;

fn scenario(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    let mut c = tb.config(workers);
    c["tcp"]["max_flows_per_core"] = FLOWS.into();
    let sw = Switch::start(&tb, &c);
    let vip = tb.ip(0, 10);

    // An established download that lasts through the flood (5 MB at 1 MB/s).
    let file = format!("/tmp/{name}-flood-5M.bin");
    let url = format!("http://{vip}/big/5M.bin");
    let download = {
        let tb_name = tb.name.clone();
        let file = file.clone();
        std::thread::spawn(move || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &format!("{tb_name}-cli")])
                .args(["curl", "-sS", "--max-time", "60", "--limit-rate", "1M"])
                .args(["-D", "-", "-o", &file, &url])
                .output()
                .expect("curl");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(800));

    let out = tb.exec(
        "cli",
        &["python3", "-c", FLOOD_PY, &vip, &FLOOD.to_string(), "2"],
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "flood: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flood: Value = serde_json::from_str(text.trim()).expect("flood JSON");
    eprintln!(
        "flood of {FLOOD} connections ({workers} worker(s), {FLOWS} flows per core): {flood}"
    );
    // Every flood connection was either held or shed by a RST (which may come before
    // connect() returns: a ConnectionResetError there), none left hanging; no more held
    // than the tables hold.
    let held = flood["open"].as_u64().unwrap();
    let shed = flood["reset"].as_u64().unwrap() + flood["refused"].as_u64().unwrap();
    let resets_in_connect = flood["errors"]["ConnectionResetError"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        resets_in_connect,
        flood["refused"].as_u64().unwrap(),
        "a connect failed other than by a reset: {flood}"
    );
    assert_eq!(held + shed, FLOOD, "{flood}");
    assert!(held >= 1, "no flood connection was held: {flood}");
    let capacity = FLOWS * workers as u64;
    assert!(held <= capacity, "more held than the tables hold: {flood}");
    assert!(shed >= FLOOD - capacity, "{flood}");

    // Right after the flood lets go: new clients are served, every one.
    let t0 = Instant::now();
    for i in 0..20 {
        let out = tb.exec(
            "cli",
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                &format!("http://{vip}/whoami"),
            ],
            Duration::from_secs(10),
        );
        assert!(
            out.status.success(),
            "request {i} after the flood ({:?} after it): {}",
            t0.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("20 requests after the flood served in {:?}", t0.elapsed());

    // The download beside the flood: complete and byte-exact.
    let (ok, head, err) = download.join().expect("download thread");
    assert!(ok, "download during the flood failed: {err}");
    let be = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .map(|b| b.trim().to_owned())
        .expect("X-Backend");
    assert_eq!(
        sha256_file(&file),
        sha256_file(&format!("/tmp/{}-testbed/{be}/www/big/5M.bin", tb.name)),
        "the download beside the flood is not byte-exact"
    );
    let _ = std::fs::remove_file(&file);

    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!(
        "flow_table_full {} linger_recycled {} conns_accepted {}",
        counter(t, &["drops", "flow_table_full"]),
        counter(t, &["linger_recycled"]),
        counter(t, &["conns_accepted"])
    );
    assert!(counter(t, &["drops", "flow_table_full"]) >= 1, "{stats}");
}

#[test]
fn flood_one_worker() {
    scenario("fld1", 203, 1);
}

#[test]
fn flood_two_workers() {
    scenario("fld2", 204, 2);
}

//! Issue 16, point 8: the local node (papers 003 and 004). The switch's own host serves
//! too: a backend marked `local` is the host's kernel, at an address it holds on the
//! exception TAP of the backend port, and the switch reaches it through that TAP instead
//! of the wire (frames to the port's own MAC go to the TAP; what the kernel sends to an
//! address of the switch is handled as if received on the port).
//!
//! On the testbed the host is the switch's namespace: the test gives it a persistent
//! TAP `wsl0` at 10.N.1.9 and a real nginx on that address (its own config, the content
//! of be1's directory, `X-Backend: local`), and routes `/big/` and `/upload/` to a pool
//! of that one backend. Checked with one and two workers (the kernel picks the TAP queue,
//! so a segment often reaches a core that does not own its flow): downloads and an
//! upload byte-exact by SHA-256, a 100 MB download while the client's link loses,
//! duplicates and reorders, the other pools' backends unaffected, and in presplice mode
//! one keep-alive connection whose requests go to a remote backend, the local one and a
//! remote one again.
use std::time::Duration;

use serde_json::{json, Value};
use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Switch, Testbed};

/// The host's address on its TAP (`backends[].address` of the local backend).
const HOST: u8 = 9;

/// Gives the switch namespace's kernel its TAP and address and starts its nginx; returns
/// the local node's directory. Everything goes with the testbed (`down` kills the
/// namespace's processes and deletes it, TAP included).
fn host_up(tb: &Testbed) -> String {
    let ns = tb.ns("sw");
    let dir = format!("/tmp/{}-testbed/local", tb.name);
    let www = format!("/tmp/{}-testbed/be1/www", tb.name);
    for d in ["tmp", "up/upload"] {
        std::fs::create_dir_all(format!("{dir}/{d}")).unwrap();
    }
    let _ = std::fs::remove_file(format!("{dir}/up/upload/local.bin"));
    let addr = tb.ip(1, HOST);
    for args in [
        vec![
            "ip",
            "-n",
            &ns,
            "tuntap",
            "add",
            "wsl0",
            "mode",
            "tap",
            "multi_queue",
        ],
        vec![
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "wsl0",
        ],
        vec!["ip", "-n", &ns, "link", "set", "wsl0", "up"],
    ] {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Checksums and segmentation done by the kernel: the switch sees whole frames.
    for f in ["tx", "sg", "tso", "gso", "gro"] {
        let _ = tb.exec(
            "sw",
            &["ethtool", "-K", "wsl0", f, "off"],
            Duration::from_secs(5),
        );
    }
    let conf = format!(
        "user root;\ndaemon on;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  default_type application/octet-stream;\n\
         client_body_temp_path {dir}/tmp;\n  proxy_temp_path {dir}/tmp;\n\
         fastcgi_temp_path {dir}/tmp;\n  uwsgi_temp_path {dir}/tmp;\n  scgi_temp_path {dir}/tmp;\n\
         server {{\n    listen {addr}:80 backlog=1024;\n    root {www};\n\
         add_header X-Backend local always;\n\
         location = /whoami {{ default_type text/plain; return 200 \"local\\n\"; }}\n\
         location /upload/ {{ root {dir}/up; client_max_body_size 0; dav_methods PUT; \
         create_full_put_path on; }}\n  }}\n}}\n"
    );
    std::fs::write(format!("{dir}/nginx.conf"), conf).unwrap();
    let out = tb.exec(
        "sw",
        &[
            "nginx",
            "-p",
            &dir,
            "-c",
            &format!("{dir}/nginx.conf"),
            "-e",
            &format!("{dir}/error.log"),
        ],
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "nginx on the host: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("http://{addr}/whoami");
    let answers = (0..20).any(|_| {
        let out = tb.exec(
            "sw",
            &["curl", "-s", "--max-time", "2", &url],
            Duration::from_secs(5),
        );
        let ok = String::from_utf8_lossy(&out.stdout).trim() == "local";
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    assert!(answers, "the host's nginx does not answer on {url}");
    dir
}

/// The testbed's config (`presplice` or splice mode) with the host's kernel as backend
/// `local`, the pool `host` of it alone, and `/big/` and `/upload/` routed there.
fn config(tb: &Testbed, workers: usize, presplice: bool) -> Value {
    let mut c = if presplice {
        tb.presplice_config(workers)
    } else {
        tb.config(workers)
    };
    c["ports"][1]["exception"] = json!({ "tap": "wsl0" });
    c["backends"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "local", "address": tb.ip(1, HOST), "port": 80, "local": true }));
    c["pools"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "host", "backends": ["local"] }));
    let rules = c["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        json!({ "name": "host-big", "match": { "path_prefix": "/big/" }, "pool": "host" }),
    );
    rules.insert(
        1,
        json!({ "name": "host-upload", "match": { "path_prefix": "/upload/" }, "pool": "host" }),
    );
    c
}

/// `curl` from the client; the X-Backend of its (last) answer, and stdout.
fn curl(tb: &Testbed, args: &[&str]) -> (String, String) {
    tb.curl_backend("lnode", 120, args)
}

fn want_sha(tb: &Testbed, file: &str) -> String {
    let f = format!("/tmp/{}-testbed/be1/www/big/{file}.sha256", tb.name);
    std::fs::read_to_string(&f)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn scenario(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up(name, net);
    let dir = host_up(&tb);
    let vip = tb.ip(0, 10);
    let out = format!("/tmp/{name}-lnode.bin");

    let sw = Switch::start(&tb, &config(&tb, workers, false));
    // Many short connections to the host, each a handshake through the TAP, and the
    // other pools as before.
    for i in 0..20 {
        let (b, _) = curl(&tb, &["-o", &out, &format!("http://{vip}/big/1M.bin")]);
        assert_eq!(b, "local", "request {i}");
        assert_eq!(
            sha256_file(&out),
            want_sha(&tb, "1M.bin"),
            "1 MB, request {i}"
        );
        let (b, body) = curl(&tb, &[&format!("http://{vip}/whoami")]);
        assert!(b.starts_with("be") && body.trim() == b, "{b}: {body}");
    }
    // Large objects both ways.
    let (b, _) = curl(&tb, &["-o", &out, &format!("http://{vip}/big/100M.bin")]);
    assert_eq!(b, "local");
    assert_eq!(
        sha256_file(&out),
        want_sha(&tb, "100M.bin"),
        "100 MB download"
    );
    let (b, _) = curl(
        &tb,
        &["-T", &out, &format!("http://{vip}/upload/local.bin")],
    );
    assert_eq!(b, "local");
    assert_eq!(
        sha256_file(&format!("{dir}/up/upload/local.bin")),
        want_sha(&tb, "100M.bin"),
        "100 MB upload"
    );
    // The same download with the client's link impaired both ways.
    tb.script(&[
        "impair",
        "--links",
        "client",
        "--loss",
        "1",
        "--dup",
        "1",
        "--reorder",
        "1",
        "--seed",
        "11",
    ]);
    let (b, _) = curl(&tb, &["-o", &out, &format!("http://{vip}/big/100M.bin")]);
    assert_eq!(b, "local");
    assert_eq!(
        sha256_file(&out),
        want_sha(&tb, "100M.bin"),
        "100 MB download, client link impaired"
    );
    tb.impairment_off_checked(1_000);
    let _ = std::fs::remove_file(&out);
    std::thread::sleep(Duration::from_millis(1500));
    let fin = sw.stop();
    let t = &fin["total"];
    eprintln!("local node, {workers} worker(s): {t}");
    assert_eq!(counter(&fin, &["mbufs_in_use"]), 0, "mbufs leaked");
    // At least the upload's 100 MB to the host and the downloads' 200 MB from it (about
    // 72,000 and 145,000 full-size frames) crossed the TAP.
    assert!(counter(t, &["local_node_tx"]) > 72_000, "{t}");
    assert!(counter(t, &["local_node_rx"]) > 145_000, "{t}");
    if workers > 1 {
        // The kernel's choice of TAP queue put some on the other core.
        assert!(counter(t, &["steered_to_peer"]) > 0, "{t}");
    }
    assert_eq!(counter(t, &["drops", "kernel_tx_full"]), 0, "{t}");
    assert_eq!(counter(t, &["drops", "bad_tcp"]), 0, "{t}");

    // Presplice: one keep-alive connection, each request to its own pool's backend.
    let sw = Switch::start(&tb, &config(&tb, workers, true));
    let urls: Vec<String> = ["whoami", "big/1M.bin", "whoami", "big/5M.bin", "whoami"]
        .iter()
        .map(|p| format!("http://{vip}/{p}"))
        .collect();
    let mut args = vec![
        "curl",
        "-sS",
        "--max-time",
        "60",
        "-D",
        "-",
        "-w",
        "connects=%{num_connects}\n",
    ];
    for u in &urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let got = tb.exec("cli", &args, Duration::from_secs(90));
    assert!(got.status.success(), "{got:?}");
    let text = String::from_utf8_lossy(&got.stdout);
    let backends: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("X-Backend: "))
        .map(str::trim)
        .collect();
    let connects: u64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("connects="))
        .map(|n| n.trim().parse::<u64>().unwrap())
        .sum();
    eprintln!("presplice keep-alive: {backends:?}, {connects} connect(s)");
    assert_eq!(backends.len(), 5, "{text}");
    assert_eq!(connects, 1, "one connection for all five: {text}");
    for (i, b) in backends.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(*b, "local", "request {i}: {text}");
        } else {
            assert!(b.starts_with("be"), "request {i}: {text}");
        }
    }
    let fin = sw.stop();
    assert_eq!(counter(&fin, &["mbufs_in_use"]), 0, "mbufs leaked");
    tb.down();
}

#[test]
fn the_switch_host_serves_as_a_backend_one_worker() {
    scenario("ln1", 173, 1);
}

#[test]
fn the_switch_host_serves_as_a_backend_two_workers() {
    scenario("ln2", 174, 2);
}

//! Issue 5 end to end: the management socket of a running switch on the testbed, with
//! real traffic. Backends added at run time take requests; a drained backend finishes
//! its download byte-exact and gets nothing new; rules replaced under wrk fail no
//! request; health checks take a stopped nginx out and bring it back; bad requests get
//! JSON errors and change nothing; the socket refuses another user; a saved config
//! restarts into the same running config.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webswitch_tests::{root_or_skip, testbed_lock, webswitch_bin, Switch, Testbed};

/// A JSON-lines client (kept independent of the mgmt crate, so the wire format is tested).
struct Ctl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Ctl {
    fn connect(path: &str) -> Ctl {
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Ctl {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            next_id: 1,
        }
    }

    fn line(&mut self, line: &str) -> Value {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).expect("reply line");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"))
    }

    /// Sends a command; returns the whole reply (`ok`, `result` or `error`).
    fn raw(&mut self, cmd: &str, args: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let reply = self.line(&json!({ "id": id, "cmd": cmd, "args": args }).to_string());
        assert_eq!(reply["id"], id, "id echoed");
        reply
    }

    fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let r = self.raw(cmd, args);
        assert_eq!(r["ok"], true, "{cmd} failed: {r}");
        r["result"].clone()
    }
}

fn curl_backend(tb: &Testbed, path: &str) -> String {
    let out = tb.exec(
        "cli",
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-D",
            "-",
            &format!("http://{}{path}", tb.ip(0, 10)),
        ],
        Duration::from_secs(15),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| format!("none ({text})"))
}

fn backend_row(ctl: &mut Ctl, name: &str) -> Value {
    let list = ctl.ok("backends.list", json!({}));
    list["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

#[test]
fn run_time_changes_through_the_socket() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let tb = Testbed::up("tm1", 131);
    // Start without be3; checks fast enough for a test.
    let mut config = tb.config(1);
    config["backends"]
        .as_array_mut()
        .unwrap()
        .retain(|b| b["name"] != "be3");
    for p in config["pools"].as_array_mut().unwrap() {
        p["backends"].as_array_mut().unwrap().retain(|b| b != "be3");
    }
    config["health"] = json!({ "interval_ms": 300, "timeout_ms": 200, "rise": 2, "fall": 2, "http_path": "/whoami" });
    let sw = Switch::start(&tb, &config);
    let sock = sw.ready["socket"]
        .as_str()
        .expect("socket in ready")
        .to_string();
    let mut ctl = Ctl::connect(&sock);

    // status and stats answer.
    let st = ctl.ok("status", json!({}));
    assert_eq!(st["config_version"], 1);
    assert!(ctl.ok("stats", json!({}))["total"]["rx_packets"].is_u64());

    // Add be3 at run time: new requests reach it.
    let v = ctl.ok(
        "backends.add",
        json!({ "name": "be3", "address": tb.ip(1, 13), "pools": ["default"] }),
    );
    assert_eq!(v["version"], 2);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..12 {
        seen.insert(curl_backend(&tb, "/whoami"));
    }
    assert!(
        seen.contains("be3"),
        "added backend gets requests: {seen:?}"
    );

    // Drain the backend of a slow 100 MB download: it completes byte-exact, no new
    // request goes there, and the socket reports it empty at the end.
    let dl = {
        let (name, vip) = (tb.name.clone(), tb.ip(0, 10));
        std::thread::spawn(move || {
            let file = format!("/tmp/{name}-drain.bin");
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("{name}-cli"),
                    "curl",
                    "-sS",
                    "--max-time",
                    "60",
                ])
                .args([
                    "--limit-rate",
                    "25M",
                    "-D",
                    &format!("{file}.h"),
                    "-o",
                    &file,
                ])
                .arg(format!("http://{vip}/big/100M.bin"))
                .output()
                .expect("curl");
            (out.status.success(), file)
        })
    };
    let mut victim = String::new();
    wait_for(
        "the download to show in connections.list",
        Duration::from_secs(10),
        || {
            let c = ctl.ok("connections.list", json!({ "state": "spliced" }));
            if let Some(b) = c["connections"]
                .as_array()
                .and_then(|a| a.iter().find_map(|x| x["backend"].as_str()))
            {
                victim = b.to_string();
                true
            } else {
                false
            }
        },
    );
    ctl.ok("backends.drain", json!({ "name": victim }));
    assert_eq!(backend_row(&mut ctl, &victim)["admin"], "drain");
    for _ in 0..8 {
        let b = curl_backend(&tb, "/whoami");
        assert_ne!(b, victim, "a drained backend got a new connection");
    }
    assert!(
        backend_row(&mut ctl, &victim)["active"].as_u64().unwrap() >= 1,
        "the download is still on it"
    );
    let (ok, file) = dl.join().unwrap();
    assert!(ok, "download through a draining backend failed");
    let want = std::fs::read_to_string(format!(
        "/tmp/{}-testbed/{victim}/www/big/100M.bin.sha256",
        tb.name
    ))
    .unwrap();
    let got = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout)
            .split_whitespace()
            .next(),
        want.split_whitespace().next(),
        "byte-exact through the drain"
    );
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(format!("{file}.h"));
    wait_for(
        "the drained backend to report empty",
        Duration::from_secs(10),
        || backend_row(&mut ctl, &victim)["active"] == 0,
    );
    ctl.ok("backends.ready", json!({ "name": victim }));

    // Replace the rules while wrk runs: no failed request; new requests follow them.
    let wrk = {
        let (name, vip) = (tb.name.clone(), tb.ip(0, 10));
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("{name}-cli"),
                    "wrk",
                    "-t2",
                    "-c50",
                    "-d4s",
                    "--timeout",
                    "3s",
                ])
                .arg(format!("http://{vip}/whoami"))
                .output()
                .expect("wrk")
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let before = ctl.ok("rules.show", json!({}));
    let new_rules = json!([{ "name": "all-to-apps", "match": {}, "pool": "apps" }]);
    let bad = ctl.raw(
        "rules.replace",
        json!({ "rules": [{ "match": { "path_regex": "(" }, "pool": "apps" }] }),
    );
    assert_eq!(bad["ok"], false, "a bad regex is refused");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rules[0].match.path_regex"),
        "{bad}"
    );
    let stale = ctl.raw(
        "rules.replace",
        json!({ "rules": new_rules, "expect_version": 1 }),
    );
    assert_eq!(
        stale["error"]["code"], "conflict",
        "stale version refused: {stale}"
    );
    let v = ctl.ok(
        "rules.replace",
        json!({ "rules": new_rules, "expect_version": before["version"] }),
    );
    assert!(v["version"].as_u64().unwrap() > before["version"].as_u64().unwrap());
    let out = wrk.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Socket errors") && !text.contains("Non-2xx"),
        "wrk across the rules change:\n{text}"
    );
    for _ in 0..5 {
        assert_eq!(
            curl_backend(&tb, "/whoami"),
            "be2",
            "new rules send everything to apps (be2)"
        );
    }
    ctl.ok(
        "rules.replace",
        json!({ "rules": before["rules"], "default_pool": before["default_pool"] }),
    );

    // Health: stop be1's nginx → marked down, no traffic; start it → back up.
    let pidfile = format!("/tmp/{}-testbed/be1/nginx.pid", tb.name);
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let _ = std::process::Command::new("kill").arg(&pid).status();
    wait_for("be1 marked down", Duration::from_secs(10), || {
        backend_row(&mut ctl, "be1")["health"] == "down"
    });
    for _ in 0..6 {
        assert_ne!(
            curl_backend(&tb, "/whoami"),
            "be1",
            "a down backend got traffic"
        );
    }
    let conf = format!("/tmp/{}-testbed/be1/nginx.conf", tb.name);
    let out = tb.exec("be1", &["nginx", "-c", &conf], Duration::from_secs(10));
    assert!(
        out.status.success(),
        "restart nginx: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("be1 back up", Duration::from_secs(10), || {
        backend_row(&mut ctl, "be1")["health"] == "up"
    });

    // The access log, switched on at run time: one line per connection, naming the
    // path, the rule's pool and the backend.
    ctl.ok("log.access", json!({ "enabled": true }));
    assert_eq!(curl_backend(&tb, "/app/run.cgi?from=access-log"), "be2");
    wait_for("the access log line", Duration::from_secs(10), || {
        sw.stderr().lines().any(|l| {
            l.contains("access")
                && l.contains("/app/run.cgi?from=access-log")
                && l.contains("backend=be2")
                && l.contains("pool=apps")
        })
    });
    ctl.ok("log.access", json!({ "enabled": false }));
    assert_eq!(
        ctl.ok("log.level", json!({ "level": "info,webswitch=debug" }))["level"],
        "info,webswitch=debug"
    );
    assert_eq!(
        ctl.raw("log.level", json!({ "level": "=[" }))["error"]["code"],
        "invalid_argument"
    );

    // Latency histograms: connection setup and time to first byte, with percentiles.
    let st = ctl.ok("stats", json!({}));
    let lat = &st["total"]["latency_us"];
    assert!(lat["setup"]["count"].as_u64().unwrap() > 10, "{lat}");
    assert!(lat["ttfb"]["p50"].as_u64().unwrap() > 0, "{lat}");
    assert!(lat["ttfb"]["p99"].as_u64().unwrap() >= lat["ttfb"]["p50"].as_u64().unwrap());
    // Rates over the last second, sampled by the switch.
    assert!(
        st["rates"]["requests_per_s"].is_u64() && st["rates"]["conns_per_s"].is_u64(),
        "{}",
        st["rates"]
    );

    // Kill a connection: the client sees a reset.
    let slow = {
        let (name, vip) = (tb.name.clone(), tb.ip(0, 10));
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("{name}-cli"),
                    "curl",
                    "-sS",
                    "--max-time",
                    "30",
                    "--local-port",
                    "61600",
                ])
                .args([
                    "--limit-rate",
                    "200k",
                    "-o",
                    "/dev/null",
                    &format!("http://{vip}/big/100M.bin"),
                ])
                .output()
                .expect("curl")
                .status
                .code()
        })
    };
    let client = format!("{}:61600", tb.ip(0, 2));
    wait_for(
        "the slow download to be spliced",
        Duration::from_secs(10),
        || {
            ctl.ok("connections.list", json!({ "client": client }))["connections"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    );
    assert_eq!(
        ctl.ok("connections.kill", json!({ "client": client }))["killed"],
        1
    );
    assert_eq!(slow.join().unwrap(), Some(56), "killed connection is reset");

    // webswitchctl against the real switch: pools add/remove, exit codes, --json.
    let ctl_bin = webswitch_tests::workspace_root().join("target/debug/webswitchctl");
    let run_ctl = |args: &[&str]| {
        let out = std::process::Command::new(&ctl_bin)
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .expect("webswitchctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert!(
        ctl_bin.exists(),
        "{} missing: build the workspace first (test-all.sh does)",
        ctl_bin.display()
    );
    {
        let (code, text, err) = run_ctl(&[
            "pools",
            "add",
            "api",
            "be1",
            "be2",
            "--scheduler",
            "least_connections",
        ]);
        assert_eq!(code, Some(0), "{text}{err}");
        let (code, text, _) = run_ctl(&["pools"]);
        assert_eq!(code, Some(0));
        assert!(
            text.lines()
                .any(|l| l.starts_with("api") && l.contains("least_connections")),
            "{text}"
        );
        let (code, _, err) = run_ctl(&["pools", "remove", "default"]);
        assert_eq!(code, Some(1), "a pool in use cannot be removed: {err}");
        assert!(err.contains("conflict"), "{err}");
        assert_eq!(run_ctl(&["pools", "remove", "api"]).0, Some(0));
        let (code, text, _) = run_ctl(&["--json", "status"]);
        assert_eq!(code, Some(0));
        let v: Value = serde_json::from_str(&text).expect("--json prints JSON");
        assert_eq!(v["workers"], json!([1]));
        let (code, text, _) = run_ctl(&["top", "--count", "2"]);
        assert_eq!(code, Some(0), "{text}");
    }

    // Bad input: JSON errors, nothing changes.
    let version = ctl.ok("rules.show", json!({}))["version"].clone();
    let r = ctl.line("{ not json");
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "bad_request");
    assert_eq!(
        ctl.raw("no.such.command", json!({}))["error"]["code"],
        "unknown_command"
    );
    assert_eq!(
        ctl.raw(
            "backends.weight",
            json!({ "name": "be1", "weight": "heavy" })
        )["error"]["code"],
        "invalid_argument"
    );
    assert_eq!(
        ctl.raw("backends.drain", json!({ "name": "nope" }))["error"]["code"],
        "not_found"
    );
    let r = ctl.raw(
        "config.apply",
        json!({ "config": { "lcores": { "workers": [1] } } }),
    );
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(
        ctl.ok("rules.show", json!({}))["version"],
        version,
        "failed commands changed nothing"
    );

    // Another user cannot connect.
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "python3", "-c"])
        .arg(format!(
            "import socket; s = socket.socket(socket.AF_UNIX); s.connect({sock:?})"
        ))
        .output()
        .expect("runuser");
    assert!(!out.status.success(), "user nobody connected to the socket");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // config save → restart with it → the same running config.
    let saved = format!("/tmp/{}-saved.json", tb.name);
    ctl.ok("config.save", json!({ "path": saved }));
    let running = ctl.ok("config.show", json!({}))["config"].clone();
    drop(ctl);
    sw.stop();
    let text = std::fs::read_to_string(&saved).unwrap();
    let check = std::process::Command::new(webswitch_bin())
        .args(["check", "--config", &saved])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "saved config must be accepted: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let sw = Switch::start(&tb, &serde_json::from_str(&text).unwrap());
    let mut ctl = Ctl::connect(&sock);
    assert_eq!(
        ctl.ok("config.show", json!({}))["config"],
        running,
        "restart from the saved file"
    );
    assert!(ctl.ok("backends.list", json!({}))["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == "be3"));
    drop(ctl);
    sw.stop();
    let _ = std::fs::remove_file(&saved);
    assert!(
        !std::path::Path::new(&sock).exists(),
        "socket removed at exit"
    );
    tb.down();
}

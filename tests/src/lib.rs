//! End-to-end test harness: brings up a netns testbed under a unique name, runs the real
//! `webswitch` binary in the switch namespace, drives real clients in the client
//! namespace, and tears everything down by name, also when a test panics.
//!
//! Every wait has a timeout, and every command runs with one, so a hung switch fails
//! the test instead of hanging CI.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cluster;
pub mod handoff;

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether we run as root (needed for namespaces and the DPDK EAL).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Returns false (and says why) when a root-only test must be skipped. Under
/// `WS_REQUIRE_ROOT=1` (set by the test script and CI) not being root is a failure.
pub fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("WS_REQUIRE_ROOT").is_some() {
        panic!("WS_REQUIRE_ROOT is set but the tests are not running as root");
    }
    eprintln!("skipped: needs root (network namespaces and the DPDK EAL)");
    false
}

/// Serializes the tests that build testbeds: the machine has two cores, and the switch
/// would be starved by a second testbed's traffic.
pub fn testbed_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The webswitch binary: `$WEBSWITCH_BIN`, or the workspace's debug build (built once
/// on first use if missing).
pub fn webswitch_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("WEBSWITCH_BIN") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "webswitch", "--bin", "webswitch"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p webswitch failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join("webswitch")
    })
    .clone()
}

/// Runs a command with a timeout and returns its output (killing it on timeout).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("wait_with_output"),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait_with_output");
                panic!(
                    "timed out after {timeout:?}: {desc}\nstdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A testbed brought up under its own name and subnet; `Drop` takes it down.
pub struct Testbed {
    pub name: String,
    /// Second octet of the testbed's 10.N.0.0/24 and 10.N.1.0/24 networks.
    pub net: u8,
    script: PathBuf,
}

impl Testbed {
    /// Brings up testbed `name` (at most 5 characters) on 10.`net`.x.x.
    pub fn up(name: &str, net: u8) -> Testbed {
        Testbed::up_with(name, net, &[])
    }

    /// [`Testbed::up`] with the handoff variant (`up --handoff`): a router namespace
    /// that returns the backends' answers to the client past the switch, and backends
    /// ready for an agent (eth0 without an address, the kernel behind the TAP `wsa0`, the
    /// VIP on `lo`).
    pub fn up_handoff(name: &str, net: u8) -> Testbed {
        Testbed::up_with(name, net, &["--handoff"])
    }

    /// [`Testbed::up`] with the cluster layout (`up --cluster`): two instances'
    /// namespaces (`sw`, `sw2`) with a front port `sw-fr`, an exception TAP `wsx0` and
    /// BIRD each, an ECMP router `fr` (BIRD) and its client `fc`; the cluster VIP
    /// 10.N.5.10 is on no link (see dpdk-env/scripts/testbed-cluster.sh).
    pub fn up_cluster(name: &str, net: u8) -> Testbed {
        Testbed::up_with(name, net, &["--cluster"])
    }

    fn up_with(name: &str, net: u8, flags: &[&str]) -> Testbed {
        let tb = Testbed {
            name: name.into(),
            net,
            script: workspace_root().join("dpdk-env/scripts/testbed.sh"),
        };
        let out = run_with_timeout(tb.command("up").args(flags), Duration::from_secs(300));
        assert!(
            out.status.success(),
            "testbed up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tb
    }

    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .arg(verb)
            .env("WS_TESTBED", &self.name)
            .env("WS_NET", self.net.to_string());
        cmd
    }

    /// Runs `testbed.sh ARGS...` on this testbed (e.g. `impair --loss 2`, `impair stats`),
    /// bounded; panics on failure, returns its stdout.
    pub fn script(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .args(args)
            .env("WS_TESTBED", &self.name)
            .env("WS_NET", self.net.to_string());
        let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "testbed.sh {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Turns the impairment off after asserting it really happened: every link that
    /// carried at least `busy` packets each way saw drops, duplicates and reordering.
    pub fn impairment_off_checked(&self, busy: u64) {
        let stats: Value =
            serde_json::from_str(&self.script(&["impair", "stats"])).expect("impair stats JSON");
        eprintln!("injected: {}", stats["totals"]);
        let delayed = stats["params"]["delay_ms"].as_f64().unwrap_or(0.0) > 0.0;
        // Every link the testbed impairs (a handoff testbed adds `router` and
        // `client_return`, the backends' way back past the switch).
        let links: Vec<String> = stats["links"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for link in &links {
            let link = link.as_str();
            for d in ["to_switch", "from_switch"] {
                let l = &stats["links"][link][d];
                if counter(l, &["packets"]) < busy {
                    continue; // little traffic on this one: nothing to prove there
                }
                let kinds: &[&str] = if delayed {
                    &["drops", "dups", "reordered", "delayed"]
                } else {
                    &["drops", "dups", "reordered"]
                };
                for &kind in kinds {
                    assert!(
                        counter(l, &[kind]) > 0,
                        "no {kind} injected on {link} {d}: {l}"
                    );
                }
            }
        }
        self.script(&["impair", "off"]);
    }

    /// Runs curl in the client namespace (`-sS --max-time MAX_S`, response headers to a
    /// file named after `tag`) and returns the answer's `X-Backend` and what `-w` printed;
    /// panics if curl fails or times out.
    pub fn curl_backend(&self, tag: &str, max_s: u64, args: &[&str]) -> (String, String) {
        let hdr = format!("/tmp/{}-{tag}-headers", self.name);
        let max = max_s.to_string();
        let mut all = vec!["curl", "-sS", "--max-time", &max, "-D", &hdr];
        all.extend_from_slice(args);
        let out = self.exec("cli", &all, Duration::from_secs(max_s + 30));
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let h = std::fs::read_to_string(&hdr).unwrap_or_default();
        let _ = std::fs::remove_file(&hdr);
        let be = h
            .lines()
            .find_map(|l| l.strip_prefix("X-Backend: "))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no X-Backend in {h:?}"));
        (be, String::from_utf8_lossy(&out.stdout).to_string())
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// An address on the testbed: `ip(0, 10)` is the VIP 10.N.0.10.
    pub fn ip(&self, subnet: u8, host: u8) -> String {
        format!("10.{}.{subnet}.{host}", self.net)
    }

    /// Runs `args` inside namespace `<name>-<role>` with a timeout.
    pub fn exec(&self, role: &str, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(role)]).args(args);
        run_with_timeout(&mut cmd, timeout)
    }

    /// Names of this testbed's namespaces that currently exist.
    pub fn existing_namespaces(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.name)))
            .map(String::from)
            .collect()
    }

    /// For a raw-socket client (`tests/tools/rawtcp.py`) in namespace `ns`: the kernel
    /// there knows no socket for its flows, so its RSTs (all but the raw client's own,
    /// which carry TTL 77) are dropped before they reach the switch.
    pub fn drop_kernel_rsts(&self, ns: &str) {
        let rule =
            "iptables-legacy -A OUTPUT -p tcp --tcp-flags RST RST -m ttl ! --ttl-eq 77 -j DROP";
        let args: Vec<&str> = rule.split_whitespace().collect();
        let out = self.exec(ns, &args, Duration::from_secs(10));
        assert!(
            out.status.success(),
            "{rule} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A switch config for this testbed: the example config with this testbed's subnet,
    /// `workers` worker lcores and its own DPDK file prefix.
    pub fn config(&self, workers: usize) -> Value {
        let file = if workers == 1 {
            "examples/testbed.json"
        } else {
            "examples/testbed-2workers.json"
        };
        let text = std::fs::read_to_string(workspace_root().join(file)).expect("example config");
        let text = text.replace("10.99.", &format!("10.{}.", self.net));
        let mut v: Value = serde_json::from_str(&text).expect("example config is JSON");
        v["eal"]["file_prefix"] = Value::from(format!("ws-{}", self.name));
        v
    }

    /// [`Testbed::config`] with the VIP in `mode: "presplice"`, warm connections (2 to 8
    /// idle) for the images and apps pools, and a closed-connection linger of 300 ms.
    pub fn presplice_config(&self, workers: usize) -> Value {
        let mut c = self.config(workers);
        c["vips"][0]["mode"] = "presplice".into();
        for p in c["pools"].as_array_mut().unwrap() {
            if p["name"] == "images" || p["name"] == "apps" {
                p["warm"] = serde_json::json!({ "min_idle": 2, "max_idle": 8 });
            }
        }
        c["tcp"]["closed_linger_ms"] = 300.into();
        c
    }

    pub fn down(&self) {
        let out = run_with_timeout(&mut self.command("down"), Duration::from_secs(60));
        assert!(
            out.status.success(),
            "testbed down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self
            .command("down")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A running `webswitch run` in the switch namespace.
pub struct Switch {
    child: Option<Child>,
    pub ready: Value,
    pub file_prefix: String,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<Mutex<String>>,
    config_path: PathBuf,
}

impl Switch {
    /// Writes `config` to a file and starts the switch in `tb`'s switch namespace;
    /// returns once it printed its `ready` event.
    pub fn start(tb: &Testbed, config: &Value) -> Switch {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &tb.ns("sw")])
            .arg(webswitch_bin());
        Switch::spawn(cmd, &tb.name, config)
    }

    /// Starts `webswitch run` (a switch or an agent config) in namespace `<tb>-<role>`,
    /// its config file named after `name`; returns once it printed its `ready` event.
    pub fn start_in(tb: &Testbed, role: &str, name: &str, config: &Value) -> Switch {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &tb.ns(role)])
            .arg(webswitch_bin());
        Switch::spawn(cmd, name, config)
    }

    /// Starts `webswitch run` in the current network namespace (for ports that need no
    /// testbed, such as `net_memif`), writing `config` to a temporary file named after
    /// `name`; returns once it printed its `ready` event.
    pub fn start_local(name: &str, config: &Value) -> Switch {
        Switch::spawn(Command::new(webswitch_bin()), name, config)
    }

    /// Runs `cmd run --config FILE` (`cmd` ending in the webswitch binary), its stdout
    /// events on a channel and its stderr echoed and kept; waits for `ready`.
    fn spawn(mut cmd: Command, name: &str, config: &Value) -> Switch {
        let file_prefix = config["eal"]["file_prefix"]
            .as_str()
            .expect("file_prefix")
            .to_string();
        let config_path = std::env::temp_dir().join(format!("{name}-webswitch.json"));
        std::fs::write(&config_path, serde_json::to_string_pretty(config).unwrap())
            .expect("write config");
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&config_path)
            .env(
                "WEBSWITCH_LOG",
                std::env::var("WEBSWITCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn webswitch");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        let err_pipe = child.stderr.take().unwrap();
        // Named, so that the logs of a cluster's instances can be told apart.
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                eprintln!("[webswitch {tag}] {line}");
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut sw = Switch {
            child: Some(child),
            ready: Value::Null,
            file_prefix,
            lines,
            stderr,
            config_path,
        };
        sw.ready = sw.wait_event("ready", Duration::from_secs(30));
        sw
    }

    /// Waits for the next stdout event named `name`.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("bad event line {line:?}: {e}"));
                    if v["event"] == name {
                        return v;
                    }
                }
                Err(e) => {
                    let status = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    panic!("no `{name}` event within {timeout:?} ({e}); exit status {status:?}; stderr:\n{}", self.stderr());
                }
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The webswitch process's pid (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The MAC of the port named `name`, from the ready event.
    pub fn port_mac(&self, name: &str) -> String {
        self.ready["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["mac"].as_str())
            .unwrap_or_else(|| panic!("no port {name} in {}", self.ready))
            .to_string()
    }

    /// One command on the switch's management socket (named in its `ready` event):
    /// returns the reply's `result`, panics on an error reply or after 10 s.
    pub fn call(&self, cmd: &str, args: Value) -> Value {
        use std::io::Write;
        let path = self.ready["socket"]
            .as_str()
            .unwrap_or_else(|| panic!("no socket in {}", self.ready));
        let s = std::os::unix::net::UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect {path}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let line = serde_json::json!({ "id": 1, "cmd": cmd, "args": args }).to_string() + "\n";
        (&s).write_all(line.as_bytes()).expect("send the command");
        let mut reply = String::new();
        BufReader::new(&s)
            .read_line(&mut reply)
            .unwrap_or_else(|e| panic!("{cmd}: no reply: {e}"));
        let v: Value =
            serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{cmd}: reply {reply:?}: {e}"));
        assert_eq!(v["ok"], true, "{cmd} failed: {v}");
        v["result"].clone()
    }

    /// Sends SIGTERM, waits (bounded) for a clean exit, and returns the final counters.
    pub fn stop(self) -> Value {
        self.stop_with("TERM")
    }

    /// Sends `signal` (`TERM` or `INT`), waits (bounded) for a clean exit, checks the
    /// DPDK runtime directory is gone, and returns the final counters.
    pub fn stop_with(mut self, signal: &str) -> Value {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        // `ip netns exec` execs the program, so the child pid is webswitch itself.
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        let final_stats = self.wait_event("final_stats", Duration::from_secs(20));
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("webswitch did not exit within 20 s of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "webswitch exited with {status}; stderr:\n{}",
            self.stderr()
        );
        let rundir = Path::new("/run/dpdk").join(&self.file_prefix);
        assert!(
            !rundir.exists(),
            "{} left behind after a clean exit",
            rundir.display()
        );
        final_stats
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            // A killed switch leaves its management socket behind: remove it by name.
            if let Some(sock) = self.ready["socket"].as_str() {
                let _ = std::fs::remove_file(sock);
            }
        }
        let _ = std::fs::remove_file(&self.config_path);
        // A killed EAL cannot clean up after itself: remove its runtime directory by name.
        let _ = std::fs::remove_dir_all(Path::new("/run/dpdk").join(&self.file_prefix));
    }
}

/// Waits (bounded: killed and a panic naming `what` after `within`) for a child whose
/// stdout is piped, and returns that output.
pub fn wait_output(mut child: std::process::Child, within: Duration, what: &str) -> String {
    let deadline = std::time::Instant::now() + within;
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("child output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lowercase hex SHA-256 of a file (`sha256sum`), empty if it cannot be read.
pub fn sha256_file(path: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// `stats["total"][path...]` as a number (0 when absent).
pub fn counter(stats: &Value, path: &[&str]) -> u64 {
    let mut v = stats;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

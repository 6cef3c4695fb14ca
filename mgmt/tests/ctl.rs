//! webswitchctl end to end: the built binary against a mock switch on a real socket.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::TempDir;
use mgmt::{Client, MAX_CLIENTS};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_webswitchctl");

fn ctl_in(dir: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("WEBSWITCH_SOCKET")
        .current_dir(dir)
        .output()
        .expect("webswitchctl runs")
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    ctl_in(socket.parent().unwrap(), socket, args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[test]
fn status_prints_aligned_tables() {
    let dir = TempDir::new("ctl-status");
    let (server, _) = common::start(&dir);
    let out = ok(&ctl(server.path(), &["status"]));
    assert!(
        out.starts_with("version           0.1.0-mock\npid               "),
        "{out}"
    );
    assert!(
        out.contains("\nconfig version    1\nworkers (lcores)  1,2\n\n"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "PORT     MAC                LINK  RXQ  TXQ\n\
             client   02:00:00:00:00:01  up      2    2\n\
             backend  02:00:00:00:00:02  down    2    2\n"
        ),
        "{out}"
    );
}

#[test]
fn agents_table_and_json() {
    let dir = TempDir::new("ctl-agents");
    let (server, _) = common::start(&dir);
    let s = server.path();
    let table = "agent port 7946  timeout 1.5s\n\n\
                 NAME  ADDRESS     AGENT  REGISTERED  ALIVE  SEEN_AGO  CAPACITY  FLOWS  LOAD  BUSY  BEATS\n\
                 be1   10.99.1.11  host1  yes         yes       250ms      1000      0    0%   50%     40\n\
                 be2   10.99.1.12  host2  no          no        500ms      1000     10    1%   50%     41\n";
    assert_eq!(ok(&ctl(s, &["agents"])), table);
    assert_eq!(ok(&ctl(s, &["agents", "list"])), table);
    let raw: Value = serde_json::from_str(&ok(&ctl(s, &["--json", "agents"]))).unwrap();
    assert_eq!(raw["agents"][1]["name"], "be2");
    assert_eq!(raw["agents"][0]["alive"], true);
}

#[test]
fn backends_table_json_and_changes() {
    let dir = TempDir::new("ctl-backends");
    let (server, _) = common::start(&dir);
    let s = server.path();
    let table = "NAME  ADDRESS     PORT  WEIGHT  ADMIN  HEALTH  ACTIVE  POOLS\n\
                 be1   10.99.1.11    80       1  ready  up           0  default,images\n\
                 be2   10.99.1.12    80       1  ready  up           0  default\n";
    assert_eq!(ok(&ctl(s, &["backends"])), table);
    assert_eq!(ok(&ctl(s, &["backends", "list"])), table);

    // --json prints exactly the command's result.
    let raw: Value = serde_json::from_str(&ok(&ctl(s, &["--json", "backends"]))).unwrap();
    let direct = Client::connect(s)
        .unwrap()
        .call("backends.list", Value::Null)
        .unwrap();
    assert_eq!(raw, direct);
    // The flag is global: after the subcommand works too.
    let raw2: Value = serde_json::from_str(&ok(&ctl(s, &["backends", "list", "--json"]))).unwrap();
    assert_eq!(raw2, direct);

    let out = ok(&ctl(
        s,
        &[
            "backends",
            "add",
            "be3",
            "10.99.1.13:8080",
            "--weight",
            "2",
            "--pool",
            "default",
            "--pool",
            "api",
        ],
    ));
    assert_eq!(out, "backend be3 added (config version 2)\n");
    assert_eq!(
        ok(&ctl(s, &["backends", "drain", "be3"])),
        "backend be3 draining (config version 3)\n"
    );
    assert_eq!(
        ok(&ctl(s, &["backends", "weight", "be1", "5"])),
        "backend be1 weight 5 (config version 4)\n"
    );
    assert_eq!(
        ok(&ctl(s, &["backends", "maint", "be2"])),
        "backend be2 in maintenance (config version 5)\n"
    );
    let out = ok(&ctl(s, &["backends"]));
    assert!(
        out.contains("\nbe1   10.99.1.11    80       5  ready  up           0  default,images\n"),
        "{out}"
    );
    assert!(
        out.contains("\nbe2   10.99.1.12    80       1  maint  up           0  default\n"),
        "{out}"
    );
    assert!(
        out.contains("\nbe3   10.99.1.13  8080       2  drain  up           0  default,api\n"),
        "{out}"
    );
    assert_eq!(
        ok(&ctl(s, &["backends", "ready", "be2"])),
        "backend be2 ready (config version 6)\n"
    );
    assert_eq!(
        ok(&ctl(s, &["backends", "remove", "be3"])),
        "backend be3 removed (config version 7)\n"
    );

    let out = ok(&ctl(s, &["pools"]));
    assert_eq!(
        out,
        "NAME     SCHEDULER    BACKENDS\n\
         default  round_robin  be1,be2\n\
         images   round_robin  be1\n"
    );
}

#[test]
fn exit_codes() {
    let dir = TempDir::new("ctl-exit");
    let (server, _) = common::start(&dir);
    let s = server.path();

    // 1: the switch answered with an error; the message on stderr, nothing on stdout.
    let o = ctl(s, &["backends", "drain", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "webswitchctl: not_found: no backend `nope`\n");
    assert_eq!(stdout(&o), "");
    let o = ctl(s, &["backends", "add", "be1", "10.0.0.1"]);
    assert_eq!(
        (o.status.code(), stderr(&o)),
        (
            Some(1),
            "webswitchctl: conflict: backend `be1` exists\n".into()
        )
    );
    let o = ctl(s, &["raw", "no.such.command"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "webswitchctl: unknown_command: unknown command `no.such.command`\n"
    );

    // 2: usage errors, caught before connecting.
    for args in [
        &["backends", "weight", "be1", "heavy"][..],
        &["frobnicate"],
        &["log", "access", "maybe"],
        &["top", "--count", "0"],
        &["--timeout", "-1", "status"],
        &["raw", "status", "{not json"],
        &["raw", "status", "[1]"],
        &["rules", "replace", "/nonexistent/rules.json"],
    ] {
        let o = ctl(s, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }

    // 3: nothing listening.
    let gone = dir.join("gone.sock");
    let o = ctl(&gone, &["status"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with(&format!(
            "webswitchctl: cannot connect to {}: ",
            gone.display()
        )),
        "{}",
        stderr(&o)
    );

    // 0 for --help, which shows examples and the exit codes.
    let o = ctl(s, &["--help"]);
    let help = ok(&o);
    assert!(
        help.contains("Examples:") && help.contains("Exit status:"),
        "{help}"
    );
    for sub in [
        "status",
        "stats",
        "backends",
        "pools",
        "rules",
        "config",
        "connections",
        "log",
        "top",
        "raw",
    ] {
        let o = ctl(s, &[sub, "--help"]);
        assert!(ok(&o).contains("Example"), "{sub} --help has examples");
    }
}

#[test]
fn a_full_server_is_an_error_answer() {
    let dir = TempDir::new("ctl-full");
    let (server, _) = common::start(&dir);
    let _held: Vec<Client> = (0..MAX_CLIENTS)
        .map(|_| {
            let mut c = Client::connect(server.path()).unwrap();
            c.call("status", Value::Null).unwrap();
            c
        })
        .collect();
    let o = ctl(server.path(), &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("webswitchctl: internal: too many management clients"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_socket_path_comes_from_the_environment() {
    let dir = TempDir::new("ctl-env");
    let (server, _) = common::start(&dir);
    let o = Command::new(BIN)
        .args(["--json", "status"])
        .env("WEBSWITCH_SOCKET", server.path())
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["version"], "0.1.0-mock");
}

#[test]
fn stats_matrix() {
    let dir = TempDir::new("ctl-stats");
    let (server, _) = common::start(&dir);
    let out = ok(&ctl(server.path(), &["stats"]));
    assert!(out.starts_with("uptime "), "{out}");
    assert!(out.contains("mbufs in use 1234\n"), "{out}");
    let header = out
        .lines()
        .find(|l| l.starts_with("COUNTER"))
        .expect("counter table");
    assert!(header.ends_with("TOTAL  LCORE 1  LCORE 2"), "{header}");
    assert!(out.contains("\nflows_live "), "{out}");
    assert!(out.contains("\ndrops.malformed "), "{out}");
    assert!(!out.contains("\nhttp_4xx_sent "), "zero rows hidden: {out}");
    assert!(out.contains("counters at zero not shown"), "{out}");
    assert!(
        out.contains("\nbackend           -           -"),
        "a port without stats: {out}"
    );
    let all = ok(&ctl(server.path(), &["stats", "--all"]));
    assert!(all.contains("\nhttp_4xx_sent "), "{all}");
    let v: Value = serde_json::from_str(&ok(&ctl(server.path(), &["--json", "stats"]))).unwrap();
    assert_eq!(v["cores"].as_array().map(Vec::len), Some(2));
}

#[test]
fn top_refreshes_count_times() {
    let dir = TempDir::new("ctl-top");
    let (server, _) = common::start(&dir);
    let t = Instant::now();
    let out = ok(&ctl(server.path(), &["top", "--count", "2"]));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    assert_eq!(out.matches("webswitch top").count(), 2, "{out}");
    assert_eq!(
        out.matches("\nCORE     RX_PPS  TX_PPS  CONN/S  REQ/S  FLOWS  BUSY%\n")
            .count(),
        2,
        "{out}"
    );
    // The mock's counters grow with its uptime: 2000 rx/s and 1000 tx/s per core, 75 % busy.
    let lcore2 = out
        .lines()
        .find(|l| l.starts_with("lcore 2"))
        .expect("a row per core");
    let cols: Vec<&str> = lcore2.split_whitespace().collect();
    assert_eq!(
        (cols[2], cols[3], cols[6], cols[7]),
        ("2000", "1000", "4", "75.0"),
        "{lcore2}"
    );
    let total = out.lines().find(|l| l.starts_with("total")).unwrap();
    assert_eq!(total.split_whitespace().nth(1), Some("4000"), "{total}");

    let out = ok(&ctl(
        server.path(),
        &["--json", "top", "--count", "2", "--interval", "0.2"],
    ));
    let frames: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 2);
    for f in &frames {
        assert_eq!(f["cores"][0]["core"], "lcore 1");
        assert_eq!(f["cores"][0]["rx_pps"], 2000.0);
        assert_eq!(f["total"]["busy_pct"], 75.0);
        assert!(f["interval_ms"].as_u64().unwrap() >= 150, "{f}");
    }
}

#[test]
fn rules_config_connections_log_raw() {
    let dir = TempDir::new("ctl-misc");
    let (server, _) = common::start(&dir);
    let s = server.path();

    let out = ok(&ctl(s, &["rules"]));
    assert_eq!(
        out,
        "version 1  default pool default\n\n\
         #  NAME    MATCH                    THEN\n\
         1  images  {\"path_prefix\":\"/img/\"}  pool images\n"
    );
    let good = dir.join("rules.json");
    std::fs::write(
        &good,
        r#"{"rules": [{"name": "app", "match": {"path_prefix": "/app/"}, "pool": "default"}], "default_pool": "images"}"#,
    )
    .unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[{"match": {}, "pool": "nope"}]"#).unwrap();
    assert_eq!(
        ok(&ctl(s, &["rules", "validate", good.to_str().unwrap()])),
        "rules valid\n"
    );
    let o = ctl(s, &["rules", "validate", bad.to_str().unwrap()]);
    assert_eq!(
        (o.status.code(), stderr(&o)),
        (
            Some(1),
            "webswitchctl: invalid_argument: rules[0].pool: no pool `nope`\n".into()
        )
    );
    let o = ctl(
        s,
        &[
            "rules",
            "replace",
            good.to_str().unwrap(),
            "--expect-version",
            "9",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("webswitchctl: conflict: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(&ctl(
            s,
            &[
                "rules",
                "replace",
                good.to_str().unwrap(),
                "--expect-version",
                "1"
            ]
        )),
        "rules replaced (config version 2)\n"
    );
    let v: Value = serde_json::from_str(&ok(&ctl(s, &["--json", "rules", "show"]))).unwrap();
    assert_eq!(v["default_pool"], "images");
    assert_eq!(v["rules"][0]["name"], "app");
    // From standard input, as a bare array.
    let mut child = Command::new(BIN)
        .args(["--socket", s.to_str().unwrap(), "rules", "validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        br#"[{"match": {}, "pool": "default"}]"#,
    )
    .unwrap();
    assert_eq!(ok(&child.wait_with_output().unwrap()), "rules valid\n");

    // config show prints the config alone (valid JSON), the version on stderr.
    let o = ctl(s, &["config"]);
    let cfg: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(cfg["default_pool"], "images");
    assert_eq!(stderr(&o), "(config version 2)\n");
    let cfg_file = dir.join("cfg.json");
    std::fs::write(&cfg_file, cfg.to_string()).unwrap();
    assert_eq!(
        ok(&ctl(s, &["config", "validate", cfg_file.to_str().unwrap()])),
        "config valid\n"
    );
    assert_eq!(
        ok(&ctl(s, &["config", "apply", cfg_file.to_str().unwrap()])),
        "config applied (config version 3)\n"
    );
    // A relative save path is resolved against webswitchctl's own directory.
    let out = ok(&ctl_in(dir.path(), s, &["config", "save", "saved.json"]));
    assert_eq!(
        out,
        format!("config saved to {}\n", dir.join("saved.json").display())
    );

    let out = ok(&ctl(s, &["connections"]));
    assert_eq!(
        out,
        "CLIENT           VIP            BACKEND  LPORT  STATE    CORE   AGE  BYTES_C2B  BYTES_B2C\n\
         10.99.0.2:40000  10.99.0.10:80  be1      50000  spliced     0  1.5s        100      10000\n\
         10.99.0.2:40001  10.99.0.10:80  be1      50001  spliced     1    3s        200      20000\n\
         10.99.0.2:40002  10.99.0.10:80  be2      50002  spliced     0  4.5s        300      30000\n"
    );
    let out = ok(&ctl(
        s,
        &["connections", "list", "--backend", "be1", "--limit", "1"],
    ));
    assert!(out.contains("\n10.99.0.2:40000 "), "{out}");
    assert!(!out.contains("40001"), "{out}");
    assert!(
        out.ends_with("(more connections match; raise --limit or narrow the filter)\n"),
        "{out}"
    );
    let v: Value = serde_json::from_str(&ok(&ctl(
        s,
        &[
            "--json",
            "connections",
            "list",
            "--client",
            "10.99.0.2:40002",
        ],
    )))
    .unwrap();
    assert_eq!(
        v,
        json!({"connections": [v["connections"][0].clone()], "truncated": false})
    );
    assert_eq!(v["connections"][0]["backend"], "be2");
    assert_eq!(
        ok(&ctl(s, &["connections", "kill", "10.99.0.2:40001"])),
        "killed 1 connection\n"
    );
    assert_eq!(
        ok(&ctl(s, &["connections", "kill", "10.99.0.9:1"])),
        "killed 0 connections\n"
    );

    assert_eq!(ok(&ctl(s, &["log", "level", "debug"])), "log level debug\n");
    let o = ctl(s, &["log", "level", "loud"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(ok(&ctl(s, &["log", "access", "on"])), "access log on\n");
    assert_eq!(ok(&ctl(s, &["log", "access", "off"])), "access log off\n");

    let v: Value =
        serde_json::from_str(&ok(&ctl(s, &["raw", "test.echo", r#"{"a": [1, 2]}"#]))).unwrap();
    assert_eq!(v, json!({"a": [1, 2]}));
}

/// The socket refuses a connection from another user (mode 0600), shown by running
/// webswitchctl as `nobody`; skipped unless root with setpriv(1).
#[test]
fn another_user_cannot_connect() {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
    let setpriv = Path::new("/usr/bin/setpriv");
    if !root || !setpriv.exists() {
        eprintln!("skipped: needs root and /usr/bin/setpriv");
        return;
    }
    let dir = TempDir::new("ctl-user");
    // The directory must let `nobody` reach the socket, so only the socket's mode decides.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (server, _) = common::start(&dir);
    let as_nobody = || {
        Command::new(setpriv)
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "--socket",
            ])
            .arg(server.path())
            .arg("status")
            .output()
            .unwrap()
    };
    let o = as_nobody();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    // Control: with the mode opened up, the same command gets through, so it was the mode.
    std::fs::set_permissions(server.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_nobody();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

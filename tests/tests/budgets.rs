//! Issue 15, point 1: the instruction budgets of bench/budgets.json, enforced. Runs the two
//! callgrind recipes on a short fixed load (the harness over memif for spliced packets and
//! short connections; the netns testbed with curl for presplice requests) and fails when a
//! count exceeds its budget by more than 10%. Instruction counts do not drift with machine
//! noise the way times do; what moves them is the code.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::{
    root_or_skip, run_with_timeout, testbed_lock, webswitch_bin, workspace_root,
};

/// How far over its budget a count may go before the test fails.
const SLACK: f64 = 1.10;

/// The release webswitch-bench: `$WEBSWITCH_BENCH_BIN` (test-all.sh builds it).
fn bench_bin() -> PathBuf {
    std::env::var_os("WEBSWITCH_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/webswitch-bench"))
}

/// Runs a recipe script with `env`; its stdout.
fn recipe(script: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let root = workspace_root();
    let mut cmd = Command::new("bash");
    // Counts do not need a quiet machine (and `cargo test` itself is a "heavy job" to the
    // scripts' wait for one).
    cmd.env("QUIET_WAIT_S", "0");
    cmd.arg(root.join("bench/scripts").join(script))
        .args(args)
        .current_dir(&root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(900));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    stdout
}

/// The count on the line `NAME: N instructions ...` of a recipe's report.
fn count(report: &str, name: &str) -> u64 {
    let prefix = format!("{name}:");
    report
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let mut words = rest.split_whitespace();
            let n = words.next()?.parse().ok()?;
            (words.next() == Some("instructions")).then_some(n)
        })
        .unwrap_or_else(|| panic!("no `{name}: N instructions` line in:\n{report}"))
}

#[test]
fn instruction_budgets() {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let valgrind = Command::new("valgrind").arg("--version").output();
    assert!(
        valgrind.is_ok_and(|o| o.status.success()),
        "valgrind is needed (dpdk-env/scripts/deps.sh installs it)"
    );
    let budgets: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("bench/budgets.json"))
            .expect("bench/budgets.json"),
    )
    .expect("bench/budgets.json parses");
    let bin = webswitch_bin().to_string_lossy().into_owned();

    let harness = recipe(
        "callgrind-harness.sh",
        &[],
        &[
            ("WEBSWITCH", bin.clone()),
            ("BENCH", bench_bin().to_string_lossy().into_owned()),
            ("LOAD_S", "3".into()),
            ("IDLE_S", "3".into()),
            ("RATE", "200".into()),
        ],
    );
    let presplice = recipe(
        "callgrind-presplice.sh",
        &["300"],
        &[
            ("WS_BIN", bin),
            ("RUNS", "presplice_mix".into()),
            ("WS_TESTBED", "bgt".into()),
            ("WS_NET", "199".into()),
        ],
    );
    let measured = [
        ("spliced_packet", count(&harness, "data")),
        ("short_connection", count(&harness, "conns")),
        ("presplice_request", count(&presplice, "presplice_mix")),
    ];
    let mut over = Vec::new();
    for (name, n) in measured {
        let b = &budgets[name];
        let budget = b["budget"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}.budget"));
        let target = b["target"].as_u64().unwrap_or(0);
        eprintln!(
            "{name:<18} {n:>7} instructions  budget {budget:>7} (+10%: {:>7})  issue 15's target {target}",
            (budget as f64 * SLACK) as u64
        );
        if n as f64 > budget as f64 * SLACK {
            over.push(format!("{name}: {n} > {budget} + 10%"));
        }
    }
    assert!(over.is_empty(), "over budget: {over:?}");
}

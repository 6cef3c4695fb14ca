//! `webswitch`: the command line. `run` starts the switch from a JSON config and runs
//! until SIGINT or SIGTERM, then prints its final counters; `check` validates a config
//! without touching DPDK.
//!
//! Machine-readable events go to stdout, one JSON object per line (`ready`, `stats`,
//! `final_stats`); logs and the human-readable summary go to stderr.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rules::config::AgentConfig;
use rules::Config;
use webswitch::control::{LogLevelFn, SwitchControl};
use webswitch::role::heartbeat::Beater;
use webswitch::setup::{self, Running, Snapshot};

#[derive(Parser)]
#[command(
    name = "webswitch",
    version,
    about = "A content-aware web switch on DPDK"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the switch and run until SIGINT/SIGTERM.
    Run {
        /// The JSON config (see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Also print a `stats` event every this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        stats_interval: u64,
        /// Write the log (and the access log) to this file (appended) instead of stderr.
        #[arg(long, value_name = "PATH")]
        log_file: Option<PathBuf>,
    },
    /// Validate a config (parse, fields, CPUs) and print it with defaults filled in.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    use tracing_subscriber::prelude::*;
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEBSWITCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The filter sits behind a reload handle so `log.level` on the socket can change it.
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    let log_file = match &cli.command {
        Command::Run {
            log_file: Some(p), ..
        } => {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("webswitch: cannot open log file {}: {e}", p.display());
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let (writer, ansi) = match log_file {
        Some(f) => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f)),
            false,
        ),
        None => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi),
        )
        .init();
    let log_level: LogLevelFn = Box::new(move |level: &str| {
        let f = tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| format!("bad log filter {level:?}: {e}"))?;
        reload.reload(f).map_err(|e| e.to_string())?;
        Ok(level.to_string())
    });
    let result = match cli.command {
        Command::Run {
            config,
            stats_interval,
            ..
        } if is_agent(&config) => run_agent(&config, stats_interval),
        Command::Run {
            config,
            stats_interval,
            ..
        } => run(&config, stats_interval, log_level),
        Command::Check { config } if is_agent(&config) => AgentConfig::from_file(&config)
            .map(|c| {
                println!("{}", serde_json::to_string_pretty(&c).expect("serialises"));
            })
            .map_err(|e| e.to_string()),
        Command::Check { config } => check(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("webswitch: {message}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    let config = Config::from_file(path).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    setup::check_cpus(&config).map_err(|e| e.to_string())?;
    Ok(config)
}

fn check(path: &std::path::Path) -> Result<(), String> {
    let config = load(path)?;
    println!("{}", config.to_json_pretty());
    Ok(())
}

fn run(path: &std::path::Path, stats_interval: u64, log_level: LogLevelFn) -> Result<(), String> {
    let config = load(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("installing signal handler: {e}"))?;
    }
    let mut running = setup::start(&config).map_err(|e| e.to_string())?;
    let socket = config.mgmt.socket_path(&config.eal.file_prefix);
    let announcer = webswitch::cluster::announce::Announcer::new(&config.cluster).map(Arc::new);
    let (server, control) = start_mgmt(&socket, &running, &config, log_level, announcer.clone())?;
    let web = webswitch::web::start(
        &config.web,
        running.shared_arc(),
        &socket.with_extension("web.sock"),
    )?;
    emit(&serde_json::json!({
        "event": "ready",
        "pid": std::process::id(),
        "workers": config.lcores.workers,
        "ports": running.ports,
        "vips": config.vips.iter().map(|v| v.address.to_string()).collect::<Vec<_>>(),
        "socket": socket.display().to_string(),
    }));
    tracing::info!(
        workers = config.lcores.workers.len(),
        ports = running.ports.len(),
        socket = %socket.display(),
        "webswitch running"
    );

    let shared = running.shared_arc();
    let started = Instant::now();
    let mut next_stats = Duration::from_secs(stats_interval);
    let mut next_rates = Duration::from_secs(1);
    let mut meter =
        webswitch::cluster::workload::Meter::new(u64::from(config.tcp.max_flows_per_core));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        write_access_log(&shared);
        if let Some(cl) = &shared.cluster {
            // A member that cannot serve, or that an operator withdrew, owns no new
            // connection (it keeps its own until they end).
            let serving = webswitch::cluster::announce::any_backend_serves(&shared)
                && !cl.operator_withdrawn.load(Ordering::Relaxed);
            cl.draining.store(!serving || cl.front, Ordering::Relaxed);
            meter.tick(cl, &shared.stats, started.elapsed().as_millis() as u64);
            cl.refresh(dpdk_env::rdtsc());
            let (_, reachable) = cl.live_now(dpdk_env::rdtsc());
            // A gone member's spliced connections keep their backend-side tuple: its
            // designated survivor answers for its backend-facing address.
            let taken = cl.takeover.update(cl.me, cl.names.len(), reachable);
            for m in (0..cl.names.len()).filter(|m| taken >> m & 1 == 1) {
                tracing::warn!(member = %cl.names[m], "took over the backend-facing address of a member that is gone");
            }
        }
        if let Some(a) = &announcer {
            a.tick(&shared);
        }
        if started.elapsed() >= next_rates {
            next_rates += Duration::from_secs(1);
            control.sample_rates();
        }
        if stats_interval > 0 && started.elapsed() >= next_stats {
            next_stats += Duration::from_secs(stats_interval);
            emit(&snapshot_json("stats", &running.snapshot(), started));
        }
    }
    tracing::info!("signal received, stopping workers");
    // The withdrawal leaves through the data plane: before anything stops.
    if let Some(a) = &announcer {
        a.withdraw_now();
    }
    // The listeners go first: they hold the shared state the teardown reclaims.
    if let Some(web) = web {
        web.stop();
    }
    server.stop();
    drop(control);
    write_access_log(&shared);
    drop(shared);
    running.stop();
    let snap = running.snapshot();
    emit(&snapshot_json("final_stats", &snap, started));
    print_summary(&snap, &running);
    drop(running);
    Ok(())
}

/// Whether the config file says `"role": "agent"` (an unreadable file is left to the
/// switch's loader, which reports it).
fn is_agent(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| AgentConfig::is_agent_json(&t))
}

/// The handoff agent: runs until SIGINT/SIGTERM (see `webswitch::role::agent`).
fn run_agent(path: &std::path::Path, stats_interval: u64) -> Result<(), String> {
    let config = AgentConfig::from_file(path).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("installing signal handler: {e}"))?;
    }
    let mut beats = match &config.switch {
        Some(s) => Some(
            Beater::new(s)
                .map_err(|e| format!("config field `switch`: cannot open a UDP socket: {e}"))?,
        ),
        None => None,
    };
    let mut running = webswitch::role::start_agent(&config).map_err(|e| e.to_string())?;
    emit(&serde_json::json!({
        "event": "ready",
        "role": "agent",
        "pid": std::process::id(),
        "ports": running.ports,
        "vips": config.vips.iter().map(|v| v.address.to_string()).collect::<Vec<_>>(),
    }));
    tracing::info!("webswitch agent running");
    let started = Instant::now();
    // The lcore bridges the kernel's datagrams from here on: register with the switch.
    if let (Some(b), Some(st)) = (beats.as_mut(), running.stats()) {
        b.register(st, Instant::now());
    }
    let mut next_stats = Duration::from_secs(stats_interval);
    while !stop.load(Ordering::Relaxed) {
        // At most 100 ms, less when a heartbeat is due sooner.
        let now = Instant::now();
        let nap = beats.as_ref().map_or(Duration::from_millis(100), |b| {
            b.due()
                .saturating_duration_since(now)
                .min(Duration::from_millis(100))
        });
        std::thread::sleep(nap);
        if let (Some(b), Some(st)) = (beats.as_mut(), running.stats()) {
            b.tick(st, Instant::now());
        }
        if stats_interval > 0 && started.elapsed() >= next_stats {
            next_stats += Duration::from_secs(stats_interval);
            let mut v = running.stats_json();
            v["event"] = "stats".into();
            emit(&v);
        }
    }
    tracing::info!("signal received, stopping the agent");
    // The leave goes out through the lcore's bridge, so before the lcore stops.
    if let (Some(b), Some(st)) = (beats.as_mut(), running.stats()) {
        b.leave(st);
    }
    running.stop();
    let mut v = running.stats_json();
    v["event"] = "final_stats".into();
    v["uptime_ms"] = (started.elapsed().as_millis() as u64).into();
    emit(&v);
    drop(running);
    Ok(())
}

/// Serves the management socket (owner-only, in a directory only root can enter).
fn start_mgmt(
    socket: &std::path::Path,
    running: &Running,
    config: &Config,
    log_level: LogLevelFn,
    announcer: Option<Arc<webswitch::cluster::announce::Announcer>>,
) -> Result<(mgmt::Server, Arc<SwitchControl>), String> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "config field `mgmt.socket`: cannot create {}: {e}",
                dir.display()
            )
        })?;
    }
    let control = Arc::new(SwitchControl::new(
        running.shared_arc(),
        running.ports.clone(),
        config.lcores.workers.clone(),
        log_level,
        announcer,
    ));
    let server = mgmt::Server::start(socket, Arc::clone(&control) as Arc<dyn mgmt::Control>)
        .map_err(|e| {
            format!(
                "config field `mgmt.socket`: cannot serve {}: {e}",
                socket.display()
            )
        })?;
    Ok((server, control))
}

/// Writes the access log lines the cores queued (target `access`, one structured line per
/// connection: `WEBSWITCH_LOG=info` shows them).
fn write_access_log(shared: &webswitch::worker::Shared) {
    for q in &shared.access {
        while let Some(r) = q.pop() {
            tracing::info!(
                target: "access",
                client = %format_args!("{}:{}", r.client.0, r.client.1),
                vip = %format_args!("{}:{}", r.vip.0, r.vip.1),
                method = %r.method,
                path = %r.path,
                rule = %r.rule.as_deref().filter(|s| !s.is_empty()).unwrap_or("-"),
                pool = %r.pool.as_deref().unwrap_or("-"),
                backend = %r.backend.as_deref().unwrap_or("-"),
                status = %r.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                bytes_in = r.bytes_c2b,
                bytes_out = r.bytes_b2c,
                setup_us = %r.setup_us.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                duration_us = r.duration_us,
                core = r.core,
                "request"
            );
        }
    }
}

fn emit(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop a clean shutdown.
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn snapshot_json(event: &str, s: &Snapshot, started: Instant) -> serde_json::Value {
    let mut v = setup::snapshot_json(s);
    v["event"] = event.into();
    v["uptime_ms"] = (started.elapsed().as_millis() as u64).into();
    v
}

/// The human-readable counters on stderr: every non-zero counter, per core and total.
fn print_summary(s: &Snapshot, running: &Running) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "webswitch final counters (TSC {} Hz):",
        running.tsc_hz()
    );
    let name_w = 26;
    let cols = s.cores.len();
    let _ = write!(err, "{:name_w$}", "counter");
    for c in 0..cols {
        let _ = write!(err, " {:>14}", format!("core{c}"));
    }
    let _ = writeln!(err, " {:>14}", "total");
    let row = |err: &mut std::io::StderrLock<'_>,
               label: &str,
               get: &dyn Fn(&serde_json::Value) -> u64| {
        let total = get(&s.total);
        if total == 0 {
            return;
        }
        let _ = write!(err, "{label:name_w$}");
        for c in &s.cores {
            let _ = write!(err, " {:>14}", get(c));
        }
        let _ = writeln!(err, " {total:>14}");
    };
    if let Some(obj) = s.total.as_object() {
        for (k, v) in obj {
            if v.is_u64() {
                row(&mut err, k, &|x: &serde_json::Value| {
                    x[k].as_u64().unwrap_or(0)
                });
            }
        }
        if let Some(drops) = obj.get("drops").and_then(|d| d.as_object()) {
            for k in drops.keys() {
                row(&mut err, &format!("drop.{k}"), &|x: &serde_json::Value| {
                    x["drops"][k].as_u64().unwrap_or(0)
                });
            }
        }
    }
    for (name, st) in &s.ports {
        if let Some(st) = st {
            let _ = writeln!(
                err,
                "port {name}: rx {} tx {} imissed {} rx_nombuf {} rx_errors {} tx_errors {}",
                st.rx_packets, st.tx_packets, st.imissed, st.rx_nombuf, st.rx_errors, st.tx_errors
            );
        }
    }
}

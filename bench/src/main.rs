//! `webswitch-bench`: stateful HTTP/1.1 load over DPDK ports, with integrity checks,
//! latency percentiles and ceilings. See docs/benchmarks.md ("Harness").
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dpdk_env::{Eal, Mempool, Port, PortConfig};
use serde::Serialize;
use serde_json::Value;

use webswitch_bench::content::UrlClass;
use webswitch_bench::engine::client::{Client, ClientCfg};
use webswitch_bench::engine::net::{Net, SideKind};
use webswitch_bench::engine::server::{Server, ServerCfg};
use webswitch_bench::engine::{self, Clock, Load};
use webswitch_bench::report::{self, Counters, LatencyReport, Rates, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Clients connect to the VIP through the switch; the server side plays the backends.
    Switch,
    /// No switch: the client side and the server side joined by a memif pair inside this
    /// process, clients connecting to the backend addresses directly (connection ceiling).
    BackToBack,
    /// Clients connect to the backend addresses directly over the two given ports (e.g.
    /// through testpmd io forwarding: the packet ceiling).
    Direct,
}

/// Stateful HTTP/1.1 load for webswitch over DPDK ports: emulated clients on one port,
/// emulated backends on the other, every response body checked against its URL.
#[derive(Debug, Parser, Serialize)]
#[command(
    name = "webswitch-bench",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,
    /// switch: through webswitch; back-to-back: in-process memif pair, no switch;
    /// direct: like switch but connecting to the backends, not the VIP.
    #[arg(long, value_enum, default_value = "switch")]
    mode: Mode,
    /// Client side port: a vdev (`net_memif0,role=client,socket=...`) or a PCI address.
    /// Omit to run only the server side.
    #[arg(long)]
    client_dev: Option<String>,
    /// Server (backend) side port, as --client-dev. Omit to run only the client side
    /// (real backends).
    #[arg(long)]
    server_dev: Option<String>,
    /// The VIP and port clients connect to (switch mode).
    #[arg(long, default_value = "10.99.0.10:80")]
    vip: SocketAddrV4,
    /// Backend addresses the server side answers for (comma-separated).
    #[arg(
        long,
        default_value = "10.99.1.11,10.99.1.12,10.99.1.13",
        value_delimiter = ','
    )]
    backends: Vec<Ipv4Addr>,
    /// The TCP port the server side listens on.
    #[arg(long, default_value_t = 80)]
    backend_port: u16,
    /// Client source addresses, `FIRST-LAST`.
    #[arg(long, default_value = "10.99.0.100-10.99.0.199")]
    client_ips: String,
    /// Client source ports, `FIRST-LAST`, used in turn per address.
    #[arg(long, default_value = "10000-65000")]
    client_ports: String,
    /// The next hop to ARP for (default: the VIP, or the first backend).
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds allowed after the load for open requests to finish.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Closed loop: connections kept open at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Open loop: new connections per second (replaces --concurrency).
    #[arg(long)]
    rate: Option<f64>,
    /// Most connections open at once on each side (table sizes).
    #[arg(long, default_value_t = 16384)]
    max_conns: usize,
    /// Requests per connection (HTTP/1.1 keep-alive).
    #[arg(long, default_value_t = 1)]
    requests_per_conn: u32,
    /// URL mix, `class:weight,...` with classes img (/img/*.png), app (/app/*), other.
    #[arg(long, default_value = "img:1,app:1,other:1")]
    mix: String,
    /// Response body sizes in bytes, one picked at random per request (comma-separated).
    #[arg(long, default_value = "1024", value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Request body bytes (0: GET; else POST with a body the server checks).
    #[arg(long, default_value_t = 0)]
    request_body: u64,
    /// Think time between requests on a connection, milliseconds.
    #[arg(long, default_value_t = 0.0)]
    think_ms: f64,
    /// A connect or a response taking longer than this fails (timeout), milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Initial retransmission timeout, milliseconds (doubles per retry, at most 1 s).
    #[arg(long, default_value_t = 200)]
    rto_ms: u64,
    /// Check which backend served each class (`X-Backend`): img by the first backend, app
    /// by the second, as examples/*.json route them.
    #[arg(long)]
    check_routing: bool,
    /// Check the route of every request, not only the first of each connection (for a
    /// switch that routes each keep-alive request).
    #[arg(long)]
    route_every_request: bool,
    /// Expected backend per class, `class=IP` (repeatable; implies the check).
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Server side: delay before each response, milliseconds.
    #[arg(long, default_value_t = 0.0)]
    server_delay_ms: f64,
    /// Server side: one-way latency of the link to the backends, microseconds: every
    /// frame the server side sends is held this long (a backend at a distance, so that
    /// a backend handshake costs a round trip of this order, as over a real network).
    #[arg(long, default_value_t = 0.0)]
    server_latency_us: f64,
    /// Server side: close the connection after this many responses (0: never).
    #[arg(long, default_value_t = 0)]
    server_close_after: u32,
    /// Spoofed SYNs per second toward the target, mixed with the clients.
    #[arg(long, default_value_t = 0.0)]
    syn_flood: f64,
    /// Spoofed SYN sources, `FIRST-LAST`.
    #[arg(long, default_value = "10.99.0.200-10.99.0.254")]
    flood_ips: String,
    /// Background slowloris connections held through the run (a head sent a header
    /// line at a time, never finished), from `--background-ips`, outside the figures.
    #[arg(long, default_value_t = 0)]
    slowloris: usize,
    /// Background idle keep-alive connections (one request, then silence).
    #[arg(long, default_value_t = 0)]
    idle_conns: usize,
    /// Sources of the background connections, `FIRST-LAST`.
    #[arg(long, default_value = "10.99.0.20-10.99.0.99")]
    background_ips: String,
    /// How often a slowloris connection sends its next header line, milliseconds.
    #[arg(long, default_value_t = 1000)]
    trickle_ms: u64,
    /// Write the JSON report here (and SVG plots beside it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// A report of a ceiling run (back-to-back, or direct through testpmd); repeatable.
    #[arg(long)]
    ceiling: Vec<PathBuf>,
    /// Do not write SVG plots.
    #[arg(long)]
    no_plots: bool,
    /// Exit non-zero on any error, not only on integrity failures.
    #[arg(long)]
    strict: bool,
    /// DPDK file prefix (distinct from the switch's).
    #[arg(long, default_value = "webswitch-bench")]
    file_prefix: String,
    /// The CPU the harness's lcore runs on.
    #[arg(long, default_value_t = 0)]
    cpu: u32,
    /// EAL memory in MB (no hugepages unless --hugepages).
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
    #[arg(long)]
    hugepages: bool,
    /// Extra EAL arguments (repeatable), e.g. --eal=--log-level=pmd.net.memif:debug
    #[arg(long, allow_hyphen_values = true)]
    eal: Vec<String>,
    /// Mbufs in the pool.
    #[arg(long, default_value_t = 32767)]
    mbufs: u32,
    /// Directory for the back-to-back memif socket.
    #[arg(long, default_value = "/run/webswitch-bench")]
    run_dir: PathBuf,
    /// Seconds to wait for links and the gateway's ARP.
    #[arg(long, default_value_t = 10.0)]
    link_timeout: f64,
    /// Seed of the random choices (ISNs, URLs, sizes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest idle sleep of the poll loop, microseconds.
    #[arg(long, default_value_t = 1000)]
    idle_max_sleep_us: u64,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Draw one SVG comparing several JSON reports of this tool (e.g. back-to-back, testpmd
    /// and webswitch runs of the same load): requests/s and new connections/s, and time to
    /// first byte p50/p99, as grouped bars with their values; prints the figures as a table.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The SVG to write.
    #[arg(long)]
    out: PathBuf,
    /// The title of the plot.
    #[arg(long)]
    title: Option<String>,
    /// The reports, in the order of the bars: `LABEL=REPORT.json` (or `REPORT.json`, labelled
    /// with its file stem).
    #[arg(required = true, value_name = "LABEL=REPORT.json")]
    reports: Vec<String>,
}

fn compare(a: &CompareArgs) -> Result<ExitCode, String> {
    let table = webswitch_bench::compare::run(&a.reports, &a.out, a.title.as_deref())?;
    print!("{table}");
    eprintln!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn ip_range(s: &str, what: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{what}: {a}: {e}"))?;
    let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{what}: {b}: {e}"))?;
    let (a, b) = (u32::from(a), u32::from(b));
    if b < a || b - a > 65535 {
        return Err(format!("{what}: bad range {s}"));
    }
    Ok((a, b))
}

/// `--eal` words and the vdev/allow arguments for one port; returns its ethdev name.
fn device_args(dev: &str, args: &mut Vec<String>, pci: &mut bool) -> String {
    if dev.starts_with("net_") || dev.starts_with("eth_") {
        args.push("--vdev".into());
        args.push(dev.into());
        dev.split(',').next().unwrap_or(dev).to_string()
    } else {
        *pci = true;
        args.push("-a".into());
        args.push(dev.into());
        dev.split(',').next().unwrap_or(dev).to_string()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Compare(a)) => compare(a),
        None => run(&cli),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("webswitch-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    // settings
    let (ip_lo, ip_hi) = ip_range(&cli.client_ips, "--client-ips")?;
    let (port_lo, port_hi) = match cli.client_ports.split_once('-') {
        Some((a, b)) => (
            a.trim()
                .parse::<u16>()
                .map_err(|e| format!("--client-ports: {e}"))?,
            b.trim()
                .parse::<u16>()
                .map_err(|e| format!("--client-ports: {e}"))?,
        ),
        None => return Err("--client-ports: FIRST-LAST".into()),
    };
    if port_lo == 0 || port_hi < port_lo {
        return Err("--client-ports: bad range".into());
    }
    let flood = ip_range(&cli.flood_ips, "--flood-ips")?;
    let background = ip_range(&cli.background_ips, "--background-ips")?;
    let mut mix = Vec::new();
    for part in cli.mix.split(',').filter(|p| !p.is_empty()) {
        let (name, w) = part.split_once(':').unwrap_or((part, "1"));
        let class = UrlClass::parse(name.trim())
            .ok_or_else(|| format!("--mix: unknown class {name:?} (img, app, other)"))?;
        let w: u32 = w
            .trim()
            .parse()
            .map_err(|e| format!("--mix: {part}: {e}"))?;
        mix.push((class, w));
    }
    if mix.iter().map(|m| m.1).sum::<u32>() == 0 {
        return Err("--mix: all weights are 0".into());
    }
    if cli.sizes.is_empty() {
        return Err("--sizes: give at least one size".into());
    }
    if cli.backends.is_empty() {
        return Err("--backends: give at least one address".into());
    }
    let mut routes = Vec::new();
    if cli.check_routing {
        routes.push((UrlClass::Img, cli.backends[0]));
        if let Some(b) = cli.backends.get(1) {
            routes.push((UrlClass::App, *b));
        }
    }
    for r in &cli.routes {
        let (name, ip) = r.split_once('=').ok_or("--route: class=IP")?;
        let class = UrlClass::parse(name).ok_or_else(|| format!("--route: class {name:?}"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("--route: {ip}: {e}"))?;
        routes.retain(|x: &(UrlClass, Ipv4Addr)| x.0 != class);
        routes.push((class, ip));
    }
    let ceilings: Vec<(String, Value)> = cli
        .ceiling
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("--ceiling {}: {e}", p.display()))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| format!("--ceiling {}: {e}", p.display()))?;
            Ok((p.display().to_string(), v))
        })
        .collect::<Result<_, String>>()?;

    // devices
    let mut b2b_socket = None;
    let (client_dev, server_dev) = match cli.mode {
        Mode::BackToBack => {
            std::fs::create_dir_all(&cli.run_dir)
                .map_err(|e| format!("{}: {e}", cli.run_dir.display()))?;
            let sock = cli.run_dir.join(format!("b2b-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&sock);
            let s = sock.display().to_string();
            b2b_socket = Some(sock);
            (
                Some(format!(
                    "net_memif91,role=client,id=0,socket={s},socket-abstract=no"
                )),
                Some(format!(
                    "net_memif90,role=server,id=0,socket={s},socket-abstract=no"
                )),
            )
        }
        _ => (cli.client_dev.clone(), cli.server_dev.clone()),
    };
    if client_dev.is_none() && server_dev.is_none() {
        return Err("give --client-dev and/or --server-dev (or --mode back-to-back)".into());
    }
    let mut args: Vec<String> = vec![
        "-l".into(),
        cli.cpu.to_string(),
        "-m".into(),
        cli.memory_mb.to_string(),
        "--no-telemetry".into(),
        "--file-prefix".into(),
        cli.file_prefix.clone(),
        "--log-level".into(),
        "lib.eal:warning".into(),
    ];
    if !cli.hugepages {
        args.push("--no-huge".into());
    }
    let mut pci = false;
    // the server side first: in back-to-back mode it is the memif server
    let server_name = server_dev
        .as_deref()
        .map(|d| device_args(d, &mut args, &mut pci));
    let client_name = client_dev
        .as_deref()
        .map(|d| device_args(d, &mut args, &mut pci));
    if !pci {
        args.push("--no-pci".into());
    }
    args.extend(cli.eal.iter().cloned());

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }

    let eal = Eal::init(&args).map_err(|e| format!("EAL init ({}): {e}", args.join(" ")))?;
    let result = (|| {
        let pool = Arc::new(
            Mempool::new("bench_mbufs", cli.mbufs, 256, 2048 + 128)
                .map_err(|e| format!("mempool: {e}"))?,
        );
        let pconf = PortConfig {
            rss: false,
            ..PortConfig::default()
        };
        let start_port = |name: &str, kind: SideKind| -> Result<Net, String> {
            let id = Port::find(name).map_err(|e| format!("port {name}: {e}"))?;
            let port =
                Port::start(id, name, &pconf, Arc::clone(&pool)).map_err(|e| format!("{e}"))?;
            Ok(Net::new(port, Arc::clone(&pool), kind))
        };
        let server_net = server_name
            .as_deref()
            .map(|n| start_port(n, SideKind::Server))
            .transpose()?;
        let client_net = client_name
            .as_deref()
            .map(|n| start_port(n, SideKind::Client))
            .transpose()?;
        let link_timeout = Duration::from_secs_f64(cli.link_timeout.max(0.1));
        for net in client_net.iter().chain(server_net.iter()) {
            let st = net
                .port
                .wait_link(link_timeout)
                .map_err(|e| e.to_string())?;
            if !st.up {
                return Err(format!(
                    "port {}: link did not come up within {:?} (is the other end running?)",
                    net.port.name(),
                    link_timeout
                ));
            }
        }
        let direct = cli.mode != Mode::Switch;
        let targets: Vec<SocketAddrV4> = if direct {
            cli.backends
                .iter()
                .map(|ip| SocketAddrV4::new(*ip, cli.backend_port))
                .collect()
        } else {
            vec![cli.vip]
        };
        let gateway = cli.gateway.unwrap_or(*targets[0].ip());
        let ms = |x: f64| (x * 1e6) as u64;
        let mut client = client_net.map(|net| {
            Client::new(
                net,
                ClientCfg {
                    targets: targets.clone(),
                    gateway,
                    ips: (ip_lo..=ip_hi).map(Ipv4Addr::from).collect(),
                    port_lo,
                    port_hi,
                    max_conns: cli.max_conns,
                    requests_per_conn: cli.requests_per_conn.max(1),
                    mix: mix.clone(),
                    sizes: cli.sizes.clone(),
                    request_body: cli.request_body,
                    think_ns: ms(cli.think_ms),
                    timeout_ns: cli.timeout_ms * 1_000_000,
                    rto_ns: cli.rto_ms.max(1) * 1_000_000,
                    routes: routes.clone(),
                    route_every_request: cli.route_every_request,
                    host: "bench".into(),
                    flood_ips: flood,
                    slowloris: cli.slowloris,
                    idle: cli.idle_conns,
                    background_ips: (background.0..=background.1).map(Ipv4Addr::from).collect(),
                    trickle_ns: cli.trickle_ms.max(1) * 1_000_000,
                },
                cli.seed,
            )
        });
        let mut server = server_net.map(|mut net| {
            net.set_delay_ns((cli.server_latency_us * 1e3) as u64);
            Server::new(
                net,
                ServerCfg {
                    ips: cli.backends.clone(),
                    port: cli.backend_port,
                    max_conns: cli.max_conns,
                    delay_ns: ms(cli.server_delay_ms),
                    close_after: cli.server_close_after,
                    rto_ns: cli.rto_ms.max(1) * 1_000_000,
                    idle_ns: 60_000_000_000,
                },
                cli.seed,
            )
        });
        let clock = Clock::new();
        let mut c = Counters::default();
        if !engine::resolve(
            &mut client,
            &mut server,
            &clock,
            link_timeout,
            cli.syn_flood > 0.0,
            &stop,
            &mut c,
        ) {
            return Err(format!(
                "no ARP answer for the gateway {gateway} within {link_timeout:?}"
            ));
        }
        let load = Load {
            duration_ns: (cli.duration * 1e9) as u64,
            drain_ns: (cli.drain * 1e9) as u64,
            concurrency: cli.concurrency.min(cli.max_conns),
            rate: cli.rate,
            syn_flood: cli.syn_flood,
            quiet: cli.quiet,
            idle_max_sleep_us: cli.idle_max_sleep_us,
        };
        let out = engine::run(
            &mut client,
            &mut server,
            &load,
            &clock,
            Arc::clone(&stop),
            &mut c,
        );
        drop(client);
        drop(server);
        Ok(out)
    })();
    drop(eal);
    if let Some(sock) = b2b_socket {
        let _ = std::fs::remove_file(sock);
    }
    let out = result?;

    let rates = Rates::over(&out.window, out.load_s);
    let mut problems = report::check(&out.totals);
    problems.extend(
        report::check(&out.window)
            .into_iter()
            .map(|p| format!("load window: {p}")),
    );
    let integrity = out.totals.integrity_failures();
    if integrity > 0 {
        problems.push(format!(
            "{integrity} responses or request bodies failed the integrity or routing check"
        ));
    }
    if cli.strict && out.totals.error_total() > 0 {
        problems.push(format!("{} errors (--strict)", out.totals.error_total()));
    }
    let report = Report {
        tool: format!("webswitch-bench {}", env!("CARGO_PKG_VERSION")),
        mode: serde_json::to_value(cli.mode)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        settings: serde_json::to_value(cli).unwrap_or(Value::Null),
        load_s: out.load_s,
        elapsed_s: out.elapsed_s,
        rates,
        window: out.window,
        totals: out.totals,
        latency: LatencyReport {
            connect: out.connect,
            ttfb: out.ttfb,
            response: out.response,
        },
        ttfb_by_class: out.ttfb_by_class,
        errors: report::errors_by_kind(&out.totals),
        drops: out
            .totals
            .drops()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        timeline: out.timeline,
        ceilings: ceilings
            .iter()
            .map(|(p, v)| report::ceiling_ratios(&rates, p, v))
            .collect(),
        ok: problems.is_empty(),
        problems,
    };
    print!("{}", report.text());
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        if !cli.no_plots {
            for f in webswitch_bench::plot::write_plots(&report, path)? {
                eprintln!("wrote {}", f.display());
            }
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[allow(dead_code)]
fn exists(p: &Path) -> bool {
    p.exists()
}

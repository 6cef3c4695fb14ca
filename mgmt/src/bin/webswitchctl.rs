//! webswitchctl: talks to a running webswitch over its JSON management socket.
//!
//! Exit status: 0 ok; 1 the switch answered with an error; 2 usage error (or an input
//! FILE that cannot be read or parsed); 3 cannot connect, or a protocol failure.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mgmt::{render, CallError, Client};
use serde_json::{json, Map, Value};

const DEFAULT_SOCKET: &str = "/run/webswitch/webswitch.sock";

const EXIT_REMOTE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_CONNECT: u8 = 3;

const MAIN_HELP: &str = "\
Examples:
  webswitchctl status
  webswitchctl backends
  webswitchctl backends add be4 10.99.1.14:80 --weight 2 --pool default
  webswitchctl backends drain be2
  webswitchctl agents
  webswitchctl rules replace rules.json --expect-version 7
  webswitchctl connections list --backend be2 --limit 20
  webswitchctl top
  webswitchctl --json stats | jq .total.rx_packets
  webswitchctl raw backends.weight '{\"name\": \"be1\", \"weight\": 5}'

Exit status:
  0  ok
  1  the switch answered with an error (\"webswitchctl: <code>: <message>\" on stderr)
  2  usage error, or an input FILE that cannot be read or parsed
  3  cannot connect to the socket, or a protocol failure

The protocol and every command are described in docs/mgmt-api.md.";

#[derive(Debug, Parser)]
#[command(
    name = "webswitchctl",
    version,
    about = "Inspect and reconfigure a running webswitch through its JSON management socket",
    after_help = MAIN_HELP
)]
struct Cli {
    /// Path of the management socket
    #[arg(
        long,
        short = 's',
        global = true,
        env = "WEBSWITCH_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    socket: PathBuf,
    /// Print the command's raw JSON result instead of a table
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the switch to answer
    #[arg(long, global = true, default_value = "10", value_name = "SECS", value_parser = parse_secs)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Version, pid, uptime, worker lcores, ports and link state, config version
    #[command(after_help = "Example:\n  webswitchctl status")]
    Status,
    /// Counters in total and per core, drops by reason, port counters
    #[command(
        after_help = "Examples:\n  webswitchctl stats\n  webswitchctl stats --all\n  webswitchctl --json stats | jq '.total.drops'"
    )]
    Stats {
        /// Also show counters that are zero everywhere
        #[arg(long)]
        all: bool,
    },
    /// List backends, add, remove or re-weight one, or set its admin state (default: list)
    #[command(
        after_help = "Examples:\n  webswitchctl backends\n  webswitchctl backends add be4 10.99.1.14:8080 --weight 2 --pool default --pool images\n  webswitchctl backends weight be4 5\n  webswitchctl backends drain be4\n  webswitchctl backends remove be4"
    )]
    Backends {
        #[command(subcommand)]
        action: Option<BackendsCmd>,
    },
    /// List each backend's handoff agent: registered, alive, last heard from, its load (default: list)
    #[command(
        after_help = "Examples:\n  webswitchctl agents\n  webswitchctl --json agents | jq '.agents[] | select(.alive | not) | .name'"
    )]
    Agents {
        #[command(subcommand)]
        action: Option<AgentsCmd>,
    },
    /// List pools with their scheduler and backends, add or remove one (default: list)
    #[command(
        after_help = "Examples:\n  webswitchctl pools\n  webswitchctl pools add api be1 be2 --scheduler least_connections\n  webswitchctl pools remove api"
    )]
    Pools {
        #[command(subcommand)]
        action: Option<PoolsCmd>,
    },
    /// Show the content rules, replace them all at once, or check a rules file (default: show)
    #[command(
        after_help = "FILE holds {\"rules\": [...], \"default_pool\": \"...\"} (a whole config file works too:\nonly those two fields are taken), or a bare array of rules; - reads standard input.\n\nExamples:\n  webswitchctl rules\n  webswitchctl rules validate new-rules.json\n  webswitchctl rules replace new-rules.json --expect-version 7"
    )]
    Rules {
        #[command(subcommand)]
        action: Option<RulesCmd>,
    },
    /// Show, check, apply or save the whole running config (default: show)
    #[command(
        after_help = "FILE is a config file as `webswitch run --config` takes it; - reads standard input.\n\nExamples:\n  webswitchctl config show > running.json\n  webswitchctl config validate new.json\n  webswitchctl config apply new.json\n  webswitchctl config save /etc/webswitch/webswitch.json"
    )]
    Config {
        #[command(subcommand)]
        action: Option<ConfigCmd>,
    },
    /// List client connections (filtered, bounded) or kill one (default: list)
    #[command(
        after_help = "Examples:\n  webswitchctl connections\n  webswitchctl connections list --backend be2 --state spliced --limit 50\n  webswitchctl connections kill 10.99.0.2:41234"
    )]
    Connections {
        #[command(subcommand)]
        action: Option<ConnectionsCmd>,
    },
    /// Whether this instance serves its VIPs in an ECMP cluster, what its routing daemon
    /// was told; take it out of the group or put it back (default: show)
    #[command(
        after_help = "Examples:\n  webswitchctl cluster\n  webswitchctl cluster withdraw   # before an upgrade: routers send no new flows\n  webswitchctl cluster announce"
    )]
    Cluster {
        #[command(subcommand)]
        action: Option<ClusterCmd>,
    },
    /// Set the log level, or switch the access log on or off
    #[command(
        after_help = "Examples:\n  webswitchctl log level debug\n  webswitchctl log access on"
    )]
    Log {
        #[command(subcommand)]
        action: LogCmd,
    },
    /// Rates per core, refreshed every second (Ctrl-C to quit)
    #[command(
        after_help = "Columns: received and sent packets/s, new connections/s, requests routed/s, live flows,\nand busy % (busy cycles / all cycles over the interval).\n\nExamples:\n  webswitchctl top\n  webswitchctl top --count 5 --interval 2\n  webswitchctl --json top --count 10 > rates.jsonl"
    )]
    Top {
        /// Stop after this many refreshes
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Seconds between refreshes
        #[arg(long, default_value = "1", value_name = "SECS", value_parser = parse_secs)]
        interval: Duration,
    },
    /// Send any command with JSON args and print the JSON result
    #[command(
        after_help = "Examples:\n  webswitchctl raw status\n  webswitchctl raw backends.drain '{\"name\": \"be2\"}'"
    )]
    Raw {
        /// Command name, e.g. backends.drain
        cmd: String,
        /// The args object, as JSON
        args: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PoolsCmd {
    /// List pools
    #[command(after_help = "Example:\n  webswitchctl pools list")]
    List,
    /// Add a pool of existing backends
    #[command(
        after_help = "Example:\n  webswitchctl pools add api be1 be2 --scheduler weighted_round_robin"
    )]
    Add {
        /// Unique pool name
        name: String,
        /// Member backends (at least one)
        #[arg(required = true)]
        backends: Vec<String>,
        /// round_robin, weighted_round_robin, least_connections, lard or weighted_random
        #[arg(long, default_value = "round_robin")]
        scheduler: String,
    },
    /// Remove a pool no rule refers to
    #[command(after_help = "Example:\n  webswitchctl pools remove api")]
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
enum AgentsCmd {
    /// List the agents, one row per backend
    #[command(after_help = "Example:\n  webswitchctl agents list")]
    List,
}

#[derive(Debug, Subcommand)]
enum BackendsCmd {
    /// List backends with admin state, health and active connections
    #[command(after_help = "Example:\n  webswitchctl backends list")]
    List,
    /// Add a backend (to pools with --pool)
    #[command(
        after_help = "Examples:\n  webswitchctl backends add be4 10.99.1.14 --pool default\n  webswitchctl backends add be5 [fd00::5]:8080 --weight 3 --pool default --pool api"
    )]
    Add {
        /// Unique backend name
        name: String,
        /// IP address, with an optional :PORT ([v6]:PORT for IPv6)
        #[arg(value_name = "ADDR[:PORT]")]
        addr: String,
        /// Scheduling weight
        #[arg(long, value_name = "W")]
        weight: Option<u32>,
        /// Add it to this pool (repeatable)
        #[arg(long = "pool", value_name = "P")]
        pools: Vec<String>,
    },
    /// Remove a backend (its connections finish unless killed)
    #[command(after_help = "Example:\n  webswitchctl backends remove be4")]
    Remove { name: String },
    /// Set a backend's weight
    #[command(after_help = "Example:\n  webswitchctl backends weight be1 5")]
    Weight { name: String, weight: u32 },
    /// No new connections to the backend; existing ones finish
    #[command(after_help = "Example:\n  webswitchctl backends drain be2")]
    Drain { name: String },
    /// Back in service
    #[command(after_help = "Example:\n  webswitchctl backends ready be2")]
    Ready { name: String },
    /// Out of service for maintenance
    #[command(after_help = "Example:\n  webswitchctl backends maint be2")]
    Maint { name: String },
}

#[derive(Debug, Subcommand)]
enum RulesCmd {
    /// Show the rules in order, with the default pool and the version
    #[command(
        after_help = "Examples:\n  webswitchctl rules show\n  webswitchctl --json rules show > rules.json"
    )]
    Show,
    /// Replace all rules atomically
    #[command(
        after_help = "Examples:\n  webswitchctl rules replace rules.json\n  webswitchctl rules replace rules.json --expect-version 7"
    )]
    Replace {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Fail with `conflict` unless the running version is V
        #[arg(long, value_name = "V")]
        expect_version: Option<u64>,
    },
    /// Check a rules file against the running pools without applying it
    #[command(after_help = "Example:\n  webswitchctl rules validate rules.json")]
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print the running config as JSON
    #[command(after_help = "Example:\n  webswitchctl config show > running.json")]
    Show,
    /// Check a config file without applying it
    #[command(after_help = "Example:\n  webswitchctl config validate new.json")]
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Apply a config file (an atomic swap; connections are kept)
    #[command(after_help = "Example:\n  webswitchctl config apply new.json")]
    Apply {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Have the switch write its running config to PATH (relative paths are made absolute here)
    #[command(after_help = "Example:\n  webswitchctl config save /etc/webswitch/webswitch.json")]
    Save {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectionsCmd {
    /// List connections
    #[command(
        after_help = "Examples:\n  webswitchctl connections list\n  webswitchctl connections list --client 10.99.0.2 --backend be1 --state spliced --limit 20"
    )]
    List {
        /// Only this client: IP or IP:PORT
        #[arg(long, value_name = "C")]
        client: Option<String>,
        /// Only connections to this backend
        #[arg(long, value_name = "B")]
        backend: Option<String>,
        /// Only connections in this state
        #[arg(long, value_name = "S")]
        state: Option<String>,
        /// At most N connections
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Reset the connection of client IP:PORT
    #[command(after_help = "Example:\n  webswitchctl connections kill 10.99.0.2:41234")]
    Kill {
        #[arg(value_name = "CLIENT")]
        client: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// Serving or not, why, and the last announce/withdraw command's outcome
    #[command(
        after_help = "Examples:\n  webswitchctl cluster show\n  webswitchctl --json cluster show   # with the members and the ownership table"
    )]
    Show,
    /// Drain: own no new connection, and ask the routing daemon to withdraw the VIPs
    #[command(after_help = "Example:\n  webswitchctl cluster withdraw   # before an upgrade")]
    Withdraw,
    /// Own new connections again, and announce the VIPs once the instance can serve
    #[command(after_help = "Example:\n  webswitchctl cluster announce")]
    Announce,
}

#[derive(Debug, Subcommand)]
enum LogCmd {
    /// Set the log level (error, warn, info, debug, trace)
    #[command(after_help = "Example:\n  webswitchctl log level debug")]
    Level { level: String },
    /// Switch the per-request access log on or off
    #[command(after_help = "Example:\n  webswitchctl log access on")]
    Access {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let f: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(f.is_finite() && f > 0.0 && f <= 86_400.0) {
        return Err(format!(
            "`{s}` must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(f))
}

/// Why the command failed, with its exit status.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            status: EXIT_USAGE,
            message: message.into(),
        }
    }
}

fn call_failure(socket: &Path, e: CallError) -> Failure {
    match e {
        CallError::Ctl(e) => Failure {
            status: EXIT_REMOTE,
            message: e.to_string(),
        },
        other => Failure {
            status: EXIT_CONNECT,
            message: format!("{}: {other}", socket.display()),
        },
    }
}

struct Session {
    client: Client,
    socket: PathBuf,
}

impl Session {
    fn open(cli: &Cli) -> Result<Session, Failure> {
        let mut client = Client::connect(&cli.socket).map_err(|e| Failure {
            status: EXIT_CONNECT,
            message: format!("cannot connect to {}: {e}", cli.socket.display()),
        })?;
        client.set_timeout(cli.timeout).map_err(|e| Failure {
            status: EXIT_CONNECT,
            message: format!("{}: {e}", cli.socket.display()),
        })?;
        Ok(Session {
            client,
            socket: cli.socket.clone(),
        })
    }

    fn call(&mut self, cmd: &str, args: Value) -> Result<Value, Failure> {
        self.client
            .call(cmd, args)
            .map_err(|e| call_failure(&self.socket, e))
    }
}

/// Writes to stdout; a closed stdout (`| head`) ends the program quietly.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

fn read_json_file(file: &Path) -> Result<Value, Failure> {
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::usage(format!("cannot read standard input: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?
    };
    serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{} is not valid JSON: {e}", file.display())))
}

/// The args of `rules.replace`/`rules.validate` from a rules file.
fn rules_args(file: &Path) -> Result<Map<String, Value>, Failure> {
    let mut args = Map::new();
    match read_json_file(file)? {
        rules @ Value::Array(_) => {
            args.insert("rules".into(), rules);
        }
        Value::Object(mut obj) => {
            let rules = obj.remove("rules").ok_or_else(|| {
                Failure::usage(format!("{} has no `rules` array", file.display()))
            })?;
            args.insert("rules".into(), rules);
            if let Some(dp) = obj.remove("default_pool") {
                args.insert("default_pool".into(), dp);
            }
        }
        _ => {
            return Err(Failure::usage(format!(
                "{} must hold an object with `rules`, or an array of rules",
                file.display()
            )))
        }
    }
    Ok(args)
}

/// `ADDR[:PORT]` → (address, port). IPv6 with a port is written `[v6]:PORT`.
fn split_addr(s: &str) -> Result<(String, Option<u16>), Failure> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip().to_string(), Some(sa.port())));
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok((ip.to_string(), None));
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if !host.contains(':') && !host.is_empty() {
            let port = port
                .parse::<u16>()
                .map_err(|_| Failure::usage(format!("bad port in `{s}`")))?;
            return Ok((host.to_string(), Some(port)));
        }
    }
    // Not an IP: let the switch judge it (and name the field).
    Ok((s.to_string(), None))
}

fn version_note(v: &Value) -> String {
    match v.get("version") {
        Some(x) if !x.is_null() => format!(" (config version {})", render::cell(Some(x))),
        _ => String::new(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("webswitchctl: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    // Check local input before connecting, so a usage mistake is reported as one.
    let prepared = prepare(&cli.command)?;
    let mut s = Session::open(cli)?;
    if let Command::Top { count, interval } = &cli.command {
        return top(&mut s, cli.json, *count, *interval);
    }
    let (cmd, args, show) = prepared.expect("every command but top is prepared");
    let cmd = match &cli.command {
        Command::Raw { cmd, .. } => cmd.as_str(),
        _ => cmd,
    };
    let result = s.call(cmd, args.clone())?;
    if cli.json || matches!(cli.command, Command::Raw { .. }) {
        emit(&pretty(&result));
        return Ok(());
    }
    let text = match show {
        Show::Status => render::status(&result),
        Show::Stats { all } => {
            // Core labels come from status.workers; stats alone still renders without them.
            let status = s.call("status", Value::Null).ok();
            let labels = render::core_labels(&result, status.as_ref());
            render::stats(&result, &labels, all)
        }
        Show::Backends => render::backends(&result),
        Show::Agents => render::agents(&result),
        Show::Pools => render::pools(&result),
        Show::Rules => render::rules(&result),
        Show::Connections => render::connections(&result),
        Show::Config => {
            if let Some(v) = result.get("version") {
                eprintln!("(config version {})", render::cell(Some(v)));
            }
            pretty(result.get("config").unwrap_or(&Value::Null))
        }
        Show::Done(what) => format!("{what}{}\n", version_note(&result)),
        Show::Valid(what) => format!("{what} valid\n"),
        Show::Saved => format!(
            "config saved to {}\n",
            render::cell(result.get("path").or(args.get("path")))
        ),
        Show::Killed => {
            let n = result.get("killed").and_then(Value::as_u64).unwrap_or(0);
            format!("killed {n} connection{}\n", if n == 1 { "" } else { "s" })
        }
        Show::Level => format!("log level {}\n", render::cell(result.get("level"))),
        Show::Cluster => render::cluster(&result),
        Show::Access => {
            let on = result.get("enabled").and_then(Value::as_bool);
            format!(
                "access log {}\n",
                match on {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "-",
                }
            )
        }
    };
    emit(&text);
    Ok(())
}

/// How a successful result is shown.
enum Show {
    Status,
    Stats {
        all: bool,
    },
    Backends,
    Agents,
    Pools,
    Rules,
    Connections,
    Config,
    /// "<what> (config version N)".
    Done(String),
    Valid(&'static str),
    Saved,
    Killed,
    Level,
    Access,
    Cluster,
}

type Prepared = Option<(&'static str, Value, Show)>;

/// The command name, its args and how to show the result; `None` for `top`.
fn prepare(command: &Command) -> Result<Prepared, Failure> {
    let name_arg = |name: &str| json!({ "name": name });
    Ok(Some(match command {
        Command::Status => ("status", Value::Null, Show::Status),
        Command::Stats { all } => ("stats", Value::Null, Show::Stats { all: *all }),
        Command::Pools { action } => match action.as_ref().unwrap_or(&PoolsCmd::List) {
            PoolsCmd::List => ("pools.list", Value::Null, Show::Pools),
            PoolsCmd::Add {
                name,
                backends,
                scheduler,
            } => (
                "pools.add",
                json!({ "name": name, "backends": backends, "scheduler": scheduler }),
                Show::Done(format!("pool {name} added")),
            ),
            PoolsCmd::Remove { name } => (
                "pools.remove",
                name_arg(name),
                Show::Done(format!("pool {name} removed")),
            ),
        },
        Command::Agents { action } => match action.as_ref().unwrap_or(&AgentsCmd::List) {
            AgentsCmd::List => ("agents.list", Value::Null, Show::Agents),
        },
        Command::Cluster { action } => match action.as_ref().unwrap_or(&ClusterCmd::Show) {
            ClusterCmd::Show => ("cluster", Value::Null, Show::Cluster),
            ClusterCmd::Withdraw => ("cluster.withdraw", Value::Null, Show::Cluster),
            ClusterCmd::Announce => ("cluster.announce", Value::Null, Show::Cluster),
        },
        Command::Top { .. } => return Ok(None),
        Command::Raw { cmd, args } => {
            let args = match args {
                None => Value::Null,
                Some(text) => match serde_json::from_str(text) {
                    Ok(v @ (Value::Object(_) | Value::Null)) => v,
                    Ok(_) => return Err(Failure::usage("ARGS_JSON must be a JSON object")),
                    Err(e) => {
                        return Err(Failure::usage(format!("ARGS_JSON is not valid JSON: {e}")))
                    }
                },
            };
            // `run` sends `cmd` itself and prints JSON whatever --json says.
            let _ = cmd;
            ("", args, Show::Status)
        }
        Command::Backends { action } => match action.as_ref().unwrap_or(&BackendsCmd::List) {
            BackendsCmd::List => ("backends.list", Value::Null, Show::Backends),
            BackendsCmd::Add {
                name,
                addr,
                weight,
                pools,
            } => {
                let (address, port) = split_addr(addr)?;
                let mut a = Map::new();
                a.insert("name".into(), name.as_str().into());
                a.insert("address".into(), address.into());
                if let Some(p) = port {
                    a.insert("port".into(), p.into());
                }
                if let Some(w) = weight {
                    a.insert("weight".into(), (*w).into());
                }
                if !pools.is_empty() {
                    a.insert("pools".into(), pools.clone().into());
                }
                (
                    "backends.add",
                    a.into(),
                    Show::Done(format!("backend {name} added")),
                )
            }
            BackendsCmd::Remove { name } => (
                "backends.remove",
                name_arg(name),
                Show::Done(format!("backend {name} removed")),
            ),
            BackendsCmd::Weight { name, weight } => (
                "backends.weight",
                json!({ "name": name, "weight": weight }),
                Show::Done(format!("backend {name} weight {weight}")),
            ),
            BackendsCmd::Drain { name } => (
                "backends.drain",
                name_arg(name),
                Show::Done(format!("backend {name} draining")),
            ),
            BackendsCmd::Ready { name } => (
                "backends.ready",
                name_arg(name),
                Show::Done(format!("backend {name} ready")),
            ),
            BackendsCmd::Maint { name } => (
                "backends.maint",
                name_arg(name),
                Show::Done(format!("backend {name} in maintenance")),
            ),
        },
        Command::Rules { action } => match action.as_ref().unwrap_or(&RulesCmd::Show) {
            RulesCmd::Show => ("rules.show", Value::Null, Show::Rules),
            RulesCmd::Replace {
                file,
                expect_version,
            } => {
                let mut a = rules_args(file)?;
                if let Some(v) = expect_version {
                    a.insert("expect_version".into(), (*v).into());
                }
                (
                    "rules.replace",
                    a.into(),
                    Show::Done("rules replaced".into()),
                )
            }
            RulesCmd::Validate { file } => (
                "rules.validate",
                rules_args(file)?.into(),
                Show::Valid("rules"),
            ),
        },
        Command::Config { action } => match action.as_ref().unwrap_or(&ConfigCmd::Show) {
            ConfigCmd::Show => ("config.show", Value::Null, Show::Config),
            ConfigCmd::Validate { file } => (
                "config.validate",
                json!({ "config": read_json_file(file)? }),
                Show::Valid("config"),
            ),
            ConfigCmd::Apply { file } => (
                "config.apply",
                json!({ "config": read_json_file(file)? }),
                Show::Done("config applied".into()),
            ),
            ConfigCmd::Save { path } => {
                // The switch resolves paths against its own working directory: send ours.
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    std::env::current_dir()
                        .map_err(|e| {
                            Failure::usage(format!("cannot resolve {}: {e}", path.display()))
                        })?
                        .join(path)
                };
                (
                    "config.save",
                    json!({ "path": path.to_string_lossy() }),
                    Show::Saved,
                )
            }
        },
        Command::Connections { action } => match action {
            None => ("connections.list", Value::Null, Show::Connections),
            Some(ConnectionsCmd::List {
                client,
                backend,
                state,
                limit,
            }) => {
                let mut a = Map::new();
                for (k, v) in [("client", client), ("backend", backend), ("state", state)] {
                    if let Some(v) = v {
                        a.insert(k.into(), v.as_str().into());
                    }
                }
                if let Some(l) = limit {
                    a.insert("limit".into(), (*l).into());
                }
                let args = if a.is_empty() { Value::Null } else { a.into() };
                ("connections.list", args, Show::Connections)
            }
            Some(ConnectionsCmd::Kill { client }) => (
                "connections.kill",
                json!({ "client": client }),
                Show::Killed,
            ),
        },
        Command::Log { action } => match action {
            LogCmd::Level { level } => ("log.level", json!({ "level": level }), Show::Level),
            LogCmd::Access { state } => (
                "log.access",
                json!({ "enabled": state == "on" }),
                Show::Access,
            ),
        },
    }))
}

fn top(
    s: &mut Session,
    json_out: bool,
    count: Option<u64>,
    interval: Duration,
) -> Result<(), Failure> {
    let status = s.call("status", Value::Null).ok();
    let mut prev = s.call("stats", Value::Null)?;
    let mut prev_at = Instant::now();
    let labels = render::core_labels(&prev, status.as_ref());
    let clear = !json_out && std::io::stdout().is_terminal();
    let mut shown = 0u64;
    while count.is_none_or(|c| shown < c) {
        std::thread::sleep(interval.saturating_sub(prev_at.elapsed()));
        let cur = s.call("stats", Value::Null)?;
        let now = Instant::now();
        let frame = render::top_frame(&prev, &cur, &labels, now - prev_at);
        let text = if json_out {
            let mut line = serde_json::to_string(&frame).unwrap_or_default();
            line.push('\n');
            line
        } else if clear {
            format!("\x1b[2J\x1b[H{}", frame.render())
        } else {
            format!("{}\n", frame.render())
        };
        emit(&text);
        prev = cur;
        prev_at = now;
        shown += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgmt::CtlError;

    #[test]
    fn addresses() {
        assert_eq!(
            split_addr("10.0.0.1:8080").ok(),
            Some(("10.0.0.1".into(), Some(8080)))
        );
        assert_eq!(split_addr("10.0.0.1").ok(), Some(("10.0.0.1".into(), None)));
        assert_eq!(split_addr("[::1]:80").ok(), Some(("::1".into(), Some(80))));
        assert_eq!(split_addr("fe80::1").ok(), Some(("fe80::1".into(), None)));
        assert_eq!(split_addr("web1:81").ok(), Some(("web1".into(), Some(81))));
        assert!(split_addr("web1:http").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            let help = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(help.contains("Example"), "`{path}` --help has no examples");
            for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        use clap::CommandFactory;
        walk(&Cli::command(), "webswitchctl");
    }

    #[test]
    fn ctl_error_message() {
        let f = call_failure(
            Path::new("/s"),
            CallError::Ctl(CtlError::not_found("no backend `x`")),
        );
        assert_eq!(
            (f.status, f.message.as_str()),
            (1, "not_found: no backend `x`")
        );
    }
}

//! Test support: a temp dir, and a mock switch implementing a few commands in memory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mgmt::{args, Control, CtlError, Server};
use serde_json::{json, Value};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "mgmt-{tag}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone)]
struct Backend {
    name: String,
    address: String,
    port: u16,
    weight: u32,
    admin: &'static str,
    pools: Vec<String>,
}

struct State {
    version: u64,
    backends: Vec<Backend>,
    rules: Value,
    default_pool: Option<String>,
    level: String,
    access: bool,
}

/// An in-memory stand-in for the switch.
pub struct Mock {
    started: Instant,
    state: Mutex<State>,
}

impl Mock {
    pub fn new() -> Arc<Mock> {
        let be = |name: &str, last: u8, pools: &[&str]| Backend {
            name: name.into(),
            address: format!("10.99.1.{last}"),
            port: 80,
            weight: 1,
            admin: "ready",
            pools: pools.iter().map(|p| p.to_string()).collect(),
        };
        Arc::new(Mock {
            started: Instant::now(),
            state: Mutex::new(State {
                version: 1,
                backends: vec![
                    be("be1", 11, &["default", "images"]),
                    be("be2", 12, &["default"]),
                ],
                rules: json!([
                    {"name": "images", "match": {"path_prefix": "/img/"}, "pool": "images"}
                ]),
                default_pool: Some("default".into()),
                level: "info".into(),
                access: false,
            }),
        })
    }

    fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Counters that grow with uptime: per core 2000 rx/s, 1000 tx/s, 75 % busy.
    fn core_stats(ms: u64, core: u64) -> Value {
        json!({
            "rx_packets": 2 * ms, "tx_packets": ms, "rx_bytes": 120 * ms, "tx_bytes": 60 * ms,
            "conns_accepted": ms / 10, "requests_routed": ms / 5, "conns_spliced": 3 + core,
            "flows_live": 3 + core, "busy_cycles": 3 * ms, "idle_cycles": ms,
            "http_4xx_sent": 0, "http_5xx_sent": 0,
            "drops": {"malformed": core, "no_flow": 0},
        })
    }

    fn find(st: &mut State, args: &Value) -> Result<usize, CtlError> {
        let name = args::get_str(args, "name")?;
        st.backends
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| CtlError::not_found(format!("no backend `{name}`")))
    }

    fn bump(st: &mut State) -> Value {
        st.version += 1;
        json!({ "version": st.version })
    }

    fn pools(st: &State) -> Vec<(String, Vec<String>)> {
        let mut pools: Vec<(String, Vec<String>)> = Vec::new();
        for b in &st.backends {
            for p in &b.pools {
                match pools.iter_mut().find(|(n, _)| n == p) {
                    Some((_, list)) => list.push(b.name.clone()),
                    None => pools.push((p.clone(), vec![b.name.clone()])),
                }
            }
        }
        pools.sort();
        pools
    }

    fn check_rules(st: &State, a: &Value) -> Result<(Value, Option<String>), CtlError> {
        let rules: Vec<Value> = args::get(a, "rules")?;
        let default_pool: Option<String> = args::opt(a, "default_pool")?;
        let pools = Self::pools(st);
        for (i, r) in rules.iter().enumerate() {
            let pool = r.get("pool").and_then(Value::as_str).unwrap_or_default();
            if !pools.iter().any(|(n, _)| n == pool) {
                return Err(CtlError::invalid(format!(
                    "rules[{i}].pool: no pool `{pool}`"
                )));
            }
        }
        Ok((Value::Array(rules), default_pool))
    }

    fn connections() -> Vec<Value> {
        (0..3)
            .map(|i| {
                json!({
                    "client": format!("10.99.0.2:{}", 40000 + i), "vip": "10.99.0.10:80",
                    "backend": if i == 2 { "be2" } else { "be1" }, "local_port": 50000 + i,
                    "state": "spliced", "core": i % 2, "age_ms": 1500 * (i + 1),
                    "bytes_c2b": 100 * (i + 1), "bytes_b2c": 10_000 * (i + 1),
                })
            })
            .collect()
    }
}

impl Control for Mock {
    fn handle(&self, cmd: &str, a: &Value) -> Result<Value, CtlError> {
        match cmd {
            "test.echo" => return Ok(a.clone()),
            "test.sleep" => {
                let ms: u64 = args::get(a, "ms")?;
                std::thread::sleep(Duration::from_millis(ms));
                return Ok(json!({ "slept_ms": ms }));
            }
            "test.panic" => panic!("mock panics on purpose"),
            _ => {}
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        match cmd {
            "status" => Ok(json!({
                "version": "0.1.0-mock", "pid": std::process::id(), "uptime_ms": self.uptime_ms(),
                "workers": [1, 2], "config_version": st.version,
                "ports": [
                    {"name": "client", "mac": "02:00:00:00:00:01", "link_up": true, "rx_queues": 2, "tx_queues": 2},
                    {"name": "backend", "mac": "02:00:00:00:00:02", "link_up": false, "rx_queues": 2, "tx_queues": 2},
                ],
            })),
            "stats" => {
                let ms = self.uptime_ms();
                let cores = [Self::core_stats(ms, 0), Self::core_stats(ms, 1)];
                let mut total = serde_json::Map::new();
                for (k, v) in cores[0].as_object().unwrap() {
                    if let Some(n) = v.as_u64() {
                        total.insert(k.clone(), (n + cores[1][k].as_u64().unwrap()).into());
                    }
                }
                total.insert("drops".into(), json!({"malformed": 1, "no_flow": 0}));
                Ok(json!({
                    "uptime_ms": ms, "total": total, "cores": cores, "mbufs_in_use": 1234,
                    "ports": {
                        "client": {"rx_packets": 10, "tx_packets": 9, "rx_bytes": 1000, "tx_bytes": 900,
                                   "imissed": 0, "rx_nombuf": 0, "rx_errors": 0, "tx_errors": 0},
                        "backend": null,
                    },
                }))
            }
            "backends.list" => Ok(json!({
                "backends": st.backends.iter().map(|b| json!({
                    "name": b.name, "address": b.address, "port": b.port, "weight": b.weight,
                    "admin": b.admin, "health": "up", "active": 0, "pools": b.pools,
                })).collect::<Vec<_>>()
            })),
            "agents.list" => Ok(json!({
                "agent_port": 7946, "agent_timeout_ms": 1500,
                "agents": st.backends.iter().enumerate().map(|(i, b)| json!({
                    "name": b.name, "address": b.address, "agent": format!("host{}", i + 1),
                    "registered": i == 0, "alive": i == 0, "last_seen_ms_ago": 250 * (i + 1),
                    "capacity": 1000, "flows": 10 * i, "load": 0.01 * i as f64, "busy": 0.5,
                    "beats": 40 + i,
                })).collect::<Vec<_>>()
            })),
            "backends.add" => {
                args::only(a, &["name", "address", "port", "weight", "pools"])?;
                let name = args::get_str(a, "name")?.to_string();
                let address = args::get_str(a, "address")?;
                if address.parse::<std::net::IpAddr>().is_err() {
                    return Err(CtlError::invalid(format!(
                        "address: `{address}` is not an IP address"
                    )));
                }
                if st.backends.iter().any(|b| b.name == name) {
                    return Err(CtlError::conflict(format!("backend `{name}` exists")));
                }
                let b = Backend {
                    name,
                    address: address.into(),
                    port: args::opt(a, "port")?.unwrap_or(80),
                    weight: args::opt(a, "weight")?.unwrap_or(1),
                    admin: "ready",
                    pools: args::opt(a, "pools")?.unwrap_or_default(),
                };
                st.backends.push(b);
                Ok(Self::bump(st))
            }
            "backends.remove" => {
                let i = Self::find(st, a)?;
                st.backends.remove(i);
                Ok(Self::bump(st))
            }
            "backends.weight" => {
                let i = Self::find(st, a)?;
                let w: u32 = args::get(a, "weight")?;
                if w > 256 {
                    return Err(CtlError::invalid("weight: must be 0..=256"));
                }
                st.backends[i].weight = w;
                Ok(Self::bump(st))
            }
            "backends.drain" | "backends.ready" | "backends.maint" => {
                let i = Self::find(st, a)?;
                st.backends[i].admin = match cmd {
                    "backends.drain" => "drain",
                    "backends.ready" => "ready",
                    _ => "maint",
                };
                Ok(Self::bump(st))
            }
            "pools.list" => Ok(json!({
                "pools": Self::pools(st).into_iter().map(|(name, backends)| json!({
                    "name": name, "scheduler": "round_robin", "backends": backends,
                })).collect::<Vec<_>>()
            })),
            "rules.show" => Ok(json!({
                "version": st.version, "rules": st.rules, "default_pool": st.default_pool,
            })),
            "rules.validate" => {
                Self::check_rules(st, a)?;
                Ok(json!({ "valid": true }))
            }
            "rules.replace" => {
                if let Some(v) = args::opt::<u64>(a, "expect_version")? {
                    if v != st.version {
                        return Err(CtlError::conflict(format!(
                            "expect_version {v} but the running version is {}",
                            st.version
                        )));
                    }
                }
                let (rules, dp) = Self::check_rules(st, a)?;
                st.rules = rules;
                if dp.is_some() {
                    st.default_pool = dp;
                }
                Ok(Self::bump(st))
            }
            "config.show" => Ok(json!({
                "version": st.version,
                "config": {"rules": st.rules, "default_pool": st.default_pool},
            })),
            "config.validate" | "config.apply" => {
                let config: Value = args::get(a, "config")?;
                if !config.is_object() {
                    return Err(CtlError::invalid("config: must be an object"));
                }
                if cmd == "config.validate" {
                    Ok(json!({ "valid": true }))
                } else {
                    Ok(Self::bump(st))
                }
            }
            "config.save" => Ok(json!({ "path": args::get_str(a, "path")? })),
            "connections.list" => {
                let client: Option<String> = args::opt(a, "client")?;
                let backend: Option<String> = args::opt(a, "backend")?;
                let limit: usize = args::opt(a, "limit")?.unwrap_or(1000);
                let all: Vec<Value> = Self::connections()
                    .into_iter()
                    .filter(|c| backend.as_ref().is_none_or(|b| c["backend"] == b.as_str()))
                    .filter(|c| {
                        client
                            .as_ref()
                            .is_none_or(|cl| c["client"].as_str().unwrap().starts_with(cl.as_str()))
                    })
                    .collect();
                let truncated = all.len() > limit;
                Ok(json!({
                    "connections": all.into_iter().take(limit).collect::<Vec<_>>(),
                    "truncated": truncated,
                }))
            }
            "connections.kill" => {
                let client = args::get_str(a, "client")?;
                let n = Self::connections()
                    .iter()
                    .filter(|c| c["client"] == client)
                    .count();
                Ok(json!({ "killed": n }))
            }
            "log.level" => {
                let level = args::get_str(a, "level")?;
                if !["error", "warn", "info", "debug", "trace"].contains(&level) {
                    return Err(CtlError::invalid(format!("level: unknown level `{level}`")));
                }
                st.level = level.into();
                Ok(json!({ "level": st.level }))
            }
            "log.access" => {
                st.access = args::get(a, "enabled")?;
                Ok(json!({ "enabled": st.access }))
            }
            other => Err(CtlError::unknown_command(other)),
        }
    }
}

/// A mock server on `<dir>/ws.sock`.
pub fn start(dir: &TempDir) -> (Server, Arc<Mock>) {
    let mock = Mock::new();
    let server = Server::start(&dir.join("ws.sock"), mock.clone()).expect("server starts");
    (server, mock)
}

/// A raw line-level connection, for framing tests.
pub struct Raw {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next reply line, parsed; `None` at EOF (or a reset connection).
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("reply is JSON")),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    pub fn ask(&mut self, line: &str) -> Value {
        self.send(format!("{line}\n").as_bytes());
        self.recv().expect("a reply")
    }
}

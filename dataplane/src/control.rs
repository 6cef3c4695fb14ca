//! The switch's side of the management socket: each command reads the published state
//! or builds a new runtime snapshot and publishes it (see `runtime`). Mutations are
//! serialized by one mutex held only by the management thread; workers never take it.
//! A command that fails validation publishes nothing, so the running state is unchanged.
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mgmt::{Control, CtlError};
use rules::config::BackendConfig;
use rules::{Config, ConfigError};
use serde_json::{json, Value};

use crate::agents::{AGENT_NONE, AGENT_REGISTERED};
use crate::runtime::{Admin, Runtime};
use crate::setup::{self, PortInfo};
use crate::worker::{CoreReply, CoreRequest, Shared, HEALTH_UNKNOWN};

/// Changes the log filter at run time (`log.level`); returns the filter now in force.
pub type LogLevelFn = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Totals at the last once-a-second sample, for rates.
struct RateSample {
    at: Instant,
    totals: [u64; 6],
    rates: Value,
}

pub struct SwitchControl {
    rates: Mutex<RateSample>,
    shared: Arc<Shared>,
    started: Instant,
    ports: Vec<PortInfo>,
    workers: Vec<u32>,
    mutate: Mutex<()>,
    log_level: LogLevelFn,
    /// Announcing and withdrawing the VIPs (`cluster`), when configured.
    announcer: Option<Arc<crate::cluster::announce::Announcer>>,
}

fn invalid(e: ConfigError) -> CtlError {
    CtlError::invalid(e.to_string())
}

fn arg_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, CtlError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| CtlError::invalid(format!("`{key}` (a string) is required")))
}

impl SwitchControl {
    pub fn new(
        shared: Arc<Shared>,
        ports: Vec<PortInfo>,
        workers: Vec<u32>,
        log_level: LogLevelFn,
        announcer: Option<Arc<crate::cluster::announce::Announcer>>,
    ) -> Self {
        let rates = Mutex::new(RateSample {
            at: Instant::now(),
            totals: [0; 6],
            rates: Value::Null,
        });
        Self {
            rates,
            shared,
            started: Instant::now(),
            ports,
            workers,
            mutate: Mutex::new(()),
            log_level,
            announcer,
        }
    }

    /// Called about once a second by the main thread: rates over the last interval
    /// (`stats` reports them under `rates`).
    pub fn sample_rates(&self) {
        use crate::stats::Counter;
        let keys = [
            Counter::ConnsAccepted,
            Counter::RequestsRouted,
            Counter::RxPackets,
            Counter::TxPackets,
            Counter::RxBytes,
            Counter::TxBytes,
        ];
        let mut totals = [0u64; 6];
        for (t, k) in totals.iter_mut().zip(keys) {
            *t = self.shared.stats.iter().map(|s| s.get(k)).sum();
        }
        let mut g = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let secs = g.at.elapsed().as_secs_f64().max(1e-3);
        let per = |i: usize| ((totals[i].saturating_sub(g.totals[i])) as f64 / secs).round() as u64;
        g.rates = json!({
            "interval_ms": (secs * 1000.0) as u64,
            "conns_per_s": per(0), "requests_per_s": per(1),
            "rx_pps": per(2), "tx_pps": per(3), "rx_bps": per(4) * 8, "tx_bps": per(5) * 8,
        });
        g.totals = totals;
        g.at = Instant::now();
    }

    fn rt(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    fn publish(&self, rt: Runtime) -> Value {
        let v = rt.version;
        self.shared.runtime.store(Arc::new(rt));
        self.shared.runtime_version.store(v, Ordering::Release);
        tracing::info!(version = v, "runtime config published");
        json!({ "version": v })
    }

    fn status(&self) -> Value {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "workers": self.workers,
            "ports": self.ports.iter().map(|p| {
                let link = self.shared.ports.iter().find(|x| x.name() == p.name).and_then(|x| x.link().ok());
                json!({ "name": p.name, "mac": p.mac, "link_up": link.map(|l| l.up).unwrap_or(p.link_up),
                        "rx_queues": p.rx_queues, "tx_queues": p.tx_queues })
            }).collect::<Vec<_>>(),
            "config_version": self.rt().version,
        })
    }

    fn stats(&self) -> Value {
        let snap = setup::snapshot(&self.shared);
        let mut v = setup::snapshot_json(&snap);
        v["uptime_ms"] = (self.started.elapsed().as_millis() as u64).into();
        let (rules, pools) =
            crate::stats::routing_json(&self.shared.stats, &self.shared.queue_len, &self.rt());
        v["rules"] = rules;
        v["pools"] = pools;
        v["rates"] = self
            .rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rates
            .clone();
        v
    }

    fn backends_list(&self) -> Value {
        let rt = self.rt();
        let list: Vec<Value> = rt.live_backends()
            .map(|(i, b)| {
                let health = match self.shared.health[i].load(Ordering::Relaxed) {
                    HEALTH_UNKNOWN => "unknown",
                    1 => "up",
                    _ => "down",
                };
                let active: u32 = self.shared.backend_active.iter().map(|c| c[i].load(Ordering::Relaxed)).sum();
                let connections = self.shared.backend_conns[i].load(Ordering::Relaxed);
                let requests: u64 = self
                    .shared
                    .stats
                    .iter()
                    .map(|w| w.backend_requests[i].load(Ordering::Relaxed))
                    .sum();
                json!({ "name": b.name, "address": b.address.to_string(), "port": b.port, "weight": b.weight,
                        "admin": rt.admin[i], "health": health, "active": active, "connections": connections, "requests": requests,
                        "max_connections": b.max_connections, "pools": rt.pools_of(&b.name) })
            })
            .collect();
        json!({ "backends": list })
    }

    /// Each backend's handoff agent as its beats told the switch (`crate::agents`).
    fn agents_list(&self) -> Value {
        let rt = self.rt();
        let now_tsc = dpdk_env::rdtsc();
        let agents = &self.shared.agents;
        let list: Vec<Value> = rt
            .live_backends()
            .map(|(i, b)| {
                let v = agents.view(i);
                let heard = v.as_ref().is_some_and(|v| v.state != AGENT_NONE);
                let (registered, ago) = match &v {
                    Some(v) if heard => (
                        v.state == AGENT_REGISTERED,
                        json!(agents.ms_between(v.last_seen_tsc, now_tsc)),
                    ),
                    _ => (false, Value::Null),
                };
                let figures = v.filter(|_| heard).map(|v| {
                    json!({ "agent": v.name, "capacity": v.capacity, "flows": v.flows,
                            "load": v.load, "busy": v.busy, "seq": v.seq, "beats": v.beats })
                });
                let mut row = json!({
                    "name": b.name, "address": b.address.to_string(),
                    "state": agents.state_name(i, now_tsc), "registered": registered,
                    "alive": agents.alive(i, now_tsc), "last_seen_ms_ago": ago,
                    "agent": null, "capacity": null, "flows": null, "load": null,
                    "busy": null, "seq": null, "beats": 0,
                });
                if let (Some(Value::Object(f)), Some(r)) = (figures, row.as_object_mut()) {
                    r.extend(f);
                }
                row
            })
            .collect();
        let h = &self.shared.config.handoff;
        json!({ "agent_port": h.agent_port, "agent_timeout_ms": h.agent_timeout_ms, "agents": list })
    }

    fn backend_named(&self, rt: &Runtime, args: &Value) -> Result<usize, CtlError> {
        let name = arg_str(args, "name")?;
        rt.backend_id(name)
            .ok_or_else(|| CtlError::not_found(format!("no backend named `{name}`")))
    }

    fn set_admin(&self, args: &Value, admin: Admin) -> Result<Value, CtlError> {
        let _g = self.mutate.lock().unwrap_or_else(|e| e.into_inner());
        let rt = self.rt();
        let b = self.backend_named(&rt, args)?;
        let mut admins = rt.admin.clone();
        admins[b] = admin;
        let next = Runtime::build(
            rt.version + 1,
            rt.config.clone(),
            rt.removed.clone(),
            admins,
            (rt.rule_slots.clone(), rt.pool_slots.clone()),
        )
        .map_err(invalid)?;
        Ok(self.publish(next))
    }

    /// Applies `edit` to the operator's view of the config and publishes the result.
    fn edit_config(
        &self,
        dry_run: bool,
        edit: impl FnOnce(&mut Config) -> Result<(), CtlError>,
    ) -> Result<Value, CtlError> {
        let _g = self.mutate.lock().unwrap_or_else(|e| e.into_inner());
        let rt = self.rt();
        let mut c = rt.public_config();
        edit(&mut c)?;
        let next = rt.successor_with(c).map_err(invalid)?;
        if dry_run {
            return Ok(json!({ "valid": true }));
        }
        Ok(self.publish(next))
    }

    fn backends_add(&self, args: &Value) -> Result<Value, CtlError> {
        let name = arg_str(args, "name")?.to_string();
        let address: Ipv4Addr = arg_str(args, "address")?
            .parse()
            .map_err(|_| CtlError::invalid("`address` is not an IPv4 address"))?;
        let port = args.get("port").and_then(Value::as_u64).unwrap_or(80);
        let port = u16::try_from(port).map_err(|_| CtlError::invalid("`port` out of range"))?;
        let weight = args.get("weight").and_then(Value::as_u64).unwrap_or(1) as u32;
        let max_connections = match args
            .get("max_connections")
            .or_else(|| args.get("max_conns"))
        {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| CtlError::invalid("`max_connections` is not a count"))?,
            ),
        };
        let pools: Vec<String> = args
            .get("pools")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        self.edit_config(false, |c| {
            if c.backends.iter().any(|b| b.name == name) {
                return Err(CtlError::conflict(format!("backend `{name}` exists")));
            }
            let template = c.backends.first().cloned();
            let mut b: BackendConfig = match template {
                Some(t) => t,
                None => {
                    serde_json::from_value(json!({ "name": name, "address": address.to_string() }))
                        .map_err(|e| CtlError::internal(e.to_string()))?
                }
            };
            b.name = name.clone();
            b.address = address;
            b.port = port;
            b.weight = weight;
            b.max_connections = max_connections;
            c.backends.push(b);
            for p in &pools {
                let Some(pool) = c.pools.iter_mut().find(|x| &x.name == p) else {
                    return Err(CtlError::not_found(format!("no pool named `{p}`")));
                };
                pool.backends.push(name.clone());
            }
            Ok(())
        })
    }

    fn backends_remove(&self, args: &Value) -> Result<Value, CtlError> {
        let name = arg_str(args, "name")?.to_string();
        self.edit_config(false, |c| {
            let before = c.backends.len();
            c.backends.retain(|b| b.name != name);
            if c.backends.len() == before {
                return Err(CtlError::not_found(format!("no backend named `{name}`")));
            }
            for p in &mut c.pools {
                p.backends.retain(|b| *b != name);
            }
            if let Some(p) = c.pools.iter().find(|p| p.backends.is_empty()) {
                return Err(CtlError::conflict(format!(
                    "pool `{}` would be left without backends",
                    p.name
                )));
            }
            Ok(())
        })
    }

    fn backends_weight(&self, args: &Value) -> Result<Value, CtlError> {
        let name = arg_str(args, "name")?.to_string();
        let weight = args
            .get("weight")
            .and_then(Value::as_u64)
            .ok_or_else(|| CtlError::invalid("`weight` (a number) is required"))?;
        self.edit_config(false, |c| {
            let b = c
                .backends
                .iter_mut()
                .find(|b| b.name == name)
                .ok_or_else(|| CtlError::not_found(format!("no backend named `{name}`")))?;
            b.weight =
                u32::try_from(weight).map_err(|_| CtlError::invalid("`weight` out of range"))?;
            Ok(())
        })
    }

    fn rules_replace(&self, args: &Value, dry_run: bool) -> Result<Value, CtlError> {
        let rules = args
            .get("rules")
            .cloned()
            .ok_or_else(|| CtlError::invalid("`rules` (an array) is required"))?;
        let rules: Vec<rules::config::RuleConfig> =
            serde_json::from_value(rules).map_err(|e| CtlError::invalid(format!("rules: {e}")))?;
        let default_pool = args
            .get("default_pool")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(expect) = args.get("expect_version").and_then(Value::as_u64) {
            let now = self.rt().version;
            if expect != now {
                return Err(CtlError::conflict(format!(
                    "expected version {expect}, running version is {now}"
                )));
            }
        }
        self.edit_config(dry_run, |c| {
            c.rules = rules;
            if default_pool.is_some() {
                c.default_pool = default_pool;
            }
            Ok(())
        })
    }

    /// A whole config from the operator: only backends, pools, rules and the default pool
    /// may change at run time; anything else needs a restart and is refused by name.
    fn config_apply(&self, args: &Value, dry_run: bool) -> Result<Value, CtlError> {
        let v = args
            .get("config")
            .ok_or_else(|| CtlError::invalid("`config` (an object) is required"))?;
        let new = Config::from_json(&v.to_string()).map_err(invalid)?;
        let running = self.rt().public_config();
        let (a, b) = (
            serde_json::to_value(&running).unwrap_or_default(),
            serde_json::to_value(&new).unwrap_or_default(),
        );
        let changeable = ["backends", "pools", "rules", "default_pool"];
        if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
            for key in a.keys().chain(b.keys()) {
                if !changeable.contains(&key.as_str()) && a.get(key) != b.get(key) {
                    return Err(CtlError::invalid(format!(
                        "config field `{key}` cannot change at run time (restart webswitch)"
                    )));
                }
            }
        }
        self.edit_config(dry_run, |c| {
            *c = new;
            Ok(())
        })
    }

    fn config_save(&self, args: &Value) -> Result<Value, CtlError> {
        let path = std::path::PathBuf::from(arg_str(args, "path")?);
        let text = self.rt().public_config().to_json_pretty() + "\n";
        let tmp = path.with_extension("tmp-webswitch");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| CtlError::invalid(format!("cannot write {}: {e}", path.display())))?;
        Ok(json!({ "path": path.display().to_string() }))
    }

    /// Asks every core (through its request queue) and gathers the answers.
    fn ask_cores(
        &self,
        make: impl Fn(std::sync::mpsc::SyncSender<CoreReply>) -> CoreRequest,
    ) -> Result<Vec<CoreReply>, CtlError> {
        let mut replies = Vec::new();
        for (core, q) in self.shared.ctl.iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            if q.push(make(tx)).is_err() {
                return Err(CtlError::conflict(
                    "a core's request queue is full; try again",
                ));
            }
            self.shared.wake(core);
            let r = rx
                .recv_timeout(Duration::from_secs(2))
                .map_err(|_| CtlError::internal("a core did not answer within 2 s"))?;
            replies.push(r);
        }
        Ok(replies)
    }

    fn connections_list(&self, args: &Value) -> Result<Value, CtlError> {
        let client = match args.get("client").and_then(Value::as_str) {
            None => None,
            Some(c) => Some(parse_client(c)?),
        };
        let backend = match args.get("backend").and_then(Value::as_str) {
            None => None,
            Some(name) => Some(
                self.rt()
                    .backend_id(name)
                    .ok_or_else(|| CtlError::not_found(format!("no backend named `{name}`")))?,
            ),
        };
        let state = args.get("state").and_then(Value::as_str).map(String::from);
        let limit = args
            .get("limit")
            .and_then(Value::as_u64)
            .unwrap_or(100)
            .min(10_000) as usize;
        let replies = self.ask_cores(|reply| CoreRequest::List {
            client,
            backend,
            state: state.clone(),
            limit,
            reply,
        })?;
        let mut all = Vec::new();
        let mut truncated = false;
        for r in replies {
            if let CoreReply::Connections { list, truncated: t } = r {
                truncated |= t;
                all.extend(list);
            }
        }
        if all.len() > limit {
            all.truncate(limit);
            truncated = true;
        }
        Ok(json!({ "connections": all, "truncated": truncated }))
    }

    /// `cluster`: whether the instance serves, and what its routing daemon was told.
    fn cluster(&self) -> Value {
        let mut v = match &self.announcer {
            Some(a) => a.json(),
            None => {
                let withdrawn = self
                    .shared
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.operator_withdrawn.load(Ordering::Relaxed));
                let backend = crate::cluster::announce::any_backend_serves(&self.shared);
                json!({
                    "serving": backend && !withdrawn,
                    "operator_withdrawn": withdrawn,
                    "announced": Value::Null,
                    "reason": if withdrawn {
                        "withdrawn by the operator (no announce/withdraw commands configured)"
                    } else if !backend {
                        "no backend ready and up (no announce/withdraw commands configured)"
                    } else {
                        "serving (no announce/withdraw commands configured)"
                    },
                })
            }
        };
        v["membership"] = match &self.shared.cluster {
            Some(c) => c.json(dpdk_env::rdtsc()),
            None => Value::Null,
        };
        v
    }

    /// `cluster.withdraw` / `cluster.announce`: the operator takes the instance out of
    /// the ECMP group (before an upgrade) or puts it back.
    fn cluster_set(&self, withdrawn: bool) -> Result<Value, CtlError> {
        if self.announcer.is_none() && self.shared.cluster.is_none() {
            return Err(CtlError::invalid(
                "no cluster is configured (cluster.members, cluster.announce/withdraw)",
            ));
        }
        if let Some(cl) = &self.shared.cluster {
            cl.operator_withdrawn.store(withdrawn, Ordering::Relaxed);
        }
        if let Some(a) = &self.announcer {
            a.set_withdrawn(withdrawn);
            a.tick(&self.shared);
        }
        Ok(self.cluster())
    }

    fn connections_kill(&self, args: &Value) -> Result<Value, CtlError> {
        let (ip, port) = parse_client(arg_str(args, "client")?)?;
        let port = port.ok_or_else(|| CtlError::invalid("`client` must be ip:port"))?;
        let replies = self.ask_cores(|reply| CoreRequest::Kill {
            client: (ip, port),
            reply,
        })?;
        let killed: usize = replies
            .iter()
            .map(|r| if let CoreReply::Killed(n) = r { *n } else { 0 })
            .sum();
        Ok(json!({ "killed": killed }))
    }
}

fn parse_client(c: &str) -> Result<(Ipv4Addr, Option<u16>), CtlError> {
    let bad = || CtlError::invalid(format!("`client` {c:?} is not ip or ip:port"));
    match c.split_once(':') {
        Some((ip, port)) => Ok((
            ip.parse().map_err(|_| bad())?,
            Some(port.parse().map_err(|_| bad())?),
        )),
        None => Ok((c.parse().map_err(|_| bad())?, None)),
    }
}

impl Control for SwitchControl {
    fn handle(&self, cmd: &str, args: &Value) -> Result<Value, CtlError> {
        match cmd {
            "status" => Ok(self.status()),
            "stats" => Ok(self.stats()),
            "backends.list" => Ok(self.backends_list()),
            "agents.list" => Ok(self.agents_list()),
            "backends.add" => self.backends_add(args),
            "backends.remove" => self.backends_remove(args),
            "backends.weight" => self.backends_weight(args),
            "backends.drain" => self.set_admin(args, Admin::Drain),
            "backends.ready" => self.set_admin(args, Admin::Ready),
            "backends.maint" => self.set_admin(args, Admin::Maint),
            "pools.list" => {
                let rt = self.rt();
                let pools: Vec<Value> = rt
                    .config
                    .pools
                    .iter()
                    .map(|p| json!({ "name": p.name, "scheduler": p.scheduler, "backends": p.backends }))
                    .collect();
                Ok(json!({ "pools": pools }))
            }
            "pools.add" => {
                let name = arg_str(args, "name")?.to_string();
                let mut fields = serde_json::Map::new();
                fields.insert("name".into(), json!(name));
                fields.insert(
                    "backends".into(),
                    args.get("backends").cloned().unwrap_or(Value::Null),
                );
                for k in [
                    "scheduler",
                    "lard",
                    "client_address",
                    "client_xff",
                    "retries",
                    "queue_length",
                    "queue_timeout_ms",
                    "warm",
                ] {
                    if let Some(v) = args.get(k) {
                        fields.insert(k.into(), v.clone());
                    }
                }
                let pool: rules::config::PoolConfig = serde_json::from_value(Value::Object(fields))
                    .map_err(|e| CtlError::invalid(format!("pool: {e}")))?;
                self.edit_config(false, |c| {
                    if c.pools.iter().any(|p| p.name == name) {
                        return Err(CtlError::conflict(format!("pool `{name}` exists")));
                    }
                    c.pools.push(pool);
                    Ok(())
                })
            }
            "pools.remove" => {
                let name = arg_str(args, "name")?.to_string();
                self.edit_config(false, |c| {
                    let before = c.pools.len();
                    c.pools.retain(|p| p.name != name);
                    if c.pools.len() == before {
                        return Err(CtlError::not_found(format!("no pool named `{name}`")));
                    }
                    if c.rules.iter().any(|r| r.uses_pool(&name))
                        || c.default_pool.as_deref() == Some(name.as_str())
                    {
                        return Err(CtlError::conflict(format!(
                            "pool `{name}` is used by the rules or as the default pool"
                        )));
                    }
                    Ok(())
                })
            }
            "rules.show" => {
                let rt = self.rt();
                Ok(
                    json!({ "version": rt.version, "rules": rt.config.rules, "default_pool": rt.config.default_pool }),
                )
            }
            "rules.replace" => self.rules_replace(args, false),
            "rules.validate" => self.rules_replace(args, true),
            "config.show" => {
                let rt = self.rt();
                Ok(json!({ "version": rt.version, "config": rt.public_config() }))
            }
            "config.validate" => self.config_apply(args, true),
            "config.apply" => self.config_apply(args, false),
            "config.save" => self.config_save(args),
            "connections.list" => self.connections_list(args),
            "connections.kill" => self.connections_kill(args),
            "cluster" => Ok(self.cluster()),
            "cluster.withdraw" => self.cluster_set(true),
            "cluster.announce" => self.cluster_set(false),
            "log.level" => {
                let level = arg_str(args, "level")?;
                let now = (self.log_level)(level).map_err(CtlError::invalid)?;
                Ok(json!({ "level": now }))
            }
            "log.access" => {
                let enabled = args
                    .get("enabled")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| CtlError::invalid("`enabled` (true or false) is required"))?;
                self.shared.access_log.store(enabled, Ordering::Relaxed);
                Ok(json!({ "enabled": enabled }))
            }
            other => Err(CtlError::unknown_command(other)),
        }
    }
}

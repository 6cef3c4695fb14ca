//! Human-readable text for command results: the tables `webswitchctl` prints.
//!
//! Every function takes the raw `result` value and never fails: a field that is missing
//! or of an unexpected type shows as `-`, so an older or newer switch stays readable.
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// A table with aligned columns: text left-aligned, numbers right-aligned, two spaces
/// between columns, no trailing spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns by header; a header starting with `>` is right-aligned (the `>` is dropped).
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers
                .iter()
                .map(|h| h.trim_start_matches('>').to_string())
                .collect(),
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra cells dropped).
    pub fn row<I: IntoIterator<Item = String>>(&mut self, cells: I) {
        let mut r: Vec<String> = cells.into_iter().take(self.headers.len()).collect();
        r.resize(self.headers.len(), String::new());
        self.rows.push(r);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, one line per row after the header, each ending in `\n`.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - c.chars().count();
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    if i + 1 < n {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A JSON value as a table cell: strings unquoted, `null`/absent as `-`, arrays of
/// scalars joined by `,`, floats with at most 3 decimals, anything else compact JSON.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) => trim_float(f, 3),
            _ => n.to_string(),
        },
        Some(Value::Array(a)) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            if a.is_empty() {
                "-".into()
            } else {
                a.iter()
                    .map(|x| cell(Some(x)))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
        Some(other) => other.to_string(),
    }
}

fn trim_float(f: f64, decimals: usize) -> String {
    let s = format!("{f:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Milliseconds as `850ms`, `12.3s`, `5m07s`, `2h03m04s` or `3d04h05m`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => trim_float(ms as f64 / 1000.0, 1) + "s",
        _ if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ if s < 86_400 => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
        _ => format!("{}d{:02}h{:02}m", s / 86_400, s / 3600 % 24, s / 60 % 60),
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key)
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn dur(v: Option<&Value>) -> String {
    v.and_then(Value::as_u64).map_or("-".into(), duration_ms)
}

/// `status`: a key/value block and a ports table.
pub fn status(v: &Value) -> String {
    let mut kv = Table::new(&["", ""]);
    kv.row(["version".into(), cell(field(v, "version"))]);
    kv.row(["pid".into(), cell(field(v, "pid"))]);
    kv.row(["uptime".into(), dur(field(v, "uptime_ms"))]);
    kv.row(["config version".into(), cell(field(v, "config_version"))]);
    kv.row(["workers (lcores)".into(), cell(field(v, "workers"))]);
    let mut out = kv.render().lines().skip(1).fold(String::new(), |mut o, l| {
        o.push_str(l);
        o.push('\n');
        o
    });
    let mut t = Table::new(&["PORT", "MAC", "LINK", ">RXQ", ">TXQ"]);
    for p in list(v, "ports") {
        let link = match p.get("link_up").and_then(Value::as_bool) {
            Some(true) => "up",
            Some(false) => "down",
            None => "-",
        };
        t.row([
            cell(p.get("name")),
            cell(p.get("mac")),
            link.into(),
            cell(p.get("rx_queues")),
            cell(p.get("tx_queues")),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

/// Flattens nested objects into `a.b.c` keys, in the object's key order.
pub fn flatten(v: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: &Map<String, Value>, out: &mut Vec<(String, Value)>) {
        for (k, x) in v {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match x {
                Value::Object(m) => walk(&key, m, out),
                other => out.push((key, other.clone())),
            }
        }
    }
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        walk("", m, &mut out);
    }
    out
}

/// Column labels for the per-core blocks of `stats`: a core's own `lcore` field, else the
/// lcore at the same position in `status.workers`, else `core <i>`.
pub fn core_labels(stats: &Value, status: Option<&Value>) -> Vec<String> {
    let workers = status.map(|s| list(s, "workers")).unwrap_or(&[]);
    list(stats, "cores")
        .iter()
        .enumerate()
        .map(|(i, c)| {
            match c
                .get("lcore")
                .or_else(|| workers.get(i))
                .and_then(Value::as_u64)
            {
                Some(l) => format!("lcore {l}"),
                None => format!("core {i}"),
            }
        })
        .collect()
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

/// `stats`: counters (rows) by total and core (columns), then the ports. Unless `all`,
/// counters that are zero everywhere are left out (and counted in a note).
pub fn stats(v: &Value, labels: &[String], all: bool) -> String {
    let mut out = format!(
        "uptime {}  mbufs in use {}\n\n",
        dur(field(v, "uptime_ms")),
        cell(field(v, "mbufs_in_use"))
    );
    let total = flatten(v.get("total").unwrap_or(&Value::Null));
    let cores: Vec<Vec<(String, Value)>> = list(v, "cores").iter().map(flatten).collect();
    let mut headers = vec!["COUNTER".to_string(), ">TOTAL".to_string()];
    headers.extend((0..cores.len()).map(|i| {
        format!(
            ">{}",
            labels
                .get(i)
                .cloned()
                .unwrap_or(format!("core {i}"))
                .to_uppercase()
        )
    }));
    let hdr: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new(&hdr);
    let mut hidden = 0;
    for (key, tv) in &total {
        if key == "lcore" {
            continue;
        }
        let per_core: Vec<Option<&Value>> = cores
            .iter()
            .map(|c| c.iter().find(|(k, _)| k == key).map(|(_, x)| x))
            .collect();
        if !all && is_zero(tv) && per_core.iter().all(|x| x.is_none_or(is_zero)) {
            hidden += 1;
            continue;
        }
        let mut row = vec![key.clone(), cell(Some(tv))];
        row.extend(per_core.into_iter().map(cell));
        t.row(row);
    }
    out.push_str(&t.render());
    if hidden > 0 {
        let _ = writeln!(
            out,
            "({hidden} counters at zero not shown; --all shows them)"
        );
    }
    let mut p = Table::new(&[
        "PORT",
        ">RX_PACKETS",
        ">TX_PACKETS",
        ">RX_BYTES",
        ">TX_BYTES",
        ">IMISSED",
        ">RX_NOMBUF",
        ">RX_ERRORS",
        ">TX_ERRORS",
    ]);
    if let Some(Value::Object(ports)) = v.get("ports") {
        for (name, s) in ports {
            let mut row = vec![name.clone()];
            for k in [
                "rx_packets",
                "tx_packets",
                "rx_bytes",
                "tx_bytes",
                "imissed",
                "rx_nombuf",
                "rx_errors",
                "tx_errors",
            ] {
                row.push(cell(s.get(k)));
            }
            p.row(row);
        }
    }
    out.push('\n');
    out.push_str(&p.render());
    out
}

/// `backends.list`.
pub fn backends(v: &Value) -> String {
    let mut t = Table::new(&[
        "NAME", "ADDRESS", ">PORT", ">WEIGHT", "ADMIN", "HEALTH", ">ACTIVE", "POOLS",
    ]);
    for b in list(v, "backends") {
        t.row(
            [
                "name", "address", "port", "weight", "admin", "health", "active", "pools",
            ]
            .map(|k| cell(b.get(k))),
        );
    }
    t.render()
}

/// A fraction (0..=1) as a percentage with at most one decimal, `-` when absent.
fn pct(v: Option<&Value>) -> String {
    v.and_then(Value::as_f64)
        .map_or("-".into(), |f| trim_float(f * 100.0, 1) + "%")
}

/// `agents.list`: the beats' port and timeout, then one row per backend: its agent's
/// name, whether it registered and is alive, how long ago it was heard from, and the
/// figures of its latest beat.
pub fn agents(v: &Value) -> String {
    let mut out = format!(
        "agent port {}  timeout {}\n\n",
        cell(field(v, "agent_port")),
        dur(field(v, "agent_timeout_ms"))
    );
    let mut t = Table::new(&[
        "NAME",
        "ADDRESS",
        "AGENT",
        "REGISTERED",
        "ALIVE",
        ">SEEN_AGO",
        ">CAPACITY",
        ">FLOWS",
        ">LOAD",
        ">BUSY",
        ">BEATS",
    ]);
    for a in list(v, "agents") {
        let yes_no = |k: &str| match a.get(k).and_then(Value::as_bool) {
            Some(true) => "yes".to_string(),
            Some(false) => "no".to_string(),
            None => "-".to_string(),
        };
        t.row([
            cell(a.get("name")),
            cell(a.get("address")),
            cell(a.get("agent")),
            yes_no("registered"),
            yes_no("alive"),
            dur(a.get("last_seen_ms_ago")),
            cell(a.get("capacity")),
            cell(a.get("flows")),
            pct(a.get("load")),
            pct(a.get("busy")),
            cell(a.get("beats")),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// `pools.list`.
pub fn pools(v: &Value) -> String {
    let mut t = Table::new(&["NAME", "SCHEDULER", "BACKENDS"]);
    for p in list(v, "pools") {
        t.row(["name", "scheduler", "backends"].map(|k| cell(p.get(k))));
    }
    t.render()
}

/// `rules.show`: version and default pool, then one row per rule in order: its name, its
/// `match` as compact JSON, and what it does (`pool X`, or its other fields as JSON).
pub fn rules(v: &Value) -> String {
    let mut out = format!(
        "version {}  default pool {}\n\n",
        cell(field(v, "version")),
        cell(field(v, "default_pool"))
    );
    let mut t = Table::new(&[">#", "NAME", "MATCH", "THEN"]);
    for (i, r) in list(v, "rules").iter().enumerate() {
        let then = match r {
            Value::Object(m) => {
                let rest: Map<String, Value> = m
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "name" | "match"))
                    .map(|(k, x)| (k.clone(), x.clone()))
                    .collect();
                match (rest.len(), rest.get("pool")) {
                    (1, Some(Value::String(p))) => format!("pool {p}"),
                    (0, _) => "-".into(),
                    _ => Value::Object(rest).to_string(),
                }
            }
            other => other.to_string(),
        };
        let m = match r.get("match") {
            None => "-".into(),
            Some(x) => x.to_string(),
        };
        t.row([(i + 1).to_string(), cell(r.get("name")), m, then]);
    }
    out.push_str(&t.render());
    out
}

/// `connections.list`, with a note when the list was cut at the limit.
pub fn connections(v: &Value) -> String {
    let mut t = Table::new(&[
        "CLIENT",
        "VIP",
        "BACKEND",
        ">LPORT",
        "STATE",
        ">CORE",
        ">AGE",
        ">BYTES_C2B",
        ">BYTES_B2C",
    ]);
    for c in list(v, "connections") {
        t.row([
            cell(c.get("client")),
            cell(c.get("vip")),
            cell(c.get("backend")),
            cell(c.get("local_port")),
            cell(c.get("state")),
            cell(c.get("core")),
            dur(c.get("age_ms")),
            cell(c.get("bytes_c2b")),
            cell(c.get("bytes_b2c")),
        ]);
    }
    let mut out = t.render();
    if v.get("truncated").and_then(Value::as_bool) == Some(true) {
        out.push_str("(more connections match; raise --limit or narrow the filter)\n");
    }
    out
}

/// One line of `top`: rates over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRow {
    pub core: String,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub conns_per_s: f64,
    pub requests_per_s: f64,
    /// Live flows now (a gauge, not a rate).
    pub flows_live: u64,
    /// busy cycles / (busy + idle cycles) over the interval, in percent; `None` when the
    /// core reports no cycles.
    pub busy_pct: Option<f64>,
}

/// One refresh of `top`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopFrame {
    pub uptime_ms: Option<u64>,
    /// The interval the rates are over.
    pub interval_ms: u64,
    pub cores: Vec<TopRow>,
    pub total: TopRow,
}

fn counter(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn top_row(core: String, prev: &Value, cur: &Value, secs: f64) -> TopRow {
    let d = |k: &str| counter(cur, k).saturating_sub(counter(prev, k));
    let rate = |k: &str| d(k) as f64 / secs;
    let (busy, idle) = (d("busy_cycles"), d("idle_cycles"));
    TopRow {
        core,
        rx_pps: rate("rx_packets"),
        tx_pps: rate("tx_packets"),
        conns_per_s: rate("conns_accepted"),
        requests_per_s: rate("requests_routed"),
        flows_live: counter(cur, "flows_live"),
        busy_pct: (busy + idle > 0).then(|| busy as f64 * 100.0 / (busy + idle) as f64),
    }
}

/// Rates between two `stats` results. The interval is the difference of their
/// `uptime_ms` when both have one (the switch's own clock), else `wall`. Counters that went
/// backwards (a restarted switch) count as zero.
pub fn top_frame(prev: &Value, cur: &Value, labels: &[String], wall: Duration) -> TopFrame {
    let up = |v: &Value| v.get("uptime_ms").and_then(Value::as_u64);
    let interval_ms = match (up(prev), up(cur)) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => (wall.as_millis() as u64).max(1),
    };
    let secs = interval_ms as f64 / 1000.0;
    let empty = Vec::new();
    let prev_cores = prev
        .get("cores")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let cores = list(cur, "cores")
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let label = labels.get(i).cloned().unwrap_or(format!("core {i}"));
            top_row(label, prev_cores.get(i).unwrap_or(&Value::Null), c, secs)
        })
        .collect();
    let total = top_row(
        "total".into(),
        prev.get("total").unwrap_or(&Value::Null),
        cur.get("total").unwrap_or(&Value::Null),
        secs,
    );
    TopFrame {
        uptime_ms: up(cur),
        interval_ms,
        cores,
        total,
    }
}

impl TopFrame {
    /// The screen: a title line and a table, one row per core and a total.
    pub fn render(&self) -> String {
        let mut out = format!(
            "webswitch top  uptime {}  rates over {}  (Ctrl-C to quit)\n\n",
            self.uptime_ms.map_or("-".into(), duration_ms),
            duration_ms(self.interval_ms)
        );
        let mut t = Table::new(&[
            "CORE", ">RX_PPS", ">TX_PPS", ">CONN/S", ">REQ/S", ">FLOWS", ">BUSY%",
        ]);
        for r in self.cores.iter().chain(std::iter::once(&self.total)) {
            t.row([
                r.core.clone(),
                format!("{:.0}", r.rx_pps),
                format!("{:.0}", r.tx_pps),
                format!("{:.0}", r.conns_per_s),
                format!("{:.0}", r.requests_per_s),
                r.flows_live.to_string(),
                r.busy_pct.map_or("-".into(), |b| format!("{b:.1}")),
            ]);
        }
        out.push_str(&t.render());
        out
    }
}

/// `cluster`: serving or not and why, what the routing daemon was told, the last command.
pub fn cluster(v: &Value) -> String {
    let yes_no = |k: &str| match v.get(k).and_then(Value::as_bool) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let mut out = format!(
        "serving     {} ({})\nannounced   {}\n",
        yes_no("serving"),
        cell(v.get("reason")),
        yes_no("announced"),
    );
    if let Some(w) = v.get("operator_withdrawn").and_then(Value::as_bool) {
        out += &format!(
            "withdrawn   {}\n",
            if w { "yes, by the operator" } else { "no" }
        );
    }
    if let Some(r) = v.get("command_running").filter(|r| !r.is_null()) {
        out += &format!("running     {}\n", cell(Some(r)));
    }
    if v.get("commands_run").is_some() {
        out += &format!(
            "commands    {} run, {} failed\n",
            cell(v.get("commands_run")),
            cell(v.get("commands_failed"))
        );
    }
    if let Some(l) = v.get("last").filter(|l| !l.is_null()) {
        out += &format!(
            "last        {} {} ({})\n",
            cell(l.get("command")),
            if l.get("ok").and_then(Value::as_bool) == Some(true) {
                "ok"
            } else {
                "failed"
            },
            cell(l.get("detail"))
        );
    }
    if let Some(m) = v.get("membership").filter(|m| !m.is_null()) {
        out += &format!(
            "\nmembers     table generation {}{}{}{}\n\n",
            cell(m.get("generation")),
            match m.get("balance").and_then(Value::as_str) {
                Some("workload") => format!(
                    ", shares by workload (available here {})",
                    m.get("available")
                        .and_then(Value::as_f64)
                        .map(|f| format!("{:.0}%", f * 100.0))
                        .unwrap_or_else(|| "-".into())
                ),
                _ => String::new(),
            },
            if m.get("front").and_then(Value::as_bool) == Some(true) {
                ", this instance is a front"
            } else {
                ""
            },
            if m.get("settled").and_then(Value::as_bool) == Some(false) {
                ", not settled yet"
            } else {
                ""
            },
        );
        let mut t = Table::new(&[
            "NAME",
            "ADDRESS",
            "LIVE",
            "STATE",
            ">SHARE",
            ">CAPACITY",
            ">HEARD_AGO",
            ">BEATS",
            ">LOST",
            "MAC",
            ">RECORDS",
            ">LAST_RECORD",
            "BACKEND_ADDRESS",
        ]);
        for mb in list(m, "members") {
            let flag = |k: &str| mb.get(k).and_then(Value::as_bool) == Some(true);
            let state = if flag("self") { "self, " } else { "" }.to_string()
                + if flag("leaving") {
                    "leaving"
                } else if flag("draining") {
                    "draining"
                } else {
                    "serving"
                };
            let percent = |k: &str, digits: usize| {
                mb.get(k)
                    .and_then(Value::as_f64)
                    .map(|f| format!("{:.*}%", digits, f * 100.0))
                    .unwrap_or_else(|| "-".into())
            };
            t.row([
                cell(mb.get("name")),
                cell(mb.get("address")),
                if flag("live") { "yes" } else { "no" }.into(),
                state,
                percent("share", 1),
                percent("capacity", 0),
                dur(mb.get("heard_ms_ago")),
                cell(mb.get("beats")),
                cell(mb.get("times_lost")),
                cell(mb.get("mac")),
                cell(mb.get("records_received")),
                dur(mb.get("last_record_ms_ago")),
                match (mb.get("backend_address"), flag("backend_address_taken")) {
                    (Some(a), true) if !a.is_null() => format!("{} (taken here)", cell(Some(a))),
                    (a, _) => cell(a),
                },
            ]);
        }
        out += &t.render();
        out += &state_sharing(m.get("state_sharing"));
    }
    out
}

/// The `cluster` reply's `membership.state_sharing`, as a line.
fn state_sharing(v: Option<&Value>) -> String {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return String::new();
    };
    match v.get("store") {
        None => "\nstate sharing: push (a record per spliced request to every member)\n".into(),
        Some(st) => format!(
            "\nstate sharing: memcached {} ({}), {} writes, {} lookups ({} hits), {} errors, lookup mean {}µs, max {}µs\n",
            cell(st.get("memcached")),
            if st.get("connected").and_then(Value::as_bool) == Some(true) {
                "connected"
            } else {
                "not connected"
            },
            cell(st.get("writes")),
            cell(st.get("lookups")),
            cell(st.get("hits")),
            cell(st.get("errors")),
            cell(st.get("lookup_us_mean")),
            cell(st.get("lookup_us_max")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", ">N", "X"]);
        t.row(["a".into(), "1".into(), "x".into()]);
        t.row(["long-name".into(), "12345".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME           N  X\n\
             a              1  x\n\
             long-name  12345\n"
        );
    }

    #[test]
    fn cells_and_durations() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&json!(["a", "b"]))), "a,b");
        assert_eq!(cell(Some(&json!([]))), "-");
        assert_eq!(cell(Some(&json!(1.5))), "1.5");
        assert_eq!(cell(Some(&json!(-3))), "-3");
        assert_eq!(cell(Some(&json!({"a": 1}))), r#"{"a":1}"#);
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_340), "12.3s");
        assert_eq!(duration_ms(307_000), "5m07s");
        assert_eq!(duration_ms(7_384_000), "2h03m04s");
        assert_eq!(duration_ms(273_900_000), "3d04h05m");
    }

    #[test]
    fn cluster_with_members() {
        let v = json!({"serving": true, "reason": "serving", "announced": true,
            "membership": {"me": "sw1", "generation": 2, "settled": true, "members": [
                {"name": "sw1", "address": "10.99.4.31", "self": true, "live": true, "draining": false,
                 "leaving": false, "share": 0.5000076, "heard_ms_ago": null, "beats": 0, "times_lost": 0, "mac": null},
                {"name": "sw2", "address": "10.99.4.32", "self": false, "live": true, "draining": true,
                 "leaving": false, "share": 0.0, "heard_ms_ago": 41, "beats": 5127, "times_lost": 1,
                 "mac": "02:00:0a:63:04:20"}]}});
        let out = cluster(&v);
        assert!(out.contains("table generation 2"), "{out}");
        let sw1 = out.lines().find(|l| l.starts_with("sw1")).unwrap();
        assert!(
            sw1.contains("self, serving") && sw1.contains("50.0%"),
            "{out}"
        );
        let sw2 = out.lines().find(|l| l.starts_with("sw2")).unwrap();
        assert!(
            sw2.contains("draining") && sw2.contains("0.0%") && sw2.contains("02:00:0a:63:04:20"),
            "{out}"
        );
        assert!(
            out.contains("\n") && !out.contains("state sharing"),
            "{out}"
        );
        let mut v2 = v.clone();
        v2["membership"]["state_sharing"] = json!({"design": "store", "store": {
            "memcached": "10.99.4.254:11211", "connected": true, "writes": 20, "lookups": 3,
            "hits": 2, "errors": 0, "lookup_us_mean": 640, "lookup_us_max": 1900}});
        v2["membership"]["members"][1]["backend_address"] = json!("10.99.1.2");
        v2["membership"]["members"][1]["backend_address_taken"] = json!(true);
        v2["membership"]["members"][1]["records_received"] = json!(42);
        v2["membership"]["members"][1]["capacity"] = json!(0.375);
        v2["membership"]["balance"] = json!("workload");
        v2["membership"]["available"] = json!(0.912);
        let out2 = cluster(&v2);
        assert!(
            out2.contains("shares by workload (available here 91%)"),
            "{out2}"
        );
        assert!(
            out2.contains("memcached 10.99.4.254:11211 (connected), 20 writes, 3 lookups (2 hits)"),
            "{out2}"
        );
        let sw2 = out2.lines().find(|l| l.starts_with("sw2")).unwrap();
        assert!(
            sw2.contains("10.99.1.2 (taken here)") && sw2.contains("42") && sw2.contains("38%"),
            "{out2}"
        );
        // No membership: the announcer's lines only.
        assert!(!cluster(&json!({"serving": true, "membership": null})).contains("members"));
    }

    #[test]
    fn agents_table() {
        let v = json!({"agent_port": 7946, "agent_timeout_ms": 1500, "agents": [
            {"name": "be1", "address": "10.99.1.11", "agent": "host1", "registered": true,
             "alive": true, "last_seen_ms_ago": 120, "capacity": 1000, "flows": 12,
             "load": 0.012, "busy": 0.0031, "beats": 40},
            {"name": "be2", "address": "10.99.1.12", "agent": null, "registered": false,
             "alive": false, "last_seen_ms_ago": 4200, "capacity": 500, "flows": 0,
             "load": 0.0, "busy": 0.0, "beats": 9},
            {"name": "be3", "address": "10.99.1.13", "agent": null, "registered": false,
             "alive": false, "last_seen_ms_ago": null, "capacity": null, "flows": null,
             "load": null, "busy": null, "beats": 0}]});
        assert_eq!(
            agents(&v),
            "agent port 7946  timeout 1.5s\n\n\
             NAME  ADDRESS     AGENT  REGISTERED  ALIVE  SEEN_AGO  CAPACITY  FLOWS  LOAD  BUSY  BEATS\n\
             be1   10.99.1.11  host1  yes         yes       120ms      1000     12  1.2%  0.3%     40\n\
             be2   10.99.1.12  -      no          no         4.2s       500      0    0%    0%      9\n\
             be3   10.99.1.13  -      no          no            -         -      -     -     -      0\n"
        );
    }

    #[test]
    fn status_block() {
        let s = status(&json!({
            "version": "0.1.0", "pid": 42, "uptime_ms": 61_000, "workers": [1, 2], "config_version": 3,
            "ports": [{"name": "client", "mac": "02:00:00:00:00:01", "link_up": true, "rx_queues": 2, "tx_queues": 2}]
        }));
        assert!(s.contains("uptime            1m01s\n"), "{s}");
        assert!(s.contains("workers (lcores)  1,2\n"), "{s}");
        assert!(s.contains("PORT    MAC                LINK  RXQ  TXQ\nclient  02:00:00:00:00:01  up      2    2\n"), "{s}");
    }

    #[test]
    fn stats_matrix_hides_zero_rows() {
        let v = json!({
            "uptime_ms": 1000, "mbufs_in_use": 7,
            "total": {"rx_packets": 10, "tx_packets": 0, "drops": {"malformed": 2}},
            "cores": [{"rx_packets": 4, "tx_packets": 0, "drops": {"malformed": 2}},
                      {"rx_packets": 6, "tx_packets": 0, "drops": {"malformed": 0}}],
            "ports": {"p0": {"rx_packets": 10, "tx_packets": 0}}
        });
        let labels = core_labels(&v, Some(&json!({"workers": [1, 3]})));
        assert_eq!(labels, ["lcore 1", "lcore 3"]);
        let s = stats(&v, &labels, false);
        assert!(
            s.contains("COUNTER          TOTAL  LCORE 1  LCORE 3\n"),
            "{s}"
        );
        assert!(
            s.contains("drops.malformed      2        2        0\n"),
            "{s}"
        );
        assert!(!s.contains("tx_packets  "), "{s}");
        assert!(s.contains("(1 counters at zero not shown"), "{s}");
        let s = stats(&v, &labels, true);
        assert!(
            s.contains("\ntx_packets           0        0        0\n"),
            "{s}"
        );
        assert_eq!(core_labels(&v, None), ["core 0", "core 1"]);
    }

    #[test]
    fn rules_table() {
        let s = rules(&json!({"version": 4, "default_pool": "default", "rules": [
            {"name": "img", "match": {"path_prefix": "/img/"}, "pool": "images"},
            {"match": {}, "deny": {"status": 403}}
        ]}));
        assert!(s.starts_with("version 4  default pool default\n\n"), "{s}");
        assert!(
            s.contains(r#"1  img   {"path_prefix":"/img/"}  pool images"#),
            "{s}"
        );
        assert!(
            s.contains(r#"2  -     {}                       {"deny":{"status":403}}"#),
            "{s}"
        );
    }

    #[test]
    fn top_rates() {
        let prev = json!({"uptime_ms": 1000, "total": {"rx_packets": 100, "busy_cycles": 10, "idle_cycles": 30},
                          "cores": [{"rx_packets": 100, "busy_cycles": 10, "idle_cycles": 30}]});
        let cur = json!({"uptime_ms": 3000, "total": {"rx_packets": 300, "flows_live": 5, "busy_cycles": 40, "idle_cycles": 40, "conns_accepted": 4},
                         "cores": [{"rx_packets": 300, "flows_live": 5, "busy_cycles": 40, "idle_cycles": 40, "conns_accepted": 4}]});
        let f = top_frame(&prev, &cur, &["lcore 1".into()], Duration::from_secs(1));
        assert_eq!(f.interval_ms, 2000);
        assert_eq!(f.cores[0].rx_pps, 100.0);
        assert_eq!(f.cores[0].conns_per_s, 2.0);
        assert_eq!(f.cores[0].busy_pct, Some(75.0));
        assert_eq!(f.total.flows_live, 5);
        let s = f.render();
        assert!(
            s.contains("lcore 1     100       0       2      0      5   75.0\n"),
            "{s}"
        );
        // A restarted switch: no negative rates, wall clock used.
        let f = top_frame(&cur, &prev, &[], Duration::from_millis(500));
        assert_eq!(
            (f.interval_ms, f.cores[0].rx_pps, f.cores[0].busy_pct),
            (500, 0.0, None)
        );
    }

    #[test]
    fn connections_note() {
        let s = connections(
            &json!({"connections": [{"client": "10.0.0.1:4000", "age_ms": 1500}], "truncated": true}),
        );
        assert!(s.contains("10.0.0.1:4000  -    -"), "{s}");
        assert!(s.ends_with("(more connections match; raise --limit or narrow the filter)\n"));
    }
}

//! `webswitch-bench compare`: several JSON reports of this tool side by side, as one SVG
//! (grouped bars, see `plot::plot_compare`) and a text table.
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The figures of one report that the comparison shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// What the bars are labelled with (`LABEL=` of the command line, else the file stem).
    pub label: String,
    /// The report's mode (`switch`, `back-to-back`, `direct`).
    pub mode: String,
    pub requests_per_s: f64,
    pub connections_per_s: f64,
    pub ttfb_p50_us: f64,
    pub ttfb_p99_us: f64,
    /// The report's own verdict (figures add up, no integrity failure).
    pub ok: bool,
    /// The load, in words, from the report's settings.
    pub load: String,
}

/// `LABEL=PATH`, or `PATH` alone (the label is then the file stem).
pub fn parse_arg(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((label, path)) if !label.trim().is_empty() && !path.is_empty() => {
            Ok((label.trim().to_string(), PathBuf::from(path)))
        }
        Some(_) => Err(format!("{arg:?}: expected LABEL=REPORT.json")),
        None => {
            let p = PathBuf::from(arg);
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{arg:?}: expected LABEL=REPORT.json"))?;
            Ok((stem, p))
        }
    }
}

/// The load of a report in words: "64 concurrent, 1 req/conn, 1024 B, 8 s".
fn load_words(settings: &Value) -> String {
    let mut w = Vec::new();
    if let Some(rate) = settings["rate"].as_f64() {
        w.push(format!("{rate} conn/s open loop"));
    } else if let Some(c) = settings["concurrency"].as_u64() {
        w.push(format!("{c} concurrent"));
    }
    if let Some(r) = settings["requests_per_conn"].as_u64() {
        w.push(format!("{r} req/conn"));
    }
    if let Some(sizes) = settings["sizes"].as_array() {
        let s: Vec<String> = sizes.iter().map(|v| v.to_string()).collect();
        if !s.is_empty() {
            w.push(format!("{} B", s.join("/")));
        }
    }
    if let Some(d) = settings["duration"].as_f64() {
        w.push(format!("{d} s"));
    }
    w.join(", ")
}

/// The entry of one report (the JSON `--json` wrote).
pub fn entry(label: &str, report: &Value) -> Result<Entry, String> {
    let num = |v: &Value, what: &str| -> Result<f64, String> {
        v.as_f64()
            .ok_or_else(|| format!("no {what} (not a webswitch-bench report?)"))
    };
    Ok(Entry {
        label: label.to_string(),
        mode: report["mode"].as_str().unwrap_or("?").to_string(),
        requests_per_s: num(&report["rates"]["requests_per_s"], "rates.requests_per_s")?,
        connections_per_s: num(
            &report["rates"]["connections_per_s"],
            "rates.connections_per_s",
        )?,
        ttfb_p50_us: num(&report["latency"]["ttfb"]["p50_us"], "latency.ttfb.p50_us")?,
        ttfb_p99_us: num(&report["latency"]["ttfb"]["p99_us"], "latency.ttfb.p99_us")?,
        ok: report["ok"].as_bool().unwrap_or(false),
        load: load_words(&report["settings"]),
    })
}

/// Reads the reports named by `LABEL=PATH` arguments.
pub fn read_entries(args: &[String]) -> Result<Vec<Entry>, String> {
    if args.is_empty() {
        return Err("compare: give at least one LABEL=REPORT.json".into());
    }
    args.iter()
        .map(|a| {
            let (label, path) = parse_arg(a)?;
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            entry(&label, &v).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

/// The subtitle: the common load, or a note that the loads differ.
pub fn subtitle(entries: &[Entry]) -> String {
    match entries.first() {
        Some(first) if entries.iter().all(|e| e.load == first.load) => {
            if first.load.is_empty() {
                String::new()
            } else {
                format!("load: {}", first.load)
            }
        }
        Some(_) => "loads differ between the reports".into(),
        None => String::new(),
    }
}

/// The comparison as a text table.
pub fn table(entries: &[Entry]) -> String {
    use std::fmt::Write;
    let w = entries
        .iter()
        .map(|e| e.label.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<12} {:>12} {:>12} {:>10} {:>10}  ok",
        "label", "mode", "requests/s", "new conn/s", "ttfb p50", "ttfb p99"
    );
    for e in entries {
        let _ = writeln!(
            s,
            "{:<w$}  {:<12} {:>12.0} {:>12.0} {:>10.1} {:>10.1}  {}",
            e.label,
            e.mode,
            e.requests_per_s,
            e.connections_per_s,
            e.ttfb_p50_us,
            e.ttfb_p99_us,
            if e.ok { "yes" } else { "NO" }
        );
    }
    s
}

/// Reads the reports, draws the SVG at `out`, and returns the text table.
pub fn run(args: &[String], out: &Path, title: Option<&str>) -> Result<String, String> {
    let entries = read_entries(args)?;
    let title = title.unwrap_or("webswitch-bench: comparison");
    crate::plot::plot_compare(&entries, title, &subtitle(&entries), out)?;
    Ok(table(&entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(mode: &str, req: f64, conn: f64, p99: f64) -> Value {
        json!({
            "mode": mode,
            "ok": true,
            "settings": {"concurrency": 64, "rate": null, "requests_per_conn": 1,
                         "sizes": [1024], "duration": 8.0},
            "rates": {"requests_per_s": req, "connections_per_s": conn},
            "latency": {"ttfb": {"p50_us": p99 / 3.0, "p99_us": p99}},
        })
    }

    #[test]
    fn arguments_name_label_and_path() {
        assert_eq!(
            parse_arg("testpmd io=/tmp/a=b.json").unwrap(),
            ("testpmd io".to_string(), PathBuf::from("/tmp/a=b.json"))
        );
        assert_eq!(
            parse_arg("/tmp/h/b2b.json").unwrap(),
            ("b2b".to_string(), PathBuf::from("/tmp/h/b2b.json"))
        );
        assert!(parse_arg("=x.json").is_err());
        assert!(parse_arg("label=").is_err());
    }

    #[test]
    fn entries_take_rates_and_ttfb_and_describe_the_load() {
        let e = entry("b2b", &report("back-to-back", 1000.0, 900.0, 60.0)).unwrap();
        assert_eq!(e.mode, "back-to-back");
        assert_eq!(e.requests_per_s, 1000.0);
        assert_eq!(e.connections_per_s, 900.0);
        assert_eq!(e.ttfb_p99_us, 60.0);
        assert_eq!(e.load, "64 concurrent, 1 req/conn, 1024 B, 8 s");
        assert!(entry("x", &json!({"mode": "switch"})).is_err());
        let mut other = e.clone();
        assert_eq!(
            subtitle(&[e.clone(), other.clone()]),
            "load: 64 concurrent, 1 req/conn, 1024 B, 8 s"
        );
        other.load = "2 concurrent".into();
        assert_eq!(subtitle(&[e, other]), "loads differ between the reports");
    }

    #[test]
    fn the_svg_holds_every_label_and_value() {
        let dir = std::env::temp_dir().join(format!("wsb-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = Vec::new();
        for (i, (label, mode, req, conn, p99)) in [
            ("back-to-back", "back-to-back", 382_932.0, 382_931.0, 67.0),
            ("testpmd io", "direct", 96_324.0, 96_328.0, 8159.0),
            (
                "webswitch <splice> & co",
                "switch",
                185_559.0,
                185_559.0,
                1221.0,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let p = dir.join(format!("r{i}.json"));
            std::fs::write(&p, report(mode, req, conn, p99).to_string()).unwrap();
            args.push(format!("{label}={}", p.display()));
        }
        let out = dir.join("compare.svg");
        let table = run(&args, &out, None).unwrap();
        assert!(table.contains("testpmd io"), "{table}");
        let svg = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.contains("<svg"));
        for text in [
            "back-to-back",
            "testpmd io",
            "webswitch &lt;splice&gt; &amp; co",
            "382.9k",
            "96.3k",
            "8,159",
            "requests/s",
        ] {
            assert!(svg.contains(text), "{text} missing from the SVG");
        }
    }
}

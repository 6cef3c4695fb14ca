//! SVG plots beside the JSON report (plotters, SVG backend only): connections/s and
//! requests/s over the run, and latency percentiles (per second and for the whole run);
//! and the comparison of several reports (`webswitch-bench compare`).
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::Report;

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("plot: {e}")
}

/// `<dir>/<stem>-<suffix>.svg` for the report at `json`.
pub fn plot_path(json: &Path, suffix: &str) -> PathBuf {
    let stem = json
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "report".into());
    json.with_file_name(format!("{stem}-{suffix}.svg"))
}

/// Writes the plots of `report` next to `json` and returns their paths.
pub fn write_plots(report: &Report, json: &Path) -> Result<Vec<PathBuf>, String> {
    let rates = plot_path(json, "rates");
    let latency = plot_path(json, "latency");
    plot_rates(report, &rates)?;
    plot_latency(report, &latency)?;
    Ok(vec![rates, latency])
}

fn max_of(vals: impl Iterator<Item = f64>) -> f64 {
    vals.fold(0.0f64, f64::max)
}

fn plot_rates(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let t_max = r.timeline.last().map(|t| t.t).unwrap_or(1.0).max(1.0);
    let y_max = max_of(
        r.timeline
            .iter()
            .flat_map(|t| [t.connections_per_s, t.requests_per_s]),
    )
    .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("webswitch-bench ({}): rates per second", r.mode),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            r.timeline.iter().map(|t| (t.t, t.requests_per_s)),
            &BLUE,
        ))
        .map_err(err)?
        .label("requests/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            r.timeline.iter().map(|t| (t.t, t.connections_per_s)),
            &RED,
        ))
        .map_err(err)?
        .label("new connections/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn plot_latency(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let t_max = r.timeline.last().map(|t| t.t).unwrap_or(1.0).max(1.0);
    let y_max = max_of(
        r.timeline
            .iter()
            .flat_map(|t| [t.ttfb_p99_us, t.connect_p99_us]),
    )
    .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "latency per second (us); whole run ttfb p50 {:.0} p99 {:.0} p99.9 {:.0} max {:.0}",
                r.latency.ttfb.p50_us,
                r.latency.ttfb.p99_us,
                r.latency.ttfb.p999_us,
                r.latency.ttfb.max_us
            ),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("microseconds")
        .draw()
        .map_err(err)?;
    type Series = (&'static str, RGBColor, fn(&crate::report::Tick) -> f64);
    let series: [Series; 5] = [
        ("ttfb p50", BLUE, |t| t.ttfb_p50_us),
        ("ttfb p90", GREEN, |t| t.ttfb_p90_us),
        ("ttfb p99", RED, |t| t.ttfb_p99_us),
        ("connect p50", CYAN, |t| t.connect_p50_us),
        ("connect p99", MAGENTA, |t| t.connect_p99_us),
    ];
    for (name, color, f) in series {
        chart
            .draw_series(LineSeries::new(
                r.timeline.iter().map(|t| (t.t, f(t))),
                &color,
            ))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Colours of the comparison's bars (matplotlib's "tab" palette).
const REQ_COLOR: RGBColor = RGBColor(31, 119, 180);
const CONN_COLOR: RGBColor = RGBColor(255, 127, 14);
const P50_COLOR: RGBColor = RGBColor(148, 103, 189);
const P99_COLOR: RGBColor = RGBColor(214, 39, 40);

/// `1234567` as `1.23M`, `382932` as `382.9k`, `450000` as `450k`.
fn si(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        return format!("{v:.0}");
    };
    let (num, unit) = s.split_at(s.len() - 1);
    let num = if num.contains('.') {
        num.trim_end_matches('0').trim_end_matches('.')
    } else {
        num
    };
    format!("{num}{unit}")
}

/// Microseconds: `8,159`, `67`, `4.2`.
fn micros(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() < 10.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A series of bars: its legend, its colour, and its value for an entry.
type BarSeries<'s> = (&'s str, RGBColor, fn(&crate::compare::Entry) -> f64);

/// One panel of grouped bars: a group per entry, a bar per series, each bar's value printed
/// above it and each group's label (and the report's mode) below it.
fn bar_panel(
    root: &Area,
    area: &Area,
    caption: &str,
    y_desc: &str,
    entries: &[crate::compare::Entry],
    series: &[BarSeries],
    fmt: fn(f64) -> String,
) -> Result<(), String> {
    let n = entries.len().max(1) as f64;
    let y_max = max_of(
        entries
            .iter()
            .flat_map(|e| series.iter().map(move |s| s.2(e))),
    )
    .max(1.0)
        * 1.4;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..n, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|v| fmt(*v))
        .draw()
        .map_err(err)?;
    let k = series.len().max(1) as f64;
    let (pad, gap) = (0.14, 0.04);
    let width = (1.0 - 2.0 * pad - gap * (k - 1.0)) / k;
    let value_style = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (j, (name, color, f)) in series.iter().enumerate() {
        let color = *color;
        let x0 = |i: usize| i as f64 + pad + j as f64 * (width + gap);
        chart
            .draw_series(entries.iter().enumerate().map(|(i, e)| {
                Rectangle::new([(x0(i), 0.0), (x0(i) + width, f(e))], color.filled())
            }))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        chart
            .draw_series(entries.iter().enumerate().map(|(i, e)| {
                EmptyElement::at((x0(i) + width / 2.0, f(e)))
                    + Text::new(fmt(f(e)), (0, -3), value_style.clone())
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    let label_style = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let mode_style = ("sans-serif", 11)
        .into_font()
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, e) in entries.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(e.label.clone(), (x, y + 8), label_style.clone()))
            .map_err(err)?;
        let mode = if e.ok {
            format!("mode {}", e.mode)
        } else {
            format!("mode {}, report NOT ok", e.mode)
        };
        root.draw(&Text::new(mode, (x, y + 27), mode_style.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// One SVG comparing several reports: requests/s and new connections/s per report (top),
/// time to first byte p50 and p99 per report (bottom), values printed above the bars.
pub fn plot_compare(
    entries: &[crate::compare::Entry],
    title: &str,
    subtitle: &str,
    path: &Path,
) -> Result<(), String> {
    let width = (170 * entries.len() as u32 + 160).max(900);
    let root = SVGBackend::new(path, (width, 820)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let body = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let (sub, body) = body.split_vertically(22);
    sub.draw(&Text::new(
        subtitle.to_string(),
        (width as i32 / 2, 2),
        ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(60, 60, 60))
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(err)?;
    let (top, bottom) = body.split_vertically(400);
    bar_panel(
        &root,
        &top,
        "rates over the load window",
        "per second",
        entries,
        &[
            ("requests/s", REQ_COLOR, |e| e.requests_per_s),
            ("new connections/s", CONN_COLOR, |e| e.connections_per_s),
        ],
        si,
    )?;
    bar_panel(
        &root,
        &bottom,
        "time to first response byte, whole run (µs)",
        "microseconds",
        entries,
        &[
            ("ttfb p50", P50_COLOR, |e| e.ttfb_p50_us),
            ("ttfb p99", P99_COLOR, |e| e.ttfb_p99_us),
        ],
        micros,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

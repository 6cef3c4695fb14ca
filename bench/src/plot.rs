//! SVG plots beside the JSON report (plotters, SVG backend only): connections/s and
//! requests/s over the run, and latency percentiles (per second and for the whole run).
use std::path::{Path, PathBuf};

use plotters::prelude::*;

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

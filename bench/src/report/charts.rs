//! PNG charts with plotters: server CPU seconds per delivered GB against the number of players
//! (fan-out), the distribution of time to first frame for joining players (join), and latency
//! p99 against players for the edge with one and two worker threads (cores ceiling).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::aggregate::Runs;
use crate::error::BenchError;

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the TrueType font plotters draws text with (bitmaps have no built-in font).
pub fn use_font(path: &Path) -> Result<(), BenchError> {
    FONT.get_or_init(|| {
        let bytes = std::fs::read(path).map_err(|e| format!("font {}: {e}", path.display()))?;
        // Plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("font {}: not a usable TrueType/OpenType font", path.display()))
    })
    .clone()
    .map_err(BenchError::Report)
}

fn chart_err(path: &Path) -> impl Fn(String) -> BenchError + '_ {
    move |message| BenchError::Chart { path: path.to_path_buf(), message }
}

/// (server, [(x, y)]) series, in server order.
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// How one line chart looks.
struct Chart<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    log_x: bool,
    log_y: bool,
    /// Fixed top of a linear y axis (e.g. a share that tops at 1).
    y_top: Option<f64>,
}

/// Draws the series that have points into `dir/file` and records (title, file); nothing when
/// none has.
fn write_chart(
    dir: &Path,
    file: &str,
    spec: &Chart<'_>,
    series: Series,
    written: &mut Vec<(String, PathBuf)>,
) -> Result<(), BenchError> {
    let series: Series = series.into_iter().filter(|(_, p)| !p.is_empty()).collect();
    if series.is_empty() {
        return Ok(());
    }
    let path = dir.join(file);
    draw_lines(&path, spec, &series)?;
    written.push((spec.title.to_string(), path));
    Ok(())
}

fn draw_lines(path: &Path, chart_spec: &Chart<'_>, series: &Series) -> Result<(), BenchError> {
    let Chart { title, x_desc, y_desc, log_x, log_y, y_top } = *chart_spec;
    let err = chart_err(path);
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max, mut x_min, mut y_min) = (1.0f64, 0.0f64, f64::MAX, f64::MAX);
    for &(x, y) in points {
        x_max = x_max.max(x);
        x_min = x_min.min(x);
        y_max = y_max.max(y);
        y_min = y_min.min(y);
    }
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err(err("no data".into()));
    }
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 24)).margin(16).x_label_area_size(48).y_label_area_size(64);
    let y_range = 0.0..y_top.unwrap_or((y_max * 1.15).max(1e-3));
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_labels(6)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style(("sans-serif", 15))
                .draw()
                .map_err(|e| err(e.to_string()))?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let color = Palette99::pick(i).mix(0.9);
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(3)))
                    .map_err(|e| err(e.to_string()))?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
                // Markers for measured points; a distribution with many samples is a plain curve.
                if pts.len() <= 40 {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        .map_err(|e| err(e.to_string()))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 16))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| err(e.to_string()))?;
        }};
    }
    if log_x && log_y {
        let lo = (x_min.max(0.1) * 0.8).max(0.1);
        let y_lo = (y_min * 0.7).max(1e-3);
        finish!(
            builder
                .build_cartesian_2d((lo..x_max * 1.25).log_scale(), (y_lo..y_max * 1.4).log_scale())
                .map_err(|e| err(e.to_string()))?
        );
    } else if log_x {
        let lo = (x_min.max(0.1) * 0.8).max(0.1);
        finish!(builder.build_cartesian_2d((lo..x_max * 1.25).log_scale(), y_range).map_err(|e| err(e.to_string()))?);
    } else {
        finish!(builder.build_cartesian_2d(0.0..x_max * 1.05, y_range).map_err(|e| err(e.to_string()))?);
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Writes the charts that have data; returns (title, file) of each.
pub fn write_all(runs: &Runs, dir: &Path, servers: &[String]) -> Result<Vec<(String, PathBuf)>, BenchError> {
    std::fs::create_dir_all(dir).map_err(|source| BenchError::File { path: dir.to_path_buf(), source })?;
    let mut written = Vec::new();

    let fan = runs.points("fanout");
    let cpu: Series = servers
        .iter()
        .map(|s| {
            let pts = fan
                .iter()
                .filter_map(|(_, groups)| {
                    let g = groups.get(s)?;
                    let players = g.first()?.params.players;
                    // Per-GB cost at a handful of players is fixed cost over a trickle of bytes.
                    if players < 10 {
                        return None;
                    }
                    Some((players as f64, g.med(|r| r.server_stats.as_ref()?.cpu_s_per_gb)?))
                })
                .collect();
            (s.clone(), pts)
        })
        .collect();
    let spec = Chart {
        title: "Server CPU seconds per delivered GB (fan-out, lower is better)",
        x_desc: "players (log scale)",
        y_desc: "CPU-s per GB",
        log_x: true,
        log_y: false,
        y_top: None,
    };
    write_chart(dir, "cpu-per-gb.png", &spec, cpu, &mut written)?;

    let join = runs.points("join");
    let cdf: Series = servers
        .iter()
        .map(|s| {
            let mut samples: Vec<f64> = join
                .iter()
                .filter_map(|(_, g)| g.get(s))
                .flat_map(|g| g.runs.iter().flat_map(|r| r.first_frame_samples_ms.iter().copied()))
                .filter(|v| v.is_finite() && *v > 0.0)
                .collect();
            samples.sort_by(f64::total_cmp);
            let n = samples.len() as f64;
            let pts = samples.iter().enumerate().map(|(i, &v)| (v, (i + 1) as f64 / n)).collect();
            (s.clone(), pts)
        })
        .collect();
    let spec = Chart {
        title: "Time to first frame for joining players (cumulative share)",
        x_desc: "ms from TCP connect (log scale)",
        y_desc: "share of players",
        log_x: true,
        log_y: false,
        y_top: Some(1.05),
    };
    write_chart(dir, "first-frame-cdf.png", &spec, cdf, &mut written)?;

    let cores = runs.points("cores");
    let ceiling: Series = servers
        .iter()
        .map(|s| {
            let pts = cores
                .iter()
                .filter(|(tag, _)| tag.starts_with("cores-ceiling"))
                .filter_map(|(_, groups)| {
                    let g = groups.get(s)?;
                    Some((g.first()?.params.players as f64, g.med(|r| r.latency_window_ms.map(|l| l.p99))?))
                })
                .collect();
            (s.clone(), pts)
        })
        .collect();
    let spec = Chart {
        title: "Fan-out latency p99 by worker threads (ceiling: p99 ≤ 100 ms)",
        x_desc: "players",
        y_desc: "latency p99 ms (window)",
        log_x: false,
        log_y: false,
        y_top: None,
    };
    write_chart(dir, "cores-ceiling.png", &spec, ceiling, &mut written)?;
    Ok(written)
}

//! The generated part of docs/benchmarks.md: machine, commands, one table per scenario with the
//! ratio of each server to the baseline measured in the same invocation, and the issue's targets
//! checked against those ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::aggregate::{Group, Runs};
use super::machine::Machine;
use crate::stats::RunReport;

/// Everything the section is made from.
pub struct Inputs<'a> {
    pub runs: &'a Runs,
    pub baseline: &'a str,
    pub candidate: &'a str,
    pub machine: &'a Machine,
    pub invocation: &'a str,
    pub extras: &'a [String],
    /// Chart paths relative to the markdown file.
    pub charts: &'a [(String, String)],
    pub generated_at: &'a str,
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "–".into())
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

fn fx(r: Option<f64>) -> String {
    r.map(|x| format!("**{x:.2}×**")).unwrap_or_else(|| "–".into())
}

/// Servers in a stable order: baseline, candidate, then any others. The cores section's edges
/// (one and two worker threads) have a table of their own and would only add empty columns
/// everywhere else.
fn servers(inp: &Inputs<'_>) -> Vec<String> {
    let mut all: Vec<String> = inp
        .runs
        .by_scenario
        .iter()
        .filter(|(scenario, _)| scenario.as_str() != "cores")
        .flat_map(|(_, p)| p.values())
        .flat_map(|g| g.keys().cloned())
        .collect();
    all.sort();
    all.dedup();
    all.sort_by_key(|s| (s != inp.baseline, s != inp.candidate, s.clone()));
    all
}

type Metric = fn(&RunReport) -> Option<f64>;

/// The first run of a section's first point: what its media line describes.
fn first_run<'a>(points: &[(&String, &'a BTreeMap<String, Group>)]) -> Option<&'a RunReport> {
    points.first()?.1.values().find_map(|g| g.first())
}

fn lat_p50(r: &RunReport) -> Option<f64> {
    r.latency_window_ms.map(|s| s.p50)
}
fn lat_p99(r: &RunReport) -> Option<f64> {
    r.latency_window_ms.map(|s| s.p99)
}
fn cpu_gb(r: &RunReport) -> Option<f64> {
    r.server_stats.as_ref()?.cpu_s_per_gb
}
fn cpu_pct(r: &RunReport) -> Option<f64> {
    r.server_stats.as_ref().map(|s| s.cpu_pct)
}
fn rss_pp(r: &RunReport) -> Option<f64> {
    r.server_stats.as_ref()?.rss_per_player_kib
}
fn start_p50(r: &RunReport) -> Option<f64> {
    r.play_start_ms.map(|s| s.p50)
}
fn ff_p50(r: &RunReport) -> Option<f64> {
    r.first_frame_ms.map(|s| s.p50)
}
fn ff_p99(r: &RunReport) -> Option<f64> {
    r.first_frame_ms.map(|s| s.p99)
}
fn tool_pct(r: &RunReport) -> Option<f64> {
    Some(r.tool.cpu_pct)
}
fn other_load(r: &RunReport) -> Option<f64> {
    r.tool.other_load_cores
}
fn per_player(r: &RunReport) -> Option<f64> {
    r.per_player_mbps
}
fn adm_p50(r: &RunReport) -> Option<f64> {
    r.publish_start_ms.map(|s| s.p50)
}
fn adm_p99(r: &RunReport) -> Option<f64> {
    r.publish_start_ms.map(|s| s.p99)
}
fn rss_ppub(r: &RunReport) -> Option<f64> {
    r.server_stats.as_ref()?.rss_per_publisher_kib
}
fn refused_publishers(r: &RunReport) -> usize {
    r.publishers.as_ref().map(|p| p.failed).unwrap_or(0)
}
fn dropped_publishers(r: &RunReport) -> usize {
    r.publishers.as_ref().map(|p| p.dropped).unwrap_or(0)
}
fn bad_players(r: &RunReport) -> usize {
    r.players.as_ref().map(|p| p.failed + p.dropped).unwrap_or(0)
}
fn bad_publishers(r: &RunReport) -> usize {
    r.publishers.as_ref().map(|p| p.failed + p.dropped).unwrap_or(0)
}

/// "a · b · **ratio×**" for one metric across servers.
fn cell(groups: &BTreeMap<String, Group>, servers: &[String], m: Metric, digits: usize, with_ratio: bool) -> String {
    let vals: Vec<Option<f64>> = servers.iter().map(|s| groups.get(s).and_then(|g| g.med(m))).collect();
    let mut parts: Vec<String> = vals.iter().map(|v| f(*v, digits)).collect();
    if with_ratio {
        for v in vals.iter().skip(1) {
            parts.push(fx(ratio(*v, vals[0])));
        }
    }
    parts.join(" · ")
}

fn pair_cell(groups: &BTreeMap<String, Group>, servers: &[String], a: Metric, b: Metric, digits: usize) -> String {
    servers
        .iter()
        .map(|s| match groups.get(s) {
            Some(g) => format!("{}/{}", f(g.med(a), digits), f(g.med(b), digits)),
            None => "–".into(),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn count_cell(groups: &BTreeMap<String, Group>, servers: &[String], c: fn(&RunReport) -> usize) -> String {
    servers
        .iter()
        .map(|s| groups.get(s).map(|g| g.sum(c).to_string()).unwrap_or("–".into()))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn reasons(out: &mut String, scenario_points: &[(&String, &BTreeMap<String, Group>)]) {
    let mut any = false;
    for (tag, groups) in scenario_points {
        for (server, g) in groups.iter() {
            for (i, r) in g.runs.iter().enumerate() {
                let mut all: BTreeMap<&str, usize> = BTreeMap::new();
                for c in [&r.players, &r.publishers].into_iter().flatten() {
                    for (k, v) in &c.reasons {
                        *all.entry(k.as_str()).or_default() += v;
                    }
                }
                if all.is_empty() {
                    continue;
                }
                if !any {
                    let _ = writeln!(out, "\nFailures and drops, per run, with the server's reason:\n");
                    any = true;
                }
                let listed: Vec<String> = all.iter().map(|(k, v)| format!("{v} × `{k}`")).collect();
                let load = match r.tool.other_load_cores {
                    Some(l) if l > 0.25 => format!(" — **disturbed run: {l:.2} cores of other load on the machine**"),
                    _ => String::new(),
                };
                let _ =
                    writeln!(out, "- {tag}, {server}, run {} of {}: {}{load}", i + 1, g.runs.len(), listed.join(", "));
            }
        }
    }
}

/// Renders the generated section (without the markers).
pub fn render(inp: &Inputs<'_>) -> String {
    let servers = servers(inp);
    let names = servers.join(" · ");
    let ratio_names: Vec<String> = servers.iter().skip(1).map(|s| format!("{s}/{}", inp.baseline)).collect();
    let mut out = String::new();
    let m = inp.machine;
    let _ = writeln!(out, "_Generated by `streamfleet-bench report` on {}._\n", inp.generated_at);
    let _ = writeln!(out, "### Machine and method\n");
    let _ = writeln!(
        out,
        "- {} CPUs (`nproc`), {}, kernel {}, {:.1} GiB RAM; servers, load tool and any other work on the machine share these cores.",
        m.nproc,
        if m.cpu_model.is_empty() { "unknown CPU" } else { &m.cpu_model },
        m.kernel,
        m.memory_gib
    );
    let _ = writeln!(
        out,
        "- Servers (cells list them in this order): {names}. Ratios are {}, from medians of the runs of the same invocation (up to {} runs per point; servers alternate run by run).",
        if ratio_names.is_empty() { "–".to_string() } else { ratio_names.join(", ") },
        inp.runs.max_repeats()
    );
    let _ = writeln!(
        out,
        "- CPU is the server's user+system time (process tree, per-thread `/proc/PID/task/*/schedstat`) over the steady window ÷ bytes the players received in it (GB = 10⁹ bytes). RSS per player = (RSS with all players − RSS before they joined) ÷ players. Latency = receive time − send time of each video frame, matched by a marker inside the frame, on one clock. Play start = TCP connect → `NetStream.Play.Start`; first frame = TCP connect → first video frame."
    );
    if !inp.invocation.is_empty() {
        let _ = writeln!(out, "\nProduced by:\n\n```\n{}\n```", inp.invocation);
    }
    let mut examples: Vec<String> = Vec::new();
    // Paths under the working directory are shown relative to it (the repository root).
    let cwd = std::env::current_dir().map(|d| format!("{}/", d.display())).unwrap_or_default();
    for (scenario, points) in &inp.runs.by_scenario {
        let biggest = points
            .values()
            .flat_map(|g| g.values())
            .filter_map(|g| g.first())
            .max_by_key(|r| r.params.players.max(r.params.publishers));
        if let Some(r) = biggest {
            let command = if cwd.len() > 1 { r.command.replace(&cwd, "") } else { r.command.clone() };
            examples.push(format!("# {scenario}\n{command}"));
        }
    }
    if !examples.is_empty() {
        let _ = writeln!(
            out,
            "\nExample load-tool commands (one per scenario; every run's command is in its JSON line):\n"
        );
        let _ = writeln!(out, "```\n{}\n```", examples.join("\n"));
    }

    // 1. Fan-out
    let points = inp.runs.points("fanout");
    let _ = writeln!(out, "\n### 1. Fan-out: one stream to N players\n");
    if points.is_empty() {
        let _ = writeln!(out, "Not run.");
    } else {
        let media = first_run(&points).map(|r| {
            format!(
                "{} ({:.0} kbit/s, GOP {} ms, {:.0} fps)",
                r.params.media, r.params.media_kbps, r.params.gop_ms, r.params.fps
            )
        });
        let _ = writeln!(
            out,
            "Media: {}. Steady window after every player received its first frame.\n",
            media.unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "| players | server CPU-s per GB | latency p50/p99 ms (window) | p99 ratio | RSS KiB per player | play start p50 ms | first frame p50/p99 ms | failed+dropped | Mbit/s per player | load-tool CPU % | other load (cores) |"
        );
        let _ = writeln!(out, "|---:|---|---|---|---|---|---|---|---|---|---|");
        for (tag, groups) in &points {
            let players = groups.values().filter_map(|g| g.first()).map(|r| r.params.players).max().unwrap_or(0);
            let _ = tag;
            let _ = writeln!(
                out,
                "| {players} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(groups, &servers, cpu_gb, 2, true),
                pair_cell(groups, &servers, lat_p50, lat_p99, 1),
                ratio_only(groups, &servers, lat_p99),
                cell(groups, &servers, rss_pp, 1, true),
                cell(groups, &servers, start_p50, 1, false),
                pair_cell(groups, &servers, ff_p50, ff_p99, 0),
                count_cell(groups, &servers, bad_players),
                cell(groups, &servers, per_player, 2, false),
                cell(groups, &servers, tool_pct, 0, false),
                cell(groups, &servers, other_load, 2, false),
            );
        }
        reasons(&mut out, &points);
    }

    // 2. Join
    let points = inp.runs.points("join");
    let _ = writeln!(out, "\n### 2. Join: players joining one at a time mid-stream\n");
    if points.is_empty() {
        let _ = writeln!(out, "Not run.");
    } else {
        let _ = writeln!(
            out,
            "| point | server | play start p50/p95/p99 ms | first frame p50/p95/p99 ms | first keyframe p50/p95/p99 ms | failed+dropped |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for (tag, groups) in &points {
            for s in &servers {
                let Some(g) = groups.get(s) else { continue };
                let tri = |m: fn(&RunReport) -> Option<crate::stats::Summary>| {
                    format!(
                        "{} / {} / {}",
                        f(g.med(|r| m(r).map(|x| x.p50)), 1),
                        f(g.med(|r| m(r).map(|x| x.p95)), 1),
                        f(g.med(|r| m(r).map(|x| x.p99)), 1)
                    )
                };
                let _ = writeln!(
                    out,
                    "| {tag} | {s} | {} | {} | {} | {} |",
                    tri(|r| r.play_start_ms),
                    tri(|r| r.first_frame_ms),
                    tri(|r| r.first_keyframe_ms),
                    g.sum(bad_players)
                );
            }
        }
        reasons(&mut out, &points);
    }

    // 3. Ingest
    let points = inp.runs.points("ingest");
    let _ = writeln!(out, "\n### 3. Ingest: concurrent publishers on distinct streams (one player each)\n");
    if points.is_empty() {
        let _ = writeln!(out, "Not run.");
    } else {
        if let Some(r) = first_run(&points) {
            let _ = writeln!(
                out,
                "Media per publisher: {} ({:.0} kbit/s with audio, GOP {} ms, {:.0} fps).\n",
                r.params.media, r.params.media_kbps, r.params.gop_ms, r.params.fps
            );
        }
        let _ = writeln!(
            out,
            "| publishers | server CPU-s per GB delivered | server CPU % of a core | latency p50/p99 ms | p99 ratio | failed+dropped publishers | failed+dropped players | other load (cores) |"
        );
        let _ = writeln!(out, "|---:|---|---|---|---|---|---|---|");
        for (_, groups) in &points {
            let n = groups.values().filter_map(|g| g.first()).map(|r| r.params.publishers).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "| {n} | {} | {} | {} | {} | {} | {} | {} |",
                cell(groups, &servers, cpu_gb, 2, true),
                cell(groups, &servers, cpu_pct, 0, true),
                pair_cell(groups, &servers, lat_p50, lat_p99, 1),
                ratio_only(groups, &servers, lat_p99),
                count_cell(groups, &servers, bad_publishers),
                count_cell(groups, &servers, bad_players),
                cell(groups, &servers, other_load, 2, false),
            );
        }
        reasons(&mut out, &points);
    }

    // 4. Admission
    let points = inp.runs.points("admission");
    let _ = writeln!(out, "\n### 4. Admission: sequential connect → `NetStream.Publish.Start`\n");
    if points.is_empty() {
        let _ = writeln!(out, "Not run.");
    } else {
        let _ = writeln!(out, "| point | server | accepted | p50 ms | p95 ms | p99 ms | max ms | refused |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        for (tag, groups) in &points {
            for s in &servers {
                let Some(g) = groups.get(s) else { continue };
                let a = |p: fn(&crate::stats::Summary) -> f64| f(g.med(|r| r.admission_ms.as_ref().map(p)), 2);
                let _ = writeln!(
                    out,
                    "| {tag} | {s} | {} | {} | {} | {} | {} | {} |",
                    f(g.med(|r| r.admission_ms.map(|x| x.n as f64)), 0),
                    a(|x| x.p50),
                    a(|x| x.p95),
                    a(|x| x.p99),
                    a(|x| x.max),
                    g.sum(|r| r.publishers.as_ref().map(|p| p.failed).unwrap_or(0))
                );
            }
        }
        reasons(&mut out, &points);
    }

    // 5. Cross-edge
    let points = inp.runs.points("cross-edge");
    let _ = writeln!(out, "\n### 5. Cross-edge: players on a second edge pulling from the owner\n");
    if points.is_empty() {
        let _ = writeln!(out, "**Skipped** (see the notes below for why).");
    } else {
        let _ = writeln!(
            out,
            "| players on | first frame p50/p95/p99 ms | latency p50/p99 ms (window) | failed+dropped |\n|---|---|---|---|"
        );
        let owner = inp.runs.points("join").into_iter().find_map(|(_, g)| g.get(inp.candidate));
        let second = points.iter().find_map(|(_, g)| g.get(inp.candidate));
        for (name, g) in [("the owner edge (join scenario)", owner), ("a second edge (relay pull)", second)] {
            let Some(g) = g else { continue };
            let _ = writeln!(
                out,
                "| {name} | {} / {} / {} | {}/{} | {} |",
                f(g.med(ff_p50), 1),
                f(g.med(|r| r.first_frame_ms.map(|s| s.p95)), 1),
                f(g.med(ff_p99), 1),
                f(g.med(lat_p50), 1),
                f(g.med(lat_p99), 1),
                g.sum(bad_players)
            );
        }
        reasons(&mut out, &points);
    }

    out.push_str(&density_section(inp, &servers));
    out.push_str(&cores_section(inp));

    for (title, path) in inp.charts {
        let _ = writeln!(out, "\n![{title}]({path})");
    }
    for e in inp.extras {
        let _ = writeln!(out, "\n{}", e.trim_end());
    }
    let _ = writeln!(out, "\n### Targets of issue 7, checked against this run\n");
    out.push_str(&targets(inp));
    if !inp.runs.points("density").is_empty() || !inp.runs.points("cores").is_empty() {
        let _ = writeln!(out, "\n### Targets of issue 23 (density and cores), checked against this run\n");
        out.push_str(&targets_23(inp));
    }
    out
}

/// Publishers of a point (its largest run).
fn publishers_of(groups: &BTreeMap<String, Group>) -> usize {
    groups.values().filter_map(|g| g.first()).map(|r| r.params.publishers).max().unwrap_or(0)
}

fn players_of(groups: &BTreeMap<String, Group>) -> usize {
    groups.values().filter_map(|g| g.first()).map(|r| r.params.players).max().unwrap_or(0)
}

/// "intact/live" streams summed over a server's runs.
fn intact_cell(groups: &BTreeMap<String, Group>, servers: &[String]) -> String {
    servers
        .iter()
        .map(|s| match groups.get(s) {
            Some(g) => {
                let live = g.sum(|r| r.streams.map(|c| c.live).unwrap_or(0));
                let intact = g.sum(|r| r.streams.map(|c| c.intact).unwrap_or(0));
                format!("{intact}/{live}")
            }
            None => "–".into(),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn density_section(inp: &Inputs<'_>, servers: &[String]) -> String {
    let mut out = String::new();
    let points = inp.runs.points("density");
    let _ = writeln!(out, "\n### 6. Density: many 1 Mbit/s publishers on one edge (one player each)\n");
    if points.is_empty() {
        let _ = writeln!(out, "Not run.");
        return out;
    }
    if let Some(r) = first_run(&points) {
        let _ = writeln!(
            out,
            "Media: {} ({:.0} kbit/s, GOP {} ms); publishers and players ramped at {:.0}/s. Admission = each publisher's TCP connect → `NetStream.Publish.Start` during the ramp. RSS per publisher = (RSS with every publisher up, after the warm-up − RSS of the fresh, idle server) ÷ publishers, before any player joins. It includes the GOP cache; the cache's share is measured by a third server when present, the same edge with `--gop-cache-total-bytes 1` (“no GOP cache”: it keeps no GOP, its players start at the next keyframe), and one GOP of the media (bitrate × keyframe interval, computed) is stated next to it.\n",
            r.params.media, r.params.media_kbps, r.params.gop_ms, r.params.ramp_per_s
        );
    }
    let _ = writeln!(
        out,
        "| publishers | server CPU-s per GB | admission p50/p99 ms | RSS KiB per publisher | one GOP per stream KiB (computed) | refused publishers | dropped publishers | failed+dropped players | intact streams | latency p50/p99 ms (window) | server CPU % of a core | other load (cores) |"
    );
    let _ = writeln!(out, "|---:|---|---|---|---:|---|---|---|---|---|---|---|");
    for (_, groups) in &points {
        let gop = groups.values().filter_map(|g| g.first()).find_map(|r| r.params.gop_kib());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            publishers_of(groups),
            cell(groups, servers, cpu_gb, 2, true),
            pair_cell(groups, servers, adm_p50, adm_p99, 2),
            cell(groups, servers, rss_ppub, 1, true),
            f(gop, 0),
            count_cell(groups, servers, refused_publishers),
            count_cell(groups, servers, dropped_publishers),
            count_cell(groups, servers, bad_players),
            intact_cell(groups, servers),
            pair_cell(groups, servers, lat_p50, lat_p99, 1),
            cell(groups, servers, cpu_pct, 0, true),
            cell(groups, servers, other_load, 2, false),
        );
    }
    reasons(&mut out, &points);
    out
}

/// The label scripts/bench gives the density section's edge that keeps no GOP
/// (`--gop-cache-total-bytes 1`): its RSS per publisher is the edge's without the GOP cache.
fn no_gop_label(candidate: &str) -> String {
    format!("{candidate} no GOP cache")
}

/// Labels scripts/bench gives the edges of the cores section.
fn thread_labels(candidate: &str) -> (String, String) {
    (format!("{candidate} 1 thread"), format!("{candidate} 2 threads"))
}

/// The servers of the cores section: baseline, one thread, two threads, then any others.
fn cores_servers(inp: &Inputs<'_>) -> Vec<String> {
    let (one, two) = thread_labels(inp.candidate);
    let mut all: Vec<String> = inp
        .runs
        .by_scenario
        .get("cores")
        .map(|p| p.values().flat_map(|g| g.keys().cloned()).collect())
        .unwrap_or_default();
    all.sort();
    all.dedup();
    all.sort_by_key(|s| (s != inp.baseline, s != &one, s != &two, s.clone()));
    all
}

/// What a step-wise search for the largest player count at p99 ≤ 100 ms found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    /// Largest count met before the first miss.
    pub met: Option<usize>,
    /// The first count that missed (`None`: every count run was met).
    pub missed: Option<usize>,
}

/// Latency p99 at or under this, with no failed or dropped player, meets a ceiling step.
pub const CEILING_P99_MS: f64 = 100.0;

/// Walks (players, p99, failed+dropped) points in ascending order up to the first miss.
pub fn ceiling(mut steps: Vec<(usize, Option<f64>, usize)>) -> Ceiling {
    steps.sort_by_key(|s| s.0);
    let mut c = Ceiling { met: None, missed: None };
    for (players, p99, bad) in steps {
        match p99 {
            Some(p) if p <= CEILING_P99_MS && bad == 0 => c.met = Some(players),
            _ => {
                c.missed = Some(players);
                break;
            }
        }
    }
    c
}

fn ceiling_steps(inp: &Inputs<'_>, label: &str) -> Vec<(usize, Option<f64>, usize)> {
    inp.runs
        .points("cores")
        .into_iter()
        .filter(|(tag, _)| tag.starts_with("cores-ceiling"))
        .filter_map(|(_, groups)| {
            let g = groups.get(label)?;
            Some((g.first()?.params.players, g.med(lat_p99), g.sum(bad_players)))
        })
        .collect()
}

fn ceiling_text(c: Ceiling, steps: &[(usize, Option<f64>, usize)]) -> String {
    let top = steps.iter().map(|s| s.0).max();
    match (c.met, c.missed) {
        (_, None) if steps.is_empty() => "not measured".into(),
        (Some(m), None) => format!("≥ {m} players (every step up to {} met; the search ends there)", top.unwrap_or(m)),
        (Some(m), Some(x)) => format!("{m} players (first miss at {x})"),
        (None, Some(x)) => format!("below {x} players (the first step missed)"),
        (None, None) => "not measured".into(),
    }
}

fn cores_section(inp: &Inputs<'_>) -> String {
    let mut out = String::new();
    let points = inp.runs.points("cores");
    let _ = writeln!(out, "\n### 7. Cores: the edge with one and two worker threads\n");
    if points.is_empty() {
        let _ = writeln!(out, "Not run.");
        return out;
    }
    let servers = cores_servers(inp);
    let (one, two) = thread_labels(inp.candidate);
    let _ = writeln!(
        out,
        "Servers (cells list them in this order): {}. The load tool runs on the same cores, so a second edge thread competes with it: the ceilings below are this machine's, not the edge's alone.\n",
        servers.join(" · ")
    );
    let _ = writeln!(
        out,
        "| point | server CPU-s per GB | 2 threads / 1 thread | latency p50/p99 ms (window) | server CPU % of a core | failed+dropped players | failed+dropped publishers | other load (cores) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let measured: Vec<_> = points.iter().filter(|(tag, _)| !tag.starts_with("cores-ceiling")).collect();
    for (tag, groups) in &measured {
        let what = if tag.starts_with("cores-ingest") {
            format!("ingest, {} publishers", publishers_of(groups))
        } else {
            format!("fan-out, {} players", players_of(groups))
        };
        let r = ratio(groups.get(&two).and_then(|g| g.med(cpu_gb)), groups.get(&one).and_then(|g| g.med(cpu_gb)));
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} | {} | {} | {} |",
            cell(groups, &servers, cpu_gb, 2, false),
            fx(r),
            pair_cell(groups, &servers, lat_p50, lat_p99, 1),
            cell(groups, &servers, cpu_pct, 0, false),
            count_cell(groups, &servers, bad_players),
            count_cell(groups, &servers, bad_publishers),
            cell(groups, &servers, other_load, 2, false),
        );
    }
    let steps1 = ceiling_steps(inp, &one);
    let steps2 = ceiling_steps(inp, &two);
    if !steps1.is_empty() || !steps2.is_empty() {
        let _ = writeln!(
            out,
            "\nCeiling search (fan-out, one run per step, stopping at a thread count's first step with latency p99 > {CEILING_P99_MS} ms or a failed or dropped player): latency p99 ms (failed+dropped players) per step.\n"
        );
        let _ = writeln!(out, "| players | {one} | {two} |");
        let _ = writeln!(out, "|---:|---|---|");
        let mut counts: Vec<usize> = steps1.iter().chain(&steps2).map(|s| s.0).collect();
        counts.sort_unstable();
        counts.dedup();
        let at = |steps: &[(usize, Option<f64>, usize)], n: usize| {
            steps
                .iter()
                .find(|s| s.0 == n)
                .map(|(_, p99, bad)| format!("{} ({bad})", f(*p99, 1)))
                .unwrap_or_else(|| "not run".into())
        };
        for n in counts {
            let _ = writeln!(out, "| {n} | {} | {} |", at(&steps1, n), at(&steps2, n));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "- Ceiling with 1 thread: {}.", ceiling_text(ceiling(steps1.clone()), &steps1));
        let _ = writeln!(out, "- Ceiling with 2 threads: {}.", ceiling_text(ceiling(steps2.clone()), &steps2));
    }
    let ceil_points: Vec<_> = points.iter().filter(|(tag, _)| tag.starts_with("cores-ceiling")).copied().collect();
    reasons(&mut out, &measured.into_iter().copied().chain(ceil_points).collect::<Vec<_>>());
    out
}

/// The largest point of a section whose tag starts with `prefix`.
fn largest<'a>(
    points: &[(&'a String, &'a BTreeMap<String, Group>)],
    prefix: &str,
) -> Option<&'a BTreeMap<String, Group>> {
    points
        .iter()
        .filter(|(tag, _)| tag.starts_with(prefix))
        .max_by_key(|(_, g)| publishers_of(g).max(players_of(g)))
        .map(|(_, g)| *g)
}

fn targets_23(inp: &Inputs<'_>) -> String {
    let mut out = String::new();
    let (b, c) = (inp.baseline, inp.candidate);
    let _ = writeln!(out, "| target | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    let density = inp.runs.points("density");
    if let Some(groups) = largest(&density, "density") {
        let n = publishers_of(groups);
        let cand = groups.get(c);
        let refused = cand.map(|g| g.sum(refused_publishers));
        let dropped = cand.map(|g| g.sum(dropped_publishers));
        let players = cand.map(|g| g.sum(bad_players));
        let _ = writeln!(
            out,
            "| {n} publishers of 1 Mbit/s: none refused or dropped | {} refused, {} dropped publishers; {} failed or dropped players | {} |",
            refused.map_or("–".into(), |v| v.to_string()),
            dropped.map_or("–".into(), |v| v.to_string()),
            players.map_or("–".into(), |v| v.to_string()),
            match (refused, dropped, players) {
                (Some(0), Some(0), Some(0)) if n >= 1000 => "met".to_string(),
                (Some(0), Some(0), Some(0)) => format!("met at {n} publishers (1,000 not run)"),
                (Some(_), Some(_), Some(_)) => "**missed**".to_string(),
                _ => "not measured".to_string(),
            }
        );
        let a99 = cand.and_then(|g| g.med(adm_p99));
        let rate = cand.and_then(|g| g.first()).map(|r| r.params.ramp_per_s).unwrap_or(0.0);
        let _ = writeln!(
            out,
            "| admission p99 ≤ 5 ms at a 100/s connect rate | {} ms at {rate:.0}/s ({b}: {} ms) | {} |",
            f(a99, 2),
            f(groups.get(b).and_then(|g| g.med(adm_p99)), 2),
            verdict(a99, 5.0, " ms")
        );
        let cpu = ratio(cand.and_then(|g| g.med(cpu_gb)), groups.get(b).and_then(|g| g.med(cpu_gb)));
        let _ = writeln!(out, "| CPU-s per GB ≤ 0.8× {b} | {} | {} |", fx(cpu), verdict(cpu, 0.8, "×"));
        let base_rss = groups.get(b).and_then(|g| g.med(rss_ppub));
        let cand_rss = cand.and_then(|g| g.med(rss_ppub));
        let gop = groups.values().filter_map(|g| g.first()).find_map(|r| r.params.gop_kib());
        // The GOP cache's share, measured: the same edge with no GOP kept. A server without a
        // GOP cache (nginx-rtmp's `live`) holds no media to take off, so that is the like-for-like
        // figure, and the one with the caches is stated next to it.
        let bare_rss = groups.get(&no_gop_label(c)).and_then(|g| g.med(rss_ppub));
        let (with, bare) = (ratio(cand_rss, base_rss), ratio(bare_rss, base_rss));
        let _ = writeln!(
            out,
            "| RSS per publisher ≤ {b}'s (GOP cache stated separately) | {c} {} KiB without a GOP cache ({}), {} KiB with one GOP per stream cached ({}); {b} {} KiB; one GOP of the media is {} KiB | {} |",
            f(bare_rss, 1),
            fx(bare),
            f(cand_rss, 1),
            fx(with),
            f(base_rss, 1),
            f(gop, 0),
            match bare {
                Some(_) =>
                    format!("{} without the GOP cache; {} with it", verdict(bare, 1.0, "×"), verdict(with, 1.0, "×")),
                None => format!("{} (GOP cache included; the run without one is missing)", verdict(with, 1.0, "×")),
            }
        );
    }
    let cores = inp.runs.points("cores");
    let (one, two) = thread_labels(c);
    for (prefix, what) in [("cores-fanout", "fan-out"), ("cores-ingest", "ingest")] {
        let Some(groups) = largest(&cores, prefix) else { continue };
        let size = if prefix == "cores-ingest" {
            format!("{} publishers", publishers_of(groups))
        } else {
            format!("{} players", players_of(groups))
        };
        let r = ratio(groups.get(&two).and_then(|g| g.med(cpu_gb)), groups.get(&one).and_then(|g| g.med(cpu_gb)));
        let _ = writeln!(
            out,
            "| two threads: CPU-s per GB within 5 % of one thread ({what}, {size}) | 2 threads / 1 thread {} | {} |",
            fx(r),
            verdict(r, 1.05, "×")
        );
    }
    let steps1 = ceiling_steps(inp, &one);
    let steps2 = ceiling_steps(inp, &two);
    if !steps1.is_empty() || !steps2.is_empty() {
        let (c1, c2) = (ceiling(steps1.clone()), ceiling(steps2.clone()));
        let _ = writeln!(
            out,
            "| two threads serve more players at p99 ≤ 100 ms than one | 1 thread: {}; 2 threads: {} | {} |",
            ceiling_text(c1, &steps1),
            ceiling_text(c2, &steps2),
            ceiling_verdict(c1, c2)
        );
    }
    out
}

/// Whether the two-thread ceiling is above the one-thread one, as far as the search can tell.
pub fn ceiling_verdict(one: Ceiling, two: Ceiling) -> String {
    match (one, two) {
        // One thread never missed: the search did not find its limit, so nothing is shown.
        (Ceiling { missed: None, .. }, _) => "not decided (one thread met every step run)".into(),
        (Ceiling { met: m1, .. }, Ceiling { met: m2, missed: x2 }) if m2 > m1 => match x2 {
            None => format!("met (two threads met every step run, one thread stopped at {})", m1.unwrap_or(0)),
            Some(_) => "met".into(),
        },
        _ => "**missed**".into(),
    }
}

fn ratio_only(groups: &BTreeMap<String, Group>, servers: &[String], m: Metric) -> String {
    let base = groups.get(&servers[0]).and_then(|g| g.med(m));
    servers
        .iter()
        .skip(1)
        .map(|s| fx(ratio(groups.get(s).and_then(|g| g.med(m)), base)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The p50 ratios to a PING the registry's lease benchmark prints in its summary, one per
/// operation (`per operation / PING (p50): acquire 1.48x, renew 1.19x, release 1.11x`).
fn lease_ratios(text: &str) -> Option<Vec<(String, f64)>> {
    let rest = &text[text.find("per operation / PING (p50):")? + 27..];
    let line = rest.lines().next()?;
    let ops: Vec<(String, f64)> = line
        .split(',')
        .filter_map(|part| {
            let (name, x) = part.trim().split_once(' ')?;
            Some((name.to_string(), x.trim().trim_end_matches('x').parse().ok()?))
        })
        .collect();
    (!ops.is_empty()).then_some(ops)
}

/// One target row: the measured figure and whether it is met (or by how much it is missed).
fn verdict(measured: Option<f64>, limit: f64, unit: &str) -> String {
    match measured {
        None => "not measured".into(),
        Some(v) if v <= limit => format!("met ({v:.2}{unit} ≤ {limit}{unit})"),
        Some(v) => format!("**missed** by {:.0}% ({v:.2}{unit} vs ≤ {limit}{unit})", (v / limit - 1.0) * 100.0),
    }
}

fn targets(inp: &Inputs<'_>) -> String {
    let mut out = String::new();
    let (b, c) = (inp.baseline, inp.candidate);
    let _ = writeln!(out, "| target | measured ({c} vs {b}) | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    let fan = inp.runs.points("fanout");
    let big: Vec<_> =
        fan.iter().filter(|(_, g)| g.values().filter_map(|g| g.first()).any(|r| r.params.players >= 200)).collect();
    let worst_ratio = |m: Metric, server: &str| -> (Option<f64>, String) {
        let mut worst: Option<f64> = None;
        let mut parts = Vec::new();
        for (_, groups) in &big {
            let players = groups.values().filter_map(|g| g.first()).map(|r| r.params.players).max().unwrap_or(0);
            let r = ratio(groups.get(server).and_then(|g| g.med(m)), groups.get(b).and_then(|g| g.med(m)));
            if let Some(r) = r {
                worst = Some(worst.map_or(r, |w: f64| w.max(r)));
                parts.push(format!("{players}: {r:.2}×"));
            }
        }
        (worst, parts.join(", "))
    };
    let (w, parts) = worst_ratio(cpu_gb, c);
    let _ = writeln!(out, "| CPU-s per GB ≤ 0.6× {b} at 200+ players | {parts} | {} |", verdict(w, 0.6, "×"));
    let (w, parts) = worst_ratio(lat_p99, c);
    let _ = writeln!(out, "| steady latency p99 ≤ 0.8× {b} (200+) | {parts} | {} |", verdict(w, 0.8, "×"));
    if !servers(inp).iter().any(|s| s.contains("batch")) {
        let _ = writeln!(
            out,
            "| write window: CPU-s/GB ≤ 0.3× {b} with latency p99 ≤ 150 ms | – | not measured (this edge build has no `--write-batch`) |"
        );
    }
    for batch in servers(inp).iter().filter(|s| s.contains("batch")) {
        let (w, parts) = worst_ratio(cpu_gb, batch);
        let _ = writeln!(out, "| write window ({batch}): CPU-s/GB ≤ 0.3× {b} | {parts} | {} |", verdict(w, 0.3, "×"));
        let worst_p99 = big
            .iter()
            .filter_map(|(_, g)| g.get(batch.as_str()).and_then(|g| g.med(lat_p99)))
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
        let _ = writeln!(
            out,
            "| write window ({batch}): latency p99 ≤ 150 ms | {} ms | {} |",
            f(worst_p99, 1),
            verdict(worst_p99, 150.0, " ms")
        );
    }
    let join = inp.runs.points("join");
    let cand_join = join.iter().find_map(|(_, g)| g.get(c));
    let ps = cand_join.and_then(|g| g.med(start_p50));
    let _ = writeln!(
        out,
        "| play start p50 ≤ 5 ms (join) | {} ms ({b}: {} ms) | {} |",
        f(ps, 2),
        f(join.iter().find_map(|(_, g)| g.get(b)).and_then(|g| g.med(start_p50)), 1),
        verdict(ps, 5.0, " ms")
    );
    let p50 = cand_join.and_then(|g| g.med(ff_p50));
    let p99 = cand_join.and_then(|g| g.med(ff_p99));
    let _ =
        writeln!(out, "| first frame p50 ≤ 50 ms on the owner | {} ms | {} |", f(p50, 1), verdict(p50, 50.0, " ms"));
    let _ =
        writeln!(out, "| first frame p99 ≤ 100 ms on the owner | {} ms | {} |", f(p99, 1), verdict(p99, 100.0, " ms"));
    let cross = inp.runs.points("cross-edge").into_iter().find_map(|(_, g)| g.get(c)).and_then(|g| g.med(ff_p99));
    let _ = writeln!(
        out,
        "| first frame ≤ 300 ms cross-pod (p99) | {} ms | {} |",
        f(cross, 1),
        match cross {
            Some(_) => verdict(cross, 300.0, " ms"),
            None if inp.runs.points("cross-edge").is_empty() => "not measured (cross-edge skipped)".into(),
            None => "**not working**: no player on the second edge received a frame (section 5)".into(),
        }
    );
    let (rss_worst, rss_parts) = {
        let mut worst: Option<f64> = None;
        let mut parts = Vec::new();
        for (_, groups) in &big {
            let players = groups.values().filter_map(|g| g.first()).map(|r| r.params.players).max().unwrap_or(0);
            if let Some(v) = groups.get(c).and_then(|g| g.med(rss_pp)) {
                worst = Some(worst.map_or(v, |w: f64| w.max(v)));
                parts.push(format!("{players}: {v:.1} KiB ({b} {})", f(groups.get(b).and_then(|g| g.med(rss_pp)), 1)));
            }
        }
        (worst, parts.join(", "))
    };
    let _ = writeln!(
        out,
        "| RSS per player ≤ 12 KB (200+) | {rss_parts} | {} |",
        verdict(rss_worst.map(|k| k * 1.024), 12.0, " KB")
    );
    let max_players = fan.iter().flat_map(|(_, g)| g.get(c)).filter_map(|g| g.first()).map(|r| r.params.players).max();
    let bad: usize = fan.iter().filter_map(|(_, g)| g.get(c)).map(|g| g.sum(bad_players)).sum();
    let _ = writeln!(
        out,
        "| no failed or reset players up to 2000 | {bad} failed/dropped over all fan-out runs up to {} players | {} |",
        max_players.map(|p| p.to_string()).unwrap_or("–".into()),
        match (max_players, bad) {
            (None, _) => "not measured".to_string(),
            (Some(_), 0) if max_players >= Some(2000) => "met".to_string(),
            (Some(p), 0) => format!("met up to {p} players (2000 not run)"),
            (Some(_), n) => format!("**missed** ({n} players failed or dropped)"),
        }
    );
    let adm = inp.runs.points("admission");
    let a99 = adm.iter().find_map(|(_, g)| g.get(c)).and_then(|g| g.med(|r| r.admission_ms.map(|s| s.p99)));
    let b99 = adm.iter().find_map(|(_, g)| g.get(b)).and_then(|g| g.med(|r| r.admission_ms.map(|s| s.p99)));
    let _ = writeln!(
        out,
        "| admission p99 ≤ 5 ms | {} ms ({b}: {} ms) | {} |",
        f(a99, 2),
        f(b99, 2),
        verdict(a99, 5.0, " ms")
    );
    // The registry's bench times each lease operation against a PING on the same connection;
    // the target holds for every operation, so the slowest one decides.
    let lease = inp.extras.iter().find_map(|e| lease_ratios(e));
    let worst = lease.as_ref().and_then(|ops| ops.iter().map(|(_, x)| *x).reduce(f64::max));
    let _ = writeln!(
        out,
        "| lease operation ≤ 1.5× a bare Redis round trip (p50) | {} | {} |",
        lease
            .as_ref()
            .map(|ops| {
                let each: Vec<String> = ops.iter().map(|(n, x)| format!("{n} {x:.2}×")).collect();
                format!("{} PING (lease micro-benchmark)", each.join(", "))
            })
            .unwrap_or_else(|| "see the lease micro-benchmark".into()),
        match worst {
            Some(_) => verdict(worst, 1.5, "×"),
            None => "–".into(),
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_lease_operations_ratio_from_the_bench_summary() {
        let text = "  ratio acquire+release / PING: p50 2.63x, mean 2.65x\n  \
                    per operation / PING (p50): acquire 1.48x, renew 1.19x, release 1.11x\n  redis-server time\n";
        let ops = lease_ratios(text).unwrap();
        assert_eq!(ops, vec![("acquire".into(), 1.48), ("renew".into(), 1.19), ("release".into(), 1.11)]);
        assert_eq!(lease_ratios("  ratio acquire+release / PING: p50 2.63x\n"), None);
    }

    use crate::stats::Summary;
    use crate::stats::run_report::{ClientCounts, Params, ServerStats, StreamCounts};

    fn summary(p50: f64, p99: f64) -> Option<Summary> {
        Some(Summary { n: 100, p50, p95: p99, p99, max: p99, mean: p50 })
    }

    fn density_run(server: &str, cpu: f64, adm_p99: f64, rss_pub: f64, refused: usize, intact: usize) -> RunReport {
        RunReport {
            scenario: "ingest".into(),
            server: server.into(),
            tag: "density-1000".into(),
            params: Params {
                players: 1000,
                publishers: 1000,
                ramp_per_s: 100.0,
                media_kbps: 1128.0,
                gop_ms: 2000,
                ..Default::default()
            },
            publishers: Some(ClientCounts {
                requested: 1000,
                connected: 1000 - refused,
                failed: refused,
                ..Default::default()
            }),
            players: Some(ClientCounts { requested: 1000, connected: 1000, ..Default::default() }),
            publish_start_ms: summary(1.0, adm_p99),
            streams: Some(StreamCounts { live: 1000 - refused, intact }),
            server_stats: Some(ServerStats {
                cpu_s_per_gb: Some(cpu),
                rss_per_publisher_kib: Some(rss_pub),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cores_run(server: &str, tag: &str, players: usize, cpu: f64, p99: f64, failed: usize) -> RunReport {
        RunReport {
            scenario: "fanout".into(),
            server: server.into(),
            tag: tag.into(),
            params: Params { players, publishers: 1, ..Default::default() },
            players: Some(ClientCounts {
                requested: players,
                connected: players - failed,
                failed,
                ..Default::default()
            }),
            latency_window_ms: summary(10.0, p99),
            server_stats: Some(ServerStats { cpu_s_per_gb: Some(cpu), ..Default::default() }),
            ..Default::default()
        }
    }

    fn render_runs(runs: Vec<RunReport>) -> String {
        let runs = Runs::new(runs);
        let machine = Machine::default();
        render(&Inputs {
            runs: &runs,
            baseline: "nginx-rtmp",
            candidate: "streamfleet-edge",
            machine: &machine,
            invocation: "",
            extras: &[],
            charts: &[],
            generated_at: "now",
        })
    }

    #[test]
    fn density_table_and_targets_come_from_medians_and_sums_of_the_runs() {
        let doc = render_runs(vec![
            density_run("nginx-rtmp", 2.0, 3.0, 400.0, 0, 1000),
            density_run("nginx-rtmp", 2.2, 9.0, 420.0, 0, 1000),
            density_run("nginx-rtmp", 1.8, 4.0, 380.0, 0, 1000),
            density_run("streamfleet-edge", 1.0, 2.0, 300.0, 0, 1000),
            density_run("streamfleet-edge", 1.4, 6.0, 310.0, 2, 997),
            density_run("streamfleet-edge", 1.2, 3.0, 290.0, 0, 1000),
            density_run("streamfleet-edge no GOP cache", 1.1, 3.0, 210.0, 0, 1000),
            density_run("streamfleet-edge no GOP cache", 1.3, 3.0, 190.0, 0, 1000),
        ]);
        // Medians: CPU 2.00 vs 1.20 (0.60×), admission p99 4 vs 3 ms, RSS 400 vs 300 KiB (0.75×)
        // and 200 KiB without the GOP cache (the median of two is their mean; 0.50×);
        // one GOP of 1128 kbit/s over 2 s is 282,000 B = 275 KiB; refusals are summed.
        let row = doc.lines().find(|l| l.starts_with("| 1000 |")).unwrap();
        assert_eq!(
            row,
            "| 1000 | 2.00 · 1.20 · 1.20 · **0.60×** · **0.60×** | 1.00/4.00 · 1.00/3.00 · 1.00/3.00 | 400.0 · 300.0 · 200.0 · **0.75×** · **0.50×** | 275 | 0 · 2 · 0 | 0 · 0 · 0 | 0 · 0 · 0 | 3000/3000 · 2997/2998 · 2000/2000 | –/– · –/– · –/– | 0 · 0 · 0 · – · – | – · – · – |"
        );
        assert!(doc.contains("| 1000 publishers of 1 Mbit/s: none refused or dropped | 2 refused, 0 dropped publishers; 0 failed or dropped players | **missed** |"), "{doc}");
        assert!(doc.contains("| admission p99 ≤ 5 ms at a 100/s connect rate | 3.00 ms at 100/s (nginx-rtmp: 4.00 ms) | met (3.00 ms ≤ 5 ms) |"));
        assert!(doc.contains("| CPU-s per GB ≤ 0.8× nginx-rtmp | **0.60×** | met (0.60× ≤ 0.8×) |"));
        assert!(doc.contains("| RSS per publisher ≤ nginx-rtmp's (GOP cache stated separately) | streamfleet-edge 200.0 KiB without a GOP cache (**0.50×**), 300.0 KiB with one GOP per stream cached (**0.75×**); nginx-rtmp 400.0 KiB; one GOP of the media is 275 KiB | met (0.50× ≤ 1×) without the GOP cache; met (0.75× ≤ 1×) with it |"), "{doc}");
        assert!(doc.contains("### 7. Cores: the edge with one and two worker threads\n\nNot run."));
    }

    #[test]
    fn ingest_section_states_the_publishers_media() {
        let run = |server: &str, cpu: f64| RunReport {
            scenario: "ingest".into(),
            server: server.into(),
            tag: "ingest-200".into(),
            params: Params {
                players: 200,
                publishers: 200,
                media: "1280x720-30fps-3000k-gop2s-20s.flv".into(),
                media_kbps: 3128.0,
                gop_ms: 2000,
                fps: 30.0,
                ..Default::default()
            },
            server_stats: Some(ServerStats { cpu_s_per_gb: Some(cpu), ..Default::default() }),
            ..Default::default()
        };
        let doc = render_runs(vec![
            run("nginx-rtmp", 4.0),
            run("streamfleet-edge", 3.0),
            run("streamfleet-edge no GOP cache", 2.8),
        ]);
        let section = doc.split("### 3. Ingest").nth(1).unwrap();
        assert!(
            section.contains(
                "Media per publisher: 1280x720-30fps-3000k-gop2s-20s.flv (3128 kbit/s with audio, GOP 2000 ms, 30 fps)."
            ),
            "{section}"
        );
        // The edge without its GOP cache (nginx-rtmp keeps none) gets a ratio of its own.
        assert!(section.contains("| 200 | 4.00 · 3.00 · 2.80 · **0.75×** · **0.70×** |"), "{section}");
    }

    #[test]
    fn cores_table_compares_two_threads_with_one_and_finds_each_ceiling() {
        let (one, two) = ("streamfleet-edge 1 thread", "streamfleet-edge 2 threads");
        let doc = render_runs(vec![
            cores_run("nginx-rtmp", "cores-fanout-2000", 2000, 3.0, 80.0, 0),
            cores_run(one, "cores-fanout-2000", 2000, 1.0, 60.0, 0),
            cores_run(two, "cores-fanout-2000", 2000, 1.1, 40.0, 0),
            cores_run(one, "cores-ceiling-2000", 2000, 1.0, 60.0, 0),
            cores_run(two, "cores-ceiling-2000", 2000, 1.1, 40.0, 0),
            cores_run(one, "cores-ceiling-3000", 3000, 1.0, 150.0, 0),
            cores_run(two, "cores-ceiling-3000", 3000, 1.1, 70.0, 0),
            cores_run(two, "cores-ceiling-4000", 4000, 1.1, 90.0, 3),
            // A fan-out run elsewhere keeps the cores edges out of the other tables' columns.
            cores_run("streamfleet-edge", "fanout-200", 200, 1.0, 10.0, 0),
        ]);
        let row = doc.lines().find(|l| l.starts_with("| fan-out, 2000 players |")).unwrap();
        assert_eq!(
            row,
            "| fan-out, 2000 players | 3.00 · 1.00 · 1.10 | **1.10×** | 10.0/80.0 · 10.0/60.0 · 10.0/40.0 | 0 · 0 · 0 | 0 · 0 · 0 | 0 · 0 · 0 | – · – · – |"
        );
        assert!(doc.contains("| 3000 | 150.0 (0) | 70.0 (0) |"));
        assert!(doc.contains("| 4000 | not run | 90.0 (3) |"));
        assert!(doc.contains("- Ceiling with 1 thread: 2000 players (first miss at 3000)."));
        assert!(doc.contains("- Ceiling with 2 threads: 3000 players (first miss at 4000)."));
        assert!(doc.contains("| two threads: CPU-s per GB within 5 % of one thread (fan-out, 2000 players) | 2 threads / 1 thread **1.10×** | **missed** by 5% (1.10× vs ≤ 1.05×) |"), "{doc}");
        assert!(doc.contains(
            "1 thread: 2000 players (first miss at 3000); 2 threads: 3000 players (first miss at 4000) | met |"
        ));
        assert!(doc.contains("| 200 | 1.00 |"), "fan-out table has only its own server: {doc}");
        assert!(doc.contains("### 6. Density: many 1 Mbit/s publishers on one edge (one player each)\n\nNot run."));
    }

    #[test]
    fn ceiling_is_the_last_step_met_before_the_first_miss() {
        let c =
            ceiling(vec![(4000, Some(180.0), 0), (2000, Some(40.0), 0), (3000, Some(90.0), 0), (6000, Some(50.0), 0)]);
        assert_eq!(c, Ceiling { met: Some(3000), missed: Some(4000) });
        // A failed player misses the step whatever the latency; a step without latency misses too.
        assert_eq!(ceiling(vec![(2000, Some(40.0), 1)]), Ceiling { met: None, missed: Some(2000) });
        assert_eq!(
            ceiling(vec![(2000, Some(40.0), 0), (3000, None, 0)]),
            Ceiling { met: Some(2000), missed: Some(3000) }
        );
        assert_eq!(ceiling(vec![(2000, Some(100.0), 0)]), Ceiling { met: Some(2000), missed: None });
    }

    #[test]
    fn ceiling_verdict_needs_the_one_thread_limit() {
        let c = |met, missed| Ceiling { met, missed };
        assert_eq!(ceiling_verdict(c(Some(3000), Some(4000)), c(Some(4000), Some(6000))), "met");
        assert_eq!(ceiling_verdict(c(Some(3000), Some(4000)), c(Some(3000), Some(4000))), "**missed**");
        assert!(ceiling_verdict(c(Some(8000), None), c(Some(8000), None)).starts_with("not decided"));
        assert!(ceiling_verdict(c(None, Some(2000)), c(Some(8000), None)).starts_with("met (two threads"));
    }

    #[test]
    fn verdicts_say_by_how_much_a_target_is_missed() {
        assert_eq!(verdict(Some(0.5), 0.6, "×"), "met (0.50× ≤ 0.6×)");
        assert_eq!(verdict(Some(1.2), 0.6, "×"), "**missed** by 100% (1.20× vs ≤ 0.6×)");
        assert_eq!(verdict(None, 0.6, "×"), "not measured");
    }
}

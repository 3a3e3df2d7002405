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

/// Servers in a stable order: baseline, candidate, then any others.
fn servers(inp: &Inputs<'_>) -> Vec<String> {
    let mut all: Vec<String> =
        inp.runs.by_scenario.values().flat_map(|p| p.values()).flat_map(|g| g.keys().cloned()).collect();
    all.sort();
    all.dedup();
    all.sort_by_key(|s| (s != inp.baseline, s != inp.candidate, s.clone()));
    all
}

type Metric = fn(&RunReport) -> Option<f64>;

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
        let media = points[0].1.values().filter_map(|g| g.first()).next().map(|r| {
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

    for (title, path) in inp.charts {
        let _ = writeln!(out, "\n![{title}]({path})");
    }
    for e in inp.extras {
        let _ = writeln!(out, "\n{}", e.trim_end());
    }
    let _ = writeln!(out, "\n### Targets of issue 7, checked against this run\n");
    out.push_str(&targets(inp));
    out
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

    #[test]
    fn verdicts_say_by_how_much_a_target_is_missed() {
        assert_eq!(verdict(Some(0.5), 0.6, "×"), "met (0.50× ≤ 0.6×)");
        assert_eq!(verdict(Some(1.2), 0.6, "×"), "**missed** by 100% (1.20× vs ≤ 0.6×)");
        assert_eq!(verdict(None, 0.6, "×"), "not measured");
    }
}

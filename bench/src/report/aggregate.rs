//! Groups runs by point (tag) and server and takes medians over repeated runs, so one noisy run
//! on a shared machine does not decide a figure.

use std::collections::BTreeMap;

use crate::stats::{RunReport, median};

/// All runs of one point (e.g. `fanout-200`) against one server.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub runs: Vec<RunReport>,
}

impl Group {
    /// Median over runs of a figure (runs without it are skipped).
    pub fn med(&self, f: impl Fn(&RunReport) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        median(&v)
    }

    /// Sum over runs of a count (failures are summed, not medianed: one is too many).
    pub fn sum(&self, f: impl Fn(&RunReport) -> usize) -> usize {
        self.runs.iter().map(f).sum()
    }

    pub fn first(&self) -> Option<&RunReport> {
        self.runs.first()
    }
}

/// Runs indexed by scenario, then point tag, then server label.
#[derive(Debug, Default)]
pub struct Runs {
    pub by_scenario: BTreeMap<String, BTreeMap<String, BTreeMap<String, Group>>>,
    pub total: usize,
}

impl Runs {
    pub fn new(runs: Vec<RunReport>) -> Runs {
        let mut out = Runs { total: runs.len(), ..Default::default() };
        for r in runs {
            let tag = if r.tag.is_empty() { point_tag(&r) } else { r.tag.clone() };
            let scenario = scenario_of(&tag, &r.scenario);
            out.by_scenario
                .entry(scenario)
                .or_default()
                .entry(tag)
                .or_default()
                .entry(r.server.clone())
                .or_default()
                .runs
                .push(r);
        }
        out
    }

    /// The points of a scenario, ordered by their size (players or publishers), each with its
    /// groups by server.
    pub fn points(&self, scenario: &str) -> Vec<(&String, &BTreeMap<String, Group>)> {
        let Some(points) = self.by_scenario.get(scenario) else { return Vec::new() };
        let mut v: Vec<_> = points.iter().collect();
        v.sort_by_key(|(_, groups)| {
            groups.values().filter_map(|g| g.first()).map(|r| r.params.players.max(r.params.publishers)).max()
        });
        v
    }

    /// Largest number of runs behind any one figure (for the "median of N" note).
    pub fn max_repeats(&self) -> usize {
        self.by_scenario
            .values()
            .flat_map(|p| p.values())
            .flat_map(|g| g.values())
            .map(|g| g.runs.len())
            .max()
            .unwrap_or(0)
    }
}

/// The report section a run belongs to. Some sections reuse another scenario's engine and are
/// told apart by the tag scripts/bench gives them: cross-edge runs are join runs whose players
/// sit on a second edge, density runs are ingest runs at one large point, and the cores runs are
/// fan-out and ingest runs against edges with one and two worker threads.
pub fn scenario_of(tag: &str, scenario: &str) -> String {
    for section in ["cross-edge", "density", "cores"] {
        if tag.starts_with(section) {
            return section.to_string();
        }
    }
    scenario.to_string()
}

fn point_tag(r: &RunReport) -> String {
    match r.scenario.as_str() {
        "ingest" | "admission" => format!("{}-{}", r.scenario, r.params.publishers),
        _ => format!("{}-{}", r.scenario, r.params.players),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::run_report::{Params, ServerStats};

    fn run(server: &str, players: usize, cpu_per_gb: f64) -> RunReport {
        RunReport {
            scenario: "fanout".into(),
            server: server.into(),
            params: Params { players, publishers: 1, ..Default::default() },
            server_stats: Some(ServerStats { cpu_s_per_gb: Some(cpu_per_gb), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn groups_by_point_and_server_and_takes_medians() {
        let runs = Runs::new(vec![
            run("a", 200, 1.0),
            run("a", 200, 9.0),
            run("a", 200, 2.0),
            run("b", 200, 0.5),
            run("a", 50, 1.5),
        ]);
        let points = runs.points("fanout");
        assert_eq!(points.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["fanout-50", "fanout-200"]);
        let g = &points[1].1["a"];
        assert_eq!(g.med(|r| r.server_stats.as_ref()?.cpu_s_per_gb), Some(2.0));
        assert_eq!(runs.max_repeats(), 3);
        assert!(runs.points("join").is_empty());
    }

    #[test]
    fn sections_that_reuse_an_engine_are_told_apart_by_tag() {
        let tagged =
            |tag: &str, scenario: &str| RunReport { tag: tag.into(), scenario: scenario.into(), ..Default::default() };
        let runs = Runs::new(vec![
            tagged("ingest-200", "ingest"),
            tagged("density-1000", "ingest"),
            tagged("cores-fanout-2000", "fanout"),
            tagged("cores-ceiling-3000", "fanout"),
            tagged("cross-edge-100", "join"),
            tagged("fanout-200", "fanout"),
        ]);
        let sections: Vec<&str> = runs.by_scenario.keys().map(String::as_str).collect();
        assert_eq!(sections, ["cores", "cross-edge", "density", "fanout", "ingest"]);
        assert_eq!(runs.by_scenario["cores"].len(), 2);
    }
}

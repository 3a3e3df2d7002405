//! `report`: aggregates the runs' JSON lines into docs/benchmarks.md (machine, commands, tables
//! with ratios to the baseline, targets) and PNG charts. Only the part of the markdown between
//! the generated-section markers is replaced, so hand-written analysis around it survives reruns.

pub mod aggregate;
pub mod charts;
pub mod machine;
pub mod markdown;

use std::path::{Component, Path, PathBuf};

use crate::cli::ReportArgs;
use crate::error::BenchError;
use crate::stats::RunReport;

/// Start and end markers of the generated section.
pub const BEGIN: &str = "<!-- BEGIN GENERATED (streamfleet-bench report; edits here are overwritten) -->";
pub const END: &str = "<!-- END GENERATED -->";

/// Reads JSON lines; a bad line is an error naming the file and line (nothing is skipped silently).
pub fn read_runs(paths: &[PathBuf]) -> Result<Vec<RunReport>, BenchError> {
    let mut runs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::File { path: path.clone(), source })?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let r: RunReport = serde_json::from_str(line)
                .map_err(|e| BenchError::Report(format!("{}:{}: {e}", path.display(), i + 1)))?;
            runs.push(r);
        }
    }
    Ok(runs)
}

/// Puts `generated` between the markers of `existing`, or builds a new document around it.
pub fn splice(existing: Option<&str>, generated: &str) -> String {
    if let Some(doc) = existing
        && let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END))
        && b < e
    {
        return format!("{}{BEGIN}\n{generated}{}", &doc[..b], &doc[e..]);
    }
    format!(
        "# Benchmarks\n\nSide-by-side measurements of `streamfleet-edge` and nginx-rtmp made by `scripts/bench`.\n\n{BEGIN}\n{generated}{END}\n"
    )
}

fn relative_to(doc: &Path, file: &Path) -> String {
    // Charts usually live under the document's directory; fall back to the path as given.
    let base = doc.parent().unwrap_or(Path::new(""));
    let rel = file.strip_prefix(base).unwrap_or(file);
    rel.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes the document and charts.
pub fn run(args: &ReportArgs) -> Result<(), BenchError> {
    let runs = aggregate::Runs::new(read_runs(&args.input)?);
    if runs.total == 0 {
        return Err(BenchError::Report("no runs in the input".into()));
    }
    charts::use_font(&args.font)?;
    let mut servers: Vec<String> =
        runs.by_scenario.values().flat_map(|p| p.values()).flat_map(|g| g.keys().cloned()).collect();
    servers.sort();
    servers.dedup();
    servers.sort_by_key(|s| (s != &args.baseline, s != &args.candidate, s.clone()));
    let written = charts::write_all(&runs, &args.charts, &servers)?;
    let charts: Vec<(String, String)> = written.iter().map(|(t, p)| (t.clone(), relative_to(&args.out, p))).collect();
    let mut extras = Vec::new();
    for p in &args.extra {
        extras.push(std::fs::read_to_string(p).map_err(|source| BenchError::File { path: p.clone(), source })?);
    }
    let machine = machine::Machine::detect();
    let generated_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let generated = markdown::render(&markdown::Inputs {
        runs: &runs,
        baseline: &args.baseline,
        candidate: &args.candidate,
        machine: &machine,
        invocation: &args.invocation,
        extras: &extras,
        charts: &charts,
        generated_at: &generated_at,
    });
    let existing = std::fs::read_to_string(&args.out).ok();
    let doc = splice(existing.as_deref(), &generated);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::File { path: dir.to_path_buf(), source })?;
    }
    std::fs::write(&args.out, doc).map_err(|source| BenchError::File { path: args.out.clone(), source })?;
    println!("wrote {} and {} chart(s) from {} runs", args.out.display(), written.len(), runs.total);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_hand_written_text_around_the_markers() {
        let doc = format!("# T\nintro\n{BEGIN}\nold table\n{END}\n## Analysis\nkept\n");
        let out = splice(Some(&doc), "new table\n");
        assert_eq!(out, format!("# T\nintro\n{BEGIN}\nnew table\n{END}\n## Analysis\nkept\n"));
        let fresh = splice(None, "t\n");
        assert!(fresh.starts_with("# Benchmarks") && fresh.contains(BEGIN) && fresh.ends_with(&format!("{END}\n")));
        assert_eq!(splice(Some(&fresh), "u\n"), splice(None, "u\n"));
    }

    #[test]
    fn chart_links_are_relative_to_the_document() {
        assert_eq!(
            relative_to(Path::new("docs/benchmarks.md"), Path::new("docs/benchmarks/cpu.png")),
            "benchmarks/cpu.png"
        );
    }
}

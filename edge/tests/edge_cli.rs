//! The command line as a user meets it: docs/edge.md's flag tables agree with `--help`, and a
//! start-up error or a bad flag is printed once, in one form.

use std::{process::Stdio, time::Duration};

use clap::CommandFactory;
use streamfleet_edge::config::Config;
use streamfleet_testkit::doc_flags::{check_flag_tables, flag_tables};
use tokio::{process::Command, time::timeout};

const DOC: &str = include_str!("../../docs/edge.md");

#[test]
fn docs_flag_tables_match_the_command_line() {
    let problems = check_flag_tables(DOC, &Config::command(), "## Command line");
    assert!(problems.is_empty(), "docs/edge.md and --help differ:\n{}", problems.join("\n"));
    // The check read the tables it is meant to: the full one and the two of limits.
    let tables = flag_tables(DOC);
    let full = tables.iter().find(|t| t.heading == "## Command line").map_or(0, |t| t.rows.len());
    assert!(full >= 40, "{full} rows under ## Command line");
    assert!(tables.iter().any(|t| t.heading == "## Timeouts and limits" && t.rows.len() >= 15), "{tables:?}");
    assert!(tables.iter().any(|t| t.heading == "## Limits and abuse" && t.rows.len() >= 10), "{tables:?}");
}

/// Runs the edge binary with `args` until it exits (it must, within 10 s): (exit code, stdout,
/// stderr).
async fn edge_exits(args: &[&str]) -> (Option<i32>, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_streamfleet-edge"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn streamfleet-edge");
    match timeout(Duration::from_secs(10), child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => panic!("waiting for the edge: {e}"),
        Err(_) => panic!("the edge did not exit within 10 s on {args:?}"),
    }
}

const MISSING: &str = "/nonexistent/streamfleet-test-streams.yaml";
const LISTEN: [&str; 4] = ["--rtmp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"];

#[tokio::test]
async fn a_start_up_error_is_printed_once_as_a_plain_line() {
    let mut args = vec!["--streams", MISSING];
    args.extend(LISTEN);
    let (code, stdout, stderr) = edge_exits(&args).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let all = format!("{stdout}{stderr}");
    assert_eq!(all.matches("cannot read --streams").count(), 1, "printed more or less than once:\n{all}");
    let line = stderr.lines().find(|l| l.contains("cannot read --streams")).unwrap_or_default();
    assert!(line.starts_with("streamfleet-edge: cannot read --streams /nonexistent/"), "{all}");
}

#[tokio::test]
async fn with_json_logs_a_start_up_error_is_one_json_record() {
    let mut args = vec!["--streams", MISSING, "--log-format", "json"];
    args.extend(LISTEN);
    let (code, stdout, stderr) = edge_exits(&args).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let all = format!("{stdout}{stderr}");
    let lines: Vec<&str> = all.lines().filter(|l| l.contains("cannot read --streams")).collect();
    assert_eq!(lines.len(), 1, "{all}");
    let record: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not a JSON record ({e}): {}", lines[0]));
    assert_eq!(record["level"], "ERROR", "{record}");
}

#[tokio::test]
async fn a_bad_flag_is_reported_once_with_usage() {
    let (code, stdout, stderr) = edge_exits(&["--streams", MISSING, "--no-such-flag"]).await;
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert_eq!(stderr.matches("unexpected argument '--no-such-flag'").count(), 1, "{stderr}");
    assert!(stderr.contains("Usage: streamfleet-edge"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[tokio::test]
async fn short_and_long_help_start_with_the_same_summary() {
    let (_, short, _) = edge_exits(&["-h"]).await;
    let (_, long, _) = edge_exits(&["--help"]).await;
    let first = |s: &str| s.lines().next().unwrap_or_default().to_string();
    assert!(!first(&short).is_empty(), "{short}");
    assert_eq!(first(&short), first(&long), "-h:\n{short}\n--help:\n{long}");
    for text in ["15 %", "Halves", "halves"] {
        assert!(!long.contains(text), "--help quotes a benchmark ({text:?}):\n{long}");
    }
}

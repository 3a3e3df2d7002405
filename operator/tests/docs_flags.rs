//! docs/operator.md's flag table agrees with `--help`: every flag, env var and default.

use clap::CommandFactory;
use streamfleet_operator::config::Cli;
use streamfleet_testkit::doc_flags::{check_flag_tables, flag_tables};

const DOC: &str = include_str!("../../docs/operator.md");

#[test]
fn docs_flag_table_matches_the_command_line() {
    let problems = check_flag_tables(DOC, &Cli::command(), "## Command line");
    assert!(problems.is_empty(), "docs/operator.md and --help differ:\n{}", problems.join("\n"));
    let rows = flag_tables(DOC).iter().filter(|t| t.heading == "## Command line").map(|t| t.rows.len()).sum::<usize>();
    assert!(rows >= 14, "{rows} rows under ## Command line");
}

//! `report`: aggregates run JSON lines into docs/benchmarks.md and PNG charts.

use crate::cli::ReportArgs;
use crate::error::BenchError;

/// Writes the document and charts.
pub fn run(_args: &ReportArgs) -> Result<(), BenchError> {
    Err(BenchError::Report("not yet".into()))
}

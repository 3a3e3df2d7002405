//! Numbers: percentile maths ([`percentile`]) and the per-run report ([`run_report`]).

pub mod percentile;
pub mod run_report;

pub use percentile::{Summary, median, percentile};
pub use run_report::RunReport;

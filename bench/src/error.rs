//! Errors of the load tool, as values. Network and file problems carry enough context to be
//! printed as the reason a player or publisher failed.

use std::path::PathBuf;

/// Anything that stops a scenario from running at all (as opposed to one client failing, which
/// is counted in the report with its reason).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("media {path}: {source}")]
    Flv { path: PathBuf, source: crate::media::flv::FlvError },
    #[error("media: {0}")]
    Media(String),
    #[error("ffmpeg failed to generate {path}: {message}")]
    Ffmpeg { path: PathBuf, message: String },
    #[error("bad URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("publisher could not start: {0}")]
    Publisher(String),
    #[error("report: {0}")]
    Report(String),
    #[error("chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
    #[error("server process {pid}: {message}")]
    Proc { pid: u32, message: String },
}

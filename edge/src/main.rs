//! `streamfleet-edge`: parses the command line, sets up logging and runs the edge.

use clap::Parser;
use streamfleet_edge::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc, not glibc's malloc; `streamfleet_edge::allocator` says why and sets how long it
/// keeps freed memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let purge_delay_ms = streamfleet_edge::allocator::configure();
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The SRT crates log packets with `{:?}`, handshakes included, whose stream ID carries the
    // publish key, and client-supplied strings unescaped: only their errors are logged, whatever
    // RUST_LOG says (the edge logs what SRT callers do itself, keys hashed, text escaped).
    let filter = ["srt_tokio=error", "srt_protocol=error"]
        .into_iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    tracing::debug!(purge_delay_ms, "allocator: memory freed in bulk goes back to the OS after this delay");
    let runtime = match streamfleet_edge::server::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("streamfleet-edge: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let log_format = config.log_format;
    match runtime.block_on(streamfleet_edge::server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report_fatal(log_format, &e);
            std::process::ExitCode::FAILURE
        }
    }
}

/// The one line that says why the edge stopped. With JSON logs (a cluster) it is a log record,
/// so log pipelines keep it with the rest; with text logs (a terminal) it is a plain line on
/// stderr, the last thing the user sees, without a timestamp and level in front of it.
fn report_fatal(format: LogFormat, e: &dyn std::fmt::Display) {
    match format {
        LogFormat::Json => tracing::error!("{e}"),
        LogFormat::Text => eprintln!("streamfleet-edge: {e}"),
    }
}

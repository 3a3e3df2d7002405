//! `streamfleet-operator`: parses the command line, sets up logging and runs the chosen
//! subcommand (`run`, `crd` or `sync`).

use std::process::ExitCode;

use clap::Parser;
use streamfleet_operator::{
    config::{Cli, Command, LogFormat},
    crd, serve, sync,
};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Some(Command::Crd) => match crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: rendering the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Sync(args)) => sync::run(args, serve::shutdown_signal()).await,
        Some(Command::Run(args)) => run(args, cli.log_format).await,
        None => run(cli.run, cli.log_format).await,
    }
}

async fn run(args: streamfleet_operator::config::RunArgs, format: LogFormat) -> ExitCode {
    match serve::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: a record for log pipelines with JSON logs, a plain line in a terminal.
            match format {
                LogFormat::Json => tracing::error!(error = %e, "operator stopped"),
                LogFormat::Text => eprintln!("error: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

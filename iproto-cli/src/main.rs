//! The `iproto` command: parse the arguments, set up logging and the runtime, run the
//! subcommand, and turn any error into one line on stderr and a non-zero exit.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use iproto_cli::cli::{Cli, Command};
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("iproto: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(iproto_cli::run::run(cli.command));
    // Do not wait for tasks still parked on sockets (a closing channel, a stuck peer).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(iproto_cli::CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iproto: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: for client commands only errors by default (the failure itself is the
/// one-line message), for `serve` requests and life-cycle; -v adds each packet, -vv everything.
fn init_logging(cli: &Cli) {
    let base = match cli.command {
        Command::Serve(_) => LevelFilter::INFO,
        _ => LevelFilter::ERROR,
    };
    let level = match cli.verbose {
        0 => base,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level)
        .with_target(false)
        .init();
}

//! `kubectl kpaas-mesh`: the host binary. Parses the command line, loads the stage plugins,
//! runs the pipeline against the clusters and reports. Errors end as one line on stderr and
//! a non-zero exit code.

use clap::{CommandFactory, FromArgMatches};
use kubectl_kpaas_mesh::{cli, commands};
use std::process::ExitCode;

fn init_tracing(verbose: u8) {
    // kube's HTTP trace layer logs every failed request at ERROR; the command's own error line
    // says the same once, so it shows only with -v.
    let default = match verbose {
        0 => "warn,kube_client::client::builder=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let mut cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.verbose);
    kubectl_kpaas_mesh::progress::init(cli.progress);
    if let Err(message) = kubectl_kpaas_mesh::config::load_into(&mut cli, &matches) {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(async {
        kubectl_kpaas_mesh::interrupt::install();
        commands::run(cli).await
    }) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            match kubectl_kpaas_mesh::interrupt::received() {
                Some(sig) => ExitCode::from(kubectl_kpaas_mesh::interrupt::exit_code(sig)),
                None => ExitCode::FAILURE,
            }
        }
    };
    // A plugin call given up on (its deadline passed) still holds a blocking thread: do not
    // wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

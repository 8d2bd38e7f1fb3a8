//! `sample-api`: the lab's sample HTTP API (see the library's docs).
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use sample_api::access_log::AccessLog;
use sample_api::cli::Cli;
use sample_api::server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log = match &cli.log {
        Some(path) => AccessLog::append_to(path)
            .with_context(|| format!("cannot open the log file {}", path.display()))?,
        None => AccessLog::stdout(),
    };
    let app = Arc::new(cli.app());
    let listeners = cli
        .listen
        .iter()
        .map(|addr| server::bind(*addr).with_context(|| format!("cannot listen on {addr}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let log = Arc::new(log);
    for addr in &cli.listen {
        log.note(&format!("listening on {addr}"));
    }
    tokio::select! {
        () = server::serve(listeners, app, Arc::clone(&log)) => {}
        signal = server::shutdown_signal() => {
            signal.context("cannot wait for signals")?;
            log.note("shutting down");
        }
    }
    Ok(())
}

//! `apisensor run`: the agent. Loads and attaches the kernel programs, reads both ring buffers,
//! feeds the analyzer, purges expired blocks, and detaches cleanly on SIGINT/SIGTERM (blocks
//! stay pinned and keep their TTL).
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::RingBuf;
use clap::Args;
use sensor_common::map_names;
use tokio::sync::{broadcast, watch};

mod lists;
mod reload;
mod sink;

use crate::{
    clock,
    config::Config,
    loader::{self, LoadOptions, TcAttachMode, XdpAttachMode},
    reader,
    verdict::Verdicts,
};
use sink::AgentSink;

pub use sink::first_line;

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to attach to (XDP ingress and TC egress); `[agent] interface` of the
    /// configuration when not given.
    #[arg(long)]
    pub iface: Option<String>,
    /// Configuration file (TOML); the embedded default applies without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// XDP attach mode (`[agent] xdp_mode`, `auto` by default).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpAttachMode>,
    /// TC attach mode (`[agent] tc_mode`, `auto` by default).
    #[arg(long, value_enum)]
    pub tc_mode: Option<TcAttachMode>,
    /// Print one JSON line per ring-buffer record on stdout (addresses, ports, sequence, lengths
    /// and the request or status line without its query string; never headers or bodies).
    #[arg(long)]
    pub log_events: bool,
    /// Print every HTTP transaction as a JSON line on stdout, as `apisensor replay --json` does.
    #[arg(long)]
    pub log_transactions: bool,
    /// Keep the API inventory (method, host and route template with counts, status mix, first
    /// and last seen) as JSON in this file, rewritten every minute and at exit.
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
    /// State directory: the hash key and the learned baselines (created when missing);
    /// `[agent] state_dir` of the configuration, `/var/lib/apisensor` by default.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Decide and report, but write no block (as `[policy] dry_run = true`).
    #[arg(long)]
    pub dry_run: bool,
    /// File the finding and decision event lines are appended to (they also go to stdout);
    /// `[events] file`, else `<state-dir>/events.jsonl`, by default.
    #[arg(long)]
    pub events: Option<PathBuf>,
}

impl RunArgs {
    /// The command line's options win over the `[agent]` table.
    fn override_agent(&self, agent: &mut crate::config::AgentSettings) {
        if let Some(iface) = &self.iface {
            agent.interface = Some(iface.clone());
        }
        if let Some(mode) = self.xdp_mode {
            agent.xdp_mode = mode;
        }
        if let Some(mode) = self.tc_mode {
            agent.tc_mode = mode;
        }
        if let Some(dir) = &self.state_dir {
            agent.state_dir.clone_from(dir);
        }
    }
}

/// Runs the agent until a signal.
pub fn main(args: &RunArgs, pin_dir: &Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = Config::load(args.config.as_deref())?;
    config.policy.dry_run |= args.dry_run;
    args.override_agent(&mut config.agent);
    if config.agent.interface.is_none() {
        anyhow::bail!("no interface to attach to: give --iface IFACE or [agent] interface");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(agent(args, pin_dir, &config))
}

async fn agent(args: &RunArgs, pin_dir: &Path, config: &Config) -> anyhow::Result<()> {
    loader::require_root()?;
    let iface = config.agent.interface.clone().unwrap_or_default();
    if nix_if_index(&iface) == 0 {
        anyhow::bail!("unknown interface {iface}");
    }
    loader::prepare_pin_dir(pin_dir)?;
    let _lock = loader::lock_pin_dir(pin_dir)?;
    let mut ebpf = loader::load(&LoadOptions {
        pin_dir: Some(pin_dir.to_path_buf()),
        max_sources: config.sensor.max_sources,
    })?;
    loader::configure(&mut ebpf, config.kernel(), &config.sensor.ports)?;
    // Blocks reused from the pins are enforced only if MAPS_IN_USE says their map has entries.
    Verdicts::open_pinned(pin_dir)?.refresh_in_use()?;
    let xdp_mode = loader::attach_xdp(&mut ebpf, &iface, config.agent.xdp_mode)?;
    let tc_mode = loader::attach_tc(&mut ebpf, &iface, config.agent.tc_mode)?;
    let take_ring = |ebpf: &mut aya::Ebpf, name: &'static str| -> anyhow::Result<RingBuf<_>> {
        let map = ebpf
            .take_map(name)
            .with_context(|| format!("map {name} missing"))?;
        RingBuf::try_from(map).with_context(|| format!("opening ring buffer {name}"))
    };
    let req = take_ring(&mut ebpf, map_names::REQ_EVENTS)?;
    let resp = take_ring(&mut ebpf, map_names::RESP_EVENTS)?;
    // Bound before "ready": an address in use stops the agent with an error naming the key.
    let metrics_listener = match config.metrics.socket_addr() {
        Ok(Some(addr)) => Some(crate::metrics::bind(addr)?),
        _ => None,
    };
    tracing::info!(
        iface = %iface,
        xdp = ?xdp_mode,
        tc = ?tc_mode,
        pin_dir = %pin_dir.display(),
        ports = ?config.sensor.ports,
        "ready"
    );

    let (shutdown_tx, shutdown_rx) = broadcast::channel::<()>(1);
    let signals = tokio::spawn(wait_for_signal(shutdown_tx.clone()));
    let purge = tokio::spawn(purge_expired(
        pin_dir.to_path_buf(),
        Duration::from_secs(config.sensor.purge_interval_s),
        shutdown_tx.subscribe(),
    ));
    // The configuration as reloaded on SIGHUP, for the lists and the sink.
    let (config_tx, config_rx) = watch::channel(std::sync::Arc::new(config.clone()));
    let reloads = tokio::spawn(reload::on_hangup(
        reload::Reloader {
            path: args.config.clone(),
            dry_run: args.dry_run,
            pin_dir: pin_dir.to_path_buf(),
        },
        config_tx,
        shutdown_tx.subscribe(),
    ));
    let lists = tokio::spawn(lists::keep(
        pin_dir.to_path_buf(),
        config_rx.clone(),
        shutdown_tx.subscribe(),
    ));
    let metrics = metrics_listener.map(|listener| {
        let metrics = crate::metrics::Metrics::pinned(pin_dir);
        tracing::info!(address = ?listener.local_addr().ok(), "metrics endpoint listening");
        let server = tokio::spawn(crate::metrics::serve(
            listener,
            metrics.registry(),
            shutdown_tx.subscribe(),
        ));
        (metrics, server)
    });
    let (metrics, metrics_server) = metrics.unzip();
    let mut sink = AgentSink::open(args, pin_dir, config, metrics)?;
    sink.follow_reloads(config_rx)?;
    let modes = (format!("{xdp_mode:?}"), format!("{tc_mode:?}"));
    let control = serve_control(&mut sink, args, pin_dir, config, modes, &shutdown_tx);
    let stats = reader::run(
        req,
        resp,
        Duration::from_millis(config.sensor.drain_interval_ms),
        &mut sink,
        shutdown_rx,
    )
    .await
    .context("reading the ring buffers")?;
    sink.finish();
    signals.abort();
    let _ = purge.await;
    let _ = lists.await;
    let _ = reloads.await;
    if let Some(control) = control {
        let _ = control.await;
    }
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    // Dropping `ebpf` detaches both programs; the pinned maps (and blocks) remain.
    drop(ebpf);
    sink.log_stopped(&stats);
    Ok(())
}

/// Serves the control socket for `sink`; `None` (logged) when it cannot be.
fn serve_control(
    sink: &mut AgentSink,
    args: &RunArgs,
    pin_dir: &Path,
    config: &Config,
    (xdp_mode, tc_mode): (String, String),
    shutdown: &broadcast::Sender<()>,
) -> Option<tokio::task::JoinHandle<()>> {
    let info = crate::control::agent::AgentInfo {
        iface: config.agent.interface.clone().unwrap_or_default(),
        xdp_mode,
        tc_mode,
        config: args.config.as_ref().map(|p| p.display().to_string()),
        dry_run: config.policy.dry_run,
    };
    let live = sink.live_events();
    let now = clock::unix_ns();
    match crate::control::start(pin_dir, info, live, shutdown.subscribe(), now) {
        Ok((control, task)) => {
            sink.serve_control(control);
            Some(task)
        }
        Err(error) => {
            tracing::warn!(%error, "the control socket cannot be served; the investigation commands will not reach this agent");
            None
        }
    }
}

fn nix_if_index(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

async fn wait_for_signal(tx: broadcast::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("signal received, shutting down");
    let _ = tx.send(());
}

async fn purge_expired(pin_dir: PathBuf, every: Duration, mut shutdown: broadcast::Receiver<()>) {
    // The first purge runs one period after start, not at once: a restarted agent must not be
    // what makes an expired block stop dropping (the kernel checks expiry itself).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {
                let purged = Verdicts::open_pinned(&pin_dir).and_then(|mut v| v.purge_expired(clock::boot_ns()));
                match purged {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired blocks removed"),
                    Err(e) => tracing::warn!(error = %e, "purging expired blocks failed"),
                }
            }
        }
    }
}

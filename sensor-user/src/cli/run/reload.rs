//! SIGHUP: the agent reads its configuration file again and applies it without detaching the
//! programs or losing state (flows, entity state, blocks, baselines). A file that does not load
//! is reported in one line and the running configuration stays.
//!
//! Applied at once: the monitored ports and capture lengths in the kernel (`CONFIG`, `PORTS`),
//! the detectors' thresholds, the policy (TTLs, caps, allowlist, dry run), the HTTP settings
//! of new connections (login routes, session cookies, trusted proxies), the kernel counters'
//! poll period and the lists. Kept until the next start, and reported when changed: the map
//! sizes, the reader's and the purge's timers, the flow table and the entity tables' bounds,
//! the baselines' settings, the metrics address and the event outputs. The `[agent]` table
//! (interface, attach modes, state directory) is read at start only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use aya::maps::Array;
use sensor_common::{SensorConfig, map_names};
use tokio::sync::{broadcast, watch};

use crate::config::Config;

/// What a reload needs besides the file: where it is, the command line's `--dry-run`, and the
/// pinned maps.
pub(super) struct Reloader {
    /// The configuration file (`None`: the embedded default, which a reload reads again).
    pub(super) path: Option<PathBuf>,
    /// `--dry-run` was given: it stays on whatever the file says.
    pub(super) dry_run: bool,
    /// The pin directory.
    pub(super) pin_dir: PathBuf,
}

impl Reloader {
    /// Loads the file and applies its kernel settings; returns the configuration the rest of
    /// the agent takes, or why the running one stays.
    fn reload(&self, running: &Config) -> anyhow::Result<Config> {
        let mut next = Config::load(self.path.as_deref())?;
        next.policy.dry_run |= self.dry_run;
        // Where the agent is attached and keeps its state is settled at start (and the
        // command line may have overridden the file's [agent] table).
        next.agent = running.agent.clone();
        for key in needs_restart(running, &next) {
            tracing::warn!(key, "changed in the file; takes effect at the next start");
        }
        configure_pinned(
            &self.pin_dir,
            next.kernel(),
            &running.sensor.ports,
            &next.sensor.ports,
        )
        .context("writing the kernel's settings")?;
        Ok(next)
    }
}

/// The settings of `next` that differ from `running` and wait for a restart.
fn needs_restart(running: &Config, next: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.sensor, &next.sensor);
    let mut keys = Vec::new();
    let mut differs = |key, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("sensor.max_sources", a.max_sources != b.max_sources);
    differs(
        "sensor.drain_interval_ms",
        a.drain_interval_ms != b.drain_interval_ms,
    );
    differs(
        "sensor.purge_interval_s",
        a.purge_interval_s != b.purge_interval_s,
    );
    let (x, y) = (&running.analyzer, &next.analyzer);
    differs(
        "analyzer (flow table, reassembly)",
        x.max_flows != y.max_flows
            || x.idle_timeout_ms != y.idle_timeout_ms
            || x.reassembly != y.reassembly,
    );
    differs("detect.limits", running.detect.limits != next.detect.limits);
    differs(
        "detect.baseline",
        running.detect.baseline != next.detect.baseline,
    );
    differs("metrics", running.metrics != next.metrics);
    differs("events", running.events != next.events);
    keys
}

/// Writes the kernel's run-time settings and monitored ports into the pinned maps: the
/// programs read them per packet, so they apply at once.
fn configure_pinned(
    pin_dir: &Path,
    cfg: SensorConfig,
    old_ports: &[u16],
    ports: &[u16],
) -> anyhow::Result<()> {
    let mut config: Array<_, SensorConfig> =
        Array::try_from(crate::maps::open(pin_dir, map_names::CONFIG)?)?;
    config.set(0, cfg, 0)?;
    let mut map: Array<_, u8> = Array::try_from(crate::maps::open(pin_dir, map_names::PORTS)?)?;
    for p in old_ports.iter().filter(|p| !ports.contains(p)) {
        map.set(u32::from(*p), 0, 0)?;
    }
    for p in ports {
        map.set(u32::from(*p), 1, 0)?;
    }
    Ok(())
}

/// Reloads on each SIGHUP until shutdown, publishing each configuration that loaded.
pub(super) async fn on_hangup(
    reloader: Reloader,
    config: watch::Sender<Arc<Config>>,
    mut shutdown: broadcast::Receiver<()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: no reloads");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = hangups.recv() => {}
        }
        let running = config.borrow().clone();
        match reloader.reload(&running) {
            Ok(next) => {
                tracing::info!(
                    file = ?reloader.path,
                    dry_run = next.policy.dry_run,
                    "configuration reloaded"
                );
                config.send_replace(Arc::new(next));
            }
            Err(error) => {
                tracing::error!("reload refused, the running configuration stays: {error:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_wait_for_a_restart_are_named() {
        let running = Config::default_config();
        let same = Config::default_config();
        assert!(needs_restart(&running, &same).is_empty());
        let next = Config::parse(
            "[sensor]\nports = [8443]\nmax_sources = 1024\n[detect.limits]\nsources = 10\n[detect.brute_force]\nmin_failures = 3.0\n",
            "test",
        )
        .expect("config");
        // Ports and thresholds apply at once; map sizes and table bounds wait.
        assert_eq!(
            needs_restart(&running, &next),
            ["sensor.max_sources", "detect.limits"]
        );
    }
}

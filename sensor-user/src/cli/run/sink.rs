//! The agent's side of the pipeline: each ring-buffer record decoded and run through the
//! pipeline; each decision enforced through the map writer the moment it is made, then logged;
//! the kernel's per-source counters and the blocks' drop hits fed back; the inventory and the
//! baselines saved.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use sensor_common::{Addr, SourceStats, map_names};

use crate::{
    cli::hook::Hooks,
    clock::{self, BootToUnix},
    config::Config,
    decide::{Action, Decision, Enforcement},
    detect::{Finding, Packets},
    event::{DecodeError, Event},
    event_log::{Format, RotatingFile},
    http::Transaction,
    json::{Enforced, EventLine, JsonCache},
    metrics::{Histograms, Metrics, OutputCounts, Snapshot},
    pipeline::{Pipeline, Sink},
    reader::EventSink,
    state_dir::StateDir,
    verdict::Verdicts,
};

use super::RunArgs;

/// What the agent does with each record: decode, run the pipeline, enforce, log.
pub(super) struct AgentSink {
    /// Where the pipeline's output goes.
    out: AgentOutput,
    log_events: bool,
    pipeline: Pipeline,
    /// Unix ns of the last idle-expiry tick.
    last_tick_ns: u64,
    /// Unix ns of the last read of the blocks' drop hits.
    last_hits_ns: u64,
    /// The kernel's per-source counters.
    sources: SourcePoll,
    /// Where the API inventory goes.
    catalogue: Option<PathBuf>,
    /// Unix ns of its last write.
    last_catalogue_ns: u64,
    /// Unix ns of the last save of the baselines.
    last_baselines_ns: u64,
    /// The state directory.
    state: StateDir,
    events: u64,
    decode_errors: u64,
    /// The control socket's owner end, once it is served.
    control: Option<crate::control::agent::Control>,
    /// Configurations reloaded on SIGHUP, with the installation's key the pipeline hashes with
    /// and the configuration's allowlist as last written to the kernel.
    reloads: Option<Reloads>,
    /// The Prometheus registry, when the endpoint is on.
    metrics: Option<Metrics>,
    /// When the records of the current batch started to be processed.
    batch_start: Option<std::time::Instant>,
    /// Unix ns of the last snapshot published to the registry.
    last_publish_ns: u64,
}

/// What the sink keeps to follow reloads.
struct Reloads {
    /// The configuration, as last reloaded.
    rx: tokio::sync::watch::Receiver<std::sync::Arc<Config>>,
    /// The installation's hash key.
    key: [u8; 16],
    /// The allowlist last written to the kernel from the configuration.
    allowlist: Vec<ipnet::IpNet>,
}

/// The agent's reader of the kernel's per-source counters.
struct SourcePoll {
    /// The `SOURCES` map (`None` if it could not be opened: logged at start).
    map: Option<aya::maps::HashMap<aya::maps::MapData, Addr, SourceStats>>,
    /// Totals of the last poll per source.
    last: std::collections::HashMap<Addr, (u64, u64)>,
    /// Poll period, ns.
    every_ns: u64,
    /// Unix ns of the last poll.
    last_ns: u64,
}

impl SourcePoll {
    fn open(pin_dir: &Path, every_ms: u64) -> Self {
        let map = crate::maps::open(pin_dir, map_names::SOURCES)
            .map_err(|e| e.to_string())
            .and_then(|m| aya::maps::HashMap::try_from(m).map_err(|e| e.to_string()));
        let map = match map {
            Ok(map) => Some(map),
            Err(error) => {
                tracing::warn!(%error, "the kernel's per-source counters cannot be read; floods without requests go unseen");
                None
            }
        };
        Self {
            map,
            last: std::collections::HashMap::new(),
            every_ns: every_ms.saturating_mul(1_000_000),
            last_ns: 0,
        }
    }
}

/// The agent's side of the pipeline: it logs, and enforces decisions through the map writer
/// the moment they are made.
struct AgentOutput {
    to_unix: BootToUnix,
    log_transactions: bool,
    stdout: std::io::BufWriter<std::io::StdoutLock<'static>>,
    /// The event file.
    events: RotatingFile,
    /// The event lines' format.
    format: Format,
    /// Whether event lines go to stdout too.
    events_to_stdout: bool,
    /// One OCSF line being written.
    ocsf: Vec<u8>,
    /// The transaction writer (the replay's).
    json: JsonCache,
    /// One line being written.
    line: Vec<u8>,
    /// The map writer.
    verdicts: Verdicts,
    /// Blocks written.
    applied: u64,
    /// Blocks the map writer refused.
    failed: u64,
    /// Their targets, handed back to the policy after each input (so it tries again).
    failed_targets: Vec<ipnet::IpNet>,
    /// The upstream enforcement hook.
    hooks: Hooks,
    /// Recent findings and decisions, for the control socket.
    journal: crate::control::agent::Journal,
    /// What went by, for the metrics.
    counts: OutputCounts,
    /// The latency histograms, when the metrics endpoint is on.
    histograms: Option<Histograms>,
}

impl AgentOutput {
    /// Writes an event line to stdout and the event file, in the configured format. The
    /// apisensor line is made in any case and left in `line`: the upstream hook reads it.
    fn event(&mut self, event: &EventLine<'_>) {
        self.line.clear();
        let line = match (self.format, event) {
            (Format::Ocsf, EventLine::Enforced(e)) => {
                crate::json::event_line(event, &mut self.line);
                self.ocsf.clear();
                crate::json::ocsf::line(e, &mut self.ocsf);
                &self.ocsf
            }
            // In OCSF, findings are evidence of their decision's line only.
            (Format::Ocsf, _) => return,
            (Format::Apisensor, _) => {
                crate::json::event_line(event, &mut self.line);
                &self.line
            }
        };
        if self.events_to_stdout {
            let _ = self.stdout.write_all(line);
        }
        if let Err(error) = self.events.write_line(line) {
            tracing::warn!(%error, "writing the event file failed");
        }
    }
}

impl Sink for AgentOutput {
    fn transaction(&mut self, tx: &Transaction) {
        if self.log_transactions {
            self.line.clear();
            self.json.line(tx, &mut self.line);
            let _ = self.stdout.write_all(&self.line);
        }
    }

    fn finding(&mut self, finding: &Finding) {
        tracing::debug!(finding = %finding.summary(), "finding");
        self.counts.finding(finding);
        self.event(&EventLine::Finding(finding));
        self.journal.finding(finding, &self.line);
    }

    fn decision(&mut self, decision: &Decision) {
        // Enforced first, logged after: the log line must not delay the block.
        let started = std::time::Instant::now();
        let (written_ns, write_error) = match self.verdicts.apply(decision, clock::boot_ns()) {
            Ok(true) => {
                self.applied += 1;
                let written = self.to_unix.convert(clock::boot_ns());
                if let Some(h) = &self.histograms {
                    h.block_write.observe(started.elapsed().as_secs_f64());
                    let ns = written.saturating_sub(decision.at_ns);
                    h.detection_to_block
                        .observe(std::time::Duration::from_nanos(ns).as_secs_f64());
                }
                (Some(written), None)
            }
            Ok(false) => (None, None),
            Err(error) => {
                self.failed += 1;
                self.failed_targets.extend(decision.target);
                tracing::warn!(%error, decision = %decision.summary(), "block refused by the maps");
                (None, Some(error.to_string()))
            }
        };
        tracing::info!(decision = %decision.summary(), "decision");
        self.counts.decision(decision);
        self.event(&EventLine::Enforced(Enforced {
            decision,
            written_ns,
            write_error,
        }));
        self.journal.decision(decision, &self.line);
        if decision.action == Action::Block && decision.enforcement == Enforcement::Upstream {
            self.hooks.run(&self.line);
        }
        let _ = self.events.flush();
    }
}

impl AgentSink {
    /// Opens the state directory, the pipeline (with the saved baselines), the event file and
    /// the map writer (allowlisting the configuration's allowlist in the kernel).
    pub(super) fn open(
        args: &RunArgs,
        pin_dir: &Path,
        config: &Config,
        metrics: Option<Metrics>,
    ) -> anyhow::Result<Self> {
        let state = StateDir::create(&config.agent.state_dir)?;
        let key = state.key_or_create()?;
        let baselines = state.baselines()?;
        let to_unix = BootToUnix::now();
        let mut pipeline = Pipeline::new(config, key, baselines, to_unix.convert(clock::boot_ns()))
            .with_context(|| format!("restoring the baselines of {}", state.path().display()))?;
        // Live, packets and SYNs come from the kernel, which counts every port.
        pipeline.count_from_kernel();
        let ev = &config.events;
        let events_path = args
            .events
            .clone()
            .or_else(|| ev.file.clone())
            .unwrap_or_else(|| state.path().join("events.jsonl"));
        let events_file = RotatingFile::open(&events_path, ev.max_bytes, ev.keep)
            .with_context(|| format!("opening the event file {}", events_path.display()))?;
        // The allowlist of the configuration is the kernel's too: allowlisted sources are never
        // dropped, whatever a block says.
        let mut verdicts = Verdicts::open_pinned(pin_dir)?;
        for net in &config.policy.allowlist {
            verdicts
                .allow(*net, clock::boot_ns())
                .with_context(|| format!("allowlisting {net}"))?;
        }
        tracing::info!(
            state_dir = %state.path().display(),
            events = %events_path.display(),
            events_format = %ev.format,
            dry_run = config.policy.dry_run,
            detection = config.detect.enabled,
            "detection ready"
        );
        Ok(Self {
            out: AgentOutput {
                to_unix,
                log_transactions: args.log_transactions,
                stdout: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
                events: events_file,
                format: ev.format().unwrap_or(Format::Apisensor),
                events_to_stdout: ev.stdout,
                ocsf: Vec::new(),
                json: JsonCache::default(),
                line: Vec::new(),
                verdicts,
                applied: 0,
                failed: 0,
                failed_targets: Vec::new(),
                hooks: Hooks::new(config.policy.upstream_hook.clone()),
                journal: crate::control::agent::Journal::new(),
                counts: OutputCounts::default(),
                histograms: metrics.as_ref().map(|m| m.histograms.clone()),
            },
            log_events: args.log_events,
            pipeline,
            sources: SourcePoll::open(pin_dir, config.sensor.source_poll_ms),
            last_tick_ns: 0,
            last_hits_ns: 0,
            catalogue: args.catalogue.clone(),
            last_catalogue_ns: 0,
            last_baselines_ns: 0,
            state,
            events: 0,
            decode_errors: 0,
            control: None,
            reloads: None,
            metrics,
            batch_start: None,
            last_publish_ns: 0,
        })
    }

    /// Answers the control socket's queries from now on (after each drain).
    pub(super) fn serve_control(&mut self, control: crate::control::agent::Control) {
        self.control = Some(control);
    }

    /// Takes the configurations reloaded on SIGHUP from `rx` (the running one is current).
    pub(super) fn follow_reloads(
        &mut self,
        mut rx: tokio::sync::watch::Receiver<std::sync::Arc<Config>>,
    ) -> anyhow::Result<()> {
        let allowlist = rx.borrow_and_update().policy.allowlist.clone();
        let key = self.state.key_or_create()?;
        self.reloads = Some(Reloads { rx, key, allowlist });
        Ok(())
    }

    /// Applies a configuration reloaded since the last call, if there is one: the pipeline's
    /// settings (its state kept), the kernel counters' poll period, and the allowlist (entries
    /// the file no longer has are removed from the kernel, new ones added).
    fn apply_reload(&mut self) {
        let Some(r) = &mut self.reloads else {
            return;
        };
        if !r.rx.has_changed().unwrap_or(false) {
            return;
        }
        let cfg = r.rx.borrow_and_update().clone();
        self.pipeline.reconfigure(&cfg, r.key);
        self.sources.every_ns = cfg.sensor.source_poll_ms.saturating_mul(1_000_000);
        let now = clock::boot_ns();
        for gone in r
            .allowlist
            .iter()
            .filter(|n| !cfg.policy.allowlist.contains(n))
        {
            if let Err(error) = self.out.verdicts.unallow(*gone) {
                tracing::warn!(%error, net = %gone, "removing an allowlist entry on reload failed");
            }
        }
        for net in &cfg.policy.allowlist {
            if let Err(error) = self.out.verdicts.allow(*net, now) {
                tracing::warn!(%error, %net, "allowlisting on reload failed");
            }
        }
        r.allowlist.clone_from(&cfg.policy.allowlist);
        tracing::info!(
            detection = cfg.detect.enabled,
            dry_run = cfg.policy.dry_run,
            "the pipeline took the reloaded configuration"
        );
    }

    /// The broadcast of new findings and decisions, for the control socket's followers.
    pub(super) fn live_events(&self) -> tokio::sync::broadcast::Sender<std::sync::Arc<str>> {
        self.out.journal.live()
    }

    /// Flushes what was written.
    fn flush(&mut self) {
        let _ = self.out.stdout.flush();
        let _ = self.out.events.flush();
    }

    /// End of the run: close every flow so pending requests are reported, save what was
    /// learned.
    pub(super) fn finish(&mut self) {
        self.pipeline.finish(&mut self.out);
        self.out.hooks.finish();
        self.flush();
        self.write_catalogue();
        self.save_baselines();
        self.publish_metrics();
    }

    /// Publishes the counters to the metrics registry (about once a second: a scrape reads the
    /// latest).
    fn publish_metrics(&mut self) {
        let Some(metrics) = &self.metrics else { return };
        let mut out = self.out.counts.clone();
        out.blocks_written = self.out.applied;
        out.blocks_failed = self.out.failed;
        out.decode_errors = self.decode_errors;
        out.hooks = [
            self.out.hooks.started,
            self.out.hooks.failed,
            self.out.hooks.killed,
        ];
        metrics.publish(Snapshot {
            analyzer: self.pipeline.analyzer().counters(),
            detection: self.pipeline.detection().counters(),
            active_blocks: self.pipeline.policy().counters().active,
            out,
        });
    }

    /// The agent's last log line: what it did in this run.
    pub(super) fn log_stopped(&self, stats: &impl std::fmt::Debug) {
        tracing::info!(
            ?stats,
            analyzer = ?self.pipeline.analyzer().counters(),
            detection = ?self.pipeline.detection().counters(),
            policy = ?self.pipeline.policy().counters(),
            blocks_written = self.out.applied,
            blocks_failed = self.out.failed,
            hooks_started = self.out.hooks.started,
            hooks_failed = self.out.hooks.failed,
            hooks_killed = self.out.hooks.killed,
            events = self.events,
            decode_errors = self.decode_errors,
            "stopped; programs detached, blocks stay pinned"
        );
    }

    /// Saves the baselines to the state directory.
    fn save_baselines(&mut self) {
        let snapshot = self.pipeline.detection().baselines();
        if let Err(error) = self.state.save_baselines(&snapshot) {
            tracing::warn!(%error, "saving the baselines failed");
        }
    }

    /// Tells the policy which blocks the map writer could not write, so that it does not
    /// believe them active.
    fn forget_failed(&mut self) {
        for target in self.out.failed_targets.drain(..) {
            self.pipeline.block_failed(target);
        }
    }

    /// Feeds what the kernel counted per source since the last poll (packets, SYNs) to the
    /// detectors: a source that floods without completing HTTP is seen.
    fn poll_sources(&mut self, now_unix: u64) {
        let Some(map) = &self.sources.map else {
            return;
        };
        let mut seen = 0_usize;
        for item in map {
            let Ok((addr, stats)) = item else {
                // An entry evicted while iterating is not an error; anything else ends this poll.
                continue;
            };
            seen += 1;
            let (packets, syns) = (stats.packets, stats.syns);
            let prev = self.sources.last.insert(addr, (packets, syns));
            // A source evicted and seen again starts from zero.
            let (dp, ds) = match prev {
                Some((p, s)) if p <= packets && s <= syns => (packets - p, syns - s),
                _ => (packets, syns),
            };
            if dp > 0 || ds > 0 {
                self.pipeline.on_kernel_counts(
                    crate::event::addr_to_ip(&addr),
                    Packets {
                        packets: dp,
                        syns: ds,
                    },
                    now_unix,
                    &mut self.out,
                );
            }
        }
        // Forget sources the kernel evicted, so this map stays as large as the kernel's.
        if self.sources.last.len() > seen.saturating_mul(2) {
            let live: std::collections::HashSet<Addr> = map.keys().filter_map(Result::ok).collect();
            self.sources.last.retain(|a, _| live.contains(a));
        }
    }

    /// Feeds the kernel's drop hits of active blocks back to the policy (a block whose source
    /// keeps coming is renewed).
    fn feed_block_hits(&mut self, now_unix: u64) {
        let now_boot = clock::boot_ns();
        let Ok(blocks) = self.out.verdicts.blocks(now_boot) else {
            return;
        };
        for b in blocks {
            if let Some(ago_ms) = b.last_hit_ago_ms
                && b.ttl_left_s > 0
            {
                let last_hit = now_unix.saturating_sub(ago_ms.saturating_mul(1_000_000));
                self.pipeline
                    .on_block_hit(b.net, last_hit, now_unix, &mut self.out);
            }
        }
    }

    /// Replaces the inventory file (write to a temporary file, then rename: readers never see
    /// half a file).
    fn write_catalogue(&mut self) {
        let Some(path) = &self.catalogue else { return };
        if let Err(error) = crate::json::write_catalogue(self.pipeline.analyzer().catalogue(), path)
        {
            tracing::warn!(%error, path = %path.display(), "writing the API inventory failed");
        }
    }
}

/// The first line of a payload (request or status line) without its query string, for event
/// logs: enough to recognise the message, never a header, body or query value.
pub fn first_line(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(payload.len())
        .min(160);
    let line = String::from_utf8_lossy(&payload[..end]);
    match line.find('?') {
        Some(q) => {
            let tail = line[q..].find(' ').map_or("", |sp| &line[q + sp..]);
            format!("{}?…{}", &line[..q], tail)
        }
        None => line.into_owned(),
    }
}

impl EventSink for AgentSink {
    fn on_event(&mut self, event: &Event<'_>) {
        self.events += 1;
        let ring = usize::from(event.direction != sensor_common::Direction::Ingress);
        self.out.counts.records[ring] += 1;
        if self.batch_start.is_none()
            && let Some(h) = &self.out.histograms
        {
            // Once per batch: the age of its first record, and the start of its processing.
            let now = clock::boot_ns();
            h.record_age.observe(
                std::time::Duration::from_nanos(now.saturating_sub(event.header.ts_ns))
                    .as_secs_f64(),
            );
            self.batch_start = Some(std::time::Instant::now());
        }
        let seg = event.segment(|t| self.out.to_unix.convert(t));
        self.pipeline.on_segment(&seg, &mut self.out);
        self.forget_failed();
        if self.log_events {
            let line = serde_json::json!({
                "ts_ns": seg.ts_ns,
                "dir": format!("{:?}", event.direction).to_lowercase(),
                "src": seg.src.to_string(),
                "dst": seg.dst.to_string(),
                "seq": seg.seq,
                "flags": seg.flags,
                "payload_len": seg.payload_len,
                "captured_len": seg.payload.len(),
                "first_line": first_line(seg.payload),
            });
            let _ = writeln!(self.out.stdout, "{line}");
        }
    }

    fn on_decode_error(&mut self, error: &DecodeError) {
        self.decode_errors += 1;
        tracing::warn!(%error, "undecodable ring-buffer record");
    }

    fn on_drained(&mut self, records: usize) {
        self.apply_reload();
        if let (Some(start), Some(h)) = (self.batch_start.take(), &self.out.histograms) {
            h.batch.observe(start.elapsed().as_secs_f64());
        }
        self.forget_failed();
        self.out.hooks.reap();
        let now = self.out.to_unix.convert(clock::boot_ns());
        if now.saturating_sub(self.last_tick_ns) >= 1_000_000_000 {
            self.last_tick_ns = now;
            self.pipeline.on_tick(now, &mut self.out);
        }
        if now.saturating_sub(self.sources.last_ns) >= self.sources.every_ns {
            self.sources.last_ns = now;
            self.poll_sources(now);
        }
        if now.saturating_sub(self.last_hits_ns) >= 5_000_000_000 {
            self.last_hits_ns = now;
            self.feed_block_hits(now);
        }
        if now.saturating_sub(self.last_catalogue_ns) >= 60_000_000_000 {
            self.last_catalogue_ns = now;
            self.write_catalogue();
        }
        if now.saturating_sub(self.last_publish_ns) >= 1_000_000_000 {
            self.last_publish_ns = now;
            self.publish_metrics();
        }
        if now.saturating_sub(self.last_baselines_ns) >= 600_000_000_000 {
            self.last_baselines_ns = now;
            self.save_baselines();
        }
        if records > 0 {
            self.flush();
        }
        if let Some(control) = &mut self.control {
            let counts = crate::control::agent::Counts {
                events: self.events,
                decode_errors: self.decode_errors,
                blocks_written: self.out.applied,
            };
            control.answer_pending(&self.pipeline, &self.out.journal, counts, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn first_line_hides_queries_and_headers() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"GET /a?token=secret HTTP/1.1\r\nCookie: x\r\n",
                "GET /a?… HTTP/1.1",
            ),
            (
                b"POST /login HTTP/1.1\r\n\r\npassword=x",
                "POST /login HTTP/1.1",
            ),
            (b"HTTP/1.1 200 OK\r\nSet-Cookie: s=1", "HTTP/1.1 200 OK"),
            (b"", ""),
            (b"\xff\xfe?", "\u{fffd}\u{fffd}?…"),
        ];
        for (input, want) in cases {
            assert_eq!(first_line(input), want);
        }
    }
}

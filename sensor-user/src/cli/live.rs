//! `apisensor top --live`: a refreshing terminal view (ratatui) of the busiest sources, from
//! the kernel's per-source map and blocks, with the agent's scores and decisions when it runs
//! (kernel data only, with a note, when it does not). Refreshes every second; `q`, Esc or
//! Ctrl-C quits and restores the terminal.
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use sensor_common::{Counter, SourceStats};

use crate::control::client::Client;
use crate::control::protocol::{Request, Response, SortKey, SourceRow};
use crate::{clock, maps, verdict::Verdicts};

/// Time between refreshes.
const REFRESH: Duration = Duration::from_secs(1);

/// One row of the view.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LiveRow {
    /// The address.
    pub(crate) source: IpAddr,
    /// Packets the kernel counted.
    pub(crate) packets: u64,
    /// Packets per second since the last refresh.
    pub(crate) packet_rate: f64,
    /// Packets its blocks dropped.
    pub(crate) dropped: u64,
    /// Block TTL left, s.
    pub(crate) ttl_left_s: Option<u64>,
    /// The agent's request rate, score and decision.
    pub(crate) agent: Option<SourceRow>,
}

/// Joins the kernel's sources, the blocks' hits and the agent's rows, busiest first (by
/// packet rate, then packets), at most `n`. Sources only the agent knows come last.
pub(crate) fn join_rows(
    kernel: &[(IpAddr, SourceStats)],
    previous: &HashMap<IpAddr, u64>,
    elapsed_s: f64,
    blocks: &HashMap<IpAddr, (u64, u64)>,
    agent: &[SourceRow],
    n: usize,
) -> Vec<LiveRow> {
    let mut by_ip: HashMap<IpAddr, &SourceRow> = agent
        .iter()
        .map(|r| (r.summary.source.to_canonical(), r))
        .collect();
    let mut rows: Vec<LiveRow> = kernel
        .iter()
        .map(|(ip, s)| {
            let ip = ip.to_canonical();
            let before = previous.get(&ip).copied().unwrap_or(s.packets);
            #[expect(clippy::cast_precision_loss, reason = "a rate")]
            let packet_rate = s.packets.saturating_sub(before) as f64 / elapsed_s.max(1e-3);
            LiveRow {
                source: ip,
                packets: s.packets,
                packet_rate,
                dropped: blocks.get(&ip).map_or(0, |b| b.0),
                ttl_left_s: blocks.get(&ip).map(|b| b.1),
                agent: by_ip.remove(&ip).cloned(),
            }
        })
        .collect();
    let mut rest: Vec<&SourceRow> = by_ip.into_values().collect();
    rest.sort_by_key(|r| r.summary.source);
    rows.extend(rest.into_iter().map(|r| LiveRow {
        source: r.summary.source,
        packets: 0,
        packet_rate: 0.0,
        dropped: blocks.get(&r.summary.source).map_or(0, |b| b.0),
        ttl_left_s: blocks.get(&r.summary.source).map(|b| b.1),
        agent: Some(r.clone()),
    }));
    rows.sort_by(|a, b| {
        b.packet_rate
            .total_cmp(&a.packet_rate)
            .then(b.packets.cmp(&a.packets))
            .then(a.source.cmp(&b.source))
    });
    rows.truncate(n);
    rows
}

/// What one refresh read.
struct Snapshot {
    rows: Vec<LiveRow>,
    sources: usize,
    blocks: usize,
    drop_rate: f64,
    agent: Result<String, String>,
}

/// The state between refreshes.
struct Reader<'a> {
    pin_dir: &'a Path,
    n: usize,
    packets: HashMap<IpAddr, u64>,
    drops: Option<u64>,
    at: Instant,
}

impl Reader<'_> {
    fn read(&mut self) -> anyhow::Result<Snapshot> {
        let elapsed = self.at.elapsed().as_secs_f64();
        self.at = Instant::now();
        let kernel = maps::read_sources(self.pin_dir)?;
        let entries = Verdicts::open_pinned(self.pin_dir)?.blocks(clock::boot_ns())?;
        let blocks: HashMap<IpAddr, (u64, u64)> = entries
            .iter()
            .filter(|b| b.net.prefix_len() == b.net.max_prefix_len())
            .map(|b| (b.net.addr().to_canonical(), (b.hits, b.ttl_left_s)))
            .collect();
        let drops: u64 = maps::read_counters(self.pin_dir)?
            .iter()
            .filter(|(c, _)| {
                matches!(
                    c,
                    Counter::XdpDropExact
                        | Counter::XdpDropPrefix
                        | Counter::XdpDropFlow
                        | Counter::XdpDropProxied
                )
            })
            .map(|(_, v)| v)
            .sum();
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let drop_rate = self
            .drops
            .map_or(0.0, |d| drops.saturating_sub(d) as f64 / elapsed.max(1e-3));
        self.drops = Some(drops);
        let (agent_rows, agent) = match ask_agent(self.pin_dir, self.n) {
            Ok((rows, status)) => (rows, Ok(status)),
            Err(e) => (Vec::new(), Err(format!("{e:#}"))),
        };
        let rows = join_rows(
            &kernel,
            &self.packets,
            elapsed,
            &blocks,
            &agent_rows,
            self.n,
        );
        self.packets = kernel
            .iter()
            .map(|(ip, s)| (ip.to_canonical(), s.packets))
            .collect();
        Ok(Snapshot {
            rows,
            sources: kernel.len(),
            blocks: entries.iter().filter(|b| b.ttl_left_s > 0).count(),
            drop_rate,
            agent,
        })
    }
}

/// The agent's busiest sources and a line about it.
fn ask_agent(pin_dir: &Path, n: usize) -> anyhow::Result<(Vec<SourceRow>, String)> {
    let status = match Client::connect(pin_dir)?.request(&Request::Status)? {
        Response::Status(s) => s,
        other => anyhow::bail!("unexpected answer {other:?}"),
    };
    let request = Request::Sources {
        sort: SortKey::Rate,
        since_s: None,
        limit: n,
    };
    let rows = match Client::connect(pin_dir)?.request(&request)? {
        Response::Sources { sources, .. } => sources,
        other => anyhow::bail!("unexpected answer {other:?}"),
    };
    let line = format!(
        "agent {} up {}, {:.0} events/s, {} active blocks, {} decisions",
        status.version,
        super::age(status.uptime_s.saturating_mul(1_000_000_000)),
        status.events_per_s,
        status.active_blocks,
        status.decisions
    );
    Ok((rows, line))
}

/// Restores the terminal when dropped (also on an error or a panic).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the live view until `q`, Esc or Ctrl-C.
pub fn main(n: usize, pin_dir: &Path) -> anyhow::Result<()> {
    let mut reader = Reader {
        pin_dir,
        n,
        packets: HashMap::new(),
        drops: None,
        at: Instant::now(),
    };
    // The first read fails before the screen is taken if the maps cannot be read.
    let mut snapshot = reader.read()?;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let _restore = Restore;
    loop {
        terminal.draw(|frame| draw(frame, &snapshot))?;
        let deadline = Instant::now() + REFRESH;
        while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            if event::poll(wait)?
                && let Event::Key(key) = event::read()?
                && key.kind == KeyEventKind::Press
                && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                    || (key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL)))
            {
                return Ok(());
            }
        }
        snapshot = reader.read()?;
    }
}

fn draw(frame: &mut ratatui::Frame<'_>, s: &Snapshot) {
    let [head, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(frame.area());
    let agent = match &s.agent {
        Ok(line) => line.clone(),
        Err(e) => format!("kernel data only: {e}"),
    };
    let header = Paragraph::new(vec![
        format!(
            "apisensor top  sources {}  blocks {}  drops {:.0}/s   q quits",
            s.sources, s.blocks, s.drop_rate
        )
        .into(),
        agent.into(),
    ])
    .block(Block::default().borders(Borders::BOTTOM));
    frame.render_widget(header, head);
    let rows = s.rows.iter().map(|r| {
        let a = r.agent.as_ref();
        Row::new(vec![
            r.source.to_string(),
            r.packets.to_string(),
            format!("{:.0}", r.packet_rate),
            r.dropped.to_string(),
            r.ttl_left_s.map_or_else(|| "-".into(), |t| format!("{t}s")),
            a.map_or_else(|| "-".into(), |a| format!("{:.2}", a.summary.request_rate)),
            a.and_then(|a| a.summary.success_share)
                .map_or_else(|| "-".into(), |v| format!("{:.0}%", v * 100.0)),
            a.and_then(|a| a.decision.as_ref())
                .map_or_else(|| "-".into(), |d| format!("{:.1}", d.score)),
            a.and_then(|a| a.decision.as_ref())
                .map_or_else(|| "-".into(), |d| format!("{} {}", d.action, d.reason)),
        ])
    });
    let widths = [
        Constraint::Length(40),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Min(10),
    ];
    let table = Table::new(rows, widths).header(
        Row::new([
            "SOURCE", "PACKETS", "PKT/S", "DROPPED", "TTL", "REQ/S", "OK%", "SCORE", "DECISION",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(table, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(packets: u64) -> SourceStats {
        SourceStats {
            packets,
            ..SourceStats::default()
        }
    }

    #[test]
    fn rows_join_kernel_blocks_and_agent_busiest_first() {
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "198.51.100.1".parse().expect("ip"),
            "198.51.100.2".parse().expect("ip"),
            "2001:db8::3".parse().expect("ip"),
        );
        let kernel = vec![(a, stats(100)), (b, stats(50))];
        // `a` sent 10 packets in the last 2 s, `b` 40.
        let previous = HashMap::from([(a, 90), (b, 10)]);
        let blocks = HashMap::from([(b, (7, 30))]);
        let agent_row: SourceRow = serde_json::from_value(serde_json::json!({
            "source": c, "last_seen_ns": 1, "history_since_ns": null, "requests_total": 3,
            "request_rate": 0.5, "answered": 3.0, "successes": 3.0, "failures": 0.0,
            "success_share": 1.0, "logins_failed": 0.0, "logins_ok": 0.0, "accounts": 0.0,
            "sessions": 0.0, "packet_rate": 0.0, "syn_rate": 0.0, "verified": true,
            "decision": null
        }))
        .expect("row");
        let rows = join_rows(&kernel, &previous, 2.0, &blocks, &[agent_row], 10);
        let order: Vec<IpAddr> = rows.iter().map(|r| r.source).collect();
        assert_eq!(order, [b, a, c]);
        assert!((rows[0].packet_rate - 20.0).abs() < 1e-9);
        assert_eq!((rows[0].dropped, rows[0].ttl_left_s), (7, Some(30)));
        assert!(rows[1].agent.is_none() && rows[2].agent.is_some());
        assert_eq!(join_rows(&kernel, &previous, 2.0, &blocks, &[], 1).len(), 1);
    }
}

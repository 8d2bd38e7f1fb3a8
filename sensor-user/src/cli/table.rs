//! Aligned text tables and the small formatting helpers of the investigation commands.

use std::fmt::Write as _;

/// A table: a header and rows of cells; the first column and those named in `left` are
/// aligned left, the others right.
pub(crate) struct Table {
    head: Vec<&'static str>,
    left: Vec<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names; `left` lists the columns aligned left besides the
    /// first.
    pub(crate) fn new(head: &[&'static str], left: &[usize]) -> Self {
        Self {
            head: head.to_vec(),
            left: left.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row after the header.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                if i == 0 || self.left.contains(&i) {
                    let _ = write!(text, "{cell:<w$}");
                } else {
                    let _ = write!(text, "{cell:>w$}");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &mut self.head.iter().copied());
        for row in &self.rows {
            line(&mut out, &mut row.iter().map(String::as_str));
        }
        out
    }
}

/// The age of a Unix-ns time at `now` (`-` for 0).
pub(crate) fn ago(now_ns: u64, at_ns: u64) -> String {
    if at_ns == 0 {
        return "-".into();
    }
    super::age(now_ns.saturating_sub(at_ns))
}

/// A decayed count or an estimate, rounded for display.
pub(crate) fn count(v: f64) -> String {
    // `+ 0.0` prints -0.0 as 0.
    format!("{:.0}", v + 0.0)
}

/// A rate per second.
pub(crate) fn rate(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// A share as a percentage (`-` when unknown).
pub(crate) fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{:.0}%", s * 100.0))
}

/// Prints a value as pretty JSON.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Asks the agent of `pin_dir`.
pub(crate) fn ask(
    pin_dir: &std::path::Path,
    request: &crate::control::protocol::Request,
) -> anyhow::Result<crate::control::protocol::Response> {
    let mut client = crate::control::client::Client::connect(pin_dir)?;
    Ok(client.request(request)?)
}

/// The error for an answer of the wrong kind.
pub(crate) fn unexpected(r: &crate::control::protocol::Response) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer from the agent: {r:?}")
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn columns_are_aligned() {
        let mut t = Table::new(&["SOURCE", "N", "WHAT"], &[2]);
        t.row(vec!["198.51.100.9".into(), "12".into(), "block".into()]);
        t.row(vec!["2001:db8::1".into(), "7".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "SOURCE         N  WHAT\n198.51.100.9  12  block\n2001:db8::1    7  -\n"
        );
    }
}

//! Where a configuration problem is, and how it reads: `LINE:COLUMN: message (expected ...)`.
//! Syntax and schema errors come from the TOML parser with the byte span they are about; a
//! broken [`Rule`] names its key, which is looked up in the parsed document (the key itself,
//! the entry of a list, or the nearest table that holds it when the file leaves it out).
use std::{fmt, ops::Range};

use toml::de::{DeTable, DeValue};

use super::rule::Rule;

/// One problem of a configuration file, at its place.
#[derive(Debug)]
pub struct Problem {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong.
#[derive(Debug)]
pub enum ProblemKind {
    /// Not TOML, or not this schema (unknown key, wrong type).
    Toml(toml::de::Error),
    /// A rule beyond the schema.
    Rule(Rule),
}

impl Problem {
    /// A parser error of `text`, at the start of its span (the file's start without one).
    pub fn toml(text: &str, error: toml::de::Error) -> Self {
        let (line, column) = position(text, error.span().map_or(0, |s| s.start));
        Self {
            line,
            column,
            kind: ProblemKind::Toml(error),
        }
    }

    /// A broken rule of `text` (parsed as `doc`), at its key.
    pub fn rule(text: &str, doc: &DeTable<'_>, rule: Rule) -> Self {
        let (key, index) = rule.place();
        let (line, column) = position(text, locate(doc, key, index).map_or(0, |s| s.start));
        Self {
            line,
            column,
            kind: ProblemKind::Rule(rule),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.kind)
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The parser's messages say what was expected; a few span lines, joined to keep
            // one problem on one line.
            Self::Toml(e) => {
                for (i, line) in e.message().lines().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    f.write_str(line.trim())?;
                }
                Ok(())
            }
            Self::Rule(rule) => rule.fmt(f),
        }
    }
}

/// The line and column (from 1; the column counts characters) of byte `offset` of `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// The span of dotted `key` in `doc` (of its entry `index` when given), or of the nearest
/// enclosing table the document has when the key itself is absent.
pub fn locate(doc: &DeTable<'_>, key: &str, index: Option<usize>) -> Option<Range<usize>> {
    let mut table = doc;
    let mut found = None;
    let mut segments = key.split('.').peekable();
    while let Some(segment) = segments.next() {
        let Some((name, value)) = table.get_key_value(segment) else {
            break;
        };
        found = Some(name.span());
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            DeValue::Array(entries) if segments.peek().is_none() => {
                if let Some(entry) = index.and_then(|i| entries.get(i)) {
                    found = Some(entry.span());
                }
                break;
            }
            _ => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\n# ü\nbé = 2\n";
        for (offset, want) in [
            (0, (1, 1)),
            (4, (1, 5)),
            (6, (2, 1)),
            // `ü` is two bytes: the newline after it is the fourth character.
            (10, (2, 4)),
            (15, (3, 4)),
            (text.len(), (4, 1)),
            (text.len() + 10, (4, 1)),
        ] {
            assert_eq!(position(text, offset), want, "offset {offset}");
        }
        // Inside a multi-byte character: the character's own column.
        assert_eq!(position("é", 1), (1, 1));
    }

    #[test]
    fn keys_are_found_at_their_name_entry_or_nearest_table() {
        let text = "[sensor]\nports = [80, 0]\n\n[lists]\nrefresh_s = 5\n";
        let doc = DeTable::parse(text).expect("toml");
        let at = |key, index| {
            let span = locate(doc.get_ref(), key, index).expect(key);
            position(text, span.start)
        };
        assert_eq!(at("sensor.ports", None), (2, 1));
        assert_eq!(at("sensor.ports", Some(1)), (2, 14));
        // Absent key: its table's header.
        assert_eq!(at("lists.ttl_s", None), (4, 2));
        assert_eq!(at("sensor.max_sources", None), (1, 2));
        assert!(locate(doc.get_ref(), "policy.block_ttl_s", None).is_none());
    }

    #[test]
    fn a_problem_reads_line_column_message() {
        let text = "[sensor]\nports = \"80\"\n";
        let error = toml::from_str::<super::super::Config>(text).expect_err("a string");
        let problem = Problem::toml(text, error);
        assert_eq!(
            problem.to_string(),
            "2:9: invalid type: string \"80\", expected a sequence"
        );
        let doc = DeTable::parse("[lists]\nttl_s = 9\n").expect("toml");
        let rule = Rule::OutOfRange {
            key: "lists.ttl_s",
            value: super::super::rule::Number::Int(9),
            expected: "1..=7776000".into(),
        };
        assert_eq!(
            Problem::rule("[lists]\nttl_s = 9\n", doc.get_ref(), rule).to_string(),
            "2:1: lists.ttl_s = 9 is out of range (expected 1..=7776000)"
        );
    }
}

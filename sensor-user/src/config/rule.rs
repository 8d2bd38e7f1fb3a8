//! The rules a configuration must follow beyond its schema (ranges, keys that need each other,
//! files it names), each broken rule naming the key it is about so that the report can point
//! at it.
use std::{borrow::Cow, fmt};

use crate::detect::api_spec::ApiSpecError;

/// A number as the file gave it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// An integer.
    Int(u64),
    /// A float.
    Float(f64),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A rule of the configuration that a file breaks.
#[derive(Debug)]
pub enum Rule {
    /// A number out of its range.
    OutOfRange {
        /// Dotted key, e.g. `sensor.req_capture_len`.
        key: &'static str,
        /// The value.
        value: Number,
        /// What is allowed.
        expected: Cow<'static, str>,
    },
    /// A list with too few or too many entries.
    Count {
        /// Dotted key.
        key: &'static str,
        /// Its entries.
        count: usize,
        /// What is allowed.
        expected: &'static str,
    },
    /// One entry of a list that is not allowed.
    Entry {
        /// Dotted key of the list.
        key: &'static str,
        /// The entry's index, from 0.
        index: usize,
        /// The entry as TOML would write it.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A key that is only meaningful with another one.
    Needs {
        /// Dotted key that was given.
        key: &'static str,
        /// Dotted key that is missing.
        needs: &'static str,
        /// What the missing key would hold.
        expected: &'static str,
    },
    /// A value that is not one of the allowed ones.
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// The value as TOML would write it.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// The OpenAPI document named by `detect.context.openapi` cannot be used.
    ApiSpec(ApiSpecError),
}

impl Rule {
    /// The dotted key the rule is about, and the index of the entry within it.
    pub fn place(&self) -> (&'static str, Option<usize>) {
        match self {
            Self::OutOfRange { key, .. }
            | Self::Count { key, .. }
            | Self::Needs { key, .. }
            | Self::Invalid { key, .. } => (key, None),
            Self::Entry { key, index, .. } => (key, Some(*index)),
            Self::ApiSpec(_) => ("detect.context.openapi", None),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange {
                key,
                value,
                expected,
            } => write!(f, "{key} = {value} is out of range (expected {expected})"),
            Self::Count {
                key,
                count,
                expected,
            } => write!(f, "{key} has {count} entries (expected {expected})"),
            Self::Entry {
                key,
                index,
                value,
                expected,
            } => write!(
                f,
                "{key}[{index}] = {value} is not allowed (expected {expected})"
            ),
            Self::Needs {
                key,
                needs,
                expected,
            } => write!(f, "{key} needs {needs} (expected {expected})"),
            Self::Invalid {
                key,
                value,
                expected,
            } => write!(f, "{key} = {value} is not allowed (expected {expected})"),
            Self::ApiSpec(e) => write!(
                f,
                "detect.context.openapi: {e} (expected an OpenAPI 3 document in YAML or JSON)"
            ),
        }
    }
}

//! The control socket's protocol: the client writes one [`Request`] as a JSON line; the agent
//! answers with one [`Response`] line, or, for a request that follows, with one line and then
//! one [`Response::Event`] line per live finding or decision until either side closes.
//!
//! Field names are stable: `--json` output is made of these types.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::detect::view::{AccountView, HourCount, SourceSummary, SourceView, Ttp};

/// Most lines of a list a request may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// Longest request line the agent reads, bytes.
pub const MAX_REQUEST: usize = 4096;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The agent's status.
    Status,
    /// The tracked sources, sorted by `sort` (descending), last seen within `since_s`
    /// seconds if given, at most `limit`.
    Sources {
        /// Sort key.
        sort: SortKey,
        /// Only sources seen in the last this many seconds.
        since_s: Option<u64>,
        /// Most rows.
        limit: usize,
    },
    /// Everything the agent knows about one source.
    Source {
        /// The address.
        source: IpAddr,
    },
    /// Everything the agent knows about one account.
    Account {
        /// The account name.
        account: String,
    },
    /// The recent findings and decisions (at most `limit`), then, with `follow`, every new
    /// one as it is made.
    Events {
        /// Most recent events.
        limit: usize,
        /// Keep the connection open and stream new events.
        follow: bool,
    },
    /// The API inventory.
    Endpoints {
        /// Most rows (busiest first).
        limit: usize,
    },
    /// The login fingerprints.
    Ttps {
        /// Most rows (most logins first).
        limit: usize,
    },
}

/// Sort keys of the sources table (all descending).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// The latest decision's score.
    #[default]
    Score,
    /// Request rate.
    Rate,
    /// Requests ever (up to 255).
    Requests,
    /// Failed answers.
    Failures,
    /// Failed logins.
    Logins,
    /// Distinct accounts.
    Accounts,
    /// Latest event.
    LastSeen,
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The request was refused or failed.
    Error {
        /// Why, one line.
        message: String,
    },
    /// The agent's status.
    Status(Status),
    /// The sources table.
    Sources {
        /// Sources tracked in all.
        tracked: u64,
        /// The rows.
        sources: Vec<SourceRow>,
    },
    /// One source.
    Source(Box<SourceReport>),
    /// One account (`None` when nothing is known about it).
    Account {
        /// What is known.
        account: Option<AccountView>,
    },
    /// Recent findings and decisions, oldest first, as the agent's event lines.
    Events {
        /// The event lines.
        events: Vec<serde_json::Value>,
    },
    /// One live finding or decision (a followed stream).
    Event {
        /// The event line.
        event: serde_json::Value,
    },
    /// The API inventory.
    Endpoints {
        /// Whether an OpenAPI document is configured (`documented` is `null` otherwise).
        openapi: bool,
        /// The rows.
        endpoints: Vec<EndpointRow>,
    },
    /// The login fingerprints.
    Ttps {
        /// Fingerprints tracked in all.
        tracked: u64,
        /// The rows.
        fingerprints: Vec<Ttp>,
        /// Distinct fingerprints per hour, the last 24 hours, oldest first.
        per_hour: Vec<HourCount>,
    },
}

/// The agent's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The binary's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// The interface it is attached to.
    pub iface: String,
    /// XDP attach mode in use.
    pub xdp_mode: String,
    /// TC attach mode in use.
    pub tc_mode: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Ring-buffer records read.
    pub events: u64,
    /// Records per second, over the last few seconds.
    pub events_per_s: f64,
    /// Records that failed to decode.
    pub decode_errors: u64,
    /// Blocks the policy believes active.
    pub active_blocks: u64,
    /// Blocks written into the maps in this run.
    pub blocks_written: u64,
    /// Whether detection runs.
    pub detection: bool,
    /// The detectors that run (empty when detection is off).
    pub detectors: Vec<String>,
    /// Decide and report, but write no block.
    pub dry_run: bool,
    /// The configuration file in use (`None`: the embedded default).
    pub config: Option<String>,
    /// Transactions, findings and decisions so far.
    pub transactions: u64,
    /// Findings made.
    pub findings: u64,
    /// Decisions made.
    pub decisions: u64,
    /// Sources tracked now.
    pub sources_tracked: u64,
}

/// One row of the sources table: the detection's summary and the latest decision on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRow {
    /// What detection knows.
    #[serde(flatten)]
    pub summary: SourceSummary,
    /// The latest decision about it that the agent remembers.
    pub decision: Option<DecisionBrief>,
}

/// A decision in one line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionBrief {
    /// Its id.
    pub id: u64,
    /// When, Unix ns.
    pub at_ns: u64,
    /// `observe`, `alert` or `block`.
    pub action: String,
    /// Where it is enforced.
    pub enforcement: String,
    /// Its score.
    pub score: f64,
    /// Its short reason.
    pub reason: String,
    /// Its TTL, s.
    pub ttl_s: u64,
}

/// Everything the agent knows about one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    /// The address asked about.
    pub source: IpAddr,
    /// What detection knows (`None`: not tracked).
    pub detection: Option<SourceView>,
    /// The latest decision about it.
    pub decision: Option<DecisionBrief>,
    /// Its recent findings and decisions, oldest first, as event lines.
    pub events: Vec<serde_json::Value>,
}

/// One endpoint of the API inventory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointRow {
    /// Method.
    pub method: String,
    /// Host, if the requests named one.
    pub host: Option<String>,
    /// Route template.
    pub route: String,
    /// Requests.
    pub count: u64,
    /// Answers with 2xx.
    pub success: u64,
    /// Answers with 3xx.
    pub redirect: u64,
    /// Answers with 4xx.
    pub client_error: u64,
    /// Answers with 5xx.
    pub server_error: u64,
    /// Requests without an answer (or with a 1xx one only).
    pub other: u64,
    /// First seen, Unix ns.
    pub first_seen_ns: u64,
    /// Latest seen, Unix ns.
    pub last_seen_ns: u64,
    /// Whether the OpenAPI document declares it (`None` without a document).
    pub documented: Option<bool>,
}

impl Response {
    /// An error answer.
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_tagged_json_object_each() {
        let cases = [
            (Request::Status, r#"{"cmd":"status"}"#),
            (
                Request::Sources {
                    sort: SortKey::LastSeen,
                    since_s: Some(60),
                    limit: 5,
                },
                r#"{"cmd":"sources","sort":"last_seen","since_s":60,"limit":5}"#,
            ),
            (
                Request::Source {
                    source: "2001:db8::7".parse().expect("ip"),
                },
                r#"{"cmd":"source","source":"2001:db8::7"}"#,
            ),
            (
                Request::Account {
                    account: "alice".into(),
                },
                r#"{"cmd":"account","account":"alice"}"#,
            ),
            (
                Request::Events {
                    limit: 3,
                    follow: true,
                },
                r#"{"cmd":"events","limit":3,"follow":true}"#,
            ),
            (Request::Ttps { limit: 1 }, r#"{"cmd":"ttps","limit":1}"#),
        ];
        for (request, text) in cases {
            assert_eq!(serde_json::to_string(&request).expect("json"), text);
            let back: Request = serde_json::from_str(text).expect("parse");
            assert_eq!(back, request);
        }
    }

    #[test]
    fn bad_requests_do_not_parse() {
        for text in [
            "",
            "{}",
            r#"{"cmd":"nope"}"#,
            r#"{"cmd":"sources","sort":"score"}"#,
            r#"{"cmd":"source","source":"not-an-address"}"#,
            r#"{"cmd":"sources","sort":"bogus","since_s":null,"limit":1}"#,
        ] {
            assert!(serde_json::from_str::<Request>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn responses_round_trip() {
        let row = SourceRow {
            summary: SourceSummary {
                source: "198.51.100.9".parse().expect("ip"),
                last_seen_ns: 7,
                history_since_ns: Some(3),
                requests_total: 12,
                request_rate: 0.5,
                answered: 12.0,
                successes: 0.0,
                failures: 12.0,
                success_share: Some(0.0),
                logins_failed: 12.0,
                logins_ok: 0.0,
                accounts: 1.0,
                sessions: 0.0,
                packet_rate: 1.5,
                syn_rate: 0.5,
                verified: true,
            },
            decision: Some(DecisionBrief {
                id: 1,
                at_ns: 6,
                action: "block".into(),
                enforcement: "kernel".into(),
                score: 2.5,
                reason: "apisensor: brute_force".into(),
                ttl_s: 600,
            }),
        };
        let response = Response::Sources {
            tracked: 1,
            sources: vec![row],
        };
        let text = serde_json::to_string(&response).expect("json");
        // The summary's fields sit beside the decision, as in `--json` output.
        assert!(
            text.starts_with(
                r#"{"type":"sources","tracked":1,"sources":[{"source":"198.51.100.9","#
            ),
            "{text}"
        );
        let back: Response = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, response);
        let error = Response::error("refused");
        assert_eq!(
            serde_json::to_string(&error).expect("json"),
            r#"{"type":"error","message":"refused"}"#
        );
    }
}

//! HTTP/1.x over reassembled TCP: turns the two byte streams of a connection into
//! [`Transaction`] records (one request paired with its response), and keeps the API inventory
//! ([`Catalogue`]).
//!
//! # Layout
//!
//! - [`conn`]: [`HttpConn`], the per-connection state machine fed with [`Chunk`]s.
//! - `parser`: body framing, a buffer-free chunked decoder, resynchronisation scanners. Heads
//!   are parsed by `httparse`.
//! - `head`: from a parsed head to record fields.
//! - `route`: [`route_template`].
//! - [`fingerprint`]: [`RequestFingerprint`], the stable hash of a client's HTTP shape.
//! - [`transport`]: [`TransportFingerprint`], the shape of a client's TCP stack from its SYN.
//! - `identity`: account (Basic, JWT `sub`, login body field), session hash, login outcome.
//! - `proxy`: PROXY protocol v1/v2, `Forwarded` and `X-Forwarded-For`.
//! - [`catalogue`]: the API inventory.
//! - [`transaction`]: the record and its anomaly flags.
//! - `reuse`: the pools behind [`Reuse`], spent records and buffers kept for the next
//!   transactions.
//! - [`config`]: the configuration, [`HttpConfig`].
//!
//! # Invariants
//!
//! - Pure: no I/O, no clock; time comes with each chunk.
//! - No panic on any input, and memory bounded per connection by the configured limits.
//! - Secrets (passwords, tokens, cookie values, `Authorization`) never appear in a record, in a
//!   `Debug` output or in an error: only names and keyed hashes leave this module.
//!
//! [`Chunk`]: crate::segment::Chunk

pub mod catalogue;
pub mod config;
pub mod conn;
pub mod fingerprint;
mod head;
mod identity;
mod parser;
mod proxy;
mod reuse;
pub mod route;
pub mod transaction;
pub mod transport;

#[cfg(test)]
mod tests;

pub use catalogue::{Catalogue, EndpointStats, StatusMix};
pub use config::{HttpConfig, HttpLimits, LoginRoute};
pub use conn::{ConnMeta, HttpConn, Reuse};
pub use fingerprint::RequestFingerprint;
pub use route::route_template;
pub use transaction::{Flag, Flags, HttpVersion, LoginOutcome, NameList, ProxyVia, Transaction};
pub use transport::TransportFingerprint;

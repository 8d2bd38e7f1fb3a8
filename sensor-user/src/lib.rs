//! apisensor's user space: the agent that loads the kernel programs and analyses what they
//! sample, and the operator CLI over the pinned maps.
//!
//! # Layout
//!
//! Data flows top to bottom:
//!
//! - [`loader`] loads and attaches the embedded eBPF object and pins its maps.
//! - [`reader`] drains the two ring buffers; [`event`] decodes each record into a
//!   [`segment::Segment`] (with length checks, typed errors).
//! - [`replay`] does the same from pcap/pcapng files.
//! - [`analyzer`] owns the flow table: per flow, two [`reassembly`] streams feed one
//!   [`http`] connection, which yields transactions.
//! - `keyed_hash` seeds the hash tables that hold keys chosen by remote peers.
//! - [`verdict`] is the only writer of the block and allow maps; [`maps`] reads the pinned maps.
//! - [`metrics`] is the agent's Prometheus registry and endpoint.
//! - [`cli`] holds one module per subcommand of the `apisensor` binary.
//!
//! `segment`, `reassembly`, `http` and `analyzer` are pure: no I/O, time passed in.
pub mod analyzer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod decide;
pub mod detect;
pub mod event;
pub mod event_log;
pub mod http;
pub mod json;
mod keyed_hash;
pub mod lists;
pub mod loader;
mod lru;
pub mod maps;
pub mod metrics;
pub mod pipeline;
pub mod reader;
pub mod reassembly;
pub mod replay;
pub mod segment;
pub mod state_dir;
pub mod verdict;

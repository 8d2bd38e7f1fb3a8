//! The attack lab's sample API: a small HTTP/1.1 application that nginx fronts in the lab, so
//! attack tools and detectors meet something that behaves like a real API.
//!
//! It has accounts with passwords and session cookies (a login answers after a fixed delay, as
//! password hashing would), resources addressed by numeric ids, a search route, a notifications
//! route for polling clients and a health route, and it writes one access-log line per request
//! like a normal application. Account `userNNNN` has password `pw-NNNN` (see [`accounts`]).
//!
//! # Layout
//!
//! - [`cli`]: the command line.
//! - [`accounts`]: the generated accounts and their passwords.
//! - [`sessions`]: session tokens, bounded, with a poll counter per session.
//! - [`items`]: the generated items and the search over their names.
//! - [`form`]: `application/x-www-form-urlencoded` decoding (login bodies, query strings).
//! - [`routes`]: the router and handlers, pure functions of the [`routes::App`] state and one
//!   request (no sockets), so unit tests drive them directly.
//! - [`access_log`]: the access-log line and its writer; no password, cookie value or query
//!   string ever reaches it.
//! - [`server`]: listeners (IPv4 and IPv6), the accept loops and hyper's HTTP/1 connections.
pub mod access_log;
pub mod accounts;
pub mod cli;
pub mod form;
pub mod items;
pub mod routes;
pub mod server;
pub mod sessions;

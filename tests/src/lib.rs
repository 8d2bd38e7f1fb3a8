//! Helpers for apisensor's privileged integration tests: the network-namespace [`lab`] that
//! end-to-end tests (XDP, capture replay) run their traffic in.
pub mod lab;
pub mod packet;

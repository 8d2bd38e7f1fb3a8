//! apisensor's integration tests, linked into one binary. Each module used to be a test binary
//! of its own, and each of those linked the agent, aya, tokio and the lab again: twenty links,
//! and twenty copies of the same code and debug information in the target directory. The
//! modules stay as separate as the files were. `cargo xtask test` runs their tests one at a
//! time (`--test-threads=1`), as it did the binaries. One module alone:
//! `cargo test -p apisensor-tests --test integration e2e_block:: -- --test-threads=1`.

mod allow_exceptions;
mod capture_detect;
mod capture_replay;
mod e2e_block;
mod e2e_control;
mod e2e_detect;
mod e2e_flood;
mod e2e_lists;
mod e2e_metrics;
mod e2e_nat;
mod e2e_proxy;
mod e2e_reload;
mod e2e_rotation;
mod lab;
mod lab_short;
mod overhead_floors;
mod package;
mod pins;
mod sample_api;
mod xdp_fixtures;

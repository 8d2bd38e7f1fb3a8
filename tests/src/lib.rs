//! Helpers for apisensor's privileged integration tests: the network-namespace [`lab`] that
//! end-to-end tests (XDP, capture replay) run their traffic in, and the [`agent`] under test.
pub mod agent;
pub mod attack_lab;
pub mod flight;
pub mod lab;
pub mod nat;
pub mod packet;
pub mod rotation;

/// Path of the `apisensor` binary built in the same target directory as the running test or
/// benchmark (`target/<profile>/apisensor`).
///
/// # Panics
///
/// If it has not been built (`cargo build -p sensor-user`; `cargo xtask test` does).
pub fn apisensor_bin() -> std::path::PathBuf {
    workspace_bin("apisensor", "sensor-user")
}

/// Path of the lab's `sample-api` binary, built like [`apisensor_bin`]'s
/// (`target/<profile>/sample-api`).
///
/// # Panics
///
/// If it has not been built (`cargo build -p sample-api`; `cargo xtask test` does).
pub fn sample_api_bin() -> std::path::PathBuf {
    workspace_bin("sample-api", "sample-api")
}

/// Path of the overhead run's sampling floor, `target/<profile>/overhead_sampler`, built like
/// [`apisensor_bin`]'s.
///
/// # Panics
///
/// If it has not been built (`cargo build -p apisensor-tests --bin overhead_sampler`; `cargo
/// xtask lab` and `cargo xtask test` do).
pub fn overhead_sampler_bin() -> std::path::PathBuf {
    workspace_bin("overhead_sampler", "apisensor-tests")
}

/// The binary `name` of workspace package `package`, next to the running test's directory.
fn workspace_bin(name: &str, package: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found next to {}: build it first (`cargo build -p {package}`; \
                 `cargo xtask test` does)",
                exe.display()
            )
        })
}

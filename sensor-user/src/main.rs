//! The `apisensor` binary: the agent and the operator CLI (see `sensor_user::cli`).
fn main() -> std::process::ExitCode {
    sensor_user::cli::main()
}

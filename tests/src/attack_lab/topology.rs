//! One scenario's lab: the namespace lab ([`crate::lab::Lab`]) with the sample API behind nginx
//! on port 80 in the server namespace, the agent attached to the server's veth with its
//! default configuration (the lab gives it only its pin directory, state directory, interface
//! and event file), and every client address the scenario uses on the client's veth. Dropping
//! it stops every process and removes the namespaces and the pins.
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::agent::{self, AgentFiles, PinDir};
use crate::lab::{ApiProxy, Lab, SampleApi};

use super::traffic::{self, Traffic};

/// nginx's port, monitored by the agent's default configuration.
pub const HTTP_PORT: u16 = 80;
/// The sample API's port behind nginx (loopback of the server namespace).
const API_PORT: u16 = 8081;

/// A lab ready for one scenario; see the module docs.
pub struct Testbed {
    /// The namespaces and processes (dropped first: the agent stops before its pins go).
    pub lab: Lab,
    /// The agent's pin directory.
    pub pin: PinDir,
    /// The agent's files (its event file is read by the measurement).
    pub files: AgentFiles,
    /// The agent's PID (`apisensor run` itself: nsenter execs it).
    pub agent: u32,
    /// The sample API.
    pub api: SampleApi,
    /// nginx in front of it.
    pub proxy: ApiProxy,
}

/// What a tool run returned.
#[derive(Debug)]
pub struct ToolRun {
    /// When it was started, Unix ns.
    pub started_ns: u64,
    /// When it ended or was stopped, Unix ns.
    pub ended_ns: u64,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Testbed {
    /// Builds the lab tagged `tag` with `clients` on the client's veth (IPv4 as /24s, IPv6 as
    /// /48s, each routed back from the server), starts the sample API, nginx and the agent
    /// (with `--dry-run` if `dry_run`).
    ///
    /// # Panics
    ///
    /// If any step fails (what was made is removed).
    pub fn new(tag: &str, clients: &[IpAddr], dry_run: bool) -> Self {
        let mut lab = Lab::new(tag);
        let own = [
            IpAddr::V4(lab.client_v4()),
            IpAddr::V4(lab.client_v4_alt()),
            IpAddr::V6(lab.client_v6()),
            IpAddr::V6(lab.client_v6_alt()),
        ];
        for a in clients.iter().filter(|a| !own.contains(a)) {
            lab.add_client_address_on_link(*a, if a.is_ipv4() { 24 } else { 48 });
        }
        let api = lab.start_sample_api(API_PORT, &[]);
        let proxy = lab.start_nginx_for_api(HTTP_PORT, API_PORT);
        let pin = PinDir::new(tag);
        // An empty configuration file: every key takes the embedded default.
        let files = AgentFiles::in_lab(&lab, 1, "");
        let extra: &[&str] = if dry_run { &["--dry-run"] } else { &[] };
        let agent = agent::start(&mut lab, &pin, &files, extra);
        Self {
            lab,
            pin,
            files,
            agent,
            api,
            proxy,
        }
    }

    /// The traffic context for actors that stop at `deadline` at the latest.
    pub fn traffic(&self, deadline: Instant) -> Traffic {
        Traffic::new(
            self.lab.client_ns(),
            SocketAddr::new(IpAddr::V4(self.lab.server_v4()), HTTP_PORT),
            SocketAddr::new(IpAddr::V6(self.lab.server_v6()), HTTP_PORT),
            deadline,
        )
    }

    /// The base URL of the API through nginx, IPv4.
    pub fn base_url(&self) -> String {
        format!("http://{}:{HTTP_PORT}", self.lab.server_v4())
    }

    /// The primary client address: the source of tools that cannot choose one.
    pub fn tool_source(&self) -> IpAddr {
        IpAddr::V4(self.lab.client_v4())
    }

    /// Writes `lines` to `name` in the lab's directory and returns its path.
    ///
    /// # Panics
    ///
    /// If it cannot be written.
    pub fn write_list(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.lab.tmp_dir().join(name);
        std::fs::write(&path, lines.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Runs `program ARGS` in the client namespace with the lab directory as its working
    /// directory until it exits, `timeout` passes, the run is interrupted, or `enough()` says
    /// so (checked every 100 ms); then stops it.
    ///
    /// # Panics
    ///
    /// If it cannot be started.
    pub fn run_tool(
        &mut self,
        program: &str,
        args: &[&str],
        timeout: Duration,
        enough: &mut dyn FnMut() -> bool,
    ) -> ToolRun {
        let dir = path_text(self.lab.tmp_dir());
        let out = self.lab.tmp_dir().join(format!("{program}.out"));
        let mut command = vec!["-c", r#"cd "$0" && exec "$@""#, &dir, program];
        command.extend_from_slice(args);
        let ns = self.lab.client_ns().to_owned();
        let started_ns = sensor_user::clock::unix_ns();
        let pid = self.lab.spawn(&ns, "sh", &command, Some(&out));
        let deadline = Instant::now() + timeout;
        while self.lab.is_running(pid)
            && Instant::now() < deadline
            && !traffic::interrupted()
            && !enough()
        {
            thread::sleep(Duration::from_millis(100));
        }
        self.lab.stop(pid);
        ToolRun {
            started_ns,
            ended_ns: sensor_user::clock::unix_ns(),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: self.lab.stderr_of(pid),
        }
    }
}

/// A lab path as a command-line argument.
fn path_text(p: &Path) -> String {
    p.to_str().expect("lab paths are UTF-8").to_owned()
}

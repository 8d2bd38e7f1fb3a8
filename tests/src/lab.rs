//! A two-namespace network lab for privileged integration tests.
//!
//! [`Lab::new`] creates a server and a client network namespace joined by a veth pair, with
//! addresses only from the documentation ranges `198.51.100.0/24` and `2001:db8::/32` and no default
//! route, so test traffic can never leave the lab. Programs run inside a namespace through
//! `nsenter --net=/run/netns/NAME` (not `ip netns exec`, which remounts `/sys` and hides pinned
//! BPF maps). Every process the lab starts is tracked by PID; dropping the lab, also while a test
//! panics, stops those processes, deletes both namespaces (which deletes the veth pair) and
//! removes the lab's temporary directory.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Server address on the veth, IPv4.
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Client's first address, IPv4.
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Client's second address, IPv4.
const CLIENT_V4_ALT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// Server address on the veth, IPv6.
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// Client's first address, IPv6.
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
/// Client's second address, IPv6.
const CLIENT_V6_ALT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 3);

/// How long [`Lab::stop`] and the drop guard wait after SIGTERM before sending SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long [`Lab::start_nginx`] waits for nginx to accept connections.
const NGINX_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Lab::start_sample_api`] waits for the API's `/health`.
const API_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on every `ip` command the lab runs itself.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of the body served at `/big`.
pub const BIG_BODY_LEN: usize = 100 * 1024;
/// Value of the session cookie `POST /login` sets on success.
pub const LOGIN_COOKIE: &str = "session=lab-session-0123456789abcdef";

/// Distinguishes labs created by the same process (tests run on several threads).
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The lab's sample API (`sample-api`), started by [`Lab::start_sample_api`].
#[derive(Debug, Clone)]
pub struct SampleApi {
    /// Its PID, for [`Lab::stop`].
    pub pid: u32,
    /// The port it listens on, on every server address (`0.0.0.0` and `[::]`).
    pub port: u16,
    /// Its access log (one line per request, including the lab's readiness probes of
    /// `/health`).
    pub log: PathBuf,
}

/// nginx reverse-proxying to the sample API, started by [`Lab::start_nginx_for_api`].
#[derive(Debug, Clone)]
pub struct ApiProxy {
    /// The nginx master's PID, for [`Lab::stop`].
    pub pid: u32,
    /// The port it listens on, IPv4 and IPv6.
    pub port: u16,
    /// nginx's access log in the standard `combined` format (the file `fail2ban` and `CrowdSec`
    /// read); it includes the lab's readiness probes of `/health`.
    pub access_log: PathBuf,
    /// nginx's error log.
    pub error_log: PathBuf,
}

/// One process started by [`Lab::spawn`].
struct Tracked {
    /// The child handle, used to reap it.
    child: Child,
}

/// A server and a client network namespace joined by a veth pair; see the module docs.
pub struct Lab {
    /// Name of the server namespace.
    server_ns: String,
    /// Name of the client namespace.
    client_ns: String,
    /// The veth end inside the server namespace.
    server_if: String,
    /// The veth end inside the client namespace.
    client_if: String,
    /// Namespaces created so far, deleted on drop.
    created_ns: Vec<String>,
    /// Processes started by `spawn`, stopped on drop.
    tracked: Vec<Tracked>,
    /// Stderr files of every process ever spawned, also after it was stopped.
    stderr_files: Vec<(u32, PathBuf)>,
    /// Counter for unique file names in `tmp`.
    spawn_seq: u32,
    /// Private scratch directory (nginx prefix, stderr files, captures).
    tmp: tempfile::TempDir,
}

impl Lab {
    /// Creates the lab: unique short names from `tag` and the PID (interface names stay within
    /// 15 bytes), namespaces `<x>-srv` and `<x>-cli`, a veth pair between them, `lo` up in both,
    /// no default route. Server: `198.51.100.1/24` and `2001:db8:100::1/64`; client: `198.51.100.2/24`,
    /// `198.51.100.3/24`, `2001:db8:100::2/64` and `2001:db8:100::3/64` (IPv6 with `nodad`, usable at
    /// once).
    ///
    /// # Panics
    ///
    /// If not run as root, if `ip` or `nsenter` is missing, or if any setup step fails; what was
    /// created before the failure is cleaned up.
    pub fn new(tag: &str) -> Lab {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert!(euid == 0, "the network lab needs root (euid is {euid})");
        require_tool("ip", &["-V"]);
        require_tool("nsenter", &["--version"]);

        let short: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .take(4)
            .collect();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{short}{:x}{n:x}", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("apisensor-lab-{base}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the lab's temporary directory: {e}"));
        let mut lab = Lab {
            server_ns: format!("{base}-srv"),
            client_ns: format!("{base}-cli"),
            server_if: format!("{base}s"),
            client_if: format!("{base}c"),
            created_ns: Vec::new(),
            tracked: Vec::new(),
            stderr_files: Vec::new(),
            spawn_seq: 0,
            tmp,
        };
        debug_assert!(lab.server_if.len() <= 15 && lab.client_if.len() <= 15);
        lab.setup();
        lab
    }

    /// Creates the namespaces, the veth pair and the addresses. A panic here drops `self`,
    /// which removes whatever was created.
    fn setup(&mut self) {
        for ns in [self.server_ns.clone(), self.client_ns.clone()] {
            if Path::new("/run/netns").join(&ns).exists() {
                // A leftover of an earlier process with the same PID that was killed before its
                // guard ran: the name is ours by construction, so reclaim it.
                ip(&["netns", "del", &ns]);
            }
            ip(&["netns", "add", &ns]);
            self.created_ns.push(ns);
        }
        let (sns, cns, sif, cif) = (
            self.server_ns.clone(),
            self.client_ns.clone(),
            self.server_if.clone(),
            self.client_if.clone(),
        );
        // Both ends are created directly inside their namespaces, so the root namespace never
        // sees them.
        ip(&[
            "link", "add", "name", &sif, "netns", &sns, "type", "veth", "peer", "name", &cif,
            "netns", &cns,
        ]);
        let server_v6 = format!("{SERVER_V6}/64");
        let client_v6 = format!("{CLIENT_V6}/64");
        let client_v6_alt = format!("{CLIENT_V6_ALT}/64");
        let server_v4 = format!("{SERVER_V4}/24");
        let client_v4 = format!("{CLIENT_V4}/24");
        let client_v4_alt = format!("{CLIENT_V4_ALT}/24");
        let plan: [(&str, &str, &[&str]); 2] = [
            (&sns, &sif, &[&server_v4]),
            (&cns, &cif, &[&client_v4, &client_v4_alt]),
        ];
        for (ns, dev, v4s) in plan {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            for a in v4s {
                ip(&["-n", ns, "addr", "add", a, "dev", dev]);
            }
        }
        let plan6: [(&str, &str, &[&str]); 2] = [
            (&sns, &sif, &[&server_v6]),
            (&cns, &cif, &[&client_v6, &client_v6_alt]),
        ];
        for (ns, dev, v6s) in plan6 {
            for a in v6s {
                ip(&["-n", ns, "-6", "addr", "add", a, "dev", dev, "nodad"]);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// Name of the server namespace.
    pub fn server_ns(&self) -> &str {
        &self.server_ns
    }

    /// Name of the client namespace.
    pub fn client_ns(&self) -> &str {
        &self.client_ns
    }

    /// The veth end inside the server namespace.
    pub fn server_if(&self) -> &str {
        &self.server_if
    }

    /// The veth end inside the client namespace.
    pub fn client_if(&self) -> &str {
        &self.client_if
    }

    /// The server's IPv4 address, `198.51.100.1`.
    pub fn server_v4(&self) -> Ipv4Addr {
        SERVER_V4
    }

    /// The client's first IPv4 address, `198.51.100.2`.
    pub fn client_v4(&self) -> Ipv4Addr {
        CLIENT_V4
    }

    /// The client's second IPv4 address, `198.51.100.3`.
    pub fn client_v4_alt(&self) -> Ipv4Addr {
        CLIENT_V4_ALT
    }

    /// The server's IPv6 address, `2001:db8:100::1`.
    pub fn server_v6(&self) -> Ipv6Addr {
        SERVER_V6
    }

    /// The client's first IPv6 address, `2001:db8:100::2`.
    pub fn client_v6(&self) -> Ipv6Addr {
        CLIENT_V6
    }

    /// The client's second IPv6 address, `2001:db8:100::3`.
    pub fn client_v6_alt(&self) -> Ipv6Addr {
        CLIENT_V6_ALT
    }

    /// The lab's private temporary directory, removed on drop; a place for capture files.
    pub fn tmp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs `program` to completion inside namespace `ns`, killing it (and its process group)
    /// after `timeout`. A timeout is reported in the returned status (killed by SIGKILL) and in a
    /// line appended to its stderr.
    ///
    /// # Panics
    ///
    /// If the program cannot be started.
    pub fn run(&self, ns: &str, program: &str, args: &[&str], timeout: Duration) -> Output {
        run_in_ns(ns, program, args, timeout)
    }

    /// Spawns a long-running `program` inside namespace `ns` and returns its PID. Its stdout goes
    /// to `stdout_path` (or nowhere), its stderr to a file in the lab directory (see
    /// [`Lab::stderr_of`]). The process is stopped by [`Lab::stop`] or on drop.
    ///
    /// # Panics
    ///
    /// If the program cannot be started or the stdout file cannot be created.
    pub fn spawn(
        &mut self,
        ns: &str,
        program: &str,
        args: &[&str],
        stdout_path: Option<&Path>,
    ) -> u32 {
        self.spawn_seq += 1;
        let stderr_path = self
            .tmp
            .path()
            .join(format!("spawn{}.stderr", self.spawn_seq));
        let stderr = File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_path.display()));
        let stdout = match stdout_path {
            Some(p) => Stdio::from(
                File::create(p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display())),
            ),
            None => Stdio::null(),
        };
        let mut cmd = ns_command(ns, program, args);
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {program} in {ns}: {e}"));
        let pid = child.id();
        self.stderr_files.push((pid, stderr_path));
        self.tracked.push(Tracked { child });
        pid
    }

    /// What a process started by [`Lab::spawn`] wrote to stderr so far, also after it was
    /// stopped (empty if unknown).
    pub fn stderr_of(&self, pid: u32) -> String {
        self.stderr_files
            .iter()
            .rev()
            .find(|(p, _)| *p == pid)
            .and_then(|(_, path)| std::fs::read(path).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until a process started by [`Lab::spawn`] has written `text` to stderr (tcpdump's
    /// "listening on", say).
    ///
    /// # Panics
    ///
    /// If it has not within `within`, with what it wrote.
    pub fn wait_for_stderr(&self, pid: u32, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr_of(pid).contains(text) {
            assert!(
                Instant::now() < deadline,
                "pid {pid} did not write {text:?} within {within:?}: {}",
                self.stderr_of(pid)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether a process started by [`Lab::spawn`] is still running; reaps it if it exited.
    pub fn is_running(&mut self, pid: u32) -> bool {
        self.tracked
            .iter_mut()
            .find(|t| t.child.id() == pid)
            .is_some_and(|t| matches!(t.child.try_wait(), Ok(None)))
    }

    /// Stops one process started by [`Lab::spawn`]: SIGTERM, wait up to 5 s, then SIGKILL.
    /// Returns how it ended.
    ///
    /// # Panics
    ///
    /// If `pid` is not a process of this lab.
    pub fn stop(&mut self, pid: u32) -> ExitStatus {
        self.stop_with(pid, libc::SIGTERM)
    }

    /// Like [`Lab::stop`] but sends SIGINT first (the polite stop for tcpdump and dumpcap).
    ///
    /// # Panics
    ///
    /// If `pid` is not a process of this lab.
    pub fn interrupt(&mut self, pid: u32) -> ExitStatus {
        self.stop_with(pid, libc::SIGINT)
    }

    /// Sends `signal`, waits up to [`STOP_GRACE`], then SIGKILL; forgets the process.
    fn stop_with(&mut self, pid: u32, signal: i32) -> ExitStatus {
        let idx = self
            .tracked
            .iter()
            .position(|t| t.child.id() == pid)
            .unwrap_or_else(|| panic!("pid {pid} is not a process of this lab"));
        let mut tracked = self.tracked.swap_remove(idx);
        if let Ok(Some(status)) = tracked.child.try_wait() {
            return status;
        }
        send_signal(pid, signal);
        if let Some(status) = wait_until(&mut tracked.child, Instant::now() + STOP_GRACE) {
            return status;
        }
        send_signal(pid, libc::SIGKILL);
        tracked
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap pid {pid}: {e}"))
    }

    /// Starts nginx in the server namespace with a private configuration (prefix in the lab
    /// directory, one worker, no daemon) listening on `0.0.0.0:port` and `[::]:port`, and waits
    /// (bounded) until it accepts connections. Returns the master's PID.
    ///
    /// Routes: `/` 200 text; `/users/<n>` 200 JSON; `POST /login` 200 with
    /// `Set-Cookie: session=...` (see [`LOGIN_COOKIE`]) when the request has header
    /// `X-Test-Login: ok`, else 401 (405 for other methods); `POST /form/login` the same as a
    /// form login page, but a failure is 403 with an HTML body saying `login failed` (form
    /// attack tools take a 401 for HTTP authentication); `/big` a body of [`BIG_BODY_LEN`]
    /// bytes; `/chunked` an HTML body sent with `Transfer-Encoding: chunked`.
    ///
    /// # Panics
    ///
    /// If nginx is missing, exits, or does not accept within 15 s (its error log is printed).
    pub fn start_nginx(&mut self, port: u16) -> u32 {
        self.start_nginx_with(port, None)
    }

    /// [`Lab::start_nginx`], also serving the same routes on `proxy_port` to a proxy that
    /// speaks the PROXY protocol (`listen ... proxy_protocol`: every connection there must
    /// start with a PROXY header).
    ///
    /// # Panics
    ///
    /// As [`Lab::start_nginx`].
    pub fn start_nginx_behind_proxy(&mut self, port: u16, proxy_port: u16) -> u32 {
        self.start_nginx_with(port, Some(proxy_port))
    }

    /// Starts nginx on `port`, and on `proxy_port` with the PROXY protocol if given.
    fn start_nginx_with(&mut self, port: u16, proxy_port: Option<u16>) -> u32 {
        let dir = self.nginx_dir();
        let big: Vec<u8> = (0..BIG_BODY_LEN)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
            .collect();
        write_file(&dir.join("html/big.txt"), &big);
        let mut chunked = String::from("<html><body>\n");
        for i in 0..200 {
            let _ = writeln!(chunked, "<p>line {i} PLACEHOLDER</p>");
        }
        chunked.push_str("</body></html>\n");
        write_file(&dir.join("html/chunked.html"), chunked.as_bytes());
        let conf = nginx_conf(&dir, port, proxy_port);
        self.run_nginx(&dir, &conf, &format!("http://{SERVER_V4}:{port}/"))
    }

    /// Starts the lab's sample API (`sample-api`, see [`crate::sample_api_bin`]) in the server
    /// namespace, listening on `0.0.0.0:port` and `[::]:port`, logging to a file in the lab
    /// directory, with `extra_args` appended (`--accounts 100`, `--login-delay-ms 20`, ...).
    /// Waits (bounded) until `/health` answers 200 inside the server namespace.
    ///
    /// # Panics
    ///
    /// If the binary has not been built, if it exits, or if it does not answer within 15 s (its
    /// stderr is printed).
    pub fn start_sample_api(&mut self, port: u16, extra_args: &[&str]) -> SampleApi {
        require_tool("curl", &["--version"]);
        let bin = path_str(&crate::sample_api_bin());
        self.spawn_seq += 1;
        let log = self
            .tmp
            .path()
            .join(format!("sample-api{}.log", self.spawn_seq));
        let (v4, v6, log_s) = (
            format!("0.0.0.0:{port}"),
            format!("[::]:{port}"),
            path_str(&log),
        );
        let mut args = vec!["--listen", &v4, "--listen", &v6, "--log", &log_s];
        args.extend_from_slice(extra_args);
        let ns = self.server_ns.clone();
        let pid = self.spawn(&ns, &bin, &args, None);
        let url = format!("http://127.0.0.1:{port}/health");
        let deadline = Instant::now() + API_READY_TIMEOUT;
        loop {
            assert!(
                self.is_running(pid),
                "sample-api exited at start: {}",
                self.stderr_of(pid)
            );
            let out = self.run(
                &ns,
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "1",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &url,
                ],
                Duration::from_secs(5),
            );
            if out.stdout == b"200" {
                return SampleApi { pid, port, log };
            }
            assert!(
                Instant::now() < deadline,
                "sample-api did not answer {url} within {API_READY_TIMEOUT:?}: {}",
                self.stderr_of(pid)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts nginx in the server namespace (private prefix, one worker, no daemon) listening
    /// on `0.0.0.0:listen_port` and `[::]:listen_port` and reverse-proxying every path to the
    /// sample API on `127.0.0.1:api_port` over HTTP/1.1 with kept-alive upstream connections,
    /// passing `Host`, `X-Real-IP: $remote_addr` and `X-Forwarded-For`. Its access log is in
    /// the `combined` format ([`ApiProxy::access_log`]). Waits (bounded) until `/health`
    /// answers 200 through it from the client namespace. Start the API first
    /// ([`Lab::start_sample_api`]).
    ///
    /// # Panics
    ///
    /// If nginx is missing, exits, or does not answer within 15 s (its error log is printed).
    pub fn start_nginx_for_api(&mut self, listen_port: u16, api_port: u16) -> ApiProxy {
        let dir = self.nginx_dir();
        let conf = nginx_api_conf(&dir, listen_port, api_port);
        let pid = self.run_nginx(
            &dir,
            &conf,
            &format!("http://{SERVER_V4}:{listen_port}/health"),
        );
        ApiProxy {
            pid,
            port: listen_port,
            access_log: dir.join("logs/access.log"),
            error_log: dir.join("logs/error.log"),
        }
    }

    /// A fresh nginx prefix directory in the lab directory, with `logs`, `tmp` and `html`.
    fn nginx_dir(&mut self) -> PathBuf {
        require_tool("nginx", &["-v"]);
        self.spawn_seq += 1;
        let dir = self.tmp.path().join(format!("nginx{}", self.spawn_seq));
        for sub in ["", "logs", "tmp", "html"] {
            std::fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.join(sub).display()));
        }
        dir
    }

    /// Writes `conf` to `dir/nginx.conf`, starts nginx with it in the server namespace and
    /// waits (bounded) until `ready_url` answers a status below 400 from the client
    /// namespace. Returns the master's PID.
    fn run_nginx(&mut self, dir: &Path, conf: &str, ready_url: &str) -> u32 {
        let conf_path = dir.join("nginx.conf");
        write_file(&conf_path, conf.as_bytes());
        let error_log = dir.join("logs/error.log");
        let (dir_s, conf_s, err_s) = (path_str(dir), path_str(&conf_path), path_str(&error_log));
        let ns = self.server_ns.clone();
        let pid = self.spawn(
            &ns,
            "nginx",
            &["-p", &dir_s, "-c", &conf_s, "-e", &err_s],
            None,
        );

        let deadline = Instant::now() + NGINX_READY_TIMEOUT;
        loop {
            assert!(
                self.is_running(pid),
                "nginx exited at start; stderr: {}; error log: {}",
                self.stderr_of(pid),
                read_lossy(&error_log)
            );
            let out = self.curl(
                IpAddr::V4(CLIENT_V4),
                ready_url,
                &["--fail", "-o", "/dev/null"],
                Duration::from_secs(1),
            );
            if out.status.success() {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not answer {ready_url} within {NGINX_READY_TIMEOUT:?}; error log: {}",
                read_lossy(&error_log)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds `addr` (a host address, from the lab's documentation ranges) to the client
    /// namespace's loopback: clients there can then use it as a source towards a program in
    /// that namespace (a proxy), which sees it as the client's address.
    ///
    /// # Panics
    ///
    /// If `addr` is not a documentation address or `ip addr add` fails.
    pub fn add_client_address(&self, addr: IpAddr) {
        assert_documentation(addr);
        let host = if addr.is_ipv4() { 32 } else { 128 };
        let net = format!("{addr}/{host}");
        ip(&["-n", &self.client_ns, "addr", "add", &net, "dev", "lo"]);
    }

    /// Adds `addr` to the client's veth, on the link as a `/len` network, and routes that
    /// network to the veth in the server namespace (so the server answers it): a client
    /// address from another documentation prefix than the lab's own.
    ///
    /// # Panics
    ///
    /// If `addr` is not a documentation address or an `ip` command fails.
    pub fn add_client_address_on_link(&self, addr: IpAddr, len: u8) {
        assert_documentation(addr);
        let with_len = format!("{addr}/{len}");
        let net = ipnet::IpNet::new(addr, len)
            .unwrap_or_else(|e| panic!("{with_len}: {e}"))
            .trunc()
            .to_string();
        if addr.is_ipv4() {
            ip(&[
                "-n",
                &self.client_ns,
                "addr",
                "add",
                &with_len,
                "dev",
                &self.client_if,
            ]);
            ip(&[
                "-n",
                &self.server_ns,
                "route",
                "replace",
                &net,
                "dev",
                &self.server_if,
            ]);
        } else {
            ip(&[
                "-n",
                &self.client_ns,
                "-6",
                "addr",
                "add",
                &with_len,
                "dev",
                &self.client_if,
                "nodad",
            ]);
            ip(&[
                "-n",
                &self.server_ns,
                "-6",
                "route",
                "replace",
                &net,
                "dev",
                &self.server_if,
            ]);
        }
    }

    /// Starts a command in the client namespace without waiting for it (its output
    /// discarded but for stdout, which is returned by [`Child::wait_with_output`]); the caller
    /// waits for it, and bounds it itself (curl's `--max-time`).
    ///
    /// # Panics
    ///
    /// If it cannot be started.
    pub fn start_in_client(&self, program: &str, args: &[&str]) -> Child {
        let mut cmd = ns_command(&self.client_ns, program, args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
    }

    /// Starts `haproxy` in the client namespace, in TCP mode: it accepts on `listen` and opens
    /// one connection to `backend` per client connection, starting it with a PROXY header
    /// naming the client (`send_proxy`: `send-proxy` for version 1, `send-proxy-v2` for 2).
    /// Waits (bounded) until a request through it to `/` is answered. Returns its PID.
    ///
    /// # Panics
    ///
    /// If haproxy is missing, exits, or answers nothing within 15 s.
    pub fn start_haproxy(
        &mut self,
        listen: std::net::SocketAddr,
        backend: std::net::SocketAddr,
        send_proxy: &str,
    ) -> u32 {
        require_tool("haproxy", &["-v"]);
        self.spawn_seq += 1;
        let conf = self
            .tmp
            .path()
            .join(format!("haproxy{}.cfg", self.spawn_seq));
        let text = format!(
            "global\n    maxconn 512\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
             timeout client 10s\n    timeout server 10s\nfrontend lab\n    bind {listen}\n    \
             default_backend server\nbackend server\n    server nginx {backend} {send_proxy}\n"
        );
        write_file(&conf, text.as_bytes());
        let ns = self.client_ns.clone();
        let conf_s = path_str(&conf);
        let pid = self.spawn(&ns, "haproxy", &["-db", "-f", &conf_s], None);
        let deadline = Instant::now() + NGINX_READY_TIMEOUT;
        let url = format!("http://{listen}/");
        loop {
            assert!(
                self.is_running(pid),
                "haproxy exited at start: {}",
                self.stderr_of(pid)
            );
            let out = self.curl(
                IpAddr::V4(CLIENT_V4),
                &url,
                &["-o", "/dev/null", "-w", "%{http_code}"],
                Duration::from_secs(1),
            );
            if out.status.success() && out.stdout.starts_with(b"200") {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "nothing answered through haproxy on {url} within {NGINX_READY_TIMEOUT:?}: {}",
                self.stderr_of(pid)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs curl in the client namespace from source address `src`: `curl -sS --interface SRC
    /// --max-time T EXTRA... URL`, bounded by `timeout` (plus a grace period for curl itself).
    pub fn curl(&self, src: IpAddr, url: &str, extra: &[&str], timeout: Duration) -> Output {
        let src_s = src.to_string();
        let max_time = format!("{:.3}", timeout.as_secs_f64());
        let mut args: Vec<&str> = vec!["-sS", "--interface", &src_s, "--max-time", &max_time];
        args.extend_from_slice(extra);
        args.push(url);
        self.run(
            &self.client_ns,
            "curl",
            &args,
            timeout + Duration::from_secs(5),
        )
    }

    /// One request with curl from `src` ([`Lab::curl`] with `extra`): the HTTP status, or
    /// `None` if it got no answer (dropped, refused, timed out).
    pub fn status(&self, src: IpAddr, url: &str, extra: &[&str], timeout: Duration) -> Option<u16> {
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        let out = self.curl(src, url, &args, timeout);
        let code: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (out.status.success() && code != 0).then_some(code)
    }

    /// Checks that each of `tools` can be run in the client namespace.
    ///
    /// # Panics
    ///
    /// If one cannot, naming it and `cargo xtask setup`, which installs it.
    pub fn require_tools(&self, tools: &[&str]) {
        for tool in tools {
            let out = self.run(
                &self.client_ns,
                "sh",
                &["-c", &format!("command -v {tool}")],
                Duration::from_secs(5),
            );
            assert!(
                out.status.success(),
                "this test needs `{tool}` (install it with `cargo xtask setup`)"
            );
        }
    }

    /// One login attempt at nginx's `/login` on `server`, from `src` on a new connection, as
    /// `account`: accepted if `ok` (the `X-Test-Login: ok` header), refused otherwise. The
    /// HTTP status, or `None` if it got no answer.
    pub fn login(
        &self,
        src: IpAddr,
        server: IpAddr,
        account: &str,
        ok: bool,
        timeout: Duration,
    ) -> Option<u16> {
        let body = format!("username={account}&password=guess");
        let mut extra = vec!["-X", "POST", "-d", &body];
        if ok {
            extra.extend_from_slice(&["-H", "X-Test-Login: ok"]);
        }
        self.status(src, &format!("http://{server}:80/login"), &extra, timeout)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop every tracked process: SIGTERM to all, a shared grace period, then SIGKILL.
        for t in &mut self.tracked {
            if matches!(t.child.try_wait(), Ok(None)) {
                send_signal(t.child.id(), libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for t in &mut self.tracked {
            if wait_until(&mut t.child, deadline).is_none() {
                send_signal(t.child.id(), libc::SIGKILL);
                let _ = t.child.wait();
            }
        }
        self.tracked.clear();
        for ns in std::mem::take(&mut self.created_ns) {
            // Anything still inside the lab's private namespaces was started by this lab (for
            // example an nginx worker whose master was killed): kill it by PID so the
            // namespace really goes away.
            if let Some(out) = run_quiet("ip", &["netns", "pids", &ns]) {
                for pid in String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                {
                    send_signal(pid, libc::SIGKILL);
                }
            }
            match run_quiet("ip", &["netns", "del", &ns]) {
                Some(out) if out.status.success() => {}
                Some(out) => eprintln!(
                    "lab: ip netns del {ns} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                None => eprintln!("lab: cannot run ip netns del {ns}"),
            }
        }
    }
}

/// The nginx configuration served by [`Lab::start_nginx`].
fn nginx_conf(dir: &Path, port: u16, proxy_port: Option<u16>) -> String {
    let d = dir.display();
    let proxied = proxy_port.map_or_else(String::new, |p| {
        format!("listen 0.0.0.0:{p} proxy_protocol reuseport;\n        ")
    });
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type text/plain;
    keepalive_timeout 30s;
    keepalive_requests 100000;
    server {{
        listen 0.0.0.0:{port} reuseport;
        listen [::]:{port} ipv6only=on reuseport;
        {proxied}server_name lab;
        location = / {{
            return 200 "hello from the apisensor lab\n";
        }}
        location ~ ^/users/([0-9]+)$ {{
            default_type application/json;
            return 200 '{{"id":$1,"name":"user$1"}}\n';
        }}
        location = /login {{
            default_type application/json;
            if ($request_method != POST) {{
                return 405;
            }}
            if ($http_x_test_login = ok) {{
                add_header Set-Cookie "{LOGIN_COOKIE}; Path=/; HttpOnly" always;
                return 200 '{{"login":"ok"}}\n';
            }}
            return 401 '{{"login":"failed"}}\n';
        }}
        location = /form/login {{
            default_type text/html;
            if ($request_method != POST) {{
                return 405;
            }}
            if ($http_x_test_login = ok) {{
                add_header Set-Cookie "{LOGIN_COOKIE}; Path=/; HttpOnly" always;
                return 200 "<p>welcome</p>\n";
            }}
            return 403 "<p>login failed</p>\n";
        }}
        location = /big {{
            alias {d}/html/big.txt;
        }}
        location = /chunked {{
            default_type text/html;
            sub_filter_types text/html;
            sub_filter 'PLACEHOLDER' 'replaced';
            sub_filter_once off;
            chunked_transfer_encoding on;
            alias {d}/html/chunked.html;
        }}
    }}
}}
"#
    )
}

/// The nginx configuration of [`Lab::start_nginx_for_api`]: every path proxied to the sample
/// API on `127.0.0.1:api_port`.
fn nginx_api_conf(dir: &Path, port: u16, api_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/logs/access.log combined;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_timeout 30s;
    keepalive_requests 100000;
    upstream sample_api {{
        server 127.0.0.1:{api_port};
        keepalive 16;
    }}
    server {{
        listen 0.0.0.0:{port} reuseport;
        listen [::]:{port} ipv6only=on reuseport;
        server_name lab;
        location / {{
            proxy_pass http://sample_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"#
    )
}

/// Panics unless `addr` is in a documentation range the lab may use (`198.51.100.0/24`,
/// `203.0.113.0/24`, `2001:db8::/32`).
fn assert_documentation(addr: IpAddr) {
    let documentation = match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113)
        }
        IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0xdb8],
    };
    assert!(
        documentation,
        "lab addresses are documentation addresses, not {addr}"
    );
}

/// A command that runs `program` inside network namespace `ns` through nsenter.
fn ns_command(ns: &str, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(program)
        .args(args);
    cmd
}

/// Runs `program` to completion inside namespace `ns` (see [`Lab::run`]); for threads that
/// hold only the namespace's name.
///
/// # Panics
///
/// If the program cannot be started.
pub fn run_in_ns(ns: &str, program: &str, args: &[&str], timeout: Duration) -> Output {
    output_bounded(
        ns_command(ns, program, args),
        timeout,
        &format!("{program} in {ns}"),
    )
}

/// [`run_in_ns`], which must succeed.
///
/// # Panics
///
/// If the program cannot be started or does not exit successfully (with its stderr).
pub fn run_in_ns_ok(ns: &str, program: &str, args: &[&str], timeout: Duration) -> Output {
    let out = run_in_ns(ns, program, args, timeout);
    assert!(
        out.status.success(),
        "`{program} {}` in {ns} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// Runs `cmd` to completion with its output captured, killing it (and its process group)
/// after `timeout`.
///
/// # Panics
///
/// If it cannot be started.
pub fn output_bounded(mut cmd: Command, timeout: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    run_bounded(cmd, timeout, what)
}

/// Runs `ip ARGS` in the root context (namespaced through `-n` where needed), panicking with its
/// stderr on failure.
fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_bounded(cmd, IP_TIMEOUT, "ip");
    assert!(
        out.status.success(),
        "lab setup: `ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs a short command for cleanup, never panicking.
fn run_quiet(program: &str, args: &[&str]) -> Option<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().ok()?;
    Some(collect_bounded(child, IP_TIMEOUT))
}

/// Panics with a clear message if `program` cannot be executed.
fn require_tool(program: &str, probe_args: &[&str]) {
    let status = Command::new(program)
        .args(probe_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = status {
        panic!("the network lab needs `{program}` on PATH (running it failed: {e})");
    }
}

/// Spawns `cmd` (with piped stdout and stderr) and collects its output, killing it after
/// `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration, what: &str) -> Output {
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    collect_bounded(child, timeout)
}

/// Waits for `child` up to `timeout` while draining its pipes, then kills its process group.
fn collect_bounded(mut child: Child, timeout: Duration) -> Output {
    let stdout = child.stdout.take().map(spawn_reader);
    let stderr = child.stderr.take().map(spawn_reader);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = if let Some(s) = wait_until(&mut child, deadline) {
        s
    } else {
        timed_out = true;
        // The child leads its own process group when started by `Lab::run`; killing the group
        // also ends helpers it forked. Without a group of its own this only hits the child.
        let pid = child.id();
        if let Ok(p) = libc::pid_t::try_from(pid) {
            // SAFETY: getpgid and kill have no memory-safety preconditions; `p` is positive, so
            // `-p` names exactly the group the child leads.
            unsafe {
                if p > 0 && libc::getpgid(p) == p {
                    libc::kill(-p, libc::SIGKILL);
                }
            }
        }
        send_signal(pid, libc::SIGKILL);
        child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL))
    };
    let stdout = stdout.map(join_reader).unwrap_or_default();
    let mut stderr = stderr.map(join_reader).unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\nlab: killed after the timeout of {timeout:?}\n").as_bytes(),
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Reads a pipe to its end on a helper thread, so a chatty child cannot block on a full pipe.
fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Joins a reader thread; a panicked reader yields no bytes.
fn join_reader(h: thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    h.join().unwrap_or_default()
}

/// Polls `child` until it exits or `deadline` passes.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to one process by PID.
fn send_signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; the PID is positive, so this never
    // signals a process group.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Writes a file, panicking with the path on failure.
fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A path as a string argument, panicking on non-UTF-8 (the lab creates its paths itself).
fn path_str(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("lab path {} is not UTF-8", path.display()))
        .to_owned()
}

/// A file's content for an error message, or a note that it could not be read.
fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map_or_else(
        |e| format!("<cannot read {}: {e}>", path.display()),
        |b| String::from_utf8_lossy(&b).into_owned(),
    )
}

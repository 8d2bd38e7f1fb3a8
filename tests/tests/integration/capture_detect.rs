//! Detection on captures of real attack tools: in a network lab, tcpdump records the server's
//! veth while an attack tool works on nginx from `198.51.100.2` and a benign client on
//! `198.51.100.3` browses and logs in (once mistyped). Each capture is then replayed with
//! `apisensor replay FILE --findings` (the embedded default configuration: logins recognised
//! without any route configured) and the findings and decisions must be the ones the attack
//! calls for, with a kernel block of the attacker, no block that covers the benign client, and
//! the same output on a second replay.
//!
//! - hydra 9.4 (`http-post-form`) guessing one account's password: `brute_force`.
//! - ffuf guessing paths from a word list: `content_discovery`.
//! - a scripted credential-stuffing run, one attempt per account: `credential_stuffing`.
//!
//! Needs root, nginx, tcpdump, curl, bash, hydra and ffuf (`cargo xtask setup` installs them);
//! a missing tool fails the test.

use std::fmt::Write as _;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use apisensor_tests::apisensor_bin;
use apisensor_tests::lab::Lab;
use ipnet::IpNet;
use sensor_user::replay::read_segments_partial;
use serde_json::Value;

/// nginx's port in the lab; monitored by the default configuration.
const PORT: u16 = 80;
/// Bound on each benign curl.
const CURL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each attack tool run.
const TOOL_TIMEOUT: Duration = Duration::from_mins(1);
/// Bound on one replay.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the capture gets to start or to catch up.
const CAPTURE_SETTLE: Duration = Duration::from_secs(10);
/// Requests the benign client makes each time (see `Recording::benign`).
const BENIGN_REQUESTS: usize = 4;
/// Most UDP probes sent to see the capture catch up.
const MAX_PROBES: u32 = 100;
/// Passwords hydra tries.
const HYDRA_PASSWORDS: usize = 40;
/// Words ffuf tries.
const FFUF_WORDS: usize = 150;
/// Accounts the stuffing run tries, one attempt each.
const STUFFED_ACCOUNTS: usize = 30;
/// The form route hydra attacks (see `Lab::start_nginx`): 403 with a body saying `failed`
/// unless the request has the lab's success header.
const FORM_LOGIN: &str = "/form/login";

/// A tcpdump recording of the server's veth, with nginx serving on [`PORT`].
struct Recording {
    lab: Lab,
    /// tcpdump's PID in the lab.
    tcpdump: u32,
    /// The capture file.
    path: PathBuf,
}

impl Recording {
    /// Creates a lab, checks every tool is there, starts nginx and tcpdump and waits
    /// (bounded) until tcpdump really captures.
    fn start(tag: &str, tools: &[&str]) -> Recording {
        let mut lab = Lab::new(tag);
        lab.require_tools(&["tcpdump", "curl", "bash"]);
        lab.require_tools(tools);
        lab.start_nginx(PORT);
        let path = lab.tmp_dir().join("capture.pcap");
        let path_s = path.to_str().expect("lab paths are UTF-8").to_owned();
        let (ns, dev) = (lab.server_ns().to_owned(), lab.server_if().to_owned());
        // UDP too, for the readiness probes; they are not TCP, so they never reach the
        // analyzer.
        let filter = format!("port {PORT}");
        let tcpdump = lab.spawn(
            &ns,
            "tcpdump",
            &[
                "-i",
                &dev,
                "-n",
                "-U",
                "--immediate-mode",
                "-B",
                "65536",
                "-w",
                &path_s,
                &filter,
            ],
            None,
        );
        let rec = Recording { lab, tcpdump, path };
        rec.wait_until_capturing();
        rec
    }

    /// Waits (bounded) for tcpdump's banner, then sends UDP probes until the file holds one.
    fn wait_until_capturing(&self) {
        self.lab
            .wait_for_stderr(self.tcpdump, "listening on", CAPTURE_SETTLE);
        self.probe_until_written();
    }

    /// Sends UDP probes to the server's port (bounded in count and time) until the capture
    /// file holds more probes than before. Packets reach the file in the order they crossed
    /// the veth, so once a new probe is in the file, so is all traffic sent before it.
    fn probe_until_written(&self) {
        let probes = || {
            File::open(&self.path).map_or(0, |f| {
                read_segments_partial(f, &self.path, &mut |_| {}).0.not_tcp
            })
        };
        let before = probes();
        let deadline = Instant::now() + CAPTURE_SETTLE;
        let probe = format!("printf probe >/dev/udp/{}/{PORT}", self.lab.server_v4());
        for _ in 0..MAX_PROBES {
            let out = self
                .lab
                .run(self.lab.client_ns(), "bash", &["-c", &probe], CURL_TIMEOUT);
            assert!(
                out.status.success(),
                "probe failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
            if probes() > before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no probe reached the capture file within {CAPTURE_SETTLE:?}"
            );
        }
        panic!("none of {MAX_PROBES} probes reached the capture file");
    }

    /// Waits until everything sent so far is in the file, stops tcpdump and checks it dropped
    /// nothing. Returns the capture file.
    fn finish(&mut self) -> PathBuf {
        self.probe_until_written();
        let exit = self.lab.interrupt(self.tcpdump);
        let stderr = self.lab.stderr_of(self.tcpdump);
        assert!(
            exit.success() || exit.code().is_none(),
            "tcpdump exited with {exit}: {stderr}"
        );
        let dropped = stderr.lines().find_map(|l| {
            l.strip_suffix(" packets dropped by kernel")
                .and_then(|n| n.trim().parse::<u64>().ok())
        });
        assert_eq!(dropped, Some(0), "tcpdump dropped packets: {stderr}");
        self.path.clone()
    }

    /// The server's base URL.
    fn base(&self) -> String {
        format!("http://{}:{PORT}", self.lab.server_v4())
    }

    /// Runs `program ARGS` in the client namespace with the lab directory as its working
    /// directory (hydra writes its restore file there), bounded by [`TOOL_TIMEOUT`].
    fn run_tool(&self, program: &str, args: &[&str]) -> Output {
        let dir = self.lab.tmp_dir().to_str().expect("lab paths are UTF-8");
        let mut command = vec!["-c", r#"cd "$0" && exec "$@""#, dir, program];
        command.extend_from_slice(args);
        let started = Instant::now();
        let out = self
            .lab
            .run(self.lab.client_ns(), "sh", &command, TOOL_TIMEOUT);
        eprintln!(
            "{program} ran {:.1} s, {}\n--- stdout\n{}\n--- stderr\n{}",
            started.elapsed().as_secs_f64(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stdout), 1500),
            tail(&String::from_utf8_lossy(&out.stderr), 1500),
        );
        out
    }

    /// The benign client on the second address: the home page, a mistyped login, a successful
    /// one, then a page with the session cookie. Every answer is checked.
    fn benign(&self) {
        let src = IpAddr::V4(self.lab.client_v4_alt());
        let base = self.base();
        let login = format!("{base}/login");
        let home = format!("{base}/");
        let page = format!("{base}/users/7");
        let steps: [(&str, Vec<&str>, &str); BENIGN_REQUESTS] = [
            (&home, vec![], "200"),
            (
                &login,
                vec!["--data", "username=alice&password=hunter3"],
                "401",
            ),
            (
                &login,
                vec![
                    "-H",
                    "X-Test-Login: ok",
                    "--data",
                    "username=alice&password=hunter2",
                ],
                "200",
            ),
            (&page, vec!["-b", apisensor_tests::lab::LOGIN_COOKIE], "200"),
        ];
        for (url, extra, want) in steps {
            let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
            args.extend(extra);
            let out = self.lab.curl(src, url, &args, CURL_TIMEOUT);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "benign request to {url} ({args:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Writes `lines` to a file in the lab directory and returns its path.
    fn write_list(&self, name: &str, lines: &[String]) -> String {
        let path = self.lab.tmp_dir().join(name);
        std::fs::write(&path, lines.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.to_str().expect("lab paths are UTF-8").to_owned()
    }
}

/// What `apisensor replay --findings` printed.
struct Replay {
    /// Its stdout, whole.
    stdout: String,
    /// Finding lines.
    findings: Vec<Value>,
    /// Decision lines.
    decisions: Vec<Value>,
}

impl Replay {
    /// Replays `capture` with the embedded default configuration and parses its lines. Checks
    /// the stderr summary counts what stdout holds.
    fn of(capture: &Path) -> Replay {
        let mut cmd = Command::new(apisensor_bin());
        cmd.arg("replay").arg(capture).arg("--findings");
        let out = run_bounded(cmd, REPLAY_TIMEOUT);
        let stdout = String::from_utf8(out.stdout).expect("replay prints UTF-8");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "replay failed ({}): {stderr}",
            out.status
        );
        let (mut findings, mut decisions) = (Vec::new(), Vec::new());
        for line in stdout.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("replay line is not JSON ({e}): {line}"));
            match v["type"].as_str() {
                Some("finding") => findings.push(v),
                Some("decision") => decisions.push(v),
                _ => panic!("replay line of unknown type: {line}"),
            }
        }
        let summary = stderr.lines().last().unwrap_or_default();
        let want = format!(
            ", {} findings, {} decisions",
            findings.len(),
            decisions.len()
        );
        assert!(
            summary.ends_with(&want),
            "the summary line does not end with {want:?}: {stderr}"
        );
        let replay = Replay {
            stdout,
            findings,
            decisions,
        };
        eprintln!(
            "replay of {}: {summary}\n{}",
            capture.display(),
            replay.report()
        );
        replay
    }

    /// One line per finding and decision, for messages.
    fn report(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            let measures: Vec<String> = f["measures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    let mut m = m.clone();
                    if let Some(o) = m.as_object_mut() {
                        o.remove("name").map_or_else(
                            || m.to_string(),
                            |n| format!("{}={}", n.as_str().unwrap_or("?"), m),
                        )
                    } else {
                        m.to_string()
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "  finding {} {} {} score {:.2} measures [{}]",
                f["detector"],
                f["entity"]["kind"],
                f["entity"]["id"],
                f["score"].as_f64().unwrap_or(f64::NAN),
                measures.join(", ")
            );
        }
        for d in &self.decisions {
            let _ = writeln!(
                s,
                "  decision {} {} target {} ttl {} renewal {} reason {} refused {} entity {}",
                d["action"],
                d["enforcement"],
                d["target"],
                d["ttl_s"],
                d["renewal"],
                d["reason"],
                d["refused"],
                d["entity"]
            );
        }
        s
    }

    /// Findings of `detector` about source `src`.
    fn findings_of(&self, detector: &str, src: IpAddr) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|f| {
                f["detector"] == detector
                    && f["entity"]["kind"] == "source"
                    && f["entity"]["id"] == src.to_string().as_str()
            })
            .collect()
    }

    /// Checks there is a `detector` finding about `src`, and a kernel block of exactly `src`
    /// (not refused, with a TTL) that names `detector` among its findings.
    fn expect_block(&self, detector: &str, src: IpAddr) {
        self.expect_finding(detector, src);
        let block = self.expect_block_of(src);
        assert!(
            block["findings"]
                .as_array()
                .is_some_and(|fs| fs.iter().any(|f| f["detector"] == detector)),
            "the block of {src} does not name {detector}: {block}; the replay printed:\n{}",
            self.report()
        );
    }

    /// Checks there is a `detector` finding about source `src`.
    fn expect_finding(&self, detector: &str, src: IpAddr) {
        assert!(
            !self.findings_of(detector, src).is_empty(),
            "no {detector} finding about source {src}; the replay printed:\n{}",
            self.report()
        );
    }

    /// Checks there is exactly one first block of exactly `src`, in the kernel, not refused,
    /// with a TTL, about the source `src`; returns it.
    fn expect_block_of(&self, src: IpAddr) -> &Value {
        let target = IpNet::from(src).to_string();
        let blocks: Vec<&Value> = self
            .decisions
            .iter()
            .filter(|d| d["action"] == "block" && d["target"] == target.as_str())
            .collect();
        assert!(
            blocks.len() == 1 && blocks[0]["renewal"] == false,
            "want one block of {target}, not a renewal; the replay printed:\n{}",
            self.report()
        );
        let block = blocks[0];
        assert_eq!(block["enforcement"], "kernel", "{block}");
        assert!(block["refused"].is_null(), "{block}");
        assert!(block["ttl_s"].as_u64().is_some_and(|t| t > 0), "{block}");
        assert_eq!(block["entity"]["kind"], "source", "{block}");
        assert_eq!(block["entity"]["id"], src.to_string().as_str(), "{block}");
        block
    }

    /// Checks no block covers `benign` (its own address or a prefix holding it).
    fn expect_no_block_of(&self, benign: IpAddr) {
        let covering: Vec<&Value> = self
            .decisions
            .iter()
            .filter(|d| {
                d["action"] == "block"
                    && d["target"]
                        .as_str()
                        .and_then(|t| t.parse::<IpNet>().ok())
                        .is_some_and(|t| t.contains(&benign))
            })
            .collect();
        assert!(
            covering.is_empty(),
            "the benign client {benign} is blocked: {covering:?}"
        );
    }
}

/// Checks the capture holds the benign client's requests (twice [`BENIGN_REQUESTS`], all
/// answered), so that its absence from the blocks means something.
fn expect_benign_traffic(capture: &Path, benign: IpAddr) {
    let mut cmd = Command::new(apisensor_bin());
    cmd.arg("replay").arg(capture).arg("--json");
    let out = run_bounded(cmd, REPLAY_TIMEOUT);
    assert!(
        out.status.success(),
        "replay --json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answered = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("replay --json line"))
        .filter(|t| t["client"] == benign.to_string().as_str() && t["status"].is_u64())
        .count();
    assert_eq!(
        answered,
        2 * BENIGN_REQUESTS,
        "answered requests of the benign client {benign} in the capture"
    );
}

/// Replays `capture` twice: both outputs must be identical. Returns the first.
fn replay_twice(capture: &Path) -> Replay {
    let first = Replay::of(capture);
    let second = Replay::of(capture);
    assert!(
        first.stdout == second.stdout,
        "two replays of the same capture differ:\n{}\n---\n{}",
        first.stdout,
        second.stdout
    );
    first
}

#[test]
fn hydra_form_brute_force_is_blocked() {
    let mut rec = Recording::start("hyd", &["hydra"]);
    let attacker = IpAddr::V4(rec.lab.client_v4());
    let benign = IpAddr::V4(rec.lab.client_v4_alt());
    let passwords: Vec<String> = (0..HYDRA_PASSWORDS)
        .map(|i| format!("Spring{i:02}!"))
        .collect();
    let list = rec.write_list("passwords.txt", &passwords);
    rec.benign();
    // hydra has no option for its source address: it connects from the client interface's
    // primary address, 198.51.100.2 (checked in the replay below). The target is the lab's
    // form route, which answers a failed login 403 with a body saying "failed": hydra 9.4's
    // http-post-form takes the lab's `/login` 401 for HTTP authentication ("[ERROR] the target
    // is using HTTP auth, not a web form") and restarts its tasks, managing 4 tries a minute,
    // while a 403 is an ordinary page to it (matched by `F=failed`) and a failure to the
    // sensor's default login rules. `-I` ignores a restore file of an earlier
    // run; `-t 4` bounds the parallel tasks, `-w`/`-W` the waits.
    let form = format!("{FORM_LOGIN}:username=^USER^&password=^PASS^:F=failed");
    let server = rec.lab.server_v4().to_string();
    let out = rec.run_tool(
        "hydra",
        &[
            "-I",
            "-l",
            "admin",
            "-P",
            &list,
            "-s",
            "80",
            "-t",
            "4",
            "-w",
            "10",
            "-W",
            "0",
            &server,
            "http-post-form",
            &form,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "hydra failed: {stdout}");
    assert!(
        stdout.contains("0 valid password"),
        "hydra found a password or did not finish: {stdout}"
    );
    rec.benign();
    let capture = rec.finish();

    let replay = replay_twice(&capture);
    replay.expect_block("brute_force", attacker);
    replay.expect_no_block_of(benign);
    expect_benign_traffic(&capture, benign);
}

#[test]
fn ffuf_content_discovery_is_blocked() {
    let mut rec = Recording::start("ffuf", &["ffuf"]);
    let attacker = IpAddr::V4(rec.lab.client_v4());
    let benign = IpAddr::V4(rec.lab.client_v4_alt());
    // A few words the lab serves (`big`, `chunked`), the rest invented.
    let mut words: Vec<String> = vec!["big".into(), "chunked".into()];
    let stems = [
        "admin", "backup", "config", "api", "old", "test", "dev", "static", "private", "wp",
    ];
    let mut i = 0;
    while words.len() < FFUF_WORDS {
        words.push(format!("{}{}", stems[i % stems.len()], i / stems.len()));
        i += 1;
    }
    let list = rec.write_list("words.txt", &words);
    rec.benign();
    // Like hydra, ffuf connects from the primary address, 198.51.100.2. `-t 10` threads, a
    // 10 ms pause between each thread's requests, and `-maxtime` bound the run.
    let url = format!("{}/FUZZ", rec.base());
    let out = rec.run_tool(
        "ffuf",
        &[
            "-u", &url, "-w", &list, "-t", "10", "-p", "0.01", "-maxtime", "50", "-timeout", "5",
            "-s",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ffuf failed: {stdout}");
    // Silent mode prints the matched words: the two the lab serves.
    let mut found: Vec<&str> = stdout.lines().map(str::trim).collect();
    found.sort_unstable();
    assert_eq!(found, ["big", "chunked"], "ffuf's matches");
    rec.benign();
    let capture = rec.finish();

    let replay = replay_twice(&capture);
    replay.expect_block("content_discovery", attacker);
    replay.expect_no_block_of(benign);
    expect_benign_traffic(&capture, benign);
}

#[test]
fn scripted_credential_stuffing_is_blocked() {
    let mut rec = Recording::start("stuf", &[]);
    let attacker = IpAddr::V4(rec.lab.client_v4());
    let benign = IpAddr::V4(rec.lab.client_v4_alt());
    rec.benign();
    // One attempt per leaked account, each a JSON body with the account's e-mail address and
    // a new connection, as a simple stuffing script does. The loop is bounded by its count and
    // each curl by --max-time; the whole run by TOOL_TIMEOUT.
    let script = format!(
        r#"for i in $(seq 1 {STUFFED_ACCOUNTS}); do
  curl -sS --interface {attacker} --max-time 5 -o /dev/null -w '%{{http_code}}\n' \
    -H 'Content-Type: application/json' \
    --data "{{\"email\":\"user$i@example.com\",\"password\":\"Leaked-$i\"}}" \
    {base}/login || exit 1
done"#,
        base = rec.base()
    );
    let out = rec.run_tool("bash", &["-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the stuffing script failed: {stdout}");
    assert_eq!(
        stdout.lines().filter(|l| *l == "401").count(),
        STUFFED_ACCOUNTS,
        "every stuffed login fails: {stdout}"
    );
    rec.benign();
    let capture = rec.finish();

    let replay = replay_twice(&capture);
    replay.expect_finding("credential_stuffing", attacker);
    // Every attempt also fails a login, so brute force crosses on the same request; the block
    // may name either finding.
    replay.expect_block_of(attacker);
    replay.expect_no_block_of(benign);
    expect_benign_traffic(&capture, benign);
}

/// Runs `cmd` with piped output, killing it after `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let reader = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_r = reader(child.stdout.take().map(|s| Box::new(s) as _));
    let err_r = reader(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the replay") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().expect("reap the replay");
            panic!("{cmd:?} did not finish within {timeout:?} ({s})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_r.join().unwrap_or_default(),
        stderr: err_r.join().unwrap_or_default(),
    }
}

/// The last `max` bytes of `s` (on a character boundary), for messages.
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

//! The overhead run's two floors, each a kernel program compiled by clang-19 into the lab's
//! directory:
//!
//! - the *XDP floor*, [`XDP_PASS_SOURCE`]: two instructions (`r0 = XDP_PASS; exit`) attached
//!   natively with iproute2 (`ip link set dev IFACE xdpdrv obj ...`, detached with `xdpdrv
//!   off`). What any native XDP program costs on a veth.
//! - the *sampling floor*, `sampler.bpf.c` with the `overhead_sampler` binary: one fixed
//!   128-byte ring record per request and per response (XDP and TC), drained on the agent's
//!   timer by a consumer that reads each record's length and nothing else. The least a sensor
//!   that sees every request and response in user space does.
//!
//! xdp-bench's `pass` (xdp-tools 1.3.1, Debian 12's) would be the ready-made XDP floor but
//! cannot load on kernels without the `xdp_redirect_map` and `xdp_redirect_map_err`
//! tracepoints (removed upstream in 2025, gone from the 6.18 kernel here): its object carries
//! `tp_btf` programs for them, so libbpf refuses the whole object (its log: failed to find
//! kernel BTF type ID of `xdp_redirect_map_err`) and xdp-bench exits with "Failed to attach
//! XDP program: No such process".
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::lab::{Lab, run_in_ns_ok};
use crate::overhead_sampler_bin;

/// The XDP floor's program, C for clang: it passes every packet without reading it or
/// touching a map. `struct xdp_md` is only declared: the program never dereferences its
/// context.
pub const XDP_PASS_SOURCE: &str = "struct xdp_md;

/* The overhead run's floor: pass every packet, read nothing. */
__attribute__((section(\"xdp\"), used)) int xdp_pass(struct xdp_md *ctx)
{
\treturn 2; /* XDP_PASS */
}

char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";
";
/// The XDP floor's program as the kernel names it (its function's name).
pub const XDP_PASS_PROG: &str = "xdp_pass";
/// The sampling floor's kernel programs, C for clang (`-DPORT=` the server's port).
const SAMPLER_SOURCE: &str = include_str!("sampler.bpf.c");
/// The sampling floor's XDP program as the kernel names it.
pub const SAMPLER_PROG: &str = "sampler_xdp";
/// The sampling floor's TC program as the kernel names it.
pub const SAMPLER_TC_PROG: &str = "sampler_tc";
/// The compiler of both floors (`cargo xtask setup` installs it).
pub const CLANG: &str = "clang-19";
/// How long the sampler may take to attach.
const SAMPLER_READY: Duration = Duration::from_secs(20);

/// Compiles C `source` for BPF with `defines` into `STEM.o` in the lab's directory and returns
/// its path.
///
/// # Panics
///
/// If it cannot be written or compiled.
fn compile(lab: &Lab, stem: &str, source: &str, defines: &[String]) -> PathBuf {
    let src = lab.tmp_dir().join(format!("{stem}.c"));
    let obj = lab.tmp_dir().join(format!("{stem}.o"));
    std::fs::write(&src, source).unwrap_or_else(|e| panic!("cannot write {}: {e}", src.display()));
    let mut args = vec!["-O2", "-g", "-target", "bpf"];
    args.extend(defines.iter().map(String::as_str));
    args.extend(["-c", path_text(&src), "-o", path_text(&obj)]);
    let out = lab.run(lab.server_ns(), CLANG, &args, Duration::from_mins(1));
    assert!(
        out.status.success(),
        "{CLANG} cannot compile {stem}.c ({}; `cargo xtask setup` installs it): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    obj
}

/// Compiles the XDP floor; returns its object.
///
/// # Panics
///
/// As [`compile`].
pub fn build_xdp_pass(lab: &Lab) -> PathBuf {
    compile(lab, "xdp_pass", XDP_PASS_SOURCE, &[])
}

/// Attaches (`Some(object)`) or detaches (`None`) the XDP floor on the server's veth with
/// iproute2, in native mode only (`xdpdrv`).
///
/// # Panics
///
/// If `ip` fails.
pub fn set_xdp_pass(lab: &Lab, obj: Option<&Path>) {
    let iface = lab.server_if();
    let mut args = vec!["link", "set", "dev", iface, "xdpdrv"];
    match obj {
        Some(obj) => args.extend(["obj", path_text(obj), "sec", "xdp"]),
        None => args.push("off"),
    }
    run_in_ns_ok(lab.server_ns(), "ip", &args, Duration::from_secs(30));
}

/// Compiles the sampling floor's kernel programs for a server on `port`; returns the object.
///
/// # Panics
///
/// As [`compile`].
pub fn build_sampler(lab: &Lab, port: u16) -> PathBuf {
    compile(lab, "sampler", SAMPLER_SOURCE, &[format!("-DPORT={port}")])
}

/// The sampling floor, running.
#[derive(Debug)]
pub struct Sampler {
    pid: u32,
}

/// The records the sampling floor drained while it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sampled {
    /// Request records (XDP).
    pub requests: u64,
    /// Response records (TC).
    pub responses: u64,
}

impl Sampler {
    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts `overhead_sampler` on the server's veth with `obj` and waits until it says its
    /// programs are attached.
    ///
    /// # Panics
    ///
    /// If it exits or does not attach within [`SAMPLER_READY`] (its stderr is shown).
    pub fn start(lab: &mut Lab, obj: &Path) -> Self {
        let (ns, iface) = (lab.server_ns().to_owned(), lab.server_if().to_owned());
        let bin = overhead_sampler_bin();
        let pid = lab.spawn(&ns, path_text(&bin), &[path_text(obj), &iface], None);
        let deadline = Instant::now() + SAMPLER_READY;
        while !lab.stderr_of(pid).contains("sampler attached") {
            assert!(
                lab.is_running(pid),
                "overhead_sampler exited: {}",
                lab.stderr_of(pid)
            );
            assert!(
                Instant::now() < deadline,
                "overhead_sampler not attached within {SAMPLER_READY:?}: {}",
                lab.stderr_of(pid)
            );
            thread::sleep(Duration::from_millis(20));
        }
        Self { pid }
    }

    /// Stops it (SIGTERM: it drains its rings one last time and detaches) and returns what it
    /// drained.
    ///
    /// # Panics
    ///
    /// If it did not exit cleanly or did not report its records.
    pub fn stop(self, lab: &mut Lab) -> Sampled {
        let status = lab.stop(self.pid);
        let stderr = lab.stderr_of(self.pid);
        assert!(status.success(), "overhead_sampler {status}: {stderr}");
        parse_sampled(&stderr)
            .unwrap_or_else(|| panic!("overhead_sampler reported no records: {stderr}"))
    }
}

/// The sampler's last line: `sampler: REQ request records, RESP response records`.
fn parse_sampled(stderr: &str) -> Option<Sampled> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("sampler: "))?;
    let (requests, rest) = line.split_once(" request records, ")?;
    let responses = rest.strip_suffix(" response records")?;
    Some(Sampled {
        requests: requests.parse().ok()?,
        responses: responses.parse().ok()?,
    })
}

/// A lab path as a command-line argument.
fn path_text(p: &Path) -> &str {
    p.to_str().expect("lab paths are UTF-8")
}

#[cfg(test)]
mod tests {
    use super::{Sampled, parse_sampled};

    #[test]
    fn the_samplers_last_line_gives_its_records() {
        let err = "sampler attached\nsampler: 120034 request records, 119870 response records\n";
        assert_eq!(
            parse_sampled(err),
            Some(Sampled {
                requests: 120_034,
                responses: 119_870
            })
        );
        assert_eq!(parse_sampled("sampler attached\n"), None);
        assert_eq!(
            parse_sampled("sampler: x request records, 1 response records"),
            None
        );
    }
}

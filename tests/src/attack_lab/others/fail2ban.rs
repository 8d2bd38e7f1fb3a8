//! fail2ban live: `fail2ban-server` in the foreground in the server namespace, with a copy of
//! `/etc/fail2ban` in the lab directory (its log, socket, pid file and database moved there,
//! the distribution's `jail.d` dropped), the four nginx jails `jail.conf` ships
//! (`nginx-http-auth`, `nginx-limit-req`, `nginx-botsearch`, `nginx-bad-request`) enabled with
//! their shipped filters, log paths, `maxretry`, `findtime` and `bantime`, pointed at the lab's
//! nginx logs. `jail.conf`'s default ban action is iptables', and Debian 12 installs nftables
//! rather than iptables, so the jails use fail2ban's own `nftables-multiport` action (its
//! `reject` in an `inet f2b-table` of the namespace).
use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use crate::lab::run_in_ns;

use super::super::topology::Testbed;
use super::{BanReasons, CLIENT_TIMEOUT, Other, Running, copy_dir, read_or_note, tail, wait_ready};

/// The shipped nginx jails enabled.
const JAILS: [&str; 4] = [
    "nginx-http-auth",
    "nginx-limit-req",
    "nginx-botsearch",
    "nginx-bad-request",
];

/// The jail behind one of the nftables action's sets (`addr-set-JAIL`, `addr6-set-JAIL`).
pub fn jail_of_set(set: &str) -> Option<&str> {
    set.strip_prefix("addr-set-")
        .or_else(|| set.strip_prefix("addr6-set-"))
}

/// Starts fail2ban; see the module docs.
///
/// # Panics
///
/// If the configuration cannot be written, or the server does not report its jails running
/// within the ready time.
pub fn start(bed: &mut Testbed) -> Running {
    let dir = bed.lab.tmp_dir().join("fail2ban");
    let conf = dir.join("conf");
    copy_dir(Path::new("/etc/fail2ban"), &conf)
        .unwrap_or_else(|e| panic!("cannot copy fail2ban's configuration: {e}"));
    // Debian's jail.d enables sshd on the system's auth log: not this lab's business.
    let _ = std::fs::remove_dir_all(conf.join("jail.d"));
    std::fs::create_dir_all(conf.join("jail.d")).expect("creating jail.d");
    let (log, socket, pid_file, db) = (
        dir.join("fail2ban.log"),
        dir.join("fail2ban.sock"),
        dir.join("fail2ban.pid"),
        dir.join("fail2ban.sqlite3"),
    );
    let local = format!(
        "[Definition]\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = {}\n",
        log.display(),
        socket.display(),
        pid_file.display(),
        db.display()
    );
    let mut jails = format!(
        "[DEFAULT]\nbanaction = nftables-multiport\nbanaction_allports = nftables-allports\n\
         nginx_error_log = {}\nnginx_access_log = {}\n",
        bed.proxy.error_log.display(),
        bed.proxy.access_log.display()
    );
    for jail in JAILS {
        let _ = write!(jails, "\n[{jail}]\nenabled = true\n");
    }
    for (name, text) in [("fail2ban.local", local), ("jail.local", jails)] {
        let path = conf.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let ns = bed.lab.server_ns().to_owned();
    let text = |p: &Path| p.to_str().expect("lab paths are UTF-8").to_owned();
    let (conf_s, socket_s, pid_s) = (text(&conf), text(&socket), text(&pid_file));
    let pid = bed.lab.spawn(
        &ns,
        "fail2ban-server",
        &[
            "-f", "-x", "-c", &conf_s, "-s", &socket_s, "-p", &pid_s, "start",
        ],
        None,
    );
    let status = || -> Output {
        run_in_ns(
            &ns,
            "fail2ban-client",
            &["-s", &socket_s, "status"],
            CLIENT_TIMEOUT,
        )
    };
    wait_ready(
        "fail2ban",
        &mut || {
            let out = status();
            let text = String::from_utf8_lossy(&out.stdout);
            out.status.success() && text.contains(&format!("Number of jail:\t{}", JAILS.len()))
        },
        &|| format!("its log:\n{}", tail(&read_or_note(&log), 20)),
    );
    Running {
        other: Other::Fail2ban,
        pids: vec![pid],
        reasons: BanReasons::JailOfSet,
    }
}

#[cfg(test)]
mod tests {
    use super::jail_of_set;

    #[test]
    fn sets_name_their_jails() {
        assert_eq!(
            jail_of_set("addr-set-nginx-botsearch"),
            Some("nginx-botsearch")
        );
        assert_eq!(
            jail_of_set("addr6-set-nginx-http-auth"),
            Some("nginx-http-auth")
        );
        assert_eq!(jail_of_set("crowdsec-blacklists"), None);
    }
}

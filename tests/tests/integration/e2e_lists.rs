//! Reputation lists end to end: the agent keeps the kernel's block maps equal to its list
//! files. A listed client is refused and a neighbour served; when the file changes, the newly
//! listed client is refused and the one taken off the list is served again; a file that stops
//! parsing leaves its last good version in force. Each block names its list.
use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir, blocks},
    lab::Lab,
};

/// How long a change may take to reach the maps (the agent checks every second).
const SETTLE: Duration = Duration::from_secs(6);

/// `GET /` from `src`: whether it was answered.
fn served(lab: &Lab, src: IpAddr, server: IpAddr) -> bool {
    let out = lab.curl(
        src,
        &format!("http://{server}:80/"),
        &["-o", "/dev/null", "-w", "%{http_code}"],
        Duration::from_millis(500),
    );
    out.status.success() && out.stdout.starts_with(b"200")
}

/// Waits (bounded) until `src` is served (`want`) or refused.
fn wait_until(lab: &Lab, src: IpAddr, server: IpAddr, want: bool) {
    let deadline = Instant::now() + SETTLE;
    while served(lab, src, server) != want {
        assert!(
            Instant::now() < deadline,
            "{src} still {} after {SETTLE:?}",
            if want { "refused" } else { "served" }
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn list_files_are_kept_in_the_block_maps_as_they_change() {
    let mut lab = Lab::new("lists");
    lab.start_nginx(80);
    let server = IpAddr::V4(lab.server_v4());
    let (first, second) = (IpAddr::V4(lab.client_v4()), IpAddr::V4(lab.client_v4_alt()));
    let list = lab.tmp_dir().join("bad.txt");
    std::fs::write(&list, format!("; DROP-style list\n{second} ; SBL1\n")).expect("list");
    let pin = PinDir::new("lists");
    let config = format!(
        "[lists]\nfiles = [\"{}\"]\nrefresh_s = 1\nttl_s = 60\n",
        list.display()
    );
    let files = AgentFiles::in_lab(&lab, 1, &config);
    let agent = agent::start(&mut lab, &pin, &files, &[]);

    wait_until(&lab, second, server, false);
    assert!(served(&lab, first, server), "the neighbour is served");
    let listed = blocks(&pin);
    let entry = listed
        .iter()
        .find(|b| b["net"] == format!("{second}/32").as_str())
        .unwrap_or_else(|| panic!("no block on {second}: {listed:?}"));
    assert_eq!(entry["text"], "list bad.txt SBL1", "{entry}");

    // The list changes: the first client in, the second out.
    std::fs::write(&list, format!("{first}\n")).expect("list");
    wait_until(&lab, first, server, false);
    wait_until(&lab, second, server, true);

    // A broken list: its last good version stays in force.
    std::fs::write(&list, format!("{first}\nnot an address\n")).expect("list");
    thread::sleep(Duration::from_secs(3));
    assert!(
        !served(&lab, first, server),
        "the last good version is gone"
    );
    assert!(served(&lab, second, server));
    assert!(
        lab.stderr_of(agent).contains("list not used"),
        "no warning: {}",
        lab.stderr_of(agent)
    );
}

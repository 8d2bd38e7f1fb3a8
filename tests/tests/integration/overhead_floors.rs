//! The overhead run's floors really do what the scorecard says they do: the sampling floor
//! attaches natively, hands one record per request and one per response to user space, and is
//! gone when it stops; the XDP floor attaches natively and detaches. Requests go over IPv4 and
//! IPv6, to the monitored port and to another one the sampler must ignore.

use std::net::IpAddr;
use std::time::Duration;

use apisensor_tests::attack_lab::bpf_stats;
use apisensor_tests::attack_lab::floors::{
    self, SAMPLER_PROG, SAMPLER_TC_PROG, Sampler, XDP_PASS_PROG,
};
use apisensor_tests::lab::{Lab, run_in_ns_ok};

/// The port the sampler watches, nginx's.
const PORT: u16 = 8080;
/// A second nginx port the sampler must not sample.
const OTHER_PORT: u16 = 8081;
/// Requests per address family to the watched port.
const REQUESTS: u64 = 10;
/// Bound on each curl.
const CURL_TIMEOUT: Duration = Duration::from_secs(10);

/// What `ip -d link show` in the server namespace says about the server's veth.
fn server_link(lab: &Lab) -> String {
    let out = run_in_ns_ok(
        lab.server_ns(),
        "ip",
        &["-d", "link", "show", "dev", lab.server_if()],
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n` requests from `src` to `url`, each answered 200.
fn requests(lab: &Lab, src: IpAddr, url: &str, n: u64) {
    for _ in 0..n {
        let out = lab.curl(
            src,
            url,
            &["-o", "/dev/null", "-w", "%{http_code}"],
            CURL_TIMEOUT,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_sampling_floor_records_each_request_and_response_and_the_xdp_floor_attaches() {
    let mut lab = Lab::new("ovfl");
    lab.start_nginx(PORT);
    lab.start_nginx(OTHER_PORT);
    let obj = floors::build_sampler(&lab, PORT);
    let sampler = Sampler::start(&mut lab, &obj);
    let link = server_link(&lab);
    assert!(
        link.contains("xdp ") && link.contains(SAMPLER_PROG) && !link.contains("xdpgeneric"),
        "the sampler is not attached natively: {link}"
    );
    // The overhead run's breakdown finds both programs by these names.
    let loaded = bpf_stats::programs(&[SAMPLER_PROG, SAMPLER_TC_PROG]);
    assert_eq!(loaded.map(|p| p.len()), Ok(2));
    let v4 = lab.server_v4();
    let v6 = lab.server_v6();
    requests(
        &lab,
        lab.client_v4().into(),
        &format!("http://{v4}:{PORT}/"),
        REQUESTS,
    );
    requests(
        &lab,
        lab.client_v6().into(),
        &format!("http://[{v6}]:{PORT}/"),
        REQUESTS,
    );
    requests(
        &lab,
        lab.client_v4().into(),
        &format!("http://{v4}:{OTHER_PORT}/"),
        REQUESTS,
    );
    let records = sampler.stop(&mut lab);
    // One segment each way per request (curl's requests and nginx's short answers each fit
    // one segment), and none for the other port.
    assert_eq!(records.requests, 2 * REQUESTS, "{records:?}");
    assert_eq!(records.responses, 2 * REQUESTS, "{records:?}");
    let link = server_link(&lab);
    assert!(
        !link.contains(SAMPLER_PROG),
        "the sampler stayed attached: {link}"
    );

    let pass = floors::build_xdp_pass(&lab);
    floors::set_xdp_pass(&lab, Some(&pass));
    let link = server_link(&lab);
    assert!(
        link.contains(XDP_PASS_PROG) && !link.contains("xdpgeneric"),
        "the XDP floor is not attached natively: {link}"
    );
    requests(
        &lab,
        lab.client_v4().into(),
        &format!("http://{v4}:{PORT}/"),
        1,
    );
    floors::set_xdp_pass(&lab, None);
    assert!(!server_link(&lab).contains(XDP_PASS_PROG));
}

//! Entry points of the kernel programs. Each is a thin wrapper: it runs the `try_*` body and
//! records the verdict in exactly one counter at its single exit.
#![no_std]
#![no_main]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod emit;
mod maps;
mod parse;
mod tc;
mod xdp;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use sensor_common::Counter;

/// XDP ingress: enforce blocks, count sources, sample requests.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature is fixed by the aya macro"
)]
pub fn apisensor_xdp(ctx: XdpContext) -> u32 {
    let (action, counter) = match xdp::try_ingress(&ctx) {
        Ok(v) => (v.action, v.counter),
        // A packet we cannot parse always passes; the error names why.
        Err(reason) => (xdp_action::XDP_PASS, reason),
    };
    emit::count(counter);
    action
}

/// TC egress: sample response heads, drop those of flow-blocked connections.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature is fixed by the aya macro"
)]
pub fn apisensor_tc(ctx: TcContext) -> i32 {
    let counter = match tc::try_egress(&ctx) {
        Ok(c) => c,
        Err(_) => Counter::TcPassUnparsed,
    };
    emit::count(counter);
    if counter == Counter::TcDropFlow {
        TC_ACT_SHOT
    } else {
        TC_ACT_UNSPEC
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

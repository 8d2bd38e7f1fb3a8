//! Host-side library target of the kernel crate. It exists so that sensor-user can name this
//! crate as a build dependency and cargo rebuilds the eBPF object when its sources change.
#![no_std]

//! Types and selection logic shared by the XDP program (`edns-ebpf`) and the
//! controller (`edns-user`).
//!
//! Everything here is `no_std`, allocation-free and written so the BPF verifier
//! accepts it: loops have constant bounds, there is no 128-bit division, and
//! pool membership is a `u32` bit mask. The controller calls the very same
//! functions, so the kernel fast path and the userspace slow path cannot drift.
#![no_std]

pub mod cookie;
pub mod ecs;
pub mod maps;
pub mod select;

pub use cookie::*;
pub use ecs::*;
pub use maps::*;
pub use select::*;

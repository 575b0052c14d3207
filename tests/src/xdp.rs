//! The XDP program under BPF_PROG_TEST_RUN: loaded (not attached), maps
//! filled from a config exactly as `edns run` fills them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use edns_user::model::Model;
use edns_user::xdp::{self, DataPlane};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub struct XdpUnderTest {
    ebpf: Ebpf,
    pub dataplane: Arc<DataPlane>,
}

impl XdpUnderTest {
    /// Loads the object `cargo xtask build-ebpf` built, fills the maps from
    /// `model` with every VS up, and loads both programs.
    pub fn new(model: &Model) -> anyhow::Result<XdpUnderTest> {
        Self::with_object(model, &crate::workspace().join("edns-ebpf/target/bpfel-unknown-none/release/edns-ebpf"))
    }

    /// Like `new`, with another build of the object (the bench's `stages` one).
    pub fn with_object(model: &Model, obj: &std::path::Path) -> anyhow::Result<XdpUnderTest> {
        let bytes = std::fs::read(&obj).with_context(|| format!("{} missing: run cargo xtask build-ebpf", obj.display()))?;
        let mut ebpf = xdp::load(model, &bytes)?;
        let states: Vec<u32> = model.vss.iter().map(|v| if v.initially_up { edns_common::VS_UP } else { 0 }).collect();
        let dataplane = Arc::new(DataPlane::fill(model, &mut ebpf, &states, false, Some(crate::packet::SERVER_MAC))?);
        xdp::load_programs(&mut ebpf)?;
        Ok(XdpUnderTest { ebpf, dataplane })
    }

    /// Where a `stages` build stops (0: nowhere).
    pub fn stop_at(&mut self, stage: u32) -> anyhow::Result<()> {
        self.dataplane.update_settings(|s| s.stop_at = stage)
    }

    fn prog(&mut self) -> &mut Xdp {
        self.ebpf.program_mut("edns").unwrap().try_into().unwrap()
    }

    /// Runs one frame: (verdict, output frame).
    pub fn run(&mut self, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; 4096];
        let r = self.prog().test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// Kernel-measured mean time of program `prog` over `runs` runs, each on
    /// a fresh copy of `frame` (BPF_PROG_TEST_RUN with repeat = 1: with a
    /// larger repeat the kernel re-runs the program on the frame it already
    /// rewrote into an answer, which measures the pass path instead). Every
    /// run must return `verdict`.
    pub fn mean_time(&mut self, prog: &str, frame: &[u8], runs: u32, verdict: u32) -> anyhow::Result<Duration> {
        let p: &mut Xdp = self.ebpf.program_mut(prog).context("no such program")?.try_into()?;
        if prog == "edns_pass" && p.fd().is_err() {
            p.load()?;
        }
        let mut out = vec![0u8; 4096];
        let mut total = Duration::ZERO;
        for _ in 0..runs {
            let r = p.test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::new() })?;
            anyhow::ensure!(r.return_value == verdict, "{prog}: verdict {} instead of {verdict}", r.return_value);
            total += r.duration;
        }
        Ok(total / runs)
    }

    pub fn counters(&self) -> Vec<(String, u64)> {
        self.dataplane.counters().unwrap()
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no counter {name}")).1
    }
}

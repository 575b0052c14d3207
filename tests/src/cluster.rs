//! Several edns nodes, each in its own namespace with XDP attached to its
//! veth, on a bridge in a switch namespace, and a client namespace with
//! LDNS addresses: the virtual EDNS of Fig. 4 in one machine. Namespaces
//! (and every process in them) go on drop.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use anyhow::Context;

use crate::{attach_xdp_pass, kdig, sh, tmpdir, unique, workspace, EdnsProc, Netns, TmpDir};

pub struct ClusterHarness {
    logs: TmpDir,
    pub switch: Netns,
    pub client: Netns,
    pub nodes: Vec<Netns>,
    pub node_ifs: Vec<String>,
    /// Node i answers DNS and gossips on 198.18.0.(11 + i).
    pub node_ips: Vec<IpAddr>,
    pub client_if: String,
}

/// The gossip port every node uses.
pub const GOSSIP_PORT: u16 = 7946;

impl ClusterHarness {
    pub fn new(n: usize) -> anyhow::Result<ClusterHarness> {
        let switch = Netns::new("ednsW")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let client = Netns::new("ednsC")?;
        let client_if = unique("cc");
        let mut h = ClusterHarness { logs: tmpdir(), switch, client, nodes: Vec::new(), node_ifs: Vec::new(), node_ips: Vec::new(), client_if };
        h.plug(&h.client, &h.client_if.clone(), "198.18.0.2")?;
        for i in 0..n {
            let ns = Netns::new("ednsN")?;
            let iface = unique("cn");
            let ip = format!("198.18.0.{}", 11 + i);
            h.plug(&ns, &iface, &ip)?;
            h.nodes.push(ns);
            h.node_ifs.push(iface);
            h.node_ips.push(ip.parse()?);
        }
        Ok(h)
    }

    /// A veth from `ns` (`iface`, address `ip`/15) to the bridge. The
    /// bridge side runs an XDP_PASS program, so a node's XDP_TX answers
    /// reach it (a veth delivers XDP_TX only to a peer running NAPI).
    fn plug(&self, ns: &Netns, iface: &str, ip: &str) -> anyhow::Result<()> {
        let port = unique("cb");
        sh(Command::new("ip").args(["link", "add", iface, "netns", &ns.name, "type", "veth", "peer", "name", &port, "netns", &self.switch.name]))?;
        self.switch.ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&["addr", "add", &format!("{ip}/15"), "dev", iface])?;
        ns.ip(&["link", "set", iface, "up"])?;
        // Locally sent packets would carry partial checksums, which XDP verifies.
        sh(ns.cmd("ethtool").args(["-K", iface, "tx", "off"]))?;
        attach_xdp_pass(&self.switch, &port, &self.logs.join(format!("pass-{port}.log")))
    }

    /// `base` (a config for the veth harness, listening on 198.18.0.1:53)
    /// for node `i`, with a `[cluster]` section seeding from the others.
    pub fn config(&self, base: &str, i: usize, interval_ms: u64) -> String {
        let me = self.node_ips[i];
        let seeds: Vec<String> =
            self.node_ips.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, ip)| format!("\"{ip}:{GOSSIP_PORT}\"")).collect();
        format!(
            "{}\n[cluster]\nnode_id = {}\ngossip = \"{me}:{GOSSIP_PORT}\"\nseeds = [{}]\ninterval_ms = {interval_ms}\n",
            // IPv4 only: the nodes have no IPv6 address.
            base.replace(", \"[fd00:edd5::1]:53\"", "").replace("198.18.0.1:53", &format!("{me}:53")),
            i + 1,
            seeds.join(", ")
        )
    }

    /// Starts node `i` with XDP attached.
    pub fn start(&self, i: usize, base: &str, interval_ms: u64) -> anyhow::Result<EdnsProc> {
        self.start_bin(i, base, interval_ms, &crate::edns_bin(false))
    }

    pub fn start_bin(&self, i: usize, base: &str, interval_ms: u64, bin: &std::path::Path) -> anyhow::Result<EdnsProc> {
        let cfg = self.config(base, i, interval_ms);
        EdnsProc::start_bin(bin, &cfg, Some(&self.nodes[i]), &["--iface", &self.node_ifs[i], "--xdp", "native"])
    }

    /// Bytes node `i`'s interface received and sent so far.
    pub fn node_bytes(&self, i: usize) -> anyhow::Result<(u64, u64)> {
        let read = |what: &str| -> anyhow::Result<u64> {
            let out = sh(self.nodes[i].cmd("cat").arg(format!("/sys/class/net/{}/statistics/{what}", self.node_ifs[i])))?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        Ok((read("rx_bytes")?, read("tx_bytes")?))
    }

    pub fn add_client_addrs(&self, addrs: &[IpAddr]) -> anyhow::Result<()> {
        for a in addrs {
            self.client.ip(&["addr", "add", &format!("{a}/32"), "dev", &self.client_if])?;
        }
        Ok(())
    }

    /// The A answer of node `i` to `name` asked from `src`.
    pub fn ask(&self, i: usize, src: IpAddr, name: &str) -> anyhow::Result<String> {
        let d = kdig(Some(&self.client), SocketAddr::new(self.node_ips[i], 53), Some(src), &[name, "A"])?;
        anyhow::ensure!(d.status == "NOERROR" && d.answers.len() == 1, "node {i}: {}", d.text);
        Ok(d.answers[0].clone())
    }

    /// Cuts node `i` off from the other nodes (not from the client):
    /// blackhole routes both ways.
    pub fn partition(&self, i: usize) -> anyhow::Result<()> {
        self.routes(i, "add")
    }

    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        self.routes(i, "del")
    }

    fn routes(&self, i: usize, op: &str) -> anyhow::Result<()> {
        for j in 0..self.nodes.len() {
            if j != i {
                self.nodes[i].ip(&["route", op, "blackhole", &format!("{}/32", self.node_ips[j])]).context("partition")?;
                self.nodes[j].ip(&["route", op, "blackhole", &format!("{}/32", self.node_ips[i])]).context("partition")?;
            }
        }
        Ok(())
    }
}

/// The demo config (examples/demo.toml).
pub fn demo_config() -> String {
    std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap()
}

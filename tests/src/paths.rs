//! Paths from sites to an LDNS, for the path-metric tests: each site
//! namespace (a [`Site`] joined to edns's server namespace) runs the
//! Prometheus blackbox exporter, and reaches the client namespace (where
//! the LDNS addresses live) over a path of its own:
//!
//! site ─veth─ forwarder ─veth─ router 1 ─ … ─ router k ─veth─ client
//!
//! The forwarder (`tests/fixtures/delay_forwarder.py`, packet sockets)
//! holds frames from the site for a delay and drops a share of them — the
//! kernel here has no netem — with settings changeable while it runs; each
//! router (IP forwarding on) takes one from the hop limit of the replies.
//! Path `i` uses 10.(i+1).j.0/24 between its hops: the site is 10.(i+1).0.1,
//! the client's end 10.(i+1).k.2.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::sites::{tcp_open, Service, Site};
use crate::{sh, tmpdir, unique, workspace, Netns, TmpDir};

pub struct SitePath {
    pub site: Site,
    _fwd: Netns,
    _routers: Vec<Netns>,
    settings: PathBuf,
    _forwarder: Service,
    exporter: Service,
}

impl SitePath {
    /// Sets the path's delay (toward the LDNS; the round trip gains it) and loss.
    pub fn set(&self, delay_ms: u32, loss: f64) -> anyhow::Result<()> {
        let tmp = self.settings.with_extension("new");
        std::fs::write(&tmp, format!("{delay_ms} {loss}"))?;
        std::fs::rename(&tmp, &self.settings)?;
        Ok(())
    }

    /// The exporter dies: connections to it are refused.
    pub fn stop_exporter(&mut self) {
        self.exporter.kill();
    }

    /// The exporter stops (SIGSTOP): connections open, nothing answers.
    pub fn stall_exporter(&mut self) {
        let _ = std::process::Command::new("kill").args(["-STOP", &self.exporter.pid().to_string()]).status();
    }

    /// `path_probe` for this site's SAC in a config.
    pub fn probe_url(&self) -> String {
        format!("http://{}:9115/probe", self.site.addr)
    }
}

/// Joins two namespaces with a veth pair, addressing each end (`None`: no
/// address), checksum offload off (the forwarder copies frames as sent).
fn link(a: &Netns, a_addr: Option<&str>, b: &Netns, b_addr: Option<&str>) -> anyhow::Result<(String, String)> {
    let (ai, bi) = (unique("pa"), unique("pb"));
    sh(Command::new("ip").args(["link", "add", &ai, "netns", &a.name, "type", "veth", "peer", "name", &bi, "netns", &b.name]))?;
    for (ns, iface, addr) in [(a, &ai, a_addr), (b, &bi, b_addr)] {
        if let Some(addr) = addr {
            ns.ip(&["addr", "add", addr, "dev", iface])?;
        }
        ns.ip(&["link", "set", iface, "up"])?;
        sh(ns.cmd("ethtool").args(["-K", iface, "tx", "off", "rx", "off", "gro", "off", "gso", "off", "tso", "off"]))?;
    }
    Ok((ai, bi))
}

/// Builds path `i` from a new site (index `i` toward `server`) to `client`
/// through `routers` routers, with the blackbox exporter in the site, and
/// routes to `ldns` (addresses of `client`) over it.
pub fn site_path(server: &Netns, client: &Netns, i: u8, routers: usize, ldns: &[IpAddr], dir: &TmpDir) -> anyhow::Result<SitePath> {
    let site = Site::new(server, i)?;
    let net = |j: usize| format!("10.{}.{j}", i + 1);
    let fwd = Netns::new("ednsF")?;
    let hops: Vec<Netns> = (0..routers).map(|_| Netns::new("ednsR")).collect::<anyhow::Result<_>>()?;
    // site ─ forwarder: the forwarder bridges at layer 2, so the site's
    // neighbour is the first hop beyond it, on net(0).
    let (_, fwd_a) = link(&site.ns, Some(&format!("{}.1/24", net(0))), &fwd, None)?;
    // forwarder, router 1..k, client: hop j's link is net(j), .1 the near end, .2 the far.
    let chain: Vec<&Netns> = std::iter::once(&fwd).chain(hops.iter()).chain(std::iter::once(client)).collect();
    let mut fwd_b = String::new();
    for j in 0..=routers {
        let near = (j > 0).then(|| format!("{}.1/24", net(j)));
        let (left, _) = link(chain[j], near.as_deref(), chain[j + 1], Some(&format!("{}.2/24", net(j))))?;
        if j == 0 {
            fwd_b = left;
        }
    }
    for (j, r) in hops.iter().enumerate() {
        // Router j+1: toward the LDNS over net(j+1); back to the site over net(j).
        sh(r.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
        for l in ldns {
            r.ip(&["route", "add", &format!("{l}/32"), "via", &format!("{}.2", net(j + 1))])?;
        }
        if j > 0 {
            r.ip(&["route", "add", &format!("{}.0/24", net(0)), "via", &format!("{}.1", net(j))])?;
        }
    }
    if routers > 0 {
        client.ip(&["route", "add", &format!("{}.0/24", net(0)), "via", &format!("{}.1", net(routers))])?;
    }
    for l in ldns {
        site.ns.ip(&["route", "add", &format!("{l}/32"), "via", &format!("{}.2", net(0))])?;
    }
    let settings = dir.join(format!("path{i}.settings"));
    std::fs::write(&settings, "0 0")?;
    let mut cmd = fwd.cmd("python3");
    cmd.arg(workspace().join("tests/fixtures/delay_forwarder.py")).args([&fwd_a, &fwd_b]).arg(&settings);
    let forwarder = Service::start(cmd, &format!("forwarder {i}"), || true)?;
    let bb = dir.join(format!("blackbox{i}.yml"));
    std::fs::write(&bb, "modules:\n  icmp:\n    prober: icmp\n    timeout: 1s\n    icmp:\n      preferred_ip_protocol: ip4\n")?;
    let mut cmd = site.ns.cmd("prometheus-blackbox-exporter");
    cmd.arg(format!("--config.file={}", bb.display())).arg(format!("--web.listen-address={}:9115", site.addr));
    let at = site.at(9115);
    let exporter = Service::start(cmd, &format!("blackbox exporter {i}"), || tcp_open(server, at))?;
    Ok(SitePath { site, _fwd: fwd, _routers: hops, settings, _forwarder: forwarder, exporter })
}

/// SAC names and addresses of [`paths_config`].
pub const SACS: [&str; 3] = ["a", "b", "c"];
pub const ADDRS: [&str; 3] = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];

/// A config for edns at 198.18.0.1 with one SAC per path (a, b, c, each
/// probed by its exporter) and a dynamic wide IP per path method, NAME.gslb.example.
/// for (NAME, METHOD) in `NAMES` of the tests: rtt, loss, hops, qos; `extra` lines go in `[paths]`.
pub fn paths_config(paths: &[SitePath], extra: &str) -> String {
    let mut c = String::from(
        "[server]\nlisten = [\"198.18.0.1:53\"]\nzone = \"gslb.example.\"\nnameservers = [\"ns1.gslb.example.\"]\nanswer_ttl = 30\ncontrol = \"127.0.0.1:8053\"\n\n",
    );
    c += &format!("[paths]\nmax_probes_per_sec = 20\nprobes_per_round = 8\ntimeout_ms = 1200\nqos = {{ rtt = 1.0, loss = 1.0, hops = 0.5 }}\n{extra}\n");
    for (i, p) in paths.iter().enumerate() {
        c += &format!(
            "[[sac]]\nname = \"{}\"\naddress = \"{}\"\npath_probe = {{ url = \"{}\", module = \"icmp\" }}\nvirtual_servers = [{{ name = \"vs\" }}]\n\n",
            SACS[i],
            ADDRS[i],
            p.probe_url()
        );
    }
    for (name, method) in [("rtt", "lowest_rtt"), ("loss", "lowest_loss"), ("hops", "fewest_hops"), ("qos", "quality_of_service")] {
        c += &format!(
            "[[wide_ip]]\nname = \"{name}.gslb.example.\"\nmode = \"dynamic\"\nmethod = [\"{method}\", \"round_robin\"]\npersistence_ttl = 600\npool = [\"a/vs\", \"b/vs\", \"c/vs\"]\n\n"
        );
    }
    c
}

/// A directory for the paths' settings and exporter configs.
pub fn path_dir() -> TmpDir {
    tmpdir()
}

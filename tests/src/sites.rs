//! Sites (SACs) for the health and metrics tests: a namespace per site,
//! joined to the server namespace by a veth pair, running real services
//! (HTTP servers, HAProxy, node_exporter) that the test starts and kills.
//!
//! Site `i` gets 203.0.113.(8i)/29 (TEST-NET-3, which exists only inside
//! these namespaces): the server side is .8i+1, the site .8i+2.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{sh, unique, workspace, Netns};

pub struct Site {
    pub ns: Netns,
    /// The site's address, where its services listen.
    pub addr: IpAddr,
    /// The site's end of the veth pair.
    pub iface: String,
}

impl Site {
    pub fn new(server: &Netns, index: u8) -> anyhow::Result<Site> {
        assert!(index < 32);
        let ns = Netns::new("ednsV")?;
        let (srv_if, site_if) = (unique("gs"), unique("gv"));
        sh(Command::new("ip").args([
            "link", "add", &srv_if, "netns", &server.name, "type", "veth", "peer", "name", &site_if, "netns", &ns.name,
        ]))?;
        let base = 8 * index;
        let gw = format!("203.0.113.{}/29", base + 1);
        let addr = Ipv4Addr::new(203, 0, 113, base + 2);
        server.ip(&["addr", "add", &gw, "dev", &srv_if])?;
        ns.ip(&["addr", "add", &format!("{addr}/29"), "dev", &site_if])?;
        server.ip(&["link", "set", &srv_if, "up"])?;
        ns.ip(&["link", "set", &site_if, "up"])?;
        Ok(Site { ns, addr: IpAddr::V4(addr), iface: site_if })
    }

    pub fn at(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.addr, port)
    }
}

/// A process in a namespace, killed on drop (and by the namespace's drop).
pub struct Service {
    child: Child,
    pub what: String,
}

impl Service {
    /// Starts `cmd` and waits until `ready` holds (at most 10 s).
    pub fn start(mut cmd: Command, what: &str, ready: impl Fn() -> bool) -> anyhow::Result<Service> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
        let mut s = Service { child, what: what.to_string() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready() {
            if let Some(st) = s.child.try_wait()? {
                let mut err = String::new();
                if let Some(e) = s.child.stderr.take() {
                    for l in std::io::BufReader::new(e).lines().map_while(Result::ok) {
                        err.push_str(&l);
                        err.push('\n');
                    }
                }
                bail!("{what} exited at start ({st}): {err}");
            }
            if Instant::now() > deadline {
                bail!("{what} not ready in 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when a TCP connect from `ns` to `addr` succeeds.
pub fn tcp_open(ns: &Netns, addr: SocketAddr) -> bool {
    let script = format!(
        "import socket,sys\ns=socket.socket()\ns.settimeout(0.5)\nsys.exit(0 if s.connect_ex(({:?},{}))==0 else 1)",
        addr.ip().to_string(),
        addr.port()
    );
    ns.cmd("python3").args(["-c", &script]).status().map(|s| s.success()).unwrap_or(false)
}

pub fn http_vs_script() -> PathBuf {
    workspace().join("tests/fixtures/http_vs.py")
}

/// A real HTTP server for GET /health (tests/fixtures/http_vs.py) at
/// `site:port`, with extra flags (--flap, --body, --status, --tls CERT KEY).
/// `probe_from` is the namespace whose connect proves it is up.
pub fn http_vs(site: &Site, port: u16, flags: &[&str], probe_from: &Netns) -> anyhow::Result<Service> {
    let mut cmd = site.ns.cmd("python3");
    cmd.arg(http_vs_script()).arg(site.addr.to_string()).arg(port.to_string()).args(flags);
    let at = site.at(port);
    Service::start(cmd, &format!("http_vs {at} {flags:?}"), || tcp_open(probe_from, at))
}

/// HAProxy from Debian at `site:80` in front of the site's HTTP server at
/// `backend_port`, `maxconn` sessions on its frontend `fe`, and its built-in
/// Prometheus exporter at `site:8404/metrics`.
pub fn haproxy(site: &Site, dir: &Path, backend_port: u16, maxconn: u32, probe_from: &Netns) -> anyhow::Result<Service> {
    let a = site.addr;
    let cfg = dir.join(format!("haproxy-{a}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  timeout http-request 30s\n\
             frontend fe\n  bind {a}:80\n  maxconn {maxconn}\n  default_backend be\n\
             backend be\n  server s1 {a}:{backend_port}\n\
             frontend stats\n  bind {a}:8404\n  http-request use-service prometheus-exporter if {{ path /metrics }}\n"
        ),
    )?;
    let mut cmd = site.ns.cmd("haproxy");
    cmd.arg("-db").arg("-f").arg(&cfg);
    let at = site.at(8404);
    Service::start(cmd, &format!("haproxy {a}"), || tcp_open(probe_from, at))
}

/// Debian's prometheus-node-exporter at `site:9100`, CPU and network collectors only.
pub fn node_exporter(site: &Site, probe_from: &Netns) -> anyhow::Result<Service> {
    let at = site.at(9100);
    let mut cmd = site.ns.cmd("prometheus-node-exporter");
    cmd.arg(format!("--web.listen-address={at}")).args(["--collector.disable-defaults", "--collector.cpu", "--collector.netdev"]);
    Service::start(cmd, &format!("node_exporter {at}"), || tcp_open(probe_from, at))
}

/// Opens `n` TCP connections from `ns` to `addr` and holds them for `secs`
/// seconds (bounded load: the helper exits by itself).
pub fn hold_connections(ns: &Netns, addr: SocketAddr, n: u32, secs: u32) -> anyhow::Result<Service> {
    let script = format!(
        "import socket,sys,time\nss=[socket.create_connection(({:?},{}),timeout=2) for _ in range({n})]\nprint('held',flush=True)\nsys.stdout.close()\ntime.sleep({secs})\n",
        addr.ip().to_string(),
        addr.port()
    );
    let mut cmd = ns.cmd("python3");
    cmd.args(["-c", &script]);
    Service::start(cmd, &format!("{n} connections to {addr}"), || true)
}

/// A test CA and a certificate it signed for `name` (DNS SAN) and IP `ip`:
/// (CA cert, leaf cert, leaf key) in `dir`. The CA is trusted by nobody
/// unless a monitor names it in `ca_file`.
pub fn test_pki(dir: &Path, name: &str, ip: IpAddr) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let p = |f: &str| dir.join(f);
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    sh(Command::new("openssl").args(["req", "-x509", "-days", "2"]).args(ec).arg("-keyout").arg(p("ca.key")).arg("-out").arg(p("ca.pem")).args(["-subj", "/CN=edns test CA"]))?;
    sh(Command::new("openssl").args(["req"]).args(ec).arg("-keyout").arg(p("leaf.key")).arg("-out").arg(p("leaf.csr")).args(["-subj", &format!("/CN={name}")]))?;
    std::fs::write(p("leaf.ext"), format!("basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:{name},IP:{ip}\n"))?;
    sh(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("leaf.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(p("leaf.ext"))
        .arg("-out")
        .arg(p("leaf.pem")))?;
    Ok((p("ca.pem"), p("leaf.pem"), p("leaf.key")))
}

/// Median of a list of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Config text for the site tests: edns on the veth harness's server address.
pub mod config {
    /// `[server]` on 198.18.0.1:53 with its control endpoint at `control`.
    pub fn server(control: &str) -> String {
        format!(
            "\n[server]\nlisten = [\"198.18.0.1:53\"]\nzone = \"gslb.example.\"\nnameservers = [\"ns1.gslb.example.\"]\nanswer_ttl = 5\ncontrol = \"{control}\"\n"
        )
    }

    /// A `[[sac]]` with one VS `vs1` probing `target` with `monitor`;
    /// `vs_extra` adds fields to the VS (", weight = 3"), `extra` lines to the SAC.
    pub fn sac(name: &str, address: &str, target: std::net::SocketAddr, monitor: &str, vs_extra: &str, extra: &str) -> String {
        format!(
            "\n[[sac]]\nname = \"{name}\"\naddress = \"{address}\"\nvirtual_servers = [{{ name = \"vs1\", target = \"{target}\", monitor = \"{monitor}\"{vs_extra} }}]\n{extra}\n"
        )
    }

    /// A dynamic `[[wide_ip]]`; `method` is TOML (`"ratio"` or `["a", "b"]`).
    pub fn dynamic(name: &str, method: &str, ttl: u32, pool: &[&str]) -> String {
        let pool: Vec<String> = pool.iter().map(|p| format!("{p:?}")).collect();
        format!(
            "\n[[wide_ip]]\nname = \"{name}\"\nmode = \"dynamic\"\nmethod = {method}\npersistence_ttl = {ttl}\npool = [{}]\n",
            pool.join(", ")
        )
    }
}

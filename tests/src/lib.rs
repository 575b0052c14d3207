//! Test harness: real `edns` processes, real clients (kdig), network
//! namespaces and veth pairs that clean up after themselves on drop, also
//! when a test fails.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `edns` binary: $EDNS_BIN, else target/{release,debug}/edns.
pub fn edns_bin(release: bool) -> PathBuf {
    if let Ok(p) = std::env::var("EDNS_BIN") {
        return PathBuf::from(p);
    }
    let p = workspace().join("target").join(if release { "release" } else { "debug" }).join("edns");
    assert!(p.exists(), "{} not built: run `cargo xtask test` (or cargo build -p edns-user)", p.display());
    p
}

/// The newest edns binary built (debug or release), for helpers.
pub fn edns_bin_any() -> PathBuf {
    if let Ok(p) = std::env::var("EDNS_BIN") {
        return PathBuf::from(p);
    }
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (d, r) = (workspace().join("target/debug/edns"), workspace().join("target/release/edns"));
    match (mtime(&d), mtime(&r)) {
        (Some(a), Some(b)) if b > a => r,
        (None, Some(_)) => r,
        _ => edns_bin(false),
    }
}

/// Tests that need namespaces or XDP fail loudly without root, never skip.
pub fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces, XDP); run it as root, as CI does"
    );
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, short enough for interface names.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id() % 100000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A fresh directory under the system temp dir, removed on drop unless the
/// thread is panicking (a failed test keeps its configs and logs).
pub struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tmpdir() -> TmpDir {
    let d = std::env::temp_dir().join(unique("edns-test-"));
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

/// A port free on 127.0.0.1 for both UDP and TCP right now, and never
/// handed out before by this test binary: the kernel may give the same
/// ephemeral port to two binds in a row, and two callers (a DNS and a
/// control address, or two tests in parallel) must not share one.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

pub fn sh(cmd: &mut Command) -> anyhow::Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

/// A network namespace, deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> anyhow::Result<Netns> {
        let name = unique(prefix);
        sh(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }
    /// A command run inside the namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<Output> {
        sh(Command::new("ip").args(["-n", &self.name]).args(args))
    }
    /// The MAC address of `iface` in this namespace.
    pub fn mac(&self, iface: &str) -> anyhow::Result<[u8; 6]> {
        let out = self.ip(&["-br", "link", "show", iface])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let m = text.split_whitespace().nth(2).with_context(|| format!("no MAC in {text:?}"))?;
        let v: Vec<u8> = m.split(':').map(|h| u8::from_str_radix(h, 16)).collect::<Result<_, _>>()?;
        v.try_into().map_err(|_| anyhow::anyhow!("{m} is not a MAC"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside, then delete (veths go with it).
        let _ = Command::new("ip").args(["netns", "pids", &self.name]).output().map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Two namespaces joined by a veth pair: `server` holds `server_if` with
/// `server_ip`, `client` holds `client_if` with `client_ip` plus any extra
/// LDNS addresses. Addresses are from 198.18.0.0/15 (RFC 2544 benchmarking),
/// which exists only inside these namespaces.
pub struct VethHarness {
    logs: TmpDir,
    pub server: Netns,
    pub client: Netns,
    pub server_if: String,
    pub client_if: String,
    pub server_ip: IpAddr,
    pub client_ip: IpAddr,
}

impl VethHarness {
    /// The harness with `edns xdp-pass` on the client veth, so XDP_TX
    /// answers reach the client's sockets.
    pub fn new() -> anyhow::Result<VethHarness> {
        Self::with_queues(1)
    }

    /// [`VethHarness::new`] with `queues` queues each way on each end.
    pub fn with_queues(queues: u32) -> anyhow::Result<VethHarness> {
        let h = Self::bare_with_queues(queues)?;
        h.attach_client_pass()?;
        Ok(h)
    }

    /// The harness without a program on the client veth (for a generator
    /// such as kxdpgun that attaches its own).
    pub fn bare() -> anyhow::Result<VethHarness> {
        Self::bare_with_queues(1)
    }

    /// [`VethHarness::bare`] with `queues` receive and transmit queues on
    /// each end (an XDP program runs on every receive queue, each with its
    /// own NAPI).
    pub fn bare_with_queues(queues: u32) -> anyhow::Result<VethHarness> {
        let server = Netns::new("ednsS")?;
        let client = Netns::new("ednsC")?;
        let server_if = unique("vs");
        let client_if = unique("vc");
        let q = queues.to_string();
        sh(Command::new("ip").args([
            "link", "add", &server_if, "netns", &server.name, "numrxqueues", &q, "numtxqueues", &q, "type", "veth", "peer", "name", &client_if,
            "netns", &client.name, "numrxqueues", &q, "numtxqueues", &q,
        ]))?;
        let h = VethHarness {
            logs: tmpdir(),
            server,
            client,
            server_if,
            client_if,
            server_ip: "198.18.0.1".parse().unwrap(),
            client_ip: "198.18.0.2".parse().unwrap(),
        };
        h.server.ip(&["addr", "add", "198.18.0.1/15", "dev", &h.server_if])?;
        h.server.ip(&["-6", "addr", "add", "fd00:edd5::1/64", "dev", &h.server_if, "nodad"])?;
        h.client.ip(&["addr", "add", "198.18.0.2/15", "dev", &h.client_if])?;
        h.client.ip(&["-6", "addr", "add", "fd00:edd5::2/64", "dev", &h.client_if, "nodad"])?;
        h.server.ip(&["link", "set", &h.server_if, "up"])?;
        h.client.ip(&["link", "set", &h.client_if, "up"])?;
        // Locally sent packets would carry partial checksums.
        sh(h.client.cmd("ethtool").args(["-K", &h.client_if, "tx", "off"]))?;
        Ok(h)
    }

    fn attach_client_pass(&self) -> anyhow::Result<()> {
        attach_xdp_pass(&self.client, &self.client_if, &self.logs.join("xdp-pass.log"))
    }

    /// Routes replies for a generator's source range (e.g. kxdpgun -l) to
    /// the client veth, so the server's stack needs no ARP for each source.
    pub fn route_via_client(&self, range: &str) -> anyhow::Result<()> {
        self.server.ip(&["route", "add", range, "via", &self.client_ip.to_string()])?;
        Ok(())
    }

    /// Sends `payload` over UDP from `src` in the client namespace to
    /// `server` and returns the reply, if one comes within a second.
    pub fn client_udp_exchange(&self, src: IpAddr, server: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let script = format!(
            "import socket,sys\ns=socket.socket(socket.AF_INET6 if ':' in '{src}' else socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{src}',0))\ns.settimeout(1)\ns.sendto(bytes.fromhex('{hex}'),('{ip}',{port}))\ntry:\n  sys.stdout.write(s.recv(65535).hex())\nexcept socket.timeout:\n  pass\n",
            ip = server.ip(),
            port = server.port()
        );
        let out = self.client.cmd("python3").args(["-c", &script]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if text.is_empty() {
            return None;
        }
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
    }

    /// Adds LDNS source addresses to the client side (inside the /15 and /64
    /// the server already reaches on-link).
    pub fn add_client_addrs(&self, addrs: &[IpAddr]) -> anyhow::Result<()> {
        for a in addrs {
            let cidr = match a {
                IpAddr::V4(_) => format!("{a}/32"),
                IpAddr::V6(_) => format!("{a}/128"),
            };
            let mut args = vec!["addr", "add", &cidr, "dev", &self.client_if];
            if a.is_ipv6() {
                args.push("nodad");
            }
            self.client.ip(&args)?;
        }
        Ok(())
    }
}

/// Attaches `edns xdp-pass` to `iface` in `ns` and waits until it is
/// attached. XDP_TX (or AF_XDP transmit) on a veth delivers only when the
/// peer runs NAPI; GRO alone did not turn it on here, an XDP program on the
/// peer does. The process lives until the namespace is dropped.
pub fn attach_xdp_pass(ns: &Netns, iface: &str, log: &Path) -> anyhow::Result<()> {
    let mut pass = ns.cmd(edns_bin_any());
    pass.args(["xdp-pass", "--iface", iface]).stderr(std::fs::File::create(log)?);
    let mut child = pass.spawn().context("cannot start edns xdp-pass")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let link = ns.ip(&["link", "show", iface])?;
        if String::from_utf8_lossy(&link.stdout).contains("prog/xdp") {
            break;
        }
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            bail!("edns xdp-pass did not attach to {iface}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The namespace's drop kills it.
    std::mem::forget(child);
    Ok(())
}

/// A bpffs of the test's own, visible to every `ip netns exec` (which gives
/// each process a private /sys): pins in it outlive a killed edns.
/// Unmounted on drop, which frees whatever is still pinned.
pub struct BpfMount {
    dir: TmpDir,
}

impl BpfMount {
    pub fn new() -> anyhow::Result<BpfMount> {
        let dir = tmpdir();
        sh(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&*dir))?;
        Ok(BpfMount { dir })
    }
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BpfMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&*self.dir).status();
    }
}

/// Where an `edns run` on the veth harness pins its data plane (a bpffs of
/// the test's own) and notes the pinned ids, so that a restart finds them.
pub struct PinnedDataPlane {
    pub bpf: BpfMount,
    pub run: TmpDir,
}

impl PinnedDataPlane {
    pub fn new() -> anyhow::Result<PinnedDataPlane> {
        Ok(PinnedDataPlane { bpf: BpfMount::new()?, run: tmpdir() })
    }

    /// `edns run` arguments: native XDP on the harness's server side, pinned here.
    pub fn args(&self, h: &VethHarness) -> Vec<String> {
        ["--iface", &h.server_if, "--xdp", "native", "--pin-dir", self.bpf.path().to_str().unwrap(), "--run-dir", self.run.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Starts `bin` with `config` in the server namespace, pinned here, plus `extra` arguments.
    pub fn start_bin(&self, bin: &Path, config: &str, h: &VethHarness, extra: &[&str]) -> anyhow::Result<EdnsProc> {
        let args = self.args(h);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).chain(extra.iter().copied()).collect();
        EdnsProc::start_bin(bin, config, Some(&h.server), &args)
    }

    /// The pinned XDP link.
    pub fn link(&self, h: &VethHarness) -> PathBuf {
        self.bpf.path().join(&h.server_if).join("link")
    }
}

/// A running `edns run`, killed on drop.
pub struct EdnsProc {
    // Dropped after the process is stopped (fields drop after Drop::drop).
    _dir: TmpDir,
    child: Child,
    pub dns: SocketAddr,
    pub control: SocketAddr,
    pub config: PathBuf,
    netns: Option<String>,
    pub log: PathBuf,
    bin: PathBuf,
    /// The control endpoint's bearer token, passed to `edns ctl`.
    token: Option<String>,
}

impl EdnsProc {
    /// Starts edns with `config_text` (written to a temp file), optionally
    /// inside a namespace, and waits until its control endpoint answers.
    pub fn start(config_text: &str, netns: Option<&Netns>, extra: &[&str]) -> anyhow::Result<EdnsProc> {
        Self::start_bin(&edns_bin(false), config_text, netns, extra)
    }

    pub fn start_bin(bin: &Path, config_text: &str, netns: Option<&Netns>, extra: &[&str]) -> anyhow::Result<EdnsProc> {
        Self::start_full(bin, config_text, netns, extra, &[])
    }

    /// Like `start_bin`, with extra environment variables (EDNS_LOG, ...).
    pub fn start_full(
        bin: &Path,
        config_text: &str,
        netns: Option<&Netns>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<EdnsProc> {
        let dir = tmpdir();
        let config = dir.join("edns.toml");
        std::fs::write(&config, config_text)?;
        let model = edns_user::config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let dns = model.server.listen[0];
        let control = model.server.control.context("test configs need a control address")?.addr();
        let token = model.server.control_token.clone();
        let log = dir.join("edns.log");
        let mut cmd = match netns {
            Some(ns) => ns.cmd(bin),
            None => Command::new(bin),
        };
        cmd.arg("run").arg("--config").arg(&config).args(extra);
        // The ids of pinned maps go to the test's directory, not the host's /run.
        if extra.contains(&"--iface") && !extra.contains(&"--run-dir") {
            cmd.arg("--run-dir").arg(dir.join("run"));
        }
        cmd.envs(env.iter().copied());
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
        let child = cmd.spawn().context("cannot start edns")?;
        let mut p = EdnsProc { _dir: dir, child, dns, control, config, netns: netns.map(|n| n.name.clone()), log, bin: bin.to_owned(), token };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = p.child.try_wait()? {
                bail!("edns exited at start ({st}):\n{}", std::fs::read_to_string(&p.log).unwrap_or_default());
            }
            if p.ctl(&["stats"]).is_ok() {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!("edns did not come up in 20 s:\n{}", std::fs::read_to_string(&p.log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `edns ctl --control ADDR ARGS` for this instance (inside its namespace).
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["ctl", "--control", &self.control.to_string()]).args(args);
        if let Some(t) = &self.token {
            cmd.env("EDNS_CONTROL_TOKEN", t);
        }
        cmd
    }

    /// Runs `edns ctl --json ARGS` against this instance.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = sh(&mut self.ctl_command(&[&["--json"], args].concat()))?;
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// `edns ctl records` as (wide IP, LDNS, VS), sorted.
    pub fn records(&self) -> Vec<(String, String, String)> {
        let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
        let mut v: Vec<_> = self.ctl(&["records"]).unwrap().as_array().unwrap().iter().map(|r| (s(r, "wide_ip"), s(r, "ldns"), s(r, "vs"))).collect();
        v.sort();
        v
    }

    /// One VS of `edns ctl vs --json`.
    pub fn vs(&self, name: &str) -> serde_json::Value {
        let all = self.ctl(&["vs"]).unwrap();
        all.as_array().unwrap().iter().find(|v| v["name"] == name).cloned().unwrap_or_else(|| panic!("no VS {name} in {all}"))
    }

    /// One wide IP of `edns ctl wide-ips --json`.
    pub fn wide_ip(&self, name: &str) -> serde_json::Value {
        let all = self.ctl(&["wide-ips"]).unwrap();
        all.as_array().unwrap().iter().find(|w| w["name"] == name).cloned().unwrap_or_else(|| panic!("no wide IP {name} in {all}"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash: nothing is cleaned up by edns itself.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EdnsProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `cond` holds, polling every 10 ms; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What kdig printed, parsed.
#[derive(Debug, Clone)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// RDATA of the ANSWER section, in order.
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub text: String,
}

impl Dig {
    pub fn answer(&self) -> &str {
        assert_eq!(self.answers.len(), 1, "expected one answer:\n{}", self.text);
        &self.answers[0]
    }
}

/// Runs kdig against `server` (from `src` when given), in `ns` when given.
pub fn kdig(ns: Option<&Netns>, server: SocketAddr, src: Option<IpAddr>, args: &[&str]) -> anyhow::Result<Dig> {
    let mut cmd = match ns {
        Some(n) => n.cmd("kdig"),
        None => Command::new("kdig"),
    };
    cmd.arg(format!("@{}", server.ip())).args(["-p", &server.port().to_string(), "+timeout=2", "+retry=1"]);
    if let Some(s) = src {
        cmd.args(["-b", &s.to_string()]);
    }
    cmd.args(args);
    let out = cmd.output().context("cannot run kdig")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && !text.contains("status:") {
        bail!("kdig {args:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), text);
    }
    parse_kdig(&text)
}

fn parse_kdig(text: &str) -> anyhow::Result<Dig> {
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(';').next().unwrap().trim().to_string())
        .with_context(|| format!("no status in kdig output:\n{text}"))?;
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix(";; Flags: "))
        .map(|s| s.split(';').next().unwrap().split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut section = "";
    let (mut answers, mut authority) = (Vec::new(), Vec::new());
    for l in text.lines() {
        if let Some(s) = l.strip_prefix(";; ").and_then(|s| s.strip_suffix(" SECTION:")) {
            section = if s == "ANSWER" { "a" } else if s == "AUTHORITY" { "n" } else { "" };
            continue;
        }
        if l.is_empty() || l.starts_with(';') {
            if l.is_empty() {
                section = "";
            }
            continue;
        }
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.len() >= 5 {
            let rdata = fields[4..].join(" ");
            match section {
                "a" => answers.push(rdata),
                "n" => authority.push(format!("{} {}", fields[3], rdata)),
                _ => {}
            }
        }
    }
    Ok(Dig { status, flags, answers, authority, text: text.to_string() })
}

/// The example config with its ports replaced (listen, control).
pub fn example_config(dns: SocketAddr, control: SocketAddr) -> String {
    std::fs::read_to_string(workspace().join("examples/edns.toml"))
        .unwrap()
        .replace("127.0.0.1:5353", &dns.to_string())
        .replace("127.0.0.1:8053", &control.to_string())
        // The config is written elsewhere: the zone file by its full path.
        .replace("zone_file = \"gslb.example.zone\"", &format!("zone_file = {:?}", workspace().join("examples/gslb.example.zone").display().to_string()))
}

/// A loopback edns on fresh ports.
pub fn loopback_ports() -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    )
}

/// Fig. 3 computed independently of edns: walk the circular list of marked
/// states from its head, X = ip mod N + 1, decrement at each marked-up VS.
pub fn fig3(ip: std::net::Ipv4Addr, marked: &[bool]) -> usize {
    let n = marked.iter().filter(|m| **m).count() as u32;
    let mut x = u32::from(ip) % n + 1;
    let mut i = 0;
    loop {
        if marked[i % marked.len()] {
            x -= 1;
            if x == 0 {
                return i % marked.len();
            }
        }
        i += 1;
    }
}

pub mod cluster;
pub mod load;
pub mod packet;
pub mod paths;
pub mod xdp;
pub mod sites;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use edns_user::control::{self, Client, RecordView, VsView, WideIpView};
use edns_user::cookies::Cookies;
use edns_user::live::Live;
use edns_user::select::schedule;
use edns_user::{config, server, xdp};

#[derive(Parser)]
#[command(name = "edns", version, about = "GSLB authoritative DNS responder with an XDP fast path")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum XdpMode {
    /// Driver (native) XDP.
    Native,
    /// Generic XDP in the network stack; works on any device.
    Skb,
    /// No data plane: everything is answered in userspace.
    Off,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the zone of a config file.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Interface to attach the XDP data plane to.
        #[arg(long)]
        iface: Option<String>,
        #[arg(long, value_enum, default_value = "off")]
        xdp: XdpMode,
        /// Load the XDP program from this object instead of the embedded one.
        #[arg(long)]
        bpf_object: Option<PathBuf>,
        /// Log every XDP verdict (aya-log, at debug level: EDNS_LOG=debug). Costly; for diagnosis.
        #[arg(long)]
        xdp_log: bool,
        /// Start the wall clock persistence schedules read at this time
        /// (RFC 3339, e.g. 2026-11-30T07:59:55+01:00); it then runs at the
        /// normal rate. For trying a schedule without waiting for the hour.
        #[arg(long)]
        clock_start: Option<jiff::Timestamp>,
        /// bpffs directory the data plane is pinned under, per interface
        /// (mounted there when no bpffs is). A restart takes over what it finds.
        #[arg(long, default_value = xdp::pin::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Where the ids of the pinned maps are noted, per interface.
        #[arg(long, default_value = xdp::pin::DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        /// Do not pin: XDP detaches when edns exits.
        #[arg(long)]
        no_pin: bool,
        /// On exit, unpin and detach the data plane for good (else it keeps
        /// answering from the kernel until the next `edns run` takes over).
        #[arg(long)]
        detach_on_exit: bool,
    },
    /// Detach and unpin the data plane a stopped edns left on IFACE.
    Detach {
        #[arg(long)]
        iface: String,
        #[arg(long, default_value = xdp::pin::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long, default_value = xdp::pin::DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Validate a config file without serving.
    CheckConfig { file: PathBuf },
    /// Load the XDP programs (not attached) and print the verifier's instruction counts.
    VerifyXdp {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        bpf_object: Option<PathBuf>,
    },
    /// Attach an XDP_PASS program to IFACE until terminated. On a veth, the
    /// peer of the interface edns answers on needs it (or native XDP of its
    /// own) for XDP_TX frames to be delivered.
    XdpPass {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        bpf_object: Option<PathBuf>,
    },
    /// Talk to a running edns through its control endpoint.
    Ctl {
        /// Control endpoint address; default: `control` of --config, else 127.0.0.1:8053.
        #[arg(long)]
        control: Option<SocketAddr>,
        /// Read the control address and token from this config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A file holding the control endpoint's bearer token (else
        /// $EDNS_CONTROL_TOKEN, else the token of --config).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: CtlCmd,
    },
}

#[derive(Subcommand)]
enum CtlCmd {
    /// List persistence records (Fig. 6 fields).
    Records,
    /// Show virtual server states: marked, available, admin, last probe, metrics.
    Vs,
    /// Set a virtual server's admin state, which wins over probes until `auto`:
    /// up, down, drain (no new LDNSes; timely records keep it), auto, or
    /// unavailable (still marked up, but gone).
    SetVs { name: String, state: String },
    /// Show each wide IP's mode, method chain, all-down policy and the method that answered last.
    WideIps,
    /// Show query and data-plane counters.
    Stats,
    /// Show path measurements (RTT, loss, hops) per SAC, of every LDNS prefix or of one LDNS's.
    Paths { ldns: Option<std::net::IpAddr> },
    /// Re-read the config file and serve it (as SIGHUP does); a bad config
    /// is refused with file:line and the running one stays.
    Reload,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDNS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run { config, iface, xdp, bpf_object, xdp_log, clock_start, pin_dir, run_dir, no_pin, detach_on_exit } => {
            let pins = iface.as_deref().filter(|_| !no_pin).map(|i| xdp::pin::Pins::new(&pin_dir, &run_dir, i));
            run(config, iface, xdp, bpf_object, xdp_log, clock_start, pins, detach_on_exit)
        }
        Cmd::Detach { iface, pin_dir, run_dir } => {
            let p = xdp::pin::Pins::new(&pin_dir, &run_dir, &iface);
            if !p.any_pinned() {
                println!("nothing pinned at {}", p.dir.display());
                return;
            }
            p.remove_all().map(|_| println!("unpinned {}: the XDP program leaves {iface} (at once, unless a running edns still holds it)", p.dir.display()))
        }
        Cmd::CheckConfig { file } => check(&file),
        Cmd::VerifyXdp { config, bpf_object } => config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|m| xdp::verify(&m, bpf_object.as_deref()))
            .map(|counts| {
                for (name, n) in counts {
                    println!("{name}: {n} instructions verified (limit 1000000)");
                }
            }),
        Cmd::Ctl { control, config, token_file, json, cmd } => ctl(control, config, token_file, json, cmd),
        Cmd::XdpPass { iface, bpf_object } => xdp::attach_pass(&iface, bpf_object.as_deref()).and_then(|_ebpf| {
            tracing::info!(%iface, "edns_pass attached; detaches on exit");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(shutdown_signal());
            Ok(())
        }),
    };
    if let Err(e) = r {
        eprintln!("edns: {e:#}");
        std::process::exit(1);
    }
}

fn check(file: &PathBuf) -> anyhow::Result<()> {
    let m = config::load(file)?;
    println!(
        "{}: ok: zone {}, {} SACs, {} virtual servers, {} wide IPs, {} topology rules, {} monitors, {} exporters",
        file.display(),
        m.server.zone,
        m.sacs.len(),
        m.vss.len(),
        m.wide_ips.len(),
        m.topology.len(),
        m.monitors.len(),
        m.exporters.len()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run(
    path: PathBuf,
    iface: Option<String>,
    mode: XdpMode,
    bpf_object: Option<PathBuf>,
    xdp_log: bool,
    clock_start: Option<jiff::Timestamp>,
    pins: Option<xdp::pin::Pins>,
    detach_on_exit: bool,
) -> anyhow::Result<()> {
    if xdp_log && mode == XdpMode::Off {
        anyhow::bail!("--xdp-log needs --xdp native or skb");
    }
    let model = Arc::new(config::load(&path)?);
    let xdp_iface = iface.clone();
    let (dataplane, takeover) = match (mode, iface) {
        (XdpMode::Off, None) => (None, xdp::Takeover::default()),
        (XdpMode::Off, Some(_)) => anyhow::bail!("--iface given with --xdp off; pick native or skb, or drop --iface"),
        (m, None) => anyhow::bail!("--xdp {} needs --iface", if m == XdpMode::Skb { "skb" } else { "native" }),
        (m, Some(ifname)) => {
            let (dp, t) = xdp::DataPlane::attach(&model, &ifname, m == XdpMode::Skb, bpf_object.as_deref(), &model.initial_vs_states(), xdp_log, pins)?;
            (Some(Arc::new(dp)), t)
        }
    };
    let clock = clock_start.map_or_else(schedule::system_clock, schedule::clock_starting_at);
    let cookies = Arc::new(Cookies::new(model.server.cookies.enabled, model.server.cookies.secret));
    if let Some(dp) = &dataplane {
        // A fresh map holds zeros, which are not adopted.
        if model.server.cookies.secret.is_none() {
            cookies.adopt(&dp.cookie_secrets()?);
        }
        let dp = dp.clone();
        cookies.add_sink(Box::new(move |s| dp.set_cookie_secrets(s)))?;
    }
    let live = Live::new(path, model.clone(), dataplane.clone(), &takeover, cookies.clone(), clock)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        if model.server.cookies.enabled {
            edns_user::cookies::spawn_offset_refresh(cookies.clone());
            if model.server.cookies.secret.is_none() {
                edns_user::cookies::spawn_rotation(cookies, model.server.cookies.rotate);
            }
        }
        if let (Some(dp), Some(ifname)) = (&dataplane, &xdp_iface) {
            if dp.has_wildcard_listen() {
                xdp::spawn_listen_sync(dp.clone(), ifname.clone())?;
            }
        }
        // In a cluster, before the first probe: probing is shared from the start.
        let cluster = match &model.cluster {
            Some(_) => {
                let g = live.current();
                let c = edns_user::cluster::Cluster::start(model.clone(), g.store.clone(), g.health.clone(), g.ttls.clone(), g.paths.clone()).await?;
                c.spawn();
                let _ = live.cluster.set(c.clone());
                Some(c)
            }
            None => None,
        };
        live.start()?;
        if let Some(logger) = dataplane.as_ref().and_then(|dp| dp.logger.lock().unwrap().take()) {
            // SAFETY: the logger owns its ring buffer's fd, open and unchanged
            // for as long as the AsyncFd holds the logger.
            let mut fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("cannot watch the aya-log ring buffer: {e}"))?;
            tokio::spawn(async move {
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else { break };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        if let Some(control_addr) = model.server.control {
            serve_control(&live, control_addr, cluster.clone(), &dataplane).await?;
        }
        spawn_sighup_reload(live.clone())?;
        if let Some(c) = &cluster {
            // Our own decisions only once the cluster's records are here.
            tracing::info!("taking the cluster's state before answering");
            c.wait_synced().await;
        }
        tokio::select! {
            r = server::serve(live.clone(), &model.server.listen) => r,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                let g = live.current();
                edns_user::snapshot::save_logged(&g.model, g.store.as_ref());
                if let Some(dp) = &dataplane {
                    if detach_on_exit {
                        dp.detach_for_good()?;
                    } else if dp.pinned() {
                        tracing::info!("XDP stays attached and answers from the kernel until the next `edns run` takes over (`edns detach` removes it)");
                    }
                }
                Ok(())
            }
        }
    })
}

/// The control endpoint, following the config in force.
async fn serve_control(
    live: &Arc<Live>,
    control_addr: edns_user::model::ControlAddr,
    cluster: Option<Arc<edns_user::cluster::Cluster>>,
    dataplane: &Option<Arc<xdp::DataPlane>>,
) -> anyhow::Result<()> {
    let (dp, ops) = (dataplane.clone(), live.ops.clone());
    let view = move |g: &edns_user::live::Generation| {
        Arc::new(control::Control {
            responder: g.responder.clone(),
            health: g.health.clone(),
            xdp_counters: dp.clone().map(|dp| Box::new(move || dp.counters()) as control::CounterSource),
            cluster: cluster.clone(),
            paths: g.paths.clone(),
            ops: Some(ops.clone()),
        })
    };
    let handle = Arc::new(control::ControlHandle::new(view(&live.current())));
    let h = handle.clone();
    live.on_swap(Box::new(move |g| h.set(view(g))));
    let l = live.clone();
    handle.set_reload(Box::new(move || {
        let l = l.clone();
        Box::pin(async move { l.reload().await.map(|r| serde_json::to_value(r).unwrap_or_default()) })
    }));
    let addr = control_addr.addr();
    match (tokio::net::TcpListener::bind(addr).await, control_addr) {
        (Ok(listener), _) => {
            tracing::info!(%addr, token = live.current().model.server.control_token.is_some(), "control endpoint");
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, control::router(handle)).await {
                    tracing::error!(error = %e, "control endpoint failed");
                }
            });
            Ok(())
        }
        // The default address may be another edns's on this host.
        (Err(e), edns_user::model::ControlAddr::Default(_)) => {
            tracing::warn!(%addr, error = %e, "no control endpoint: the default address cannot be bound (set server.control)");
            Ok(())
        }
        (Err(e), _) => Err(anyhow::Error::from(e).context(format!("cannot bind control {addr}"))),
    }
}

/// SIGHUP reloads the config file.
fn spawn_sighup_reload(live: Arc<Live>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            // The outcome is logged (and counted) by the reload itself.
            let _ = live.reload().await;
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn ctl(control: Option<SocketAddr>, config: Option<PathBuf>, token_file: Option<PathBuf>, json: bool, cmd: CtlCmd) -> anyhow::Result<()> {
    let server = config.as_ref().map(|p| config::load(p).map(|m| (p, m.server))).transpose()?;
    let addr = match (control, &server) {
        (Some(a), _) => a,
        (None, Some((p, s))) => s.control.with_context(|| format!("{} has control = \"none\"", p.display()))?.addr(),
        (None, None) => edns_user::model::DEFAULT_CONTROL,
    };
    let token = match token_file {
        Some(f) => Some(std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?.trim().to_string()),
        None => std::env::var("EDNS_CONTROL_TOKEN").ok().or_else(|| server.and_then(|(_, s)| s.control_token)),
    };
    let c = Client::new(addr, token);
    let v = match &cmd {
        CtlCmd::Records => c.get("/v1/records")?,
        CtlCmd::Vs => c.get("/v1/vs")?,
        CtlCmd::SetVs { name, state } => c.set_vs(name, state)?,
        CtlCmd::Stats => c.get("/v1/stats")?,
        CtlCmd::WideIps => c.get("/v1/wide-ips")?,
        CtlCmd::Paths { ldns: None } => c.get("/v1/paths")?,
        CtlCmd::Paths { ldns: Some(l) } => c.get(&format!("/v1/paths?ldns={l}"))?,
        CtlCmd::Reload => c.post("/v1/reload")?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match cmd {
        CtlCmd::Reload => {
            let r: edns_user::live::ReloadReport = serde_json::from_value(v)?;
            println!("reloaded in {:.1} ms: {} wide IPs, {} virtual servers", r.took_ms, r.wide_ips, r.virtual_servers);
            for n in &r.added {
                println!("    added {n}");
            }
            for n in &r.removed {
                println!("    removed {n}");
            }
            println!("    persistence records dropped (their wide IP or VS went): {}", r.dropped_records);
        }
        CtlCmd::Paths { .. } => {
            let list: Vec<edns_user::paths::PathView> = serde_json::from_value(v)?;
            println!("{:<20} {:<12} {:>9} {:>6} {:>5} {:>7} {:>6}", "LDNS_PREFIX", "SAC", "RTT_MS", "LOSS", "HOPS", "PROBES", "AGE_S");
            for p in list {
                let f = p.figures;
                let rtt = f.rtt_ms.map_or("-".into(), |r| format!("{r:.1}"));
                let hops = f.hops.map_or("-".into(), |h| h.to_string());
                println!("{:<20} {:<12} {:>9} {:>5.0}% {:>5} {:>7} {:>6.1}", p.prefix, p.sac, rtt, f.loss * 100.0, hops, f.probes, f.age_secs);
            }
        }
        CtlCmd::Records => {
            let recs: Vec<RecordView> = serde_json::from_value(v)?;
            println!(
                "{:<28} {:<20} {:<14} {:<16} {:>6} {:>9} {:>9} {:>6} {:>5}",
                "WIDE_IP", "LDNS", "VS", "SAC_ADDRESS", "TTL", "AGE_S", "EXPIRES_S", "HITS", "NODE"
            );
            for r in recs {
                println!(
                    "{:<28} {:<20} {:<14} {:<16} {:>6} {:>9.1} {:>9.1} {:>6} {:>5}",
                    r.wide_ip, r.ldns, r.vs, r.address, r.ttl_secs, r.last_request_age_secs, r.expires_in_secs, r.hits, r.node_id
                );
            }
        }
        CtlCmd::Vs | CtlCmd::SetVs { .. } => {
            let list: Vec<VsView> = match v {
                serde_json::Value::Array(_) => serde_json::from_value(v)?,
                one => vec![serde_json::from_value(one)?],
            };
            print_vs(&list);
        }
        CtlCmd::WideIps => {
            let list: Vec<WideIpView> = serde_json::from_value(v)?;
            println!("{:<28} {:<18} {:<44} {:<26} {:<24}", "WIDE_IP", "MODE", "METHODS", "ALL_DOWN", "LAST_METHOD");
            for w in list {
                let last = match (&w.last_method, w.last_age_secs) {
                    (Some(m), Some(a)) => format!("{m} ({a:.0} s ago)"),
                    _ => "-".into(),
                };
                let methods = if w.methods.is_empty() { "-".to_string() } else { w.methods.join(" > ") };
                println!("{:<28} {:<18} {:<44} {:<26} {:<24}", w.name, w.mode, methods, w.all_down, last);
                for s in &w.skipped {
                    println!("    skipped {s}");
                }
                if let Some(ttl) = w.persistence_ttl_secs {
                    println!("    persistence TTL in force {ttl} s");
                }
                for win in &w.persistence_schedule {
                    println!("    schedule {win}");
                }
                if let Some((v4, v6)) = w.ecs_max_prefix {
                    println!("    client subnet (ECS) read up to /{v4} and /{v6}");
                }
            }
        }
        CtlCmd::Stats => {
            for (section, obj) in v.as_object().into_iter().flatten() {
                for (k, n) in obj.as_object().into_iter().flatten() {
                    println!("{section}.{k} {n}");
                }
            }
        }
    }
    Ok(())
}

fn print_vs(list: &[VsView]) {
    let ud = |b: bool| if b { "up" } else { "down" };
    println!(
        "{:<16} {:<10} {:<16} {:<7} {:<9} {:<11} {:<8} {:<22} {:>5} {:>5} {:<10} PROBE",
        "VS", "SAC", "ADDRESS", "MARKED", "AVAILABLE", "ADMIN", "MONITOR", "TARGET", "OK#", "FAIL#", "LATENCY"
    );
    for s in list {
        let (latency, probe) = match &s.last_probe {
            Some(p) => (
                format!("{:.1}ms", p.latency_ms),
                format!("{} {} ({:.1} s ago)", if p.ok { "ok" } else { "FAIL" }, p.detail, p.age_secs),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<16} {:<10} {:<16} {:<7} {:<9} {:<11} {:<8} {:<22} {:>5} {:>5} {:<10} {}",
            s.name,
            s.sac,
            s.address,
            ud(s.marked_up),
            ud(s.available),
            format!("{:?}", s.admin).to_lowercase(),
            s.monitor.as_deref().unwrap_or("-"),
            s.target.as_deref().unwrap_or("-"),
            s.consecutive_ok,
            s.consecutive_failures,
            latency,
            probe
        );
        if let Some(f) = &s.metrics {
            let show = |name: &str, fig: &edns_user::metrics::Figure| match fig {
                edns_user::metrics::Figure::Known { value, age_secs } => format!("{name}={value:.3} ({age_secs:.1} s old)"),
                edns_user::metrics::Figure::Unknown { reason } => format!("{name}=unknown ({reason})"),
                edns_user::metrics::Figure::None => String::new(),
            };
            let parts: Vec<String> = [
                show("connections", &f.connections),
                show("packet_rate", &f.packet_rate),
                show("cpu", &f.cpu),
                show("capacity", &f.capacity),
            ]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
            println!("    metrics: {}", parts.join("  "));
        }
    }
}

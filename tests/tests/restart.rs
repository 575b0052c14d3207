//! Restart without an outage: the XDP link and the state maps are pinned,
//! so while the controller is killed (SIGKILL) and started again the kernel
//! keeps answering stripe and persistence hits; the new controller takes
//! the pinned data plane over (records, VS states, counters kept), also
//! when its config moved the ids. `--detach-on-exit` and `edns detach`
//! remove it for good.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use edns_tests::{kdig, load, require_root, workspace, EdnsProc, PinnedDataPlane as Pinned, VethHarness};

fn start(cfg: &str, h: &VethHarness, p: &Pinned, extra: &[&str]) -> EdnsProc {
    p.start_bin(&edns_tests::edns_bin(false), cfg, h, extra).unwrap()
}

fn demo_config() -> String {
    std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap()
}

fn xdp_attached(h: &VethHarness) -> bool {
    let out = h.server.ip(&["link", "show", &h.server_if]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

fn counter(e: &EdnsProc, name: &str) -> u64 {
    e.ctl(&["stats"]).unwrap()["xdp"][name].as_u64().unwrap()
}

/// Kills hard, waits for the process to be gone.
fn kill(e: EdnsProc) {
    e.kill_hard();
}

#[test]
fn a_killed_controller_restarts_with_no_stripe_or_persistence_answer_lost() {
    require_root();
    let h = VethHarness::new().unwrap();
    let ldns: Vec<IpAddr> = (10..20).map(|i| format!("198.18.7.{i}").parse().unwrap()).collect();
    h.add_client_addrs(&ldns).unwrap();
    let p = Pinned::new().unwrap();
    let e = start(&demo_config(), &h, &p, &[]);
    assert!(p.link(&h).exists(), "the XDP link is pinned");
    // A persistence record per LDNS, made by the controller.
    let server = std::net::SocketAddr::new(h.server_ip, 53);
    let mut sacs = Vec::new();
    for l in &ldns {
        sacs.push(kdig(Some(&h.client), server, Some(*l), &["shop.gslb.example.", "A"]).unwrap().answer().to_string());
    }
    let before = e.records();
    assert_eq!(before.len(), ldns.len(), "{before:?}");
    // An operator's override from before the restart.
    e.ctl(&["set-vs", "east/vs2", "drain"]).unwrap();
    // A server cookie from before the restart.
    let first = kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", "+cookie=0102030405060708"]).unwrap();
    let cookie = first.text.lines().find_map(|l| l.strip_prefix(";; COOKIE: ")).and_then(|c| c.split_whitespace().next()).unwrap_or_else(|| panic!("{}", first.text)).to_string();
    let xdp_before = counter(&e, "answered_stripe") + counter(&e, "answered_persistence");

    // 2,000 q/s for 8 s: stripe and persistence hits from every LDNS, and
    // a name XDP passes up (NXDOMAIN comes from the controller). The
    // controller is killed at 2 s and started again at 3 s.
    let gen = load::start(&h, &load::stripe_hits_and_passed_up(&ldns), 2000, 8).unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    kill(e);
    let killed_at = t0.elapsed();
    assert!(xdp_attached(&h), "XDP stays attached with the controller gone");
    std::thread::sleep(Duration::from_secs(1));
    let e = start(&demo_config(), &h, &p, &[]);
    let back_at = t0.elapsed();
    let k = load::Report::wait(gen).unwrap();
    let summary = k.summary(&["stripe", "persistence_hit", "passed_up"]);
    println!("restart under load: killed at {:.2} s, controller back at {:.2} s; {summary}", killed_at.as_secs_f64(), back_at.as_secs_f64());
    for kind in ["stripe", "persistence_hit"] {
        assert!(k.sent(kind) >= 7000, "{summary}");
        assert_eq!(k.unanswered(kind), 0, "{kind}: every stripe and persistence-hit query answered: {summary}");
    }
    // What the kernel passes up goes unanswered only while no controller runs.
    let missed = k.unanswered_at("passed_up");
    assert!(!missed.is_empty(), "queries passed up during the gap find no socket: {summary}");
    for t in &missed {
        assert!(*t >= killed_at.as_secs_f64() - 0.5 && *t <= back_at.as_secs_f64() + 0.5, "a passed-up query missed at {t} s, outside the gap: {summary}");
    }
    // Records, their SACs and the counters were taken over.
    let after = e.records();
    assert_eq!(after, before, "records kept");
    for (l, sac) in ldns.iter().zip(&sacs) {
        assert_eq!(&kdig(Some(&h.client), server, Some(*l), &["shop.gslb.example.", "A"]).unwrap().answer().to_string(), sac);
    }
    let xdp_after = counter(&e, "answered_stripe") + counter(&e, "answered_persistence");
    let sent = k.sent("stripe") + k.sent("persistence_hit");
    assert!(xdp_after >= xdp_before + sent, "XDP counters kept across the restart, and every answer from XDP: {xdp_before} + {sent} > {xdp_after}");
    // The server cookie from before still passes: the secrets were taken over.
    let (valid, bad) = (counter(&e, "cookie_valid"), counter(&e, "cookie_bad"));
    kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", &format!("+cookie={cookie}")]).unwrap();
    assert_eq!((counter(&e, "cookie_valid"), counter(&e, "cookie_bad")), (valid + 1, bad), "{cookie}");
    assert!(e.log_text().contains("took_over=true"), "{}", e.log_text());
    assert_eq!(e.ctl(&["stats"]).unwrap()["operations"]["takeovers"], 1, "counted (edns_dataplane_takeovers_total)");
    assert_eq!(e.vs("east/vs2")["admin"], "drain", "the override survived the restart");
}

#[test]
fn a_config_that_moves_ids_carries_records_by_name_and_drops_those_of_removed_vss() {
    require_root();
    let h = VethHarness::new().unwrap();
    let ldns: Vec<IpAddr> = (10..16).map(|i| format!("198.18.7.{i}").parse().unwrap()).collect();
    h.add_client_addrs(&ldns).unwrap();
    let p = Pinned::new().unwrap();
    let e = start(&demo_config(), &h, &p, &[]);
    let server = std::net::SocketAddr::new(h.server_ip, 53);
    for l in &ldns {
        kdig(Some(&h.client), server, Some(*l), &["shop.gslb.example.", "A"]).unwrap();
    }
    let before = e.records();
    let on_west = before.iter().filter(|r| r.2 == "west/vs1").count();
    assert!(on_west > 0 && on_west < before.len(), "round robin spread them: {before:?}");
    kill(e);
    // A new wide IP first (every wide IP id moves), a SAC first (every VS
    // id moves), and west/vs1 out of shop's pool.
    let cfg = demo_config()
        .replacen("[[sac]]\nname = \"east\"", "[[sac]]\nname = \"north\"\naddress = \"192.0.2.99\"\nvirtual_servers = [{ name = \"vs1\" }]\n\n[[sac]]\nname = \"east\"", 1)
        .replacen("[[wide_ip]]\nname = \"www.gslb.example.\"", "[[wide_ip]]\nname = \"new.gslb.example.\"\nmode = \"stripe\"\npool = [\"north/vs1\"]\n\n[[wide_ip]]\nname = \"www.gslb.example.\"", 1)
        .replace("persistence_ttl = 600\npool = [\"east/vs1\", \"west/vs1\"]", "persistence_ttl = 600\npool = [\"east/vs1\", \"north/vs1\"]");
    let e = start(&cfg, &h, &p, &[]);
    let after = e.records();
    let kept: Vec<_> = before.iter().filter(|r| r.2 == "east/vs1").cloned().collect();
    assert_eq!(after, kept, "east/vs1's records carried by name; west/vs1 left shop's pool, so its records went");
    assert!(e.log_text().contains(&format!("dropped_records={on_west}")), "{}", e.log_text());
    for (_, l, _) in &kept {
        let a = kdig(Some(&h.client), server, Some(l.parse().unwrap()), &["shop.gslb.example.", "A"]).unwrap();
        assert_eq!(a.answer(), "192.0.2.10", "{l}");
    }
    assert_eq!(kdig(Some(&h.client), server, Some(ldns[0]), &["new.gslb.example.", "A"]).unwrap().answer(), "192.0.2.99");
}

#[test]
fn detach_on_exit_and_edns_detach_remove_the_data_plane_for_good() {
    require_root();
    let h = VethHarness::new().unwrap();
    let p = Pinned::new().unwrap();
    let server = std::net::SocketAddr::new(h.server_ip, 53);
    // A plain stop leaves XDP answering.
    let mut e = start(&demo_config(), &h, &p, &[]);
    e.stop();
    assert!(xdp_attached(&h) && p.link(&h).exists());
    assert_eq!(kdig(Some(&h.client), server, None, &["www.gslb.example.", "A"]).unwrap().status, "NOERROR");
    // `edns detach` removes it.
    let out = h.server.cmd(edns_tests::edns_bin(false)).args(["detach", "--iface", &h.server_if, "--pin-dir", p.bpf.path().to_str().unwrap(), "--run-dir", p.run.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_detached(&h);
    assert!(!p.bpf.path().join(&h.server_if).exists());
    // --detach-on-exit: gone when edns stops.
    let mut e = start(&demo_config(), &h, &p, &["--detach-on-exit"]);
    assert!(xdp_attached(&h));
    e.stop();
    wait_detached(&h);
    assert!(!Path::new(&p.link(&h)).exists());
}

fn wait_detached(h: &VethHarness) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(h) {
        assert!(Instant::now() < deadline, "XDP still attached");
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Running in production: the systemd unit in `dist/` passes
//! `systemd-analyze verify` and its security review, and the unit's
//! promise holds — edns serves, XDP attached and pinned, as an unprivileged
//! user with only the unit's four capabilities.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use edns_tests::{edns_bin, kdig, require_root, tmpdir, workspace, PinnedDataPlane, VethHarness};

/// The unit with its binary path pointing at this build (verify checks the
/// executables exist).
fn unit_here() -> (edns_tests::TmpDir, std::path::PathBuf) {
    let dir = tmpdir();
    let text = std::fs::read_to_string(workspace().join("dist/edns.service")).unwrap();
    let p = dir.join("edns.service");
    std::fs::write(&p, text.replace("/usr/local/bin/edns", edns_bin(false).to_str().unwrap())).unwrap();
    (dir, p)
}

#[test]
fn the_systemd_unit_verifies_and_its_exposure_is_low() {
    let (_dir, unit) = unit_here();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    let out = Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&unit).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for edns.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    println!("systemd-analyze security: exposure {level}");
    assert!(level <= 2.5, "exposure {level}:\n{text}");
    // What the service is given is what the test below runs with.
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_BPF CAP_NET_ADMIN CAP_PERFMON"));
}

#[test]
fn edns_serves_with_xdp_as_an_unprivileged_user_with_only_the_units_capabilities() {
    require_root();
    let h = VethHarness::new().unwrap();
    let pinned = PinnedDataPlane::new().unwrap();
    let nobody = "65534";
    for d in [pinned.bpf.path(), &*pinned.run] {
        Command::new("chown").args([&format!("{nobody}:{nobody}")]).arg(d).status().unwrap();
    }
    // setpriv in front of edns: user nobody, the unit's capabilities and no others.
    let wrapper_dir = tmpdir();
    std::fs::set_permissions(&*wrapper_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapper = wrapper_dir.join("edns-as-nobody");
    let caps = "net_bind_service,+bpf,+net_admin,+perfmon";
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --reuid={nobody} --regid={nobody} --clear-groups --inh-caps=-all,+{caps} --ambient-caps=-all,+{caps} --bounding-set=-all,+{caps} {} \"$@\"\n",
            edns_bin(false).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap();
    let e = pinned.start_bin(&wrapper, &cfg, &h, &[]).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", e.pid())).unwrap();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    assert_eq!(field("Uid:").split_whitespace().next(), Some(nobody), "{status}");
    // CAP_NET_ADMIN 12, CAP_NET_BIND_SERVICE 10, CAP_PERFMON 38, CAP_BPF 39.
    let want = (1u64 << 10) | (1 << 12) | (1 << 38) | (1 << 39);
    assert_eq!(u64::from_str_radix(&field("CapEff:"), 16).unwrap(), want, "{status}");
    let server = SocketAddr::new(h.server_ip, 53);
    assert_eq!(kdig(Some(&h.client), server, None, &["www.gslb.example.", "A"]).unwrap().status, "NOERROR");
    assert_eq!(kdig(Some(&h.client), server, None, &["nope.gslb.example.", "A"]).unwrap().status, "NXDOMAIN");
    let stats = e.ctl(&["stats"]).unwrap();
    assert!(stats["xdp"]["answered_stripe"].as_u64().unwrap() >= 1, "answered in XDP: {stats}");
    assert!(pinned.link(&h).exists(), "link pinned by the unprivileged process");
    // A reload works with the same rights.
    assert!(e.ctl_command(&["reload"]).status().unwrap().success(), "{}", e.log_text());
}

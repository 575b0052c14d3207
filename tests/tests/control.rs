//! The control endpoint changes state, so it is guarded: loopback by
//! default, a bearer token required off loopback, 401 for a wrong or
//! missing token on every path; `edns ctl` carries the token.

use std::net::SocketAddr;

use edns_tests::{example_config, loopback_ports, require_root, tmpdir, EdnsProc, Netns};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

/// (HTTP status, WWW-Authenticate header, body) of METHOD http://ADDR/PATH,
/// with `Authorization: AUTH` when given, from inside `ns` when given.
fn http(ns: Option<&Netns>, method: &str, control: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let headers = auth.map(|a| format!("{{'Authorization': {a:?}}}")).unwrap_or("{}".into());
    let script = format!(
        "import urllib.request,urllib.error\n\
         r=urllib.request.Request('http://{control}{path}',method='{method}',headers={headers})\n\
         try:\n  x=urllib.request.urlopen(r); print(x.status); print(''); print(x.read().decode()[:200])\n\
         except urllib.error.HTTPError as e:\n  print(e.code); print(e.headers.get('WWW-Authenticate','')); print(e.read().decode())\n"
    );
    let mut cmd = match ns {
        Some(n) => n.cmd("python3"),
        None => std::process::Command::new("python3"),
    };
    let out = cmd.args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.splitn(3, '\n');
    let code = lines.next().unwrap().trim().parse().unwrap();
    (code, lines.next().unwrap_or("").to_string(), lines.next().unwrap_or("").to_string())
}

fn with_token(config: &str, token_line: &str) -> String {
    config.replacen("[server]\n", &format!("[server]\n{token_line}\n"), 1)
}

#[test]
fn a_token_is_required_on_every_path_and_a_wrong_or_missing_one_gets_401() {
    let (dns, control) = loopback_ports();
    let e = EdnsProc::start(&with_token(&example_config(dns, control), &format!("control_token = {TOKEN:?}")), None, &[]).unwrap();
    let good = format!("Bearer {TOKEN}");
    for path in ["/v1/stats", "/v1/records", "/v1/vs", "/v1/wide-ips", "/v1/paths", "/metrics", "/"] {
        for auth in [None, Some("Bearer wrong-token-wrong-token-0"), Some(TOKEN), Some("Basic czNjcmV0")] {
            let (code, challenge, _) = http(None, "GET", control, path, auth);
            assert_eq!(code, 401, "{path} with {auth:?}");
            assert_eq!(challenge.trim(), "Bearer realm=\"edns\"", "{path}");
        }
        assert_eq!(http(None, "GET", control, path, Some(&good)).0, 200, "{path} with the token");
    }
    // A state change without the token changes nothing.
    assert_eq!(http(None, "POST", control, "/v1/vs/east/vs1?state=down", None).0, 401);
    assert_eq!((e.vs("east/vs1")["admin"].as_str(), e.vs("east/vs1")["marked_up"].as_bool()), (Some("auto"), Some(true)));
    assert_eq!(http(None, "POST", control, "/v1/vs/east/vs1?state=down", Some(&good)).0, 200);
    assert_eq!((e.vs("east/vs1")["admin"].as_str(), e.vs("east/vs1")["marked_up"].as_bool()), (Some("down"), Some(false)));
    assert!(e.log_text().contains("control request refused: wrong or missing bearer token"), "{}", e.log_text());

    // `edns ctl`: without a token it says 401; --token-file and --config carry it.
    let bin = edns_tests::edns_bin(false);
    let ctl = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.env_remove("EDNS_CONTROL_TOKEN").arg("ctl").args(args);
        c.output().unwrap()
    };
    let out = ctl(&["--control", &control.to_string(), "stats"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tmpdir();
    let tf = dir.join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    assert!(ctl(&["--control", &control.to_string(), "--token-file", tf.to_str().unwrap(), "stats"]).status.success());
    assert!(ctl(&["--config", e.config.to_str().unwrap(), "vs"]).status.success());
}

#[test]
fn without_a_control_address_the_endpoint_is_on_loopback_port_8053() {
    // In a namespace of its own: the default port is the host's to use.
    require_root();
    let ns = Netns::new("ctl").unwrap();
    let (dns, _) = loopback_ports();
    let text = example_config(dns, "127.0.0.1:8053".parse().unwrap()).replace("control = \"127.0.0.1:8053\"\n", "");
    assert!(!text.contains("control ="), "{text}");
    let e = EdnsProc::start(&text, Some(&ns), &[]).unwrap();
    let (code, _, body) = http(Some(&ns), "GET", "127.0.0.1:8053".parse().unwrap(), "/v1/stats", None);
    assert_eq!(code, 200, "{body}");
    // `edns ctl` with no address finds it there.
    let out = ns.cmd(edns_tests::edns_bin(false)).args(["ctl", "stats"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(e);
}

#[test]
fn off_loopback_the_endpoint_serves_only_with_a_token() {
    require_root();
    let ns = Netns::new("ctl").unwrap();
    // (No dummy driver on this kernel: a veth pair inside the namespace.)
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]).unwrap();
    ns.ip(&["link", "set", "d1", "up"]).unwrap();
    ns.ip(&["addr", "add", "198.18.9.1/24", "dev", "d0"]).unwrap();
    ns.ip(&["link", "set", "d0", "up"]).unwrap();
    let (dns, _) = loopback_ports();
    let control: SocketAddr = "198.18.9.1:8053".parse().unwrap();
    let text = with_token(&example_config(dns, control), &format!("control_token = {TOKEN:?}"));
    let e = EdnsProc::start(&text, Some(&ns), &[]).unwrap();
    assert_eq!(http(Some(&ns), "GET", control, "/v1/vs", None).0, 401);
    assert_eq!(http(Some(&ns), "GET", control, "/v1/vs", Some(&format!("Bearer {TOKEN}"))).0, 200);
    drop(e);
}

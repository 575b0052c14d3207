//! `edns check-config`: the example is accepted as written; every bad config
//! is refused with file, line and reason.

use std::process::Command;

use edns_tests::{edns_bin, tmpdir, workspace};

fn check(text: &str) -> (bool, String) {
    let dir = tmpdir();
    let p = dir.join("bad.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(edns_bin(false)).arg("check-config").arg(&p).output().unwrap();
    let msg = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), msg.replace(&p.display().to_string(), "FILE"))
}

fn example() -> String {
    std::fs::read_to_string(workspace().join("examples/edns.toml")).unwrap()
}

/// Asserts the config is refused with `FILE:line:` and a message containing `reason`.
fn refused(text: &str, line: usize, reason: &str) {
    let (ok, msg) = check(text);
    assert!(!ok, "accepted:\n{text}");
    assert!(msg.contains(&format!("FILE:{line}:")), "want line {line}: {msg}");
    assert!(msg.contains(reason), "want {reason:?}: {msg}");
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in config")) + 1
}

#[test]
fn the_issue_example_config_is_accepted_as_written() {
    let (ok, msg) = check(&example());
    assert!(ok, "{msg}");
    assert!(msg.contains("3 wide IPs") && msg.contains("2 topology rules"), "{msg}");
    let (ok, msg) = check(&std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap());
    assert!(ok, "demo config: {msg}");
}

#[test]
fn pool_naming_an_unknown_vs_is_refused_at_its_line() {
    let t = example().replace("pool = [\"east/vs1\", \"west/vs1\"]\n\n[[wide_ip]]\nname = \"geo", "pool = [\"east/vs1\", \"west/vs9\"]\n\n[[wide_ip]]\nname = \"geo");
    refused(&t, line_of(&t, "west/vs9"), "pool entry \"west/vs9\" names no virtual server");
}

#[test]
fn duplicate_names_are_refused() {
    let t = example().replace("name = \"west\"", "name = \"east\"");
    refused(&t, line_of(&t, "address = \"198.51") - 1, "duplicate SAC name \"east\"");
    let t = example().replace("{ name = \"vs2\" }", "{ name = \"vs1\" }");
    refused(&t, line_of(&t, "vs1\" }, { name = \"vs1"), "duplicate virtual server \"east/vs1\"");
    let t = example().replace("name = \"geo.gslb.example.\"", "name = \"WWW.gslb.example.\"");
    refused(&t, line_of(&t, "WWW.gslb"), "duplicate wide IP");
}

#[test]
fn bad_prefixes_are_refused() {
    let t = example().replace("127.2.0.0/16", "127.2.0.0/33");
    refused(&t, line_of(&t, "/33"), "is not a prefix");
    let t = example().replace("127.2.0.0/16", "127.2.0.1/16");
    refused(&t, line_of(&t, "127.2.0.1/16"), "has host bits set");
    let t = example().replace("sac = \"west\"", "sac = \"north\"");
    refused(&t, line_of(&t, "\"north\""), "unknown SAC \"north\"");
}

#[test]
fn names_outside_the_zone_and_unknown_modes_are_refused() {
    let t = example().replace("shop.gslb.example.", "shop.other.example.");
    refused(&t, line_of(&t, "shop.other"), "is not below the zone gslb.example.");
    let t = example().replace("geo.gslb.example.\"", "geo.gslb.example\"");
    refused(&t, line_of(&t, "\"geo.gslb.example\""), "must be fully qualified");
    let t = example().replace("mode = \"topology\"", "mode = \"random\"");
    refused(&t, line_of(&t, "\"random\""), "unknown mode \"random\"");
    let t = example().replace("method = \"round_robin\"", "method = \"cpu\"");
    refused(&t, line_of(&t, "\"cpu\""), "needs metrics from health probes");
}

#[test]
fn syntax_errors_unknown_keys_and_bad_addresses_are_refused() {
    let t = example().replace("answer_ttl = 30", "answer_ttl = = 30");
    refused(&t, line_of(&t, "= = 30"), "");
    let t = example().replace("answer_ttl = 30", "answer_tll = 30");
    refused(&t, line_of(&t, "answer_tll"), "unknown field `answer_tll`");
    let t = example().replace("192.0.2.10", "192.0.2.300");
    refused(&t, line_of(&t, "192.0.2.300"), "is not an IPv4 address");
    let t = example().replace("127.0.0.1:5353", "127.0.0.1");
    refused(&t, line_of(&t, "listen"), "is not IP:PORT");
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let out = Command::new(edns_bin(false)).args(["check-config", "/nonexistent/edns.toml"]).output().unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("/nonexistent/edns.toml") && msg.contains("cannot read config"), "{msg}");
}

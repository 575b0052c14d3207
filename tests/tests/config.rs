//! `edns check-config`: the example is accepted as written; every bad config
//! is refused with file, line and reason.

use std::process::Command;

use edns_tests::{edns_bin, tmpdir, workspace};

fn check(text: &str) -> (bool, String) {
    let dir = tmpdir();
    let p = dir.join("bad.toml");
    std::fs::write(&p, text).unwrap();
    // The example's zone file, beside the config as the example has it.
    std::fs::copy(workspace().join("examples/gslb.example.zone"), dir.join("gslb.example.zone")).unwrap();
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
    let (ok, msg) = check(&std::fs::read_to_string(workspace().join("examples/health.toml")).unwrap());
    assert!(ok && msg.contains("1 monitors, 2 exporters"), "health example: {msg}");
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
    refused(&t, line_of(&t, "\"cpu\""), "unknown method \"cpu\"; known: round_robin, ratio");
}

/// The example plus one monitor and one exporter, for the health refusals.
fn with_health(extra_sac: &str, monitor_extra: &str) -> String {
    format!(
        "{}\n[[monitor]]\nname = \"web\"\ntype = \"http\"\ninterval_ms = 1000\ntimeout_ms = 500\n{monitor_extra}\n\n[[exporter]]\nname = \"hap\"\nurl = \"http://127.0.0.1:8404/metrics\"\n\n[[sac]]\nname = \"south\"\naddress = \"192.0.2.50\"\n{extra_sac}\n",
        example()
    )
}

#[test]
fn monitors_metrics_methods_and_all_down_policies_are_checked() {
    let good = with_health("virtual_servers = [{ name = \"vs1\", target = \"127.0.0.1:80\", monitor = \"web\" }]", "");
    let (ok, msg) = check(&good);
    assert!(ok && msg.contains("1 monitors, 1 exporters"), "{msg}");

    let t = with_health("virtual_servers = [{ name = \"vs1\", monitor = \"web\" }]", "");
    refused(&t, line_of(&t, "monitor = \"web\" }"), "has a monitor but no target");
    let t = with_health("virtual_servers = [{ name = \"vs1\", target = \"127.0.0.1:80\", monitor = \"webb\" }]", "");
    refused(&t, line_of(&t, "\"webb\""), "no monitor named \"webb\"");
    let t = with_health("virtual_servers = [{ name = \"vs1\" }]", "").replace("type = \"http\"", "type = \"icmp\"");
    refused(&t, line_of(&t, "\"icmp\""), "unknown monitor type \"icmp\"; known: tcp, http, https, dns");
    let t = with_health("virtual_servers = [{ name = \"vs1\" }]", "").replace("timeout_ms = 500", "timeout_ms = 1500");
    refused(&t, line_of(&t, "timeout_ms = 1500"), "timeout_ms must not exceed interval_ms");
    let t = with_health("virtual_servers = [{ name = \"vs1\" }]", "").replace("type = \"http\"", "type = \"tcp\"\nexpect_status = 204");
    refused(&t, line_of(&t, "expect_status = 204"), "expect_status applies to monitors of type http, https, not \"tcp\"");
    let t = with_health("virtual_servers = [{ name = \"vs1\" }]", "initial = \"maybe\"");
    refused(&t, line_of(&t, "\"maybe\""), "initial \"maybe\" is not \"up\" or \"down\"");
    let t = with_health("virtual_servers = [{ name = \"vs1\" }]\nmetrics.connections = { exporter = \"nope\", metric = \"x\" }", "");
    refused(&t, line_of(&t, "metrics.connections"), "connections: no exporter named \"nope\"");

    // A method reading metrics no VS of the pool has; a chain; all-down policies.
    let t = example().replace("method = \"round_robin\"", "method = [\"least_connections\", \"round_robin\"]");
    refused(&t, line_of(&t, "least_connections"), "method \"least_connections\" reads metrics that no VS of this pool");
    let t = example().replace("method = \"round_robin\"", "method = [\"ratio\", \"round_robin\"]");
    assert!(check(&t).0, "a chain of methods without metrics is fine");
    let t = example().replace("mode = \"stripe\"", "mode = \"stripe\"\nall_down = \"refused\"");
    refused(&t, line_of(&t, "all_down"), "mode \"stripe\" keeps the patent's round-robin fallback");
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\nall_down = \"fallback\"");
    refused(&t, line_of(&t, "all_down"), "all_down = \"fallback\" needs fallback_address");
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\npersist_mask_v4 = 24");
    refused(&t, line_of(&t, "persist_mask_v4"), "persistence masks apply to mode \"dynamic\" only");
    let t = example().replace("persistence_ttl = 600", "persistence_ttl = 600\npersist_mask_v4 = 33");
    refused(&t, line_of(&t, "persist_mask_v4"), "a persistence mask is 0 to 32");
    // Client-subnet prefixes need ECS on, and lie within the family.
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\necs_max_prefix_v4 = 20");
    refused(&t, line_of(&t, "ecs_max_prefix_v4"), "ecs_max_prefix_v4/_v6 apply with ecs = true only");
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\necs = true\necs_max_prefix_v6 = 129");
    refused(&t, line_of(&t, "ecs_max_prefix_v6"), "a client-subnet prefix length is 1 to 128");
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\necs = true\necs_max_prefix_v4 = 0");
    refused(&t, line_of(&t, "ecs_max_prefix_v4"), "a client-subnet prefix length is 1 to 32");
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\necs = true\necs_max_prefix_v4 = 20");
    assert!(check(&t).0, "ECS with a /20 maximum is fine");
    let t = example().replacen("[server]\n", "[server]\nsnapshot_interval_secs = 0\n", 1);
    refused(&t, line_of(&t, "snapshot_interval_secs"), "snapshot_interval_secs must be above 0");
    // [cluster]: a node id of 1 or more, addresses with ports, a sane pace.
    let cluster = |c: &str| example() + "\n[cluster]\n" + c;
    assert!(check(&cluster("node_id = 2\ngossip = \"127.0.0.1:7946\"\nseeds = [\"127.0.0.2:7946\"]\n")).0, "a cluster section is fine");
    let t = cluster("node_id = 0\ngossip = \"127.0.0.1:7946\"\n");
    refused(&t, line_of(&t, "node_id = 0"), "a cluster node_id is 1 or more");
    let t = cluster("node_id = 1\ngossip = \"nowhere\"\n");
    refused(&t, line_of(&t, "gossip ="), "gossip \"nowhere\" is not an address:port");
    let t = cluster("node_id = 1\ngossip = \"0.0.0.0:7946\"\n");
    refused(&t, line_of(&t, "gossip ="), "needs advertise");
    let t = cluster("node_id = 1\ngossip = \"127.0.0.1:7946\"\ninterval_ms = 5\n");
    refused(&t, line_of(&t, "interval_ms"), "interval_ms is 10 to 10000");
    let t = cluster("node_id = 1\ngossip = \"127.0.0.1:7946\"\nseeds = [\"peer\"]\n");
    refused(&t, line_of(&t, "seeds"), "seed \"peer\" needs a port");
    // Path metrics: a path method needs a probed SAC; URL, module and weights checked.
    let t = example().replace("method = \"round_robin\"", "method = [\"lowest_rtt\", \"round_robin\"]");
    refused(&t, line_of(&t, "lowest_rtt"), "method \"lowest_rtt\" reads path metrics, but no SAC of this pool has a path_probe");
    let probed = |p: &str| example().replace("name = \"east\"\n", &format!("name = \"east\"\npath_probe = {p}\n"));
    let t = probed("{ url = \"http://192.0.2.1:9115/probe\", module = \"icmp\" }").replace("method = \"round_robin\"", "method = [\"quality_of_service\", \"round_robin\"]");
    assert!(check(&t).0, "a probed SAC in the pool is enough");
    let t = probed("{ url = \"http://192.0.2.1:9115/probe\", module = \"udp\" }");
    refused(&t, line_of(&t, "path_probe"), "path_probe module \"udp\" is not one of icmp, tcp, dns");
    let t = probed("{ url = \"192.0.2.1:9115\", module = \"icmp\" }");
    refused(&t, line_of(&t, "path_probe"), "is not an http(s) URL");
    let t = example() + "\n[paths]\nprefix_v4 = 33\n";
    refused(&t, line_of(&t, "prefix_v4"), "prefix_v4 is 1 to 32");
    let t = example() + "\n[paths]\nqos = { rtt = 1.0, jitter = 2.0 }\n";
    refused(&t, line_of(&t, "qos"), "qos weight \"jitter\" is not one of");
    // Persistence schedules: dynamic only; days, times and zones checked.
    let window = |w: &str| example().replace("persistence_ttl = 600", &format!("persistence_ttl = 600\npersistence_schedule = [{w}]"));
    let t = window("{ days = [\"mon\", \"fri\"], start = \"22:00\", end = \"06:00\", time_zone = \"Europe/Berlin\", ttl = 3600 }");
    assert!(check(&t).0, "an overnight window is fine");
    let t = window("{ days = [\"sat\"], start = \"00:00\", end = \"24:00\", time_zone = \"UTC\", ttl = 60 }");
    assert!(check(&t).0, "a whole day is fine");
    let t = window("{ days = [\"monday\"], start = \"08:00\", end = \"18:00\", time_zone = \"UTC\", ttl = 1 }");
    refused(&t, line_of(&t, "persistence_schedule"), "day \"monday\" is not one of mon, tue, wed, thu, fri, sat, sun");
    let t = window("{ days = [\"mon\"], start = \"8h\", end = \"18:00\", time_zone = \"UTC\", ttl = 1 }");
    refused(&t, line_of(&t, "persistence_schedule"), "\"8h\" is not a time HH:MM from 00:00 to 23:59");
    let t = window("{ days = [\"mon\"], start = \"08:00\", end = \"24:30\", time_zone = \"UTC\", ttl = 1 }");
    refused(&t, line_of(&t, "persistence_schedule"), "\"24:30\" is not a time HH:MM from 00:00 to 24:00");
    let t = window("{ days = [\"mon\"], start = \"08:00\", end = \"08:00\", time_zone = \"UTC\", ttl = 1 }");
    refused(&t, line_of(&t, "persistence_schedule"), "a window's end equals its start");
    let t = window("{ days = [\"mon\"], start = \"08:00\", end = \"18:00\", time_zone = \"Mars/Olympus\", ttl = 1 }");
    refused(&t, line_of(&t, "persistence_schedule"), "time_zone \"Mars/Olympus\" is not an IANA time zone");
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\npersistence_schedule = []");
    refused(&t, line_of(&t, "persistence_schedule"), "persistence_schedule applies to mode \"dynamic\" only");
    let t = example().replace("mode = \"topology\"", "mode = \"topology\"\nall_down = \"nxdomain\"");
    refused(&t, line_of(&t, "all_down"), "is not one of round_robin, fallback, refused, servfail");
}

#[test]
fn syntax_errors_unknown_keys_and_bad_addresses_are_refused() {
    let t = example().replace("answer_ttl = 30", "answer_ttl = = 30");
    refused(&t, line_of(&t, "= = 30"), "");
    let t = example().replace("answer_ttl = 30", "answer_tll = 30");
    refused(&t, line_of(&t, "answer_tll"), "unknown field `answer_tll`");
    let t = example().replace("192.0.2.10", "192.0.2.300");
    refused(&t, line_of(&t, "192.0.2.300"), "is not an IPv4 address");
    let t = example().replace("answer_ttl = 30", "answer_ttl = 30\nnsid = \"\"");
    refused(&t, line_of(&t, "nsid"), "nsid \"\" must be 1 to 64 printable ASCII characters");
    let t = example().replace("answer_ttl = 30", "answer_ttl = 30\ncookie_secret = \"abc\"");
    refused(&t, line_of(&t, "cookie_secret"), "cookie_secret must be 32 hex digits");
    let t = example().replace("127.0.0.1:5353", "127.0.0.1");
    refused(&t, line_of(&t, "listen"), "is not IP:PORT");
}

/// A zone file's errors name the zone file and its line; a name that is
/// both a wide IP and static data, apex SOA/NS in the file, a CNAME with
/// other data, and a wide IP under a delegation are refused.
#[test]
fn zone_file_errors_name_the_zone_file_and_line_and_conflicts_are_refused() {
    let dir = tmpdir();
    let check_with_zone = |zone: &str, config_edit: &dyn Fn(String) -> String| -> (bool, String) {
        std::fs::write(dir.join("z.zone"), zone).unwrap();
        let cfg = config_edit(example().replace("zone_file = \"gslb.example.zone\"", "zone_file = \"z.zone\""));
        let p = dir.join("c.toml");
        std::fs::write(&p, cfg).unwrap();
        let out = Command::new(edns_bin(false)).arg("check-config").arg(&p).output().unwrap();
        let msg = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        (out.status.success(), msg.replace(&dir.display().to_string(), "DIR"))
    };
    let same = |c: String| c;
    let good = "$ORIGIN gslb.example.\n$TTL 60\nns1 A 127.0.0.1\n";
    assert!(check_with_zone(good, &same).0);
    let (ok, msg) = check_with_zone("$ORIGIN gslb.example.\n$TTL 60\nns1 A 127.0.0.1\nmail A 300.1.1.1\n", &same);
    assert!(!ok && msg.contains("DIR/z.zone:4:"), "{msg}");
    let (ok, msg) = check_with_zone("$ORIGIN gslb.example.\n$TTL 60\nwww A 192.0.2.1\n", &same);
    assert!(!ok && msg.contains("wide IP www.gslb.example. also has static data"), "{msg}");
    let (ok, msg) = check_with_zone("$ORIGIN gslb.example.\n$TTL 60\n@ NS ns9.example.\n", &same);
    assert!(!ok && msg.contains("the apex SOA and NS come from [server]"), "{msg}");
    let (ok, msg) = check_with_zone("$ORIGIN gslb.example.\n$TTL 60\na CNAME b\na TXT \"x\"\n", &same);
    assert!(!ok && msg.contains("has a CNAME and other data"), "{msg}");
    let (ok, msg) = check_with_zone("$ORIGIN gslb.example.\n$TTL 60\nwww NS ns.other.example.\n", &same);
    assert!(!ok && msg.contains("also has static data"), "{msg}");
    let (ok, msg) = check_with_zone("$ORIGIN gslb.example.\n$TTL 60\nx NS ns.other.example.\n", &|c: String| c.replace("name = \"geo.gslb.example.\"", "name = \"geo.x.gslb.example.\""));
    assert!(!ok && msg.contains("lies in x.gslb.example., delegated in the zone_file"), "{msg}");
}

#[test]
fn rate_limiting_settings_are_checked() {
    let ok = example() + "\n[rrl]\nresponses_per_second = 20\n";
    assert!(check(&ok).0, "defaults: burst 20, slip 2, /24 and /56");
    let t = example() + "\n[rrl]\nresponses_per_second = 0\n";
    refused(&t, line_of(&t, "responses_per_second = 0"), "responses_per_second must be 1 to 1000000");
    let t = example() + "\n[rrl]\nresponses_per_second = 5\nipv4_prefix = 33\n";
    refused(&t, line_of(&t, "ipv4_prefix"), "ipv4_prefix must be 0 to 32");
    let t = example() + "\n[rrl]\nresponses_per_second = 5\nwindow = 3\n";
    refused(&t, line_of(&t, "window"), "unknown field `window`");
}

#[test]
fn ldns_groups_are_checked_for_overlaps_ids_and_members() {
    let g = |body: &str| format!("{}\n[[ldns_group]]\nname = \"a\"\nmembers = [\"192.0.2.0/24\"]\n\n[[ldns_group]]\nname = \"b\"\n{body}\n", example());
    assert!(check(&g("members = [\"198.51.100.7\"]")).0);
    let t = g("members = [\"192.0.2.128/25\"]");
    refused(&t, line_of(&t, "192.0.2.128/25"), "overlaps 192.0.2.0/24 of LDNS group \"a\": groups must not overlap");
    let t = g("id = 1\nmembers = [\"198.51.100.7\"]");
    refused(&t, line_of(&t, "id = 1"), "LDNS group id 1 is \"a\"'s too");
    let t = g("members = [\"198.51.100.7/24\"]");
    refused(&t, line_of(&t, "198.51.100.7/24"), "has host bits set");
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let out = Command::new(edns_bin(false)).args(["check-config", "/nonexistent/edns.toml"]).output().unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("/nonexistent/edns.toml") && msg.contains("cannot read config"), "{msg}");
}

#[test]
fn a_control_endpoint_off_loopback_needs_a_token() {
    let t = example().replace("control = \"127.0.0.1:8053\"", "control = \"0.0.0.0:8053\"");
    refused(&t, line_of(&t, "control = "), "not loopback: the endpoint changes state, so set control_token");
    let ok = t.replace("control = \"0.0.0.0:8053\"", "control = \"0.0.0.0:8053\"\ncontrol_token = \"0123456789abcdef0123\"");
    assert!(check(&ok).0, "{}", check(&ok).1);
    let short = t.replace("control = \"0.0.0.0:8053\"", "control = \"0.0.0.0:8053\"\ncontrol_token = \"short\"");
    refused(&short, line_of(&short, "control_token"), "at least 16 printable ASCII characters");
    let missing = t.replace("control = \"0.0.0.0:8053\"", "control = \"0.0.0.0:8053\"\ncontrol_token_file = \"no-such-token\"");
    refused(&missing, line_of(&missing, "control_token_file"), "cannot read control_token_file");
    let off = example().replace("control = \"127.0.0.1:8053\"", "control = \"none\"");
    assert!(check(&off).0);
}

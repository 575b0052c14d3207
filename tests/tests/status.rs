//! The status page at `/` on the control endpoint, in a real headless
//! browser (Debian's chromium): it renders (a screenshot is taken), and the
//! VS states it shows are the ones `edns ctl vs --json` reports.

use std::process::Command;

use edns_tests::{example_config, loopback_ports, tmpdir, EdnsProc};

fn chromium(args: &[&str]) -> std::process::Output {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .args(args)
        .output()
        .expect("chromium (Debian package chromium) runs");
    assert!(out.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The value of `attr="..."` in an HTML tag.
fn attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
    Some(&tag[start..start + tag[start..].find('"')?])
}

#[test]
fn the_status_page_renders_in_chromium_and_shows_the_vs_states_ctl_reports() {
    let (dns, control) = loopback_ports();
    let e = EdnsProc::start(&example_config(dns, control), None, &[]).unwrap();
    // Some traffic, so counters and records show.
    for src in ["127.0.0.7", "127.0.0.8"] {
        edns_tests::kdig(None, dns, Some(src.parse().unwrap()), &["shop.gslb.example.", "A"]).unwrap();
        edns_tests::kdig(None, dns, Some(src.parse().unwrap()), &["www.gslb.example.", "A"]).unwrap();
    }
    e.ctl(&["set-vs", "east/vs2", "drain"]).unwrap();
    e.ctl(&["set-vs", "west/vs1", "down"]).unwrap();
    let url = format!("http://{control}/");
    let dir = tmpdir();
    let shot = dir.join("status.png");
    chromium(&["--window-size=1200,900", &format!("--screenshot={}", shot.display()), &url]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a screenshot of the page ({} bytes)", png.len());
    // EDNS_STATUS_SCREENSHOT=docs/status.png regenerates the README's picture.
    if let Ok(to) = std::env::var("EDNS_STATUS_SCREENSHOT") {
        std::fs::write(edns_tests::workspace().join(to), &png).unwrap();
    }
    let dom = String::from_utf8(chromium(&["--dump-dom", &url]).stdout).unwrap();
    let shown: Vec<(String, bool, bool, String)> = dom
        .split("<tr")
        .filter_map(|t| {
            let tag = &t[..t.find('>')?];
            Some((attr(tag, "data-vs")?.to_string(), attr(tag, "data-marked")? == "true", attr(tag, "data-available")? == "true", attr(tag, "data-admin")?.to_string()))
        })
        .collect();
    let ctl = e.ctl(&["vs"]).unwrap();
    let want: Vec<(String, bool, bool, String)> = ctl
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().into(), v["marked_up"].as_bool().unwrap(), v["available"].as_bool().unwrap(), v["admin"].as_str().unwrap().into()))
        .collect();
    assert_eq!(shown, want, "the page shows what ctl reports");
    assert!(want.iter().any(|v| v.3 == "drain") && want.iter().any(|v| !v.1), "states vary: {want:?}");
    assert!(dom.contains("http-equiv=\"refresh\""), "it refreshes itself");
}

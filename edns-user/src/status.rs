//! The status page at `/` on the control endpoint: plain HTML and CSS,
//! read-only, refreshing itself every five seconds — wide IPs with their
//! mode and pool, VS states (marked, available, admin, last probe and its
//! age), SACs, counters, and a sample of persistence records. Rows carry
//! `data-` attributes with the raw values, so a browser test can read
//! exactly what is shown.

use std::fmt::Write;

use crate::control::Control;

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}\
.up{background:#e6f4e6}.down{background:#fbe3e3}.drain{background:#fff4d6}small{color:#777}";

pub fn render(c: &Control) -> anyhow::Result<String> {
    let mut h = String::new();
    let m = &c.responder.model;
    write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>edns status</title><style>{STYLE}</style></head><body>"
    )?;
    write!(h, "<h1>edns <small>{} · {} wide IPs · read-only, refreshes every 5 s</small></h1>", esc(&m.server.zone.to_string()), m.wide_ips.len())?;
    vs_table(&mut h, c)?;
    wide_ip_table(&mut h, c)?;
    write!(h, "<h2>Sites (SACs)</h2><table id=\"sacs\"><tr><th>SAC</th><th>address</th><th>IPv6</th><th>VSs</th></tr>")?;
    for (i, s) in m.sacs.iter().enumerate() {
        let vss: Vec<&str> = m.vss.iter().filter(|v| v.sac as usize == i).map(|v| v.name.as_str()).collect();
        let v6 = s.address6.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&s.name), s.address, v6, esc(&vss.join(", ")))?;
    }
    h.push_str("</table>");
    counters(&mut h, c)?;
    records(&mut h, c)?;
    h.push_str("</body></html>");
    Ok(h)
}

fn vs_table(h: &mut String, c: &Control) -> anyhow::Result<()> {
    let vss = crate::control::vs_view(c).map_err(|(_, e)| anyhow::anyhow!(e))?;
    write!(h, "<h2>Virtual servers</h2><table id=\"vs\"><tr><th>VS</th><th>SAC address</th><th>marked</th><th>available</th><th>admin</th><th>monitor</th><th>last probe</th><th>age</th></tr>")?;
    for v in vss {
        let class = match (v.marked_up, v.available) {
            (true, true) => "up",
            (false, true) => "drain",
            _ => "down",
        };
        let (probe, age) = match &v.last_probe {
            Some(p) => (format!("{} {:.1} ms {}", if p.ok { "ok" } else { "failed" }, p.latency_ms, p.detail), format!("{:.1} s", p.age_secs)),
            None => ("-".into(), "-".into()),
        };
        write!(
            h,
            "<tr class=\"{class}\" data-vs=\"{}\" data-marked=\"{}\" data-available=\"{}\" data-admin=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&v.name),
            v.marked_up,
            v.available,
            esc(&format!("{:?}", v.admin).to_lowercase()),
            esc(&v.name),
            esc(&v.address),
            if v.marked_up { "up" } else { "down" },
            if v.available { "yes" } else { "no" },
            esc(&format!("{:?}", v.admin).to_lowercase()),
            esc(v.monitor.as_deref().unwrap_or("-")),
            esc(&probe),
            age
        )?;
    }
    h.push_str("</table>");
    Ok(())
}

fn wide_ip_table(h: &mut String, c: &Control) -> anyhow::Result<()> {
    let m = &c.responder.model;
    write!(h, "<h2>Wide IPs</h2><table id=\"wide-ips\"><tr><th>wide IP</th><th>mode</th><th>methods</th><th>pool</th><th>all down</th></tr>")?;
    for (w, view) in m.wide_ips.iter().zip(crate::control::wide_ip_view(c)) {
        let pool: Vec<&str> = w.pool.iter().map(|v| m.vss[*v as usize].name.as_str()).collect();
        let methods = if view.methods.is_empty() { "-".to_string() } else { view.methods.join(" → ") };
        write!(
            h,
            "<tr data-wide-ip=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&view.name),
            esc(&view.name),
            esc(&view.mode),
            esc(&methods),
            esc(&pool.join(", ")),
            esc(&view.all_down)
        )?;
    }
    h.push_str("</table>");
    Ok(())
}

fn counters(h: &mut String, c: &Control) -> anyhow::Result<()> {
    write!(h, "<h2>Counters</h2><table id=\"counters\"><tr><th>counter</th><th>value</th></tr>")?;
    let stats = serde_json::to_value(&*c.responder.stats)?;
    let mut rows: Vec<(String, u64)> = stats.as_object().into_iter().flatten().map(|(k, v)| (format!("dns.{k}"), v.as_u64().unwrap_or(0))).collect();
    if let Some(f) = &c.xdp_counters {
        rows.extend(f()?.into_iter().map(|(k, v)| (format!("xdp.{k}"), v)));
    }
    for (k, v) in rows {
        write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(&k))?;
    }
    h.push_str("</table>");
    Ok(())
}

fn records(h: &mut String, c: &Control) -> anyhow::Result<()> {
    let recs = crate::control::records(c).map_err(|(_, e)| anyhow::anyhow!(e))?;
    write!(h, "<h2>Persistence records <small>{} in all; the first 20</small></h2><table id=\"records\"><tr><th>wide IP</th><th>LDNS</th><th>VS</th><th>SAC address</th><th>hits</th><th>expires in</th></tr>", recs.len())?;
    for r in recs.iter().take(20) {
        write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0} s</td></tr>",
            esc(&r.wide_ip),
            esc(&r.ldns),
            esc(&r.vs),
            esc(&r.address),
            r.hits,
            r.expires_in_secs
        )?;
    }
    h.push_str("</table>");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_escaped() {
        assert_eq!(super::esc("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}

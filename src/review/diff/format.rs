//! A [`Report`] as text (for a terminal, coloured only on one), markdown (a pull-request
//! comment: a one-line summary, a heading per section, long parts folded) or JSON.

use std::fmt::Write as _;

use super::report::{ConditionState, Report, StatusChange};
use super::traffic::{Answer, TrafficChange};

pub fn json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).unwrap_or_default();
    s.push('\n');
    s
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One line: the revisions, then what changes.
pub fn summary(r: &Report) -> String {
    let short = |c: &Option<String>| c.as_deref().map(|c| c[..c.len().min(10)].to_owned());
    let revs = match (short(&r.base.commit), short(&r.head.commit)) {
        (Some(b), Some(h)) => format!("{}..{} ({b}..{h})", r.base.rev, r.head.rev),
        _ => format!("{}..{}", r.base.rev, r.head.rev),
    };
    if !r.valid {
        return format!(
            "{revs}: the head is invalid ({}, {} new)",
            plural(r.errors.len(), "error", "errors"),
            r.introduced.len()
        );
    }
    if !r.changed {
        return format!("{revs}: no change");
    }
    let m = &r.manifests;
    let mut parts = Vec::new();
    if !r.fixed.is_empty() {
        parts.push(format!(
            "fixes {}",
            plural(r.fixed.len(), "error", "errors")
        ));
    }
    if !m.is_empty() {
        parts.push(format!(
            "manifests +{} -{} ~{}",
            m.added.len(),
            m.removed.len(),
            m.changed.len()
        ));
    }
    if !r.proxies.is_empty() {
        parts.push(plural(r.proxies.len(), "proxy changed", "proxies changed"));
    }
    if !r.status.is_empty() {
        parts.push(plural(
            r.status.len(),
            "condition changed",
            "conditions changed",
        ));
    }
    if !r.traffic.is_empty() {
        parts.push(plural(
            r.traffic.len(),
            "request answered differently",
            "requests answered differently",
        ));
    }
    format!("{revs}: {}", parts.join(", "))
}

fn condition(c: &Option<ConditionState>) -> String {
    match c {
        None => "-".into(),
        Some(c) => format!("{} ({})", c.status, c.reason),
    }
}

fn status_line(c: &StatusChange) -> String {
    let message = c
        .head
        .as_ref()
        .filter(|h| h.status != "True")
        .map(|h| format!(": {}", h.message))
        .unwrap_or_default();
    format!(
        "{} {}: {} → {}{message}",
        c.object,
        c.condition,
        condition(&c.base),
        condition(&c.head)
    )
}

fn answer(a: &Answer) -> String {
    if a.status == 0 {
        return "no such proxy".into();
    }
    let mut s = a.status.to_string();
    if !a.backends.is_empty() {
        let to: Vec<String> = a
            .backends
            .iter()
            .map(|b| match b.weight {
                Some(w) if a.backends.len() > 1 => {
                    format!("{}.{}:{} ({w})", b.name, b.namespace, b.port)
                }
                _ => format!("{}.{}:{}", b.name, b.namespace, b.port),
            })
            .collect();
        let _ = write!(s, " {}", to.join(", "));
    } else if let Some(l) = &a.redirect {
        let _ = write!(s, " → {l}");
    } else if !a.reason.is_empty() {
        let _ = write!(s, " ({})", a.reason);
    }
    s
}

fn request(t: &TrafficChange) -> String {
    let mut s = format!("{} {}", t.request.method, t.request.url);
    for h in &t.request.headers {
        let _ = write!(s, " -H '{h}'");
    }
    s
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn add(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn del(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn chg(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    /// A unified diff, line by line.
    fn diff(&self, d: &str, indent: &str) -> String {
        let mut s = String::new();
        for l in d.lines() {
            let l2 = if l.starts_with("+++") || l.starts_with("---") {
                self.bold(l)
            } else if l.starts_with('+') {
                self.add(l)
            } else if l.starts_with('-') {
                self.del(l)
            } else if l.starts_with("@@") {
                self.wrap("36", l)
            } else {
                l.to_owned()
            };
            let _ = writeln!(s, "{indent}{l2}");
        }
        s
    }
}

pub fn text(r: &Report, colour: bool) -> String {
    let p = Paint(colour);
    let mut s = String::new();
    let _ = writeln!(s, "{}", p.bold(&summary(r)));
    if !r.errors.is_empty() || !r.fixed.is_empty() {
        let _ = writeln!(s, "\n{}", p.bold("validation"));
        for e in &r.errors {
            let new = if r.introduced.contains(e) {
                ""
            } else {
                " (already in the base)"
            };
            let _ = writeln!(s, "  {} {e}{new}", p.del("error:"));
        }
        for e in &r.fixed {
            let _ = writeln!(s, "  {} {e}", p.add("fixed:"));
        }
    }
    let m = &r.manifests;
    if !m.is_empty() {
        let _ = writeln!(s, "\n{}", p.bold("manifests"));
        for (mark, list, paint) in [
            ("+", &m.added, Paint::add as fn(&Paint, &str) -> String),
            ("-", &m.removed, Paint::del),
            ("~", &m.changed, Paint::chg),
        ] {
            for f in list {
                let _ = writeln!(s, "  {}", paint(&p, &format!("{mark} {f}")));
            }
        }
        for f in &m.changed {
            s.push_str(&p.diff(&m.diffs[f], "    "));
        }
    }
    if !r.proxies.is_empty() {
        let _ = writeln!(s, "\n{}", p.bold("proxies"));
        for (id, c) in &r.proxies {
            let _ = writeln!(s, "  {} ({})", p.bold(id), c.change);
            for l in &c.route_lines.removed {
                let _ = writeln!(s, "    {}", p.del(&format!("- {l}")));
            }
            for l in &c.route_lines.added {
                let _ = writeln!(s, "    {}", p.add(&format!("+ {l}")));
            }
            for (kind, n) in c.kinds() {
                if n.is_empty() {
                    continue;
                }
                let mut parts: Vec<String> = Vec::new();
                parts.extend(n.added.iter().map(|x| p.add(&format!("+{x}"))));
                parts.extend(n.removed.iter().map(|x| p.del(&format!("-{x}"))));
                parts.extend(n.changed.iter().map(|x| p.chg(&format!("~{x}"))));
                let _ = writeln!(s, "    {kind}: {}", parts.join(" "));
            }
        }
    }
    if !r.status.is_empty() {
        let _ = writeln!(s, "\n{}", p.bold("status"));
        for c in &r.status {
            let _ = writeln!(s, "  {}", status_line(c));
        }
    }
    if !r.traffic.is_empty() {
        let _ = writeln!(s, "\n{}", p.bold("traffic"));
        for t in &r.traffic {
            let _ = writeln!(
                s,
                "  {}  {}: {} → {}",
                t.proxy,
                request(t),
                p.del(&answer(&t.base)),
                p.add(&answer(&t.head))
            );
        }
    }
    s
}

/// Markdown cells hold no `|` and no line break.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Over this many lines, a part is folded into `<details>`.
const FOLD: usize = 20;

fn fenced(out: &mut String, lang: &str, body: &str, summary: &str) {
    let lines = body.lines().count();
    // A fence longer than any backtick run in the body.
    let fence = "`".repeat(
        3.max(
            body.split('\n')
                .map(|l| l.len() - l.trim_start_matches('`').len())
                .max()
                .unwrap_or(0)
                + 1,
        ),
    );
    let block = format!(
        "{fence}{lang}\n{}{}{fence}\n",
        body,
        if body.ends_with('\n') { "" } else { "\n" }
    );
    if lines > FOLD {
        let _ = write!(
            out,
            "<details><summary>{summary}</summary>\n\n{block}\n</details>\n\n"
        );
    } else {
        let _ = writeln!(out, "{block}");
    }
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let icon = if !r.valid {
        "❌"
    } else if r.changed {
        "📝"
    } else {
        "✅"
    };
    let _ = writeln!(s, "{icon} **tidegate diff** {}\n", summary(r));
    if !r.errors.is_empty() || !r.fixed.is_empty() {
        s.push_str("## Validation\n\n");
        for e in &r.errors {
            let new = if r.introduced.contains(e) {
                ""
            } else {
                " (already in the base)"
            };
            let _ = writeln!(s, "- ❌ `{}`{new}", e.replace('`', "'"));
        }
        for e in &r.fixed {
            let _ = writeln!(s, "- ✅ fixed: `{}`", e.replace('`', "'"));
        }
        s.push('\n');
    }
    let m = &r.manifests;
    if !m.is_empty() {
        s.push_str("## Manifests\n\n");
        for (what, list) in [
            ("added", &m.added),
            ("removed", &m.removed),
            ("changed", &m.changed),
        ] {
            if !list.is_empty() {
                let files: Vec<String> = list.iter().map(|f| format!("`{f}`")).collect();
                let _ = writeln!(s, "- {what}: {}", files.join(", "));
            }
        }
        s.push('\n');
        let diffs: String = m.changed.iter().map(|f| m.diffs[f].as_str()).collect();
        if !diffs.is_empty() {
            fenced(
                &mut s,
                "diff",
                &diffs,
                &format!(
                    "Unified diff ({})",
                    plural(m.changed.len(), "file", "files")
                ),
            );
        }
    }
    if !r.proxies.is_empty() {
        s.push_str("## Proxies\n\n");
        for (id, c) in &r.proxies {
            let _ = writeln!(s, "### `{id}` ({})\n", c.change);
            for (kind, n) in c.kinds() {
                if n.is_empty() {
                    continue;
                }
                let mut parts: Vec<String> = Vec::new();
                parts.extend(n.added.iter().map(|x| format!("+`{x}`")));
                parts.extend(n.removed.iter().map(|x| format!("−`{x}`")));
                parts.extend(n.changed.iter().map(|x| format!("~`{x}`")));
                let _ = writeln!(s, "- {kind}: {}", parts.join(" "));
            }
            s.push('\n');
            let mut routes = String::new();
            for l in &c.route_lines.removed {
                let _ = writeln!(routes, "- {l}");
            }
            for l in &c.route_lines.added {
                let _ = writeln!(routes, "+ {l}");
            }
            if !routes.is_empty() {
                fenced(&mut s, "diff", &routes, "Routes");
            }
        }
    }
    if !r.status.is_empty() {
        s.push_str("## Status\n\n");
        let mut table = String::from("| object | condition | base | head |\n|---|---|---|---|\n");
        for c in &r.status {
            let head = match &c.head {
                Some(h) if h.status != "True" => format!("{}: {}", condition(&c.head), h.message),
                _ => condition(&c.head),
            };
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} |",
                cell(&c.object),
                c.condition,
                cell(&condition(&c.base)),
                cell(&head)
            );
        }
        fold(&mut s, &table, r.status.len(), "Conditions");
    }
    if !r.traffic.is_empty() {
        s.push_str("## Traffic\n\n");
        let mut table = String::from("| proxy | request | base | head |\n|---|---|---|---|\n");
        for t in &r.traffic {
            let _ = writeln!(
                table,
                "| `{}` | `{}` | {} | {} |",
                t.proxy,
                cell(&request(t)),
                cell(&answer(&t.base)),
                cell(&answer(&t.head))
            );
        }
        fold(&mut s, &table, r.traffic.len(), "Requests");
    }
    s
}

fn fold(out: &mut String, table: &str, rows: usize, summary: &str) {
    if rows > FOLD {
        let _ = write!(
            out,
            "<details><summary>{summary} ({rows})</summary>\n\n{table}\n</details>\n\n"
        );
    } else {
        let _ = writeln!(out, "{table}");
    }
}

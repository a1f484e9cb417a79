//! Config repositories generated from structured random input, valid by construction most
//! of the time, for the structure-aware fuzz target (`fuzz/fuzz_targets/repos.rs`) and its
//! stable replay (`tests/fuzz_inputs.rs`).
//!
//! Byte-level fuzzing of one intent file rarely gets past validation (1.3 % of the inputs
//! did), so render, translation and emission saw almost nothing. Here the fuzzer's bytes
//! choose among names, hosts, ports, paths, modes, protocols, matches, filters, backends and
//! plain objects from small pools, so that the generated intents and objects mostly
//! validate, often refer to each other (routes to gateways, backends across namespaces with
//! or without grants, policies on Services routes use) and collide now and then (two intents
//! on one port, a host claimed twice): the cases translation must get right.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};

use crate::gitsync::{Source, Tree};

const NAMES: [&str; 5] = ["a", "b", "web", "api", "edge"];
const NAMESPACES: [&str; 4] = ["default", "web", "shop", "infra"];
const HOSTS: [&str; 5] = [
    "a.example.com",
    "b.example.com",
    "*.example.com",
    "shop.example.com",
    "api.example.com",
];
const PORTS: [u16; 5] = [80, 443, 8080, 9000, 5432];
const PATHS: [&str; 6] = ["/", "/a", "/a/b", "/api", "/static/", "/api/v1"];
const HEADERS: [&str; 3] = ["x-user", "x-env", "accept"];
const VALUES: [&str; 3] = ["1", "canary", "application/json"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

fn pick<T: Copy, const N: usize>(pool: &[T; N], i: u8) -> T {
    pool[usize::from(i) % N]
}

/// A whole repository: its intents, plain objects, settings and endpoints file.
#[derive(Arbitrary, Debug)]
pub struct RepoSpec {
    openshift: bool,
    intents: Vec<IntentSpec>,
    objects: Vec<ObjectSpec>,
    /// Services listed in the endpoints file: (name, namespace, port, addresses).
    endpoints: Vec<(u8, u8, u8, u8)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mode {
    Istio,
    GatewayApi,
    Ambient,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Protocol {
    Http,
    Https,
    Tls,
    Tcp,
    Udp,
}

#[derive(Arbitrary, Debug)]
struct IntentSpec {
    name: u8,
    namespace: u8,
    mode: Mode,
    hosts: Vec<u8>,
    gateway: u8,
    gateway_namespace: Option<u8>,
    port: u8,
    protocol: Protocol,
    exposure: u8,
    waypoint: bool,
    rules: Vec<RuleSpec>,
}

#[derive(Arbitrary, Debug)]
struct RuleSpec {
    matches: Vec<MatchSpec>,
    filters: Vec<FilterSpec>,
    backends: Vec<BackendSpec>,
    timeout: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct MatchSpec {
    path: Option<(u8, u8)>,
    method: Option<u8>,
    headers: Vec<(u8, u8)>,
    query: Vec<(u8, u8)>,
}

#[derive(Arbitrary, Debug)]
enum FilterSpec {
    RequestHeader(u8, u8),
    ResponseHeader(u8, u8),
    Redirect { https: bool, code: bool },
    Rewrite(u8),
    Mirror(u8, u8),
}

#[derive(Arbitrary, Debug)]
struct BackendSpec {
    name: u8,
    namespace: Option<u8>,
    port: u8,
    weight: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum ObjectSpec {
    Gateway {
        name: u8,
        namespace: u8,
        listeners: Vec<(u8, Protocol, Option<u8>, bool)>,
    },
    HttpRoute {
        name: u8,
        namespace: u8,
        parent: (u8, u8, Option<u8>),
        hosts: Vec<u8>,
        rules: Vec<RuleSpec>,
    },
    L4Route {
        name: u8,
        namespace: u8,
        tls: bool,
        parent: (u8, u8),
        hosts: Vec<u8>,
        backends: Vec<BackendSpec>,
    },
    ReferenceGrant {
        from: u8,
        to: u8,
    },
    BackendTlsPolicy {
        name: u8,
        namespace: u8,
        service: u8,
        host: u8,
        system: bool,
    },
    Namespace {
        name: u8,
        label: bool,
    },
}

impl RepoSpec {
    /// The repository's files (path → contents), as a `serve` would read them.
    pub fn files(&self) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        files.insert(
            "tidegate.yaml".to_owned(),
            format!(
                "apiVersion: tidegate.io/v1alpha1\nkind: Settings\nplatform: {}\n",
                if self.openshift {
                    "openshift"
                } else {
                    "kubernetes"
                }
            ),
        );
        // A handful of each: enough for every interaction, few enough to run fast.
        for (i, intent) in self.intents.iter().take(6).enumerate() {
            files.insert(format!("intents/{i}.yaml"), intent.yaml(i, self.openshift));
        }
        for (i, object) in self.objects.iter().take(8).enumerate() {
            files.insert(format!("resources/{i}.yaml"), object.yaml(i));
        }
        files
    }

    /// The endpoints file `serve --endpoints` would read.
    pub fn endpoints(&self) -> String {
        let mut out = String::new();
        let mut seen = std::collections::BTreeSet::new();
        for &(name, ns, port, n) in self.endpoints.iter().take(8) {
            let key = format!(
                "{}.{}:{}",
                pick(&NAMES, name),
                pick(&NAMESPACES, ns),
                pick(&PORTS, port)
            );
            if !seen.insert(key.clone()) {
                continue;
            }
            let addrs: Vec<String> = (0..n % 3)
                .map(|i| format!("\"10.0.0.{}:80\"", i + 1))
                .collect();
            let _ = writeln!(out, "{key}: [{}]", addrs.join(", "));
        }
        out
    }

    /// The files as a tree read from a commit.
    pub fn tree(&self) -> Tree {
        let files = self.files();
        Tree {
            source: Source::Directory(PathBuf::from("generated")),
            ids: files.keys().map(|p| (p.clone(), p.clone())).collect(),
            files: files
                .into_iter()
                .map(|(p, c)| (p, c.into_bytes()))
                .collect(),
            skipped: vec![],
            too_large: BTreeMap::new(),
        }
    }

    /// A repository from `bytes` (what the fuzzer gives; short input gives small repos).
    pub fn from_bytes(bytes: &[u8]) -> arbitrary::Result<Self> {
        Self::arbitrary_take_rest(Unstructured::new(bytes))
    }
}

/// One to three distinct hostnames, quoted (`*.example.com` unquoted is a YAML alias).
fn hosts_yaml(hosts: &[u8]) -> String {
    let mut picked: Vec<String> = Vec::new();
    for &h in hosts.iter().take(3) {
        let host = format!("\"{}\"", pick(&HOSTS, h));
        if !picked.contains(&host) {
            picked.push(host);
        }
    }
    if picked.is_empty() {
        picked.push(format!("\"{}\"", HOSTS[0]));
    }
    format!("[{}]", picked.join(", "))
}

impl IntentSpec {
    fn yaml(&self, i: usize, openshift: bool) -> String {
        let ns = pick(&NAMESPACES, self.namespace);
        let mode = match self.mode {
            Mode::Istio => "istio",
            Mode::GatewayApi => "gateway-api",
            Mode::Ambient => "ambient",
        };
        // Mostly valid combinations: Istio gateways carry no UDP, an OpenShift Route
        // needs OpenShift and carries HTTP and TLS only.
        let protocol = match (self.protocol, self.mode) {
            (Protocol::Http, _) => "HTTP",
            (Protocol::Https, _) => "HTTPS",
            (Protocol::Tls, _) => "TLS",
            (Protocol::Tcp, _) | (Protocol::Udp, Mode::Istio) => "TCP",
            (Protocol::Udp, _) => "UDP",
        };
        let routable = openshift && matches!(protocol, "HTTP" | "HTTPS" | "TLS");
        let exposure = ["ClusterIP", "LoadBalancer", "OpenShiftRoute"]
            [usize::from(self.exposure) % if routable { 3 } else { 2 }];
        let mut gateway = format!(
            "{{name: {}-gw, port: {}, protocol: {protocol}, exposure: {exposure}",
            pick(&NAMES, self.gateway),
            pick(&PORTS, self.port)
        );
        if let Some(gns) = self.gateway_namespace {
            let _ = write!(gateway, ", namespace: {}", pick(&NAMESPACES, gns));
        }
        if protocol == "HTTPS" {
            gateway.push_str(", tls: {certificateRefs: [{name: web-cert}]}");
        }
        gateway.push('}');
        let mut out = format!(
            "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: {}-{i}, namespace: {ns}}}\nspec:\n  mode: {mode}\n",
            pick(&NAMES, self.name)
        );
        let l4 = matches!(protocol, "TLS" | "TCP" | "UDP");
        if !matches!(protocol, "TCP" | "UDP") {
            let _ = writeln!(out, "  hostnames: {}", hosts_yaml(&self.hosts));
        }
        let _ = writeln!(out, "  gateway: {gateway}");
        if self.waypoint && matches!(self.mode, Mode::Ambient) && !l4 {
            out.push_str("  waypoint: {name: waypoint}\n");
        }
        out.push_str("  rules:\n");
        if l4 {
            // Exactly one rule of backendRefs.
            let backends = self
                .rules
                .first()
                .map(|r| r.backends.as_slice())
                .unwrap_or(&[]);
            let _ = writeln!(out, "    - backendRefs: {}", backends_yaml(backends));
        } else {
            for rule in self.rules.iter().take(4) {
                out.push_str(&rule.yaml("    "));
            }
            if self.rules.is_empty() {
                out.push_str("    - backendRefs: [{name: a, port: 80}]\n");
            }
        }
        out
    }
}

fn backends_yaml(backends: &[BackendSpec]) -> String {
    let items: Vec<String> = backends
        .iter()
        .take(3)
        .map(|b| {
            let mut s = format!(
                "{{name: {}, port: {}",
                pick(&NAMES, b.name),
                pick(&PORTS, b.port)
            );
            if let Some(ns) = b.namespace {
                let _ = write!(s, ", namespace: {}", pick(&NAMESPACES, ns));
            }
            if let Some(w) = b.weight {
                let _ = write!(s, ", weight: {}", w % 101);
            }
            s.push('}');
            s
        })
        .collect();
    if items.is_empty() {
        "[{name: a, port: 80}]".to_owned()
    } else {
        format!("[{}]", items.join(", "))
    }
}

impl RuleSpec {
    /// The rule as an item of a `rules:` list indented by `indent`.
    fn yaml(&self, indent: &str) -> String {
        // A redirect answers the request itself: its rule has no backends.
        let redirects = self
            .filters
            .iter()
            .take(3)
            .any(|f| matches!(f, FilterSpec::Redirect { .. }));
        let mut out = if redirects {
            format!("{indent}- backendRefs: []\n")
        } else {
            format!("{indent}- backendRefs: {}\n", backends_yaml(&self.backends))
        };
        if !self.matches.is_empty() {
            let _ = writeln!(out, "{indent}  matches:");
            for m in self.matches.iter().take(3) {
                let mut parts = Vec::new();
                if let Some((t, p)) = m.path {
                    let kind = ["PathPrefix", "Exact", "RegularExpression"][usize::from(t) % 3];
                    let value = if kind == "RegularExpression" {
                        format!("\"{}.*\"", pick(&PATHS, p))
                    } else {
                        pick(&PATHS, p).to_owned()
                    };
                    parts.push(format!("path: {{type: {kind}, value: {value}}}"));
                }
                if let Some(method) = m.method {
                    parts.push(format!("method: {}", pick(&METHODS, method)));
                }
                if !m.headers.is_empty() {
                    let h: Vec<String> = m
                        .headers
                        .iter()
                        .take(2)
                        .map(|&(n, v)| {
                            format!(
                                "{{name: {}, value: \"{}\"}}",
                                pick(&HEADERS, n),
                                pick(&VALUES, v)
                            )
                        })
                        .collect();
                    parts.push(format!("headers: [{}]", h.join(", ")));
                }
                if !m.query.is_empty() {
                    let mut q: Vec<String> = Vec::new();
                    let mut names = Vec::new();
                    for &(n, v) in m.query.iter().take(2) {
                        if !names.contains(&(n % 3)) {
                            names.push(n % 3);
                            q.push(format!(
                                "{{name: q{}, value: \"{}\"}}",
                                n % 3,
                                pick(&VALUES, v)
                            ));
                        }
                    }
                    parts.push(format!("queryParams: [{}]", q.join(", ")));
                }
                let _ = writeln!(out, "{indent}    - {{{}}}", parts.join(", "));
            }
        }
        if !self.filters.is_empty() {
            let _ = writeln!(out, "{indent}  filters:");
            for f in self.filters.iter().take(3) {
                let text = match f {
                    FilterSpec::RequestHeader(n, v) => format!(
                        "{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: {}, value: \"{}\"}}]}}}}",
                        pick(&HEADERS, *n),
                        pick(&VALUES, *v)
                    ),
                    FilterSpec::ResponseHeader(n, v) => format!(
                        "{{type: ResponseHeaderModifier, responseHeaderModifier: {{add: [{{name: {}, value: \"{}\"}}]}}}}",
                        pick(&HEADERS, *n),
                        pick(&VALUES, *v)
                    ),
                    FilterSpec::Redirect { https, code } => format!(
                        "{{type: RequestRedirect, requestRedirect: {{scheme: {}, statusCode: {}}}}}",
                        if *https { "https" } else { "http" },
                        if *code { 301 } else { 302 }
                    ),
                    FilterSpec::Rewrite(p) => format!(
                        "{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: {}}}}}}}",
                        pick(&PATHS, *p)
                    ),
                    FilterSpec::Mirror(b, percent) => format!(
                        "{{type: RequestMirror, requestMirror: {{backendRef: {{name: {}, port: 80}}, percent: {}}}}}",
                        pick(&NAMES, *b),
                        percent % 101
                    ),
                };
                let _ = writeln!(out, "{indent}    - {text}");
            }
        }
        if let Some(t) = self.timeout {
            let _ = writeln!(
                out,
                "{indent}  timeouts: {{request: {}s}}",
                u32::from(t % 30) + 1
            );
        }
        out
    }
}

impl ObjectSpec {
    fn yaml(&self, i: usize) -> String {
        match self {
            ObjectSpec::Gateway {
                name,
                namespace,
                listeners,
            } => {
                let mut out = format!(
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {}-gw, namespace: {}}}\nspec:\n  gatewayClassName: istio\n  listeners:\n",
                    pick(&NAMES, *name),
                    pick(&NAMESPACES, *namespace)
                );
                for (j, (port, protocol, host, all)) in listeners.iter().take(4).enumerate() {
                    let protocol_name = match protocol {
                        Protocol::Http => "HTTP",
                        Protocol::Https => "HTTPS",
                        Protocol::Tls => "TLS",
                        Protocol::Tcp => "TCP",
                        Protocol::Udp => "UDP",
                    };
                    let _ = write!(
                        out,
                        "    - {{name: l{j}, port: {}, protocol: {protocol_name}",
                        pick(&PORTS, *port)
                    );
                    if let (Some(h), Protocol::Http | Protocol::Https | Protocol::Tls) =
                        (host, protocol)
                    {
                        let _ = write!(out, ", hostname: \"{}\"", pick(&HOSTS, *h));
                    }
                    match protocol {
                        Protocol::Https => out.push_str(
                            ", tls: {mode: Terminate, certificateRefs: [{name: web-cert}]}",
                        ),
                        Protocol::Tls => out.push_str(", tls: {mode: Passthrough}"),
                        _ => {}
                    }
                    if *all {
                        out.push_str(", allowedRoutes: {namespaces: {from: All}}");
                    }
                    out.push_str("}\n");
                }
                if listeners.is_empty() {
                    out.push_str("    - {name: http, port: 80, protocol: HTTP}\n");
                }
                out
            }
            ObjectSpec::HttpRoute {
                name,
                namespace,
                parent,
                hosts,
                rules,
            } => {
                let (gw, gw_ns, section) = parent;
                let mut parent_ref = format!(
                    "{{name: {}-gw, namespace: {}",
                    pick(&NAMES, *gw),
                    pick(&NAMESPACES, *gw_ns)
                );
                if let Some(s) = section {
                    let _ = write!(parent_ref, ", sectionName: l{}", s % 4);
                }
                parent_ref.push('}');
                let mut out = format!(
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{i}-{}, namespace: {}}}\nspec:\n  parentRefs: [{parent_ref}]\n  hostnames: {}\n  rules:\n",
                    pick(&NAMES, *name),
                    pick(&NAMESPACES, *namespace),
                    hosts_yaml(hosts)
                );
                for rule in rules.iter().take(3) {
                    out.push_str(&rule.yaml("    "));
                }
                if rules.is_empty() {
                    out.push_str("    - backendRefs: [{name: a, port: 80}]\n");
                }
                out
            }
            ObjectSpec::L4Route {
                name,
                namespace,
                tls,
                parent,
                hosts,
                backends,
            } => {
                let kind = if *tls { "TLSRoute" } else { "TCPRoute" };
                let mut out = format!(
                    "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: {kind}\nmetadata: {{name: r{i}-{}, namespace: {}}}\nspec:\n  parentRefs: [{{name: {}-gw, namespace: {}}}]\n",
                    pick(&NAMES, *name),
                    pick(&NAMESPACES, *namespace),
                    pick(&NAMES, parent.0),
                    pick(&NAMESPACES, parent.1)
                );
                if *tls {
                    let _ = writeln!(out, "  hostnames: {}", hosts_yaml(hosts));
                }
                let _ = writeln!(
                    out,
                    "  rules:\n    - backendRefs: {}",
                    backends_yaml(backends)
                );
                out
            }
            ObjectSpec::ReferenceGrant { from, to } => format!(
                "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: grant-{i}, namespace: {}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {}}}]\n  to: [{{group: \"\", kind: Service}}]\n",
                pick(&NAMESPACES, *to),
                pick(&NAMESPACES, *from)
            ),
            ObjectSpec::BackendTlsPolicy {
                name,
                namespace,
                service,
                host,
                system,
            } => {
                let validation = if *system {
                    "wellKnownCACertificates: System".to_owned()
                } else {
                    "caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]".to_owned()
                };
                format!(
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: p{i}-{}, namespace: {}}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: {}}}]\n  validation: {{hostname: {}, {validation}}}\n",
                    pick(&NAMES, *name),
                    pick(&NAMESPACES, *namespace),
                    pick(&NAMES, *service),
                    pick(&HOSTS, *host).trim_start_matches("*.")
                )
            }
            ObjectSpec::Namespace { name, label } => format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels: {{{}}}\n",
                pick(&NAMESPACES, *name),
                if *label { "shared: \"true\"" } else { "" }
            ),
        }
    }
}

/// What one generated repository went through: how far it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reached {
    /// Rejected by validation (with its problems; expected for some inputs).
    Rejected,
    /// Validated, rendered, translated and encoded for every proxy.
    Encoded,
}

/// The whole pipeline on one generated repository: decode, validate, expand, render,
/// translate, encode (with its endpoints file). Panics are the findings.
pub fn run_pipeline(spec: &RepoSpec) -> Reached {
    let tree = spec.tree();
    let Ok((config, model)) = crate::intent::load_and_expand(&tree) else {
        return Reached::Rejected;
    };
    crate::render::render(&model, &config.summary(&tree.source))
        .expect("rendering a valid model must not fail");
    let endpoints = crate::xds::endpoints::Endpoints::parse(&spec.endpoints())
        .expect("the generated endpoints file is valid");
    let plans = crate::xds::translate::plans(&model);
    crate::xds::snapshot::Snapshot::build(
        crate::xds::snapshot::Origin::default(),
        plans,
        crate::xds::snapshot::Inputs {
            endpoints: Some(std::sync::Arc::new(endpoints)),
            certs: None,
        },
    );
    let _ = crate::xds::translate::conditions::status(&model, None, None);
    Reached::Encoded
}

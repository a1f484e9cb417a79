//! The intent format (`tidegate.io/v1alpha1`, kind `Ingress`) and `tidegate.yaml`, decoded
//! from the positioned tree. Field names are a contract with users: extend, never rename.

use std::collections::BTreeMap;

use super::decode::{Cx, is_dns1123_label, is_dns1123_subdomain, is_gateway_hostname};
use super::node::{Node, Pos};
use crate::model::gateway_api::{
    BackendObjectRef, Cors, FilterType, Fraction, HeaderModifier, HttpBackendRef, HttpHeader,
    HttpPathMatch, HttpRouteFilter, HttpRouteMatch, HttpRouteRetry, HttpRouteRule,
    HttpRouteTimeouts, LocalObjectRef, PathMatchType, PathModifier, PathModifierType,
    RequestMirror, RequestRedirect, UrlRewrite, ValueMatch, ValueMatchType,
};

pub const API_VERSION: &str = "tidegate.io/v1alpha1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Istio `Gateway` + `VirtualService` on an injected gateway (seed §2.2).
    Istio,
    /// Gateway API `Gateway` + `HTTPRoute`, sidecar data plane (seed §2.4).
    GatewayApi,
    /// Gateway API ingress plus a waypoint that enforces the rules (seed §2.6).
    Ambient,
}

impl Mode {
    pub const NAMES: [&'static str; 3] = ["istio", "gateway-api", "ambient"];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Istio => "istio",
            Mode::GatewayApi => "gateway-api",
            Mode::Ambient => "ambient",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "istio" => Mode::Istio,
            "gateway-api" => Mode::GatewayApi,
            _ => Mode::Ambient,
        }
    }

    pub fn is_sidecar(self) -> bool {
        !matches!(self, Mode::Ambient)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exposure {
    LoadBalancer,
    ClusterIP,
    OpenShiftRoute,
}

impl Exposure {
    pub const NAMES: [&'static str; 3] = ["LoadBalancer", "ClusterIP", "OpenShiftRoute"];

    pub fn as_str(self) -> &'static str {
        match self {
            Exposure::LoadBalancer => "LoadBalancer",
            Exposure::ClusterIP => "ClusterIP",
            Exposure::OpenShiftRoute => "OpenShiftRoute",
        }
    }

    /// The Kubernetes Service type the gateway's Service gets.
    pub fn service_type(self) -> &'static str {
        match self {
            Exposure::LoadBalancer => "LoadBalancer",
            // Behind an OpenShift Route the router is the entry point (seed §2.3.1).
            Exposure::ClusterIP | Exposure::OpenShiftRoute => "ClusterIP",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Platform {
    #[default]
    Kubernetes,
    OpenShift,
}

/// Repo-wide settings from `tidegate.yaml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub platform: Platform,
    /// `gatewayClassName` of ingress gateways in the Gateway API modes.
    pub gateway_class_name: String,
    /// Default sidecar-injection revision for intents that do not set `injection`.
    pub revision: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            platform: Platform::Kubernetes,
            gateway_class_name: "istio".into(),
            revision: None,
        }
    }
}

/// A value with the position it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct At<T> {
    pub pos: Pos,
    pub value: T,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GatewayIntent {
    pub name: String,
    pub namespace: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub exposure: At<Exposure>,
    /// Names of the Secrets holding the HTTPS certificate (Gateway API `certificateRefs`).
    pub certificate_refs: Vec<String>,
}

/// One decoded `Ingress` intent.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    pub file: String,
    /// Where the document starts (its `apiVersion`), used to name the intent in errors.
    pub pos: Pos,
    pub name: String,
    pub namespace: String,
    pub mode: At<Mode>,
    pub hostnames: Vec<At<String>>,
    pub gateway: GatewayIntent,
    /// `Some(None)` is `injection: {}`; `revision` picks `istio.io/rev`.
    pub injection: Option<At<Option<String>>>,
    pub waypoint: Option<At<String>>,
    pub rules: Vec<HttpRouteRule>,
    /// Position of every rule and of every match in it, for conflict reports.
    pub rule_pos: Vec<(Pos, Vec<Pos>)>,
    /// `metadata.labels` / `metadata.annotations`: copied onto the objects that belong to
    /// this intent alone (its routes), not onto shared ones (gateways, namespaces).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Intent {
    /// `<namespace>/<name>` of the gateway the intent attaches to.
    pub fn gateway_namespace(&self) -> &str {
        self.gateway.namespace.as_deref().unwrap_or(&self.namespace)
    }

    /// The waypoint name in ambient mode (`waypoint` unless set, like `istioctl waypoint`).
    pub fn waypoint_name(&self) -> &str {
        self.waypoint.as_ref().map_or("waypoint", |w| &w.value)
    }
}

// === decoding ===

pub fn decode_settings(cx: &mut Cx<'_>, node: &Node) -> Settings {
    let mut settings = Settings::default();
    let Some(o) = cx.object(
        node,
        "",
        &[
            "apiVersion",
            "kind",
            "platform",
            "gatewayClassName",
            "injection",
        ],
    ) else {
        return settings;
    };
    check_api_version(cx, &o, "Settings");
    if let Some(n) = o.get("platform") {
        match cx
            .choice(n, "platform", &["kubernetes", "openshift"])
            .as_deref()
        {
            Some("openshift") => settings.platform = Platform::OpenShift,
            Some(_) => settings.platform = Platform::Kubernetes,
            None => {}
        }
    }
    if let Some(n) = o.get("gatewayClassName")
        && let Some(s) = cx.string(n, "gatewayClassName")
    {
        if is_dns1123_subdomain(&s) {
            settings.gateway_class_name = s;
        } else {
            cx.report(
                n.pos,
                "gatewayClassName",
                format!("`{s}` is not a valid name; valid: a DNS-1123 subdomain such as `istio`"),
            );
        }
    }
    if let Some(n) = o.get("injection") {
        settings.revision = decode_injection(cx, n, "injection").flatten();
    }
    settings
}

fn check_api_version(cx: &mut Cx<'_>, o: &super::decode::Obj<'_>, kind: &str) {
    if let Some(n) = o.get("apiVersion")
        && let Some(v) = cx.string(n, "apiVersion")
        && v != API_VERSION
    {
        cx.report(
            n.pos,
            "apiVersion",
            format!("`{v}` is not supported; valid: {API_VERSION}"),
        );
    }
    if let Some(n) = o.get("kind")
        && let Some(v) = cx.string(n, "kind")
        && v != kind
    {
        cx.report(
            n.pos,
            "kind",
            format!("`{v}` is not valid here; valid: {kind}"),
        );
    }
}

fn decode_injection(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<Option<String>> {
    let o = cx.object(node, field, &["revision"])?;
    let Some(n) = o.get("revision") else {
        return Some(None);
    };
    let rev = cx.string(n, &o.field("revision"))?;
    if !is_dns1123_label(&rev) {
        cx.report(
            n.pos,
            &o.field("revision"),
            format!(
                "`{rev}` is not a valid revision name; valid: a DNS-1123 label such as `default`"
            ),
        );
        return None;
    }
    Some(Some(rev))
}

/// Decodes one intent document. Returns `None` if it is too broken to use; the problems are
/// in `cx` either way.
pub fn decode_intent(cx: &mut Cx<'_>, node: &Node) -> Option<Intent> {
    let before = cx.problems.len();
    let o = cx.object(node, "", &["apiVersion", "kind", "metadata", "spec"])?;
    if o.require(cx, "apiVersion", API_VERSION).is_some() {
        // checked below together with kind
    }
    o.require(cx, "kind", "Ingress");
    check_api_version(cx, &o, "Ingress");

    let meta = match o.require(cx, "metadata", "a mapping with `name` and `namespace`") {
        Some(m) => decode_metadata(cx, m),
        None => Metadata::default(),
    };
    let spec_node = o.require(
        cx,
        "spec",
        "the ingress spec (mode, hostnames, gateway, rules)",
    )?;
    let s = cx.object(
        spec_node,
        "spec",
        &[
            "mode",
            "hostnames",
            "gateway",
            "injection",
            "waypoint",
            "rules",
        ],
    )?;

    let mode = s
        .require(cx, "mode", "one of istio, gateway-api, ambient")
        .and_then(|n| {
            let m = cx.choice(n, "spec.mode", &Mode::NAMES)?;
            Some(At {
                pos: n.pos,
                value: Mode::parse(&m),
            })
        });

    let mut hostnames = Vec::new();
    if let Some(n) = s.require(
        cx,
        "hostnames",
        "a list of DNS names such as [httpbin.example.com]",
    ) && let Some(list) = cx.strings(n, "spec.hostnames")
    {
        if list.is_empty() {
            cx.report(
                n.pos,
                "spec.hostnames",
                "must list at least one hostname, such as httpbin.example.com",
            );
        }
        for (i, (pos, h)) in list.into_iter().enumerate() {
            let field = format!("spec.hostnames[{i}]");
            if !is_gateway_hostname(&h) {
                cx.report(pos, &field, format!("`{h}` is not a valid hostname; valid: a lower-case DNS name such as httpbin.example.com, optionally starting with `*.`, with no port and no IP address"));
            } else if hostnames.iter().any(|x: &At<String>| x.value == h) {
                cx.report(pos, &field, format!("`{h}` is listed twice"));
            } else {
                hostnames.push(At { pos, value: h });
            }
        }
    }

    let gateway = s
        .require(
            cx,
            "gateway",
            "a mapping such as {name: httpbin-gateway, port: 80}",
        )
        .and_then(|n| decode_gateway(cx, n));

    let injection = s.get("injection").and_then(|n| {
        let v = decode_injection(cx, n, "spec.injection")?;
        Some(At {
            pos: n.pos,
            value: v,
        })
    });

    let waypoint = s.get("waypoint").and_then(|n| {
        let w = cx.object(n, "spec.waypoint", &["name"])?;
        let name_node = w.require(cx, "name", "the waypoint Gateway's name, such as httpbin-waypoint")?;
        let name = cx.string(name_node, "spec.waypoint.name")?;
        if !is_dns1123_label(&name) {
            cx.report(name_node.pos, "spec.waypoint.name", format!("`{name}` is not a valid name; valid: a DNS-1123 label (lower-case letters, digits, `-`)"));
            return None;
        }
        Some(At { pos: n.pos, value: name })
    });

    let mut rules = Vec::new();
    let mut rule_pos = Vec::new();
    if let Some(n) = s.require(
        cx,
        "rules",
        "a list of HTTPRoute rules with matches and backendRefs",
    ) && let Some(items) = cx.list(n, "spec.rules")
    {
        if items.is_empty() {
            cx.report(
                n.pos,
                "spec.rules",
                "must have at least one rule with backendRefs",
            );
        }
        for (i, item) in items.iter().enumerate() {
            if let Some((rule, pos)) = decode_rule(cx, item, &format!("spec.rules[{i}]")) {
                rules.push(rule);
                rule_pos.push(pos);
            }
        }
        check_rules_route_somewhere(cx, items, &rules, &rule_pos);
    }

    // Mode-dependent fields.
    // `retry` is an HTTPRoute field of Gateway API's experimental channel only: in an
    // HTTPRoute it would be dropped by clusters with the standard CRDs, while the proxies
    // retried. A VirtualService has `retries` everywhere.
    if let Some(mode) = &mode
        && mode.value != Mode::Istio
    {
        for (i, rule) in rules.iter().enumerate() {
            if rule.retry.is_some() {
                cx.report(rule_pos[i].0, &format!("spec.rules[{i}].retry"), format!("retry renders into an HTTPRoute field of Gateway API's experimental channel, which clusters with the standard CRDs drop; valid: mode istio (VirtualService retries), or a plain HTTPRoute in resources/ (mode here: {})", mode.value.as_str()));
            }
        }
    }
    if let (Some(mode), Some(w)) = (&mode, &waypoint)
        && mode.value != Mode::Ambient
    {
        cx.report(w.pos, "spec.waypoint", format!("a waypoint is only used in ambient mode, but this intent has mode: {}; remove `waypoint` or set `mode: ambient`", mode.value.as_str()));
    }
    if let (Some(mode), Some(inj)) = (&mode, &injection)
        && mode.value == Mode::Ambient
    {
        cx.report(inj.pos, "spec.injection", "sidecar injection does not apply in ambient mode (the namespace gets istio.io/dataplane-mode=ambient); remove `injection` or use mode istio or gateway-api");
    }

    if cx.problems.len() > before {
        return None;
    }
    Some(Intent {
        file: cx.file.to_owned(),
        pos: node.pos,
        name: meta.name?,
        namespace: meta.namespace?,
        mode: mode?,
        hostnames,
        gateway: gateway?,
        injection,
        waypoint,
        rules,
        rule_pos,
        labels: meta.labels,
        annotations: meta.annotations,
    })
}

#[derive(Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn decode_metadata(cx: &mut Cx<'_>, node: &Node) -> Metadata {
    let Some(m) = cx.object(
        node,
        "metadata",
        &["name", "namespace", "labels", "annotations"],
    ) else {
        return Metadata::default();
    };
    let name = m.require(cx, "name", "a DNS-1123 name such as httpbin").and_then(|n| {
        let s = cx.string(n, "metadata.name")?;
        // Objects are named `<name>-ingress`, `<name>-waypoint-route`: leave room for that.
        if !is_dns1123_label(&s) || s.len() > 40 {
            cx.report(n.pos, "metadata.name", format!("`{s}` is not a valid intent name; valid: a DNS-1123 label of at most 40 characters (lower-case letters, digits and `-`, starting and ending with a letter or digit)"));
            return None;
        }
        Some(s)
    });
    let namespace = m.require(cx, "namespace", "the namespace of the exposed service, such as httpbin").and_then(|n| {
        let s = cx.string(n, "metadata.namespace")?;
        if !is_dns1123_label(&s) {
            cx.report(n.pos, "metadata.namespace", format!("`{s}` is not a valid namespace; valid: a DNS-1123 label (lower-case letters, digits and `-`, at most 63 characters)"));
            return None;
        }
        Some(s)
    });
    let mut out = Metadata {
        name,
        namespace,
        ..Metadata::default()
    };
    for key in ["labels", "annotations"] {
        let Some(n) = m.get(key) else { continue };
        let field = m.field(key);
        for (pos, k, v) in cx.string_map(n, &field).unwrap_or_default() {
            if !is_qualified_key(&k) {
                cx.report(pos, &format!("{field}.{k}"), format!("`{k}` is not a valid key; valid: an optional DNS prefix and `/`, then at most 63 letters, digits, `-`, `_` or `.`"));
            } else if key == "labels" && !is_label_value(&v) {
                cx.report(pos, &format!("{field}.{k}"), format!("`{v}` is not a valid label value; valid: at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"));
            } else if key == "labels" {
                out.labels.insert(k, v);
            } else {
                out.annotations.insert(k, v);
            }
        }
    }
    out
}

/// A Kubernetes label or annotation key: `[prefix/]name`.
fn is_qualified_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn decode_gateway(cx: &mut Cx<'_>, node: &Node) -> Option<GatewayIntent> {
    let before = cx.problems.len();
    let g = cx.object(
        node,
        "spec.gateway",
        &["name", "namespace", "port", "protocol", "exposure", "tls"],
    )?;
    let name = g.require(cx, "name", "the gateway's name, such as httpbin-gateway").and_then(|n| {
        let s = cx.string(n, "spec.gateway.name")?;
        // The gateway's Service is `<name>-istio`, and Service names are DNS-1123 labels.
        if !is_dns1123_label(&s) || s.len() > 57 {
            cx.report(n.pos, "spec.gateway.name", format!("`{s}` is not a valid gateway name; valid: a DNS-1123 label of at most 57 characters (its Service is named `<name>-istio`)"));
            return None;
        }
        Some(s)
    });
    let namespace = g.get("namespace").and_then(|n| {
        let s = cx.string(n, "spec.gateway.namespace")?;
        if !is_dns1123_label(&s) {
            cx.report(
                n.pos,
                "spec.gateway.namespace",
                format!("`{s}` is not a valid namespace; valid: a DNS-1123 label"),
            );
            return None;
        }
        Some(s)
    });
    let port = g
        .require(cx, "port", "the listener port, such as 80")
        .and_then(|n| cx.int(n, "spec.gateway.port", 1, 65535))
        .map(|p| p as u16);
    let protocol = match g.get("protocol") {
        None => Some(Protocol::Http),
        Some(n) => cx
            .choice(n, "spec.gateway.protocol", &["HTTP", "HTTPS"])
            .map(|p| {
                if p == "HTTPS" {
                    Protocol::Https
                } else {
                    Protocol::Http
                }
            }),
    };
    // Not exposed outside the cluster unless asked: the safe default.
    let exposure = match g.get("exposure") {
        None => Some(At {
            pos: node.pos,
            value: Exposure::ClusterIP,
        }),
        Some(n) => cx
            .choice(n, "spec.gateway.exposure", &Exposure::NAMES)
            .map(|e| At {
                pos: n.pos,
                value: match e.as_str() {
                    "LoadBalancer" => Exposure::LoadBalancer,
                    "OpenShiftRoute" => Exposure::OpenShiftRoute,
                    _ => Exposure::ClusterIP,
                },
            }),
    };
    let mut certificate_refs = Vec::new();
    if let Some(n) = g.get("tls")
        && let Some(t) = cx.object(n, "spec.gateway.tls", &["certificateRefs"])
        && let Some(refs) = t.require(
            cx,
            "certificateRefs",
            "a list such as [{name: httpbin-cert}] naming TLS Secrets",
        )
        && let Some(items) = cx.list(refs, "spec.gateway.tls.certificateRefs")
    {
        for (i, item) in items.iter().enumerate() {
            let field = format!("spec.gateway.tls.certificateRefs[{i}]");
            let Some(r) = cx.object(item, &field, &["name"]) else {
                continue;
            };
            if let Some(nn) = r.require(cx, "name", "the name of a kubernetes.io/tls Secret")
                && let Some(s) = cx.string(nn, &r.field("name"))
            {
                if is_dns1123_subdomain(&s) {
                    certificate_refs.push(s);
                } else {
                    cx.report(
                        nn.pos,
                        &r.field("name"),
                        format!("`{s}` is not a valid Secret name; valid: a DNS-1123 subdomain"),
                    );
                }
            }
        }
    }
    match protocol {
        Some(Protocol::Https) if certificate_refs.is_empty() && cx.problems.len() == before => {
            cx.report(node.pos, "spec.gateway.tls", "protocol HTTPS needs a certificate: add tls: {certificateRefs: [{name: <secret>}]}");
        }
        Some(Protocol::Http) if g.get("tls").is_some() => {
            cx.report(
                g.get("tls").map_or(node.pos, |n| n.pos),
                "spec.gateway.tls",
                "tls is only used with protocol: HTTPS",
            );
        }
        _ => {}
    }
    if cx.problems.len() > before {
        return None;
    }
    Some(GatewayIntent {
        name: name?,
        namespace,
        port: port?,
        protocol: protocol?,
        exposure: exposure?,
        certificate_refs,
    })
}

const RULE_FIELDS: &[&str] = &[
    "name",
    "matches",
    "filters",
    "backendRefs",
    "timeouts",
    "retry",
    "sessionPersistence",
];

pub(super) fn decode_rule(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
) -> Option<(HttpRouteRule, (Pos, Vec<Pos>))> {
    let before = cx.problems.len();
    let r = cx.object(node, field, RULE_FIELDS)?;
    for unsupported in ["sessionPersistence"] {
        if let Some(n) = r.get(unsupported) {
            cx.report(n.pos, &r.field(unsupported), format!("`{unsupported}` is a Gateway API field that tidegate does not support yet; remove it"));
        }
    }
    let mut rule = HttpRouteRule::default();
    if let Some(n) = r.get("name")
        && let Some(s) = cx.string(n, &r.field("name"))
    {
        if is_dns1123_label(&s) {
            rule.name = Some(s);
        } else {
            cx.report(
                n.pos,
                &r.field("name"),
                format!("`{s}` is not a valid rule name; valid: a DNS-1123 label"),
            );
        }
    }
    let mut match_pos = Vec::new();
    match r.get("matches") {
        // The spec's default: one match, PathPrefix `/`.
        None => {
            rule.matches.push(HttpRouteMatch::default());
            match_pos.push(node.pos);
        }
        Some(n) => {
            if let Some(items) = cx.list(n, &r.field("matches")) {
                if items.is_empty() {
                    rule.matches.push(HttpRouteMatch::default());
                    match_pos.push(n.pos);
                }
                for (i, item) in items.iter().enumerate() {
                    if let Some(m) = decode_match(cx, item, &format!("{}[{i}]", r.field("matches")))
                    {
                        rule.matches.push(m);
                        match_pos.push(item.pos);
                    }
                }
            }
        }
    }
    if let Some(n) = r.get("filters")
        && let Some(items) = cx.list(n, &r.field("filters"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", r.field("filters"));
            if let Some(filter) = decode_filter(cx, item, &f) {
                // Mirrors may repeat (each to its own backend); every other type may not.
                if filter.type_ != FilterType::RequestMirror
                    && rule.filters.iter().any(|x| x.type_ == filter.type_)
                {
                    cx.report(item.pos, &f, format!("filter {:?} appears twice in this rule; valid: each filter type at most once", filter.type_));
                }
                rule.filters.push(filter);
            }
        }
    }
    if let Some(n) = r.get("backendRefs")
        && let Some(items) = cx.list(n, &r.field("backendRefs"))
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(b) = decode_backend(cx, item, &format!("{}[{i}]", r.field("backendRefs"))) {
                rule.backend_refs.push(b);
            }
        }
    }
    if let Some(n) = r.get("timeouts")
        && let Some(t) = cx.object(n, &r.field("timeouts"), &["request", "backendRequest"])
    {
        let mut timeouts = HttpRouteTimeouts::default();
        for (key, slot) in [
            ("request", &mut timeouts.request),
            ("backendRequest", &mut timeouts.backend_request),
        ] {
            if let Some(v) = t.get(key)
                && let Some(s) = cx.string(v, &t.field(key))
            {
                if is_duration(&s) {
                    *slot = Some(s);
                } else {
                    cx.report(v.pos, &t.field(key), format!("`{s}` is not a Gateway API duration; valid: digits with h, m, s or ms, such as 10s or 1m30s"));
                }
            }
        }
        rule.timeouts = Some(timeouts);
    }
    if let Some(n) = r.get("retry") {
        rule.retry = decode_retry(cx, n, &r.field("retry"));
    }

    // Rules the Gateway API CRD enforces with CEL, checked here so the commit is rejected
    // before an API server would reject the manifest.
    let redirect = rule
        .filters
        .iter()
        .any(|f| f.type_ == FilterType::RequestRedirect);
    let rewrite = rule
        .filters
        .iter()
        .any(|f| f.type_ == FilterType::UrlRewrite);
    if redirect && rewrite {
        cx.report(
            node.pos,
            field,
            "a rule cannot have both RequestRedirect and URLRewrite filters",
        );
    }
    if redirect && !rule.backend_refs.is_empty() {
        cx.report(node.pos, field, "a rule with a RequestRedirect filter answers the request itself; remove its backendRefs or the redirect");
    }
    let prefix_rewrite = rule.filters.iter().any(|f| {
        let path = f
            .request_redirect
            .as_ref()
            .and_then(|r| r.path.as_ref())
            .or(f.url_rewrite.as_ref().and_then(|r| r.path.as_ref()));
        path.is_some_and(|p| p.type_ == PathModifierType::ReplacePrefixMatch)
    });
    if prefix_rewrite
        && rule
            .matches
            .iter()
            .any(|m| m.path.type_ != PathMatchType::PathPrefix)
    {
        cx.report(
            node.pos,
            field,
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
        );
    }
    if cx.problems.len() > before {
        return None;
    }
    Some((rule, (node.pos, match_pos)))
}

/// A rule that matches requests but neither forwards nor answers them makes Gateway API
/// return HTTP 500 for those requests: almost always a YAML slip (seed §2.4 puts
/// `backendRefs` in a rule of its own). In an intent that is an error, not a silent 500.
fn check_rules_route_somewhere(
    cx: &mut Cx<'_>,
    items: &[Node],
    rules: &[HttpRouteRule],
    pos: &[(Pos, Vec<Pos>)],
) {
    for (i, (rule, (rpos, _))) in rules.iter().zip(pos).enumerate() {
        let answers = rule
            .filters
            .iter()
            .any(|f| f.type_ == FilterType::RequestRedirect);
        let forwards = rule.backend_refs.iter().any(|b| b.weight > 0);
        if answers || forwards {
            continue;
        }
        let idx = items.iter().position(|n| n.pos == *rpos).unwrap_or(i);
        let what = rule
            .matches
            .iter()
            .map(|m| format!("{:?} {}", m.path.type_, m.path.value))
            .collect::<Vec<_>>()
            .join(", ");
        let why = if rule.backend_refs.is_empty() {
            "has no backendRefs and no RequestRedirect filter"
        } else {
            "gives every backendRef weight 0"
        };
        let mut msg = format!(
            "this rule {why}, so requests matching {what} would get HTTP 500; add backendRefs to this rule"
        );
        let next_is_bare_backends = rules.get(i + 1).is_some_and(|n| !n.backend_refs.is_empty())
            && items.get(idx + 1).is_some_and(|n| matches!(&n.value, super::node::Value::Map(e) if !e.iter().any(|(k, _)| matches!(&k.value, super::node::Value::Str(s) if s == "matches"))));
        if next_is_bare_backends {
            msg.push_str(&format!(" (spec.rules[{}] holds backendRefs but no matches: it is a separate rule matching every path; indent `backendRefs` under this rule without the leading `-`)", idx + 1));
        }
        cx.report(*rpos, &format!("spec.rules[{idx}]"), msg);
    }
}

fn decode_match(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpRouteMatch> {
    let before = cx.problems.len();
    let m = cx.object(node, field, &["path", "headers", "queryParams", "method"])?;
    let mut out = HttpRouteMatch::default();
    if let Some(p) = m.get("path")
        && let Some(po) = cx.object(p, &m.field("path"), &["type", "value"])
    {
        let type_ = match po.get("type") {
            None => PathMatchType::PathPrefix,
            Some(t) => match cx
                .choice(
                    t,
                    &po.field("type"),
                    &["Exact", "PathPrefix", "RegularExpression"],
                )
                .as_deref()
            {
                Some("Exact") => PathMatchType::Exact,
                Some("RegularExpression") => PathMatchType::RegularExpression,
                _ => PathMatchType::PathPrefix,
            },
        };
        let value = match po.get("value") {
            None => "/".to_owned(),
            Some(v) => cx.string(v, &po.field("value")).unwrap_or_default(),
        };
        let vpos = po.get("value").map_or(p.pos, |v| v.pos);
        if type_ != PathMatchType::RegularExpression {
            if !value.starts_with('/') {
                cx.report(
                    vpos,
                    &po.field("value"),
                    format!(
                        "`{value}` does not start with `/`; valid: an absolute path such as /{}",
                        value.trim_start_matches('/')
                    ),
                );
            } else if value.contains("//")
                || value.contains("/./")
                || value.contains("/../")
                || value.ends_with("/..")
                || value.ends_with("/.")
            {
                cx.report(
                    vpos,
                    &po.field("value"),
                    format!("`{value}` is not a normalized path (no `//`, `/./` or `/../`)"),
                );
            } else if value.contains(['?', '#'])
                || value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                cx.report(vpos, &po.field("value"), format!("`{value}` may not contain `?`, `#` or whitespace; match query parameters with queryParams"));
            }
        } else if value.is_empty() {
            cx.report(
                vpos,
                &po.field("value"),
                "a regular expression must not be empty",
            );
        } else if let Err(e) = check_regex(&value) {
            cx.report(vpos, &po.field("value"), e);
        }
        out.path = HttpPathMatch { type_, value };
    }
    if let Some(n) = m.get("headers") {
        out.headers = decode_value_matches(cx, n, &m.field("headers"), true);
    }
    if let Some(n) = m.get("queryParams") {
        out.query_params = decode_value_matches(cx, n, &m.field("queryParams"), false);
    }
    if let Some(n) = m.get("method") {
        out.method = cx.choice(
            n,
            &m.field("method"),
            &[
                "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
            ],
        );
    }
    (cx.problems.len() == before).then_some(out)
}

fn decode_retry(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpRouteRetry> {
    let r = cx.object(node, field, &["codes", "attempts", "backoff"])?;
    let mut out = HttpRouteRetry::default();
    if let Some(n) = r.get("codes")
        && let Some(items) = cx.list(n, &r.field("codes"))
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(c) = cx.int(item, &format!("{}[{i}]", r.field("codes")), 400, 599) {
                out.codes.push(c as u16);
            }
        }
    }
    if let Some(n) = r.get("attempts") {
        out.attempts = cx.int(n, &r.field("attempts"), 0, 1000).map(|a| a as u32);
    }
    if let Some(n) = r.get("backoff")
        && let Some(s) = cx.string(n, &r.field("backoff"))
    {
        if is_duration(&s) {
            out.backoff = Some(s);
        } else {
            cx.report(n.pos, &r.field("backoff"), format!("`{s}` is not a Gateway API duration; valid: digits with h, m, s or ms, such as 100ms"));
        }
    }
    Some(out)
}

/// Header or query-parameter matches (`headers: true` compares names case-insensitively).
pub(super) fn decode_value_matches(
    cx: &mut Cx<'_>,
    n: &Node,
    field: &str,
    headers: bool,
) -> Vec<ValueMatch> {
    let mut slot: Vec<ValueMatch> = Vec::new();
    let Some(items) = cx.list(n, field) else {
        return slot;
    };
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let Some(h) = cx.object(item, &f, &["type", "name", "value"]) else {
            continue;
        };
        let type_ = match h.get("type") {
            None => Some(ValueMatchType::Exact),
            Some(t) => cx
                .choice(t, &h.field("type"), &["Exact", "RegularExpression"])
                .map(|s| {
                    if s == "Exact" {
                        ValueMatchType::Exact
                    } else {
                        ValueMatchType::RegularExpression
                    }
                }),
        };
        let name = h
            .require(cx, "name", "the header or parameter name")
            .and_then(|nn| {
                let s = cx.string(nn, &h.field("name"))?;
                if s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    cx.report(
                        nn.pos,
                        &h.field("name"),
                        format!(
                            "`{s}` is not a valid name; valid: letters, digits and !#$%&'*+-.^_`|~"
                        ),
                    );
                    return None;
                }
                Some(s)
            });
        let value = h
            .require(cx, "value", "the value to match")
            .and_then(|v| cx.string(v, &h.field("value")));
        if let (Some(ValueMatchType::RegularExpression), Some(v)) = (type_, &value)
            && let Err(e) = check_regex(v)
        {
            let pos = h.get("value").map_or(item.pos, |n| n.pos);
            cx.report(pos, &h.field("value"), e);
        }
        if let (Some(type_), Some(name), Some(value)) = (type_, name, value) {
            // Header names compare case-insensitively: a repeat is a mistake.
            let dup = slot.iter().any(|x: &ValueMatch| {
                if headers {
                    x.name.eq_ignore_ascii_case(&name)
                } else {
                    x.name == name
                }
            });
            if dup {
                cx.report(
                    item.pos,
                    &f,
                    format!("`{name}` is matched twice in this match; only the first would count"),
                );
            }
            slot.push(ValueMatch { type_, name, value });
        }
    }
    slot
}

pub(super) fn decode_filter(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpRouteFilter> {
    let f = cx.object(
        node,
        field,
        &[
            "type",
            "requestHeaderModifier",
            "responseHeaderModifier",
            "requestRedirect",
            "urlRewrite",
            "requestMirror",
            "cors",
            "extensionRef",
        ],
    )?;
    let t = f.require(
        cx,
        "type",
        "RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror or CORS",
    )?;
    let ty = cx.choice(
        t,
        &f.field("type"),
        &[
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestRedirect",
            "URLRewrite",
            "RequestMirror",
            "CORS",
            "ExtensionRef",
        ],
    )?;
    let (type_, key) = match ty.as_str() {
        "RequestHeaderModifier" => (FilterType::RequestHeaderModifier, "requestHeaderModifier"),
        "ResponseHeaderModifier" => (FilterType::ResponseHeaderModifier, "responseHeaderModifier"),
        "RequestRedirect" => (FilterType::RequestRedirect, "requestRedirect"),
        "URLRewrite" => (FilterType::UrlRewrite, "urlRewrite"),
        "RequestMirror" => (FilterType::RequestMirror, "requestMirror"),
        "CORS" => (FilterType::Cors, "cors"),
        "ExtensionRef" if cx.plain => (FilterType::ExtensionRef, "extensionRef"),
        other => {
            cx.report(t.pos, &f.field("type"), format!("the {other} filter is not supported in intents (it names an implementation-specific object); supported: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, CORS"));
            return None;
        }
    };
    let mut out = HttpRouteFilter::of(type_);
    for other in [
        "requestHeaderModifier",
        "responseHeaderModifier",
        "requestRedirect",
        "urlRewrite",
        "requestMirror",
        "cors",
        "extensionRef",
    ] {
        if other != key && f.get(other).is_some() {
            cx.report(
                f.get(other).map_or(node.pos, |n| n.pos),
                &f.field(other),
                format!("`{other}` does not go with type {ty}; use `{key}`"),
            );
        }
    }
    let body = f.require(cx, key, &format!("the {ty} settings"))?;
    let bf = f.field(key);
    match type_ {
        FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier => {
            let hm = decode_header_modifier(cx, body, &bf)?;
            if type_ == FilterType::RequestHeaderModifier {
                out.request_header_modifier = Some(hm);
            } else {
                out.response_header_modifier = Some(hm);
            }
        }
        FilterType::RequestRedirect => {
            let r = cx.object(
                body,
                &bf,
                &["scheme", "hostname", "path", "port", "statusCode"],
            )?;
            let mut red = RequestRedirect {
                status_code: 302,
                ..Default::default()
            };
            if let Some(n) = r.get("scheme") {
                red.scheme = cx.choice(n, &r.field("scheme"), &["http", "https"]);
            }
            if let Some(n) = r.get("hostname") {
                red.hostname = decode_plain_hostname(cx, n, &r.field("hostname"));
            }
            if let Some(n) = r.get("path") {
                red.path = decode_path_modifier(cx, n, &r.field("path"));
            }
            if let Some(n) = r.get("port") {
                red.port = cx.int(n, &r.field("port"), 1, 65535).map(|p| p as u16);
            }
            if let Some(n) = r.get("statusCode")
                && let Some(code) = cx.int(n, &r.field("statusCode"), 0, 999)
            {
                if [301, 302, 303, 307, 308].contains(&code) {
                    red.status_code = code as u16;
                } else {
                    cx.report(
                        n.pos,
                        &r.field("statusCode"),
                        format!("{code} is not a redirect status; valid: 301, 302, 303, 307, 308"),
                    );
                }
            }
            out.request_redirect = Some(red);
        }
        FilterType::UrlRewrite => {
            let r = cx.object(body, &bf, &["hostname", "path"])?;
            let mut rw = UrlRewrite::default();
            if let Some(n) = r.get("hostname") {
                rw.hostname = decode_plain_hostname(cx, n, &r.field("hostname"));
            }
            if let Some(n) = r.get("path") {
                rw.path = decode_path_modifier(cx, n, &r.field("path"));
            }
            out.url_rewrite = Some(rw);
        }
        FilterType::RequestMirror => {
            let r = cx.object(body, &bf, &["backendRef", "percent", "fraction"])?;
            let b = r.require(cx, "backendRef", "the Service requests are copied to")?;
            let bo = cx.object(
                b,
                &r.field("backendRef"),
                &["group", "kind", "name", "namespace", "port"],
            )?;
            let s = |cx: &mut Cx<'_>, k: &str| bo.get(k).and_then(|n| cx.string(n, &bo.field(k)));
            let backend_ref = BackendObjectRef {
                group: s(cx, "group").unwrap_or_default(),
                kind: s(cx, "kind").unwrap_or_else(|| "Service".into()),
                name: bo
                    .require(cx, "name", "the Service's name")
                    .and_then(|n| cx.string(n, &bo.field("name")))?,
                namespace: s(cx, "namespace"),
                port: bo
                    .get("port")
                    .and_then(|n| cx.int(n, &bo.field("port"), 1, 65535))
                    .map(|p| p as u16),
            };
            let percent = r
                .get("percent")
                .and_then(|n| cx.int(n, &r.field("percent"), 0, 100))
                .map(|p| p as u32);
            let fraction = match r.get("fraction") {
                None => None,
                Some(n) => {
                    let fo = cx.object(n, &r.field("fraction"), &["numerator", "denominator"])?;
                    let numerator = fo
                        .require(cx, "numerator", "an integer")
                        .and_then(|x| cx.int(x, &fo.field("numerator"), 0, i64::from(u32::MAX)))?
                        as u32;
                    let denominator = match fo.get("denominator") {
                        None => 100,
                        Some(x) => {
                            cx.int(x, &fo.field("denominator"), 1, i64::from(u32::MAX))? as u32
                        }
                    };
                    if numerator > denominator {
                        cx.report(
                            n.pos,
                            &r.field("fraction"),
                            "numerator must not exceed denominator",
                        );
                    }
                    Some(Fraction {
                        numerator,
                        denominator,
                    })
                }
            };
            if percent.is_some() && fraction.is_some() {
                cx.report(body.pos, &bf, "give percent or fraction, not both");
            }
            out.request_mirror = Some(RequestMirror {
                backend_ref,
                percent,
                fraction,
            });
        }
        FilterType::Cors => {
            let r = cx.object(
                body,
                &bf,
                &[
                    "allowOrigins",
                    "allowCredentials",
                    "allowMethods",
                    "allowHeaders",
                    "exposeHeaders",
                    "maxAge",
                ],
            )?;
            let mut c = Cors::default();
            for (key, slot) in [
                ("allowOrigins", &mut c.allow_origins),
                ("allowMethods", &mut c.allow_methods),
                ("allowHeaders", &mut c.allow_headers),
                ("exposeHeaders", &mut c.expose_headers),
            ] {
                if let Some(n) = r.get(key) {
                    *slot = cx
                        .strings(n, &r.field(key))
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(_, s)| s)
                        .collect();
                }
            }
            if let Some(n) = r.get("allowCredentials") {
                c.allow_credentials = cx.boolean(n, &r.field("allowCredentials"));
            }
            if let Some(n) = r.get("maxAge") {
                c.max_age = cx
                    .int(n, &r.field("maxAge"), 1, i64::from(u32::MAX))
                    .map(|v| v as u32);
            }
            out.cors = Some(c);
        }
        FilterType::ExtensionRef => {
            let r = cx.object(body, &bf, &["group", "kind", "name"])?;
            let get = |cx: &mut Cx<'_>, k: &str| {
                r.require(cx, k, "required")
                    .and_then(|n| cx.string(n, &r.field(k)))
            };
            out.extension_ref = Some(LocalObjectRef {
                group: get(cx, "group")?,
                kind: get(cx, "kind")?,
                name: get(cx, "name")?,
            });
        }
    }
    Some(out)
}

fn decode_plain_hostname(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<String> {
    let s = cx.string(node, field)?;
    if s.starts_with("*.") || !is_gateway_hostname(&s) {
        cx.report(
            node.pos,
            field,
            format!("`{s}` is not a valid hostname; valid: a DNS name without wildcard or port"),
        );
        return None;
    }
    Some(s)
}

fn decode_path_modifier(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<PathModifier> {
    let p = cx.object(
        node,
        field,
        &["type", "replaceFullPath", "replacePrefixMatch"],
    )?;
    let t = p.require(cx, "type", "ReplaceFullPath or ReplacePrefixMatch")?;
    let ty = cx.choice(
        t,
        &p.field("type"),
        &["ReplaceFullPath", "ReplacePrefixMatch"],
    )?;
    let (type_, key) = if ty == "ReplaceFullPath" {
        (PathModifierType::ReplaceFullPath, "replaceFullPath")
    } else {
        (PathModifierType::ReplacePrefixMatch, "replacePrefixMatch")
    };
    let v = p.require(cx, key, "an absolute path such as /")?;
    let value = cx.string(v, &p.field(key))?;
    if !value.starts_with('/') {
        cx.report(
            v.pos,
            &p.field(key),
            format!("`{value}` does not start with `/`"),
        );
        return None;
    }
    Some(PathModifier {
        type_,
        replace_full_path: (type_ == PathModifierType::ReplaceFullPath).then(|| value.clone()),
        replace_prefix_match: (type_ == PathModifierType::ReplacePrefixMatch).then_some(value),
    })
}

fn decode_header_modifier(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HeaderModifier> {
    let h = cx.object(node, field, &["set", "add", "remove"])?;
    let mut out = HeaderModifier::default();
    for (key, slot) in [("set", &mut out.set), ("add", &mut out.add)] {
        let Some(n) = h.get(key) else { continue };
        let Some(items) = cx.list(n, &h.field(key)) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", h.field(key));
            let Some(o) = cx.object(item, &f, &["name", "value"]) else {
                continue;
            };
            let name = o
                .require(cx, "name", "a header name")
                .and_then(|x| cx.string(x, &o.field("name")));
            let value = o
                .require(cx, "value", "a header value")
                .and_then(|x| cx.string(x, &o.field("value")));
            if let (Some(name), Some(value)) = (name, value) {
                slot.push(HttpHeader { name, value });
            }
        }
    }
    if let Some(n) = h.get("remove")
        && let Some(list) = cx.strings(n, &h.field("remove"))
    {
        out.remove = list.into_iter().map(|(_, s)| s).collect();
    }
    Some(out)
}

pub(super) fn decode_backend(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpBackendRef> {
    let before = cx.problems.len();
    let b = cx.object(
        node,
        field,
        &[
            "group",
            "kind",
            "name",
            "namespace",
            "port",
            "weight",
            "filters",
        ],
    )?;
    let mut filters = Vec::new();
    if let Some(n) = b.get("filters") {
        if !cx.plain {
            cx.report(
                n.pos,
                &b.field("filters"),
                "per-backend filters are not supported in intents yet; put the filters on the rule",
            );
        } else if let Some(items) = cx.list(n, &b.field("filters")) {
            for (i, item) in items.iter().enumerate() {
                if let Some(f) = decode_filter(cx, item, &format!("{}[{i}]", b.field("filters"))) {
                    filters.push(f);
                }
            }
        }
    }
    // A plain route may name any kind: an API server accepts it, and the route's status
    // says the kind is not supported (ResolvedRefs False, InvalidKind).
    let (mut group, mut kind) = (String::new(), "Service".to_owned());
    if cx.plain {
        if let Some(n) = b.get("group") {
            group = cx.string(n, &b.field("group")).unwrap_or_default();
        }
        if let Some(n) = b.get("kind") {
            kind = cx.string(n, &b.field("kind")).unwrap_or_default();
        }
    } else if let Some(n) = b.get("group")
        && let Some(g) = cx.string(n, &b.field("group"))
        && !g.is_empty()
    {
        cx.report(
            n.pos,
            &b.field("group"),
            format!("`{g}` is not supported; valid: \"\" (the core group, for a Service)"),
        );
    }
    if !cx.plain
        && let Some(n) = b.get("kind")
    {
        cx.choice(n, &b.field("kind"), &["Service"]);
    }
    let is_service = group.is_empty() && kind == "Service";
    let name = b
        .require(cx, "name", "the Service's name, such as httpbin")
        .and_then(|n| {
            let s = cx.string(n, &b.field("name"))?;
            if !is_dns1123_label(&s) {
                cx.report(
                    n.pos,
                    &b.field("name"),
                    format!("`{s}` is not a valid Service name; valid: a DNS-1123 label"),
                );
                return None;
            }
            Some(s)
        });
    let namespace = b.get("namespace").and_then(|n| {
        let s = cx.string(n, &b.field("namespace"))?;
        if !is_dns1123_label(&s) {
            cx.report(
                n.pos,
                &b.field("namespace"),
                format!("`{s}` is not a valid namespace; valid: a DNS-1123 label"),
            );
            return None;
        }
        Some(s)
    });
    // Gateway API makes `port` optional only for kinds other than Service.
    let port = if is_service {
        b.require(cx, "port", "the Service port, such as 8000")
            .and_then(|n| cx.int(n, &b.field("port"), 1, 65535))
            .map(|p| p as u16)
    } else {
        Some(
            b.get("port")
                .and_then(|n| cx.int(n, &b.field("port"), 1, 65535))
                .map_or(0, |p| p as u16),
        )
    };
    let weight = match b.get("weight") {
        None => Some(1),
        Some(n) => cx
            .int(n, &b.field("weight"), 0, 1_000_000)
            .map(|w| w as u32),
    };
    if cx.problems.len() > before {
        return None;
    }
    Some(HttpBackendRef {
        group,
        kind,
        name: name?,
        namespace,
        port: port?,
        weight: weight?,
        filters,
    })
}

/// Gateway API `Duration`: `^([0-9]{1,5}(h|m|s|ms)){1,4}$`.
pub fn is_duration(s: &str) -> bool {
    let mut parts = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return false;
        }
        rest = &rest[digits..];
        let unit = if rest.starts_with("ms") {
            2
        } else if rest.starts_with(['h', 'm', 's']) {
            1
        } else {
            return false;
        };
        rest = &rest[unit..];
        parts += 1;
    }
    (1..=4).contains(&parts)
}

/// Envoy compiles regular expressions with RE2; one it cannot compile makes the proxy
/// reject the whole route table. RE2 and Rust's `regex` share a syntax (no backreferences,
/// no look-around), so the `regex` parser catches those before a commit is accepted.
pub(super) fn check_regex(re: &str) -> Result<(), String> {
    regex_syntax::Parser::new()
        .parse(re)
        .map(|_| ())
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ")
                .to_owned();
            format!("`{re}` is not a valid RE2 regular expression ({last})")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert!(is_duration("10s"));
        assert!(is_duration("1h30m"));
        assert!(is_duration("500ms"));
        assert!(!is_duration("10"));
        assert!(!is_duration("1.5s"));
        assert!(!is_duration(""));
        assert!(!is_duration("1s1s1s1s1s"));
    }
}

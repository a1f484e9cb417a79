//! The intent format (`tidegate.io/v1alpha1`, kind `Ingress`) and `tidegate.yaml`, decoded
//! from the positioned tree. Field names are a contract with users: extend, never rename.

use std::collections::BTreeMap;

use super::decode::Cx;
use super::gateway_api::decode_rule;
use super::node::{Node, Pos};
use crate::model::gateway_api::{FilterType, HttpRouteRule, SubjectAltName};
use crate::model::names::{
    is_dns1123_label, is_dns1123_subdomain, is_gateway_hostname, is_label_value, is_qualified_key,
};

pub const API_VERSION: &str = "tidegate.io/v1alpha1";

pub use crate::model::summary::{Exposure, Mode, Protocol};

impl Mode {
    fn parse(s: &str) -> Self {
        match s {
            "istio" => Mode::Istio,
            "gateway-api" => Mode::GatewayApi,
            _ => Mode::Ambient,
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
    /// Where `protocol` is written (the gateway mapping when it is not).
    pub protocol_pos: Pos,
    pub exposure: At<Exposure>,
    /// Names of the Secrets holding the HTTPS certificate (Gateway API `certificateRefs`).
    /// With protocol TLS: empty is passthrough (the backend's own certificate reaches the
    /// client), non-empty is `mode: Terminate`.
    pub certificate_refs: Vec<String>,
    /// `clientCertificates` (HTTPS only): clients must show a certificate.
    pub client_certificates: Option<At<ClientCertificates>>,
}

/// `spec.gateway.clientCertificates`: the listener asks clients for a certificate and
/// checks it against CA bundles. A property of the gateway's port, so every intent on the
/// port must say the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificates {
    /// Names of the CA bundles: ConfigMaps (`ca.crt`) in the gateway's namespace in the
    /// Gateway API modes; in istio mode, the server certificate's own Secret (its `ca.crt`).
    pub ca_refs: Vec<String>,
    /// `AllowInsecureFallback`: clients without a valid certificate are let in too.
    pub allow_insecure: bool,
}

impl ClientCertificates {
    pub fn mode(&self) -> &'static str {
        if self.allow_insecure {
            "AllowInsecureFallback"
        } else {
            "AllowValidOnly"
        }
    }
}

/// `backendTLS` on a backendRef: the gateway speaks TLS to the Service and checks its
/// certificate. A property of the Service (rendered as one BackendTLSPolicy or
/// DestinationRule for it), so every intent that gives it for a Service must say the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTls {
    /// Sent as SNI; the certificate must be for it unless `subject_alt_names` are given.
    pub hostname: String,
    /// Names of the CA bundles: ConfigMaps (`ca.crt`) in the Service's namespace in the
    /// Gateway API modes; in istio mode one Secret with `ca.crt` in the gateway's namespace
    /// (Istio's `credentialName`). Empty: the system's CAs (`wellKnownCACertificates`).
    pub ca_refs: Vec<String>,
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A `backendTLS`, where it is written and the Service it is for.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendTlsRef {
    pub pos: Pos,
    /// `spec.rules[i].backendRefs[j].backendTLS`.
    pub field: String,
    pub service: String,
    pub namespace: String,
    pub tls: BackendTls,
}

impl GatewayIntent {
    /// A TLS listener that hands the TLS stream to the backend untouched.
    pub fn passthrough(&self) -> bool {
        self.protocol == Protocol::Tls && self.certificate_refs.is_empty()
    }
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
    /// `backendTLS` of the rules' backendRefs, in rule order.
    pub backend_tls: Vec<BackendTlsRef>,
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

    let gateway = s
        .require(
            cx,
            "gateway",
            "a mapping such as {name: httpbin-gateway, port: 80}",
        )
        .and_then(|n| decode_gateway(cx, n));

    let mut hostnames = Vec::new();
    // TCP and UDP connections carry no name to route by: their listener takes every
    // connection of its port, so hostnames would say something the proxies do not do.
    // Read from the gateway mapping itself, so a problem elsewhere in it (reported there)
    // does not also make hostnames look required.
    let written_protocol = s.get("gateway").and_then(|g| match &g.value {
        super::node::Value::Map(entries) => {
            entries
                .iter()
                .find_map(|(k, v)| match (&k.value, &v.value) {
                    (super::node::Value::Str(k), super::node::Value::Str(v)) if k == "protocol" => {
                        Protocol::parse(v)
                    }
                    _ => None,
                })
        }
        _ => None,
    });
    let protocol = gateway.as_ref().map(|g| g.protocol).or(written_protocol);
    let named = protocol.is_none_or(|p| p.has_hostnames());
    if let Some(p) = protocol
        && !named
        && let Some(n) = s.get("hostnames")
    {
        cx.report(n.pos, "spec.hostnames", format!("a {} listener routes every connection of its port, not by name; remove `hostnames` (valid only with protocol HTTP, HTTPS or TLS, where TLS uses them as the SNI names)", p.as_str()));
    } else if named
        && let Some(n) = s.require(
            cx,
            "hostnames",
            "a list of DNS names such as [httpbin.example.com]",
        )
        && let Some(list) = cx.strings(n, "spec.hostnames")
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
    let mut tls_found: Vec<(usize, usize, Pos, String, BackendTls)> = Vec::new();
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
        let l4 = protocol.filter(|p| p.is_l4());
        // `backendTLS` is an intent field, not an HTTPRoute one: taken out of the rules
        // before they are decoded as HTTPRoute rules, and decoded here.
        let items: Vec<Node> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let (item, found) = take_backend_tls(item);
                for (j, n) in found {
                    let field = format!("spec.rules[{i}].backendRefs[{j}].backendTLS");
                    if let Some(p) = l4 {
                        cx.report(n.pos, &field, format!("a {} listener forwards connections as they come, so the gateway does not speak TLS to the backend; valid: backendTLS on an HTTP or HTTPS intent (for TLS end to end, use protocol TLS without certificateRefs: passthrough)", p.as_str()));
                    } else if let Some(tls) = decode_backend_tls(cx, &n, &field) {
                        tls_found.push((i, j, n.pos, field, tls));
                    }
                }
                item
            })
            .collect();
        let items = &items[..];
        if let Some(p) = l4 {
            check_l4_rules(cx, items, p);
        }
        for (i, item) in items.iter().enumerate() {
            // What check_l4_rules reported is left out, so it is not reported again in
            // HTTP terms.
            let item = match l4 {
                Some(_) => &l4_rule_fields(item),
                None => item,
            };
            if let Some((rule, pos)) = decode_rule(cx, item, &format!("spec.rules[{i}]")) {
                rules.push(rule);
                rule_pos.push(pos);
            }
        }
        if l4.is_none() {
            check_rules_route_somewhere(cx, items, &rules, &rule_pos);
        }
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
    if let (Some(mode), Some(g)) = (&mode, &gateway)
        && mode.value == Mode::Istio
        && g.protocol == Protocol::Udp
    {
        cx.report(g.protocol_pos, "spec.gateway.protocol", "Istio gateways (Gateway servers and VirtualServices) do not route UDP; valid for protocol UDP: mode gateway-api or ambient (a Gateway listener and a UDPRoute)");
    }
    if let Some(g) = &gateway
        && matches!(g.protocol, Protocol::Tcp | Protocol::Udp)
        && g.exposure.value == Exposure::OpenShiftRoute
    {
        cx.report(g.exposure.pos, "spec.gateway.exposure", format!("an OpenShift Route carries HTTP and TLS only, not {}; valid with protocol {}: LoadBalancer or ClusterIP", g.protocol.as_str(), g.protocol.as_str()));
    }
    if let (Some(g), Some(w)) = (&gateway, &waypoint)
        && g.protocol.is_l4()
    {
        cx.report(w.pos, "spec.waypoint", format!("a waypoint applies L7 rules, and a {} intent has none (its connections go from the gateway through ztunnel); remove `waypoint`", g.protocol.as_str()));
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

    if let (Some(mode), Some(g)) = (&mode, &gateway) {
        check_tls_for_mode(cx, mode, g, &tls_found);
    }

    if cx.problems.len() > before {
        return None;
    }
    // Every rule decoded (no problem above), so the indexes are the decoded rules'.
    let backend_tls = tls_found
        .into_iter()
        .filter_map(|(i, j, pos, field, tls)| {
            let b = rules.get(i)?.backend_refs.get(j)?;
            Some(BackendTlsRef {
                pos,
                field,
                service: b.name.clone(),
                namespace: b
                    .namespace
                    .clone()
                    .unwrap_or_else(|| meta.namespace.clone().unwrap_or_default()),
                tls,
            })
        })
        .collect();
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
        backend_tls,
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
        // Objects are named `<name>-ingress`, `<name>-waypoint-route`: leave room for that.
        cx.checked_string(n, "metadata.name", |s| is_dns1123_label(s) && s.len() <= 40, "a valid intent name; valid: a DNS-1123 label of at most 40 characters (lower-case letters, digits and `-`, starting and ending with a letter or digit)")
    });
    let namespace = m.require(cx, "namespace", "the namespace of the exposed service, such as httpbin").and_then(|n| {
        cx.checked_string(n, "metadata.namespace", is_dns1123_label, "a valid namespace; valid: a DNS-1123 label (lower-case letters, digits and `-`, at most 63 characters)")
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

fn decode_gateway(cx: &mut Cx<'_>, node: &Node) -> Option<GatewayIntent> {
    let before = cx.problems.len();
    let g = cx.object(
        node,
        "spec.gateway",
        &[
            "name",
            "namespace",
            "port",
            "protocol",
            "exposure",
            "tls",
            "clientCertificates",
        ],
    )?;
    let name = g.require(cx, "name", "the gateway's name, such as httpbin-gateway").and_then(|n| {
        // The gateway's Service is `<name>-istio`, and Service names are DNS-1123 labels.
        cx.checked_string(n, "spec.gateway.name", |s| is_dns1123_label(s) && s.len() <= 57, "a valid gateway name; valid: a DNS-1123 label of at most 57 characters (its Service is named `<name>-istio`)")
    });
    let namespace = g
        .get("namespace")
        .and_then(|n| cx.namespace(n, "spec.gateway.namespace"));
    let port = g
        .require(cx, "port", "the listener port, such as 80")
        .and_then(|n| cx.int(n, "spec.gateway.port", 1, 65535))
        .map(|p| p as u16);
    let protocol_pos = g.get("protocol").map_or(node.pos, |n| n.pos);
    let protocol = match g.get("protocol") {
        None => Some(Protocol::Http),
        Some(n) => cx
            .choice(n, "spec.gateway.protocol", &Protocol::NAMES)
            .and_then(|p| Protocol::parse(&p)),
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
    let tls = g
        .get("tls")
        .and_then(|n| cx.object(n, "spec.gateway.tls", &["mode", "certificateRefs"]));
    // `mode` as in a Gateway API listener: HTTPS always terminates; TLS passes through
    // unless told to terminate.
    let mode = tls.as_ref().and_then(|t| {
        let n = t.get("mode")?;
        let m = cx.choice(n, "spec.gateway.tls.mode", &["Terminate", "Passthrough"])?;
        Some((n.pos, m))
    });
    match (protocol, &mode) {
        (Some(Protocol::Https), Some((pos, m))) if m == "Passthrough" => {
            cx.report(*pos, "spec.gateway.tls.mode", "protocol HTTPS terminates TLS to route requests; for passthrough (the backend's own certificate, routed by SNI) use protocol: TLS");
        }
        (Some(Protocol::Tls), Some((pos, m))) if m == "Passthrough" => {
            if let Some(r) = tls.as_ref().and_then(|t| t.get("certificateRefs")) {
                cx.report(r.pos, "spec.gateway.tls.certificateRefs", format!("tls mode Passthrough serves the backend's own certificate, so certificateRefs would be unused; remove them, or use mode: Terminate (mode written at line {})", pos.line));
            }
        }
        _ => {}
    }
    let wants_refs = match protocol {
        Some(Protocol::Tls) => mode.as_ref().is_some_and(|(_, m)| m == "Terminate"),
        _ => true,
    };
    if let Some(t) = &tls
        && wants_refs
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
        Some(p @ (Protocol::Http | Protocol::Tcp | Protocol::Udp)) if g.get("tls").is_some() => {
            cx.report(
                g.get("tls").map_or(node.pos, |n| n.pos),
                "spec.gateway.tls",
                format!(
                    "tls is only used with protocol HTTPS or TLS, not {}",
                    p.as_str()
                ),
            );
        }
        _ => {}
    }
    let client_certificates = g.get("clientCertificates").and_then(|n| {
        if let Some(p) = protocol.filter(|p| *p != Protocol::Https) {
            cx.report(n.pos, "spec.gateway.clientCertificates", format!("client certificates are checked where the gateway terminates TLS for requests: protocol HTTPS, not {}; valid: protocol HTTPS with tls.certificateRefs", p.as_str()));
            return None;
        }
        decode_client_certificates(cx, n, "spec.gateway.clientCertificates").map(|value| At {
            pos: n.pos,
            value,
        })
    });
    if cx.problems.len() > before {
        return None;
    }
    Some(GatewayIntent {
        name: name?,
        namespace,
        port: port?,
        protocol: protocol?,
        protocol_pos,
        exposure: exposure?,
        certificate_refs,
        client_certificates,
    })
}

/// `[{name}]`: names of CA bundles (ConfigMaps, or in istio mode Secrets).
fn ca_refs(cx: &mut Cx<'_>, node: &Node, field: &str, what: &str) -> Option<Vec<String>> {
    let items = cx.list(node, field)?;
    if items.is_empty() {
        cx.report(
            node.pos,
            field,
            format!("empty; valid: at least one {{name: <{what}>}}"),
        );
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let r = cx.object(item, &f, &["name"])?;
        let n = r.require(cx, "name", what)?;
        let name = cx.checked_string(
            n,
            &r.field("name"),
            is_dns1123_subdomain,
            "a valid object name; valid: a DNS-1123 subdomain",
        )?;
        if out.contains(&name) {
            cx.report(n.pos, &r.field("name"), format!("`{name}` is listed twice"));
            return None;
        }
        out.push(name);
    }
    Some(out)
}

fn decode_client_certificates(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
) -> Option<ClientCertificates> {
    let o = cx.object(node, field, &["caCertificateRefs", "mode"])?;
    let refs = o
        .require(
            cx,
            "caCertificateRefs",
            "a list such as [{name: clients-ca}] naming ConfigMaps with the client CA in ca.crt",
        )
        .and_then(|n| {
            ca_refs(
                cx,
                n,
                &o.field("caCertificateRefs"),
                "the name of a ConfigMap (Secret in istio mode) with ca.crt",
            )
        });
    let allow_insecure = match o.get("mode") {
        None => Some(false),
        Some(n) => cx
            .choice(
                n,
                &o.field("mode"),
                &["AllowValidOnly", "AllowInsecureFallback"],
            )
            .map(|m| m == "AllowInsecureFallback"),
    };
    Some(ClientCertificates {
        ca_refs: refs?,
        allow_insecure: allow_insecure?,
    })
}

fn decode_backend_tls(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<BackendTls> {
    let before = cx.problems.len();
    let o = cx.object(
        node,
        field,
        &[
            "hostname",
            "caCertificateRefs",
            "wellKnownCACertificates",
            "subjectAltNames",
        ],
    )?;
    let hostname = o
        .require(
            cx,
            "hostname",
            "the name sent as SNI and checked in the backend's certificate, such as httpbin.internal",
        )
        .and_then(|n| {
            cx.checked_string(
                n,
                &o.field("hostname"),
                |h| is_dns1123_subdomain(h) && h.parse::<std::net::Ipv4Addr>().is_err(),
                "a valid hostname; valid: a DNS name such as httpbin.internal (no wildcard, no IP address, no port)",
            )
        });
    let refs = o.get("caCertificateRefs").and_then(|n| {
        ca_refs(
            cx,
            n,
            &o.field("caCertificateRefs"),
            "the name of a ConfigMap (Secret in istio mode) with ca.crt",
        )
    });
    let well_known = o
        .get("wellKnownCACertificates")
        .and_then(|n| cx.choice(n, &o.field("wellKnownCACertificates"), &["System"]));
    if cx.problems.len() == before && refs.is_some() == well_known.is_some() {
        cx.report(
            node.pos,
            field,
            "give exactly one of caCertificateRefs (such as [{name: httpbin-ca}]) and wellKnownCACertificates: System",
        );
    }
    let mut sans = Vec::new();
    if let Some(n) = o.get("subjectAltNames")
        && let Some(items) = cx.list(n, &o.field("subjectAltNames"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", o.field("subjectAltNames"));
            let Some(a) = cx.object(item, &f, &["type", "hostname", "uri"]) else {
                continue;
            };
            let ty = a
                .require(cx, "type", "Hostname or URI")
                .and_then(|n| cx.choice(n, &a.field("type"), &["Hostname", "URI"]));
            let host = a.get("hostname").and_then(|n| {
                cx.checked_string(
                    n,
                    &a.field("hostname"),
                    is_gateway_hostname,
                    "a valid hostname; valid: a DNS name, optionally starting with `*.`",
                )
            });
            let uri = a.get("uri").and_then(|n| {
                cx.checked_string(
                    n,
                    &a.field("uri"),
                    |u| u.split_once("://").is_some_and(|(s, rest)| !s.is_empty() && !rest.is_empty()),
                    "a valid URI; valid: an absolute URI such as spiffe://cluster.local/ns/httpbin/sa/httpbin",
                )
            });
            match (ty.as_deref(), host, uri) {
                (Some("Hostname"), Some(h), None) => sans.push(SubjectAltName {
                    type_: "Hostname",
                    hostname: Some(h),
                    uri: None,
                }),
                (Some("URI"), None, Some(u)) => sans.push(SubjectAltName {
                    type_: "URI",
                    hostname: None,
                    uri: Some(u),
                }),
                (Some(t), ..) if cx.problems.len() == before => cx.report(
                    item.pos,
                    &f,
                    format!(
                        "type {t} needs exactly the field `{}`",
                        if t == "URI" { "uri" } else { "hostname" }
                    ),
                ),
                _ => {}
            }
        }
    }
    if cx.problems.len() > before {
        return None;
    }
    Some(BackendTls {
        hostname: hostname?,
        ca_refs: refs.unwrap_or_default(),
        subject_alt_names: sans,
    })
}

/// Takes `backendTLS` out of each backendRef of a rule: the rule without them, and each
/// one found with the index of its backendRef.
fn take_backend_tls(item: &Node) -> (Node, Vec<(usize, Node)>) {
    use super::node::Value;
    let is = |k: &Node, name: &str| matches!(&k.value, Value::Str(s) if s == name);
    let mut out = item.clone();
    let mut found = Vec::new();
    if let Value::Map(entries) = &mut out.value {
        for (k, v) in entries.iter_mut() {
            if !is(k, "backendRefs") {
                continue;
            }
            if let Value::Seq(refs) = &mut v.value {
                for (j, r) in refs.iter_mut().enumerate() {
                    if let Value::Map(fields) = &mut r.value
                        && let Some(at) = fields.iter().position(|(k, _)| is(k, "backendTLS"))
                    {
                        found.push((j, fields.remove(at).1));
                    }
                }
            }
        }
    }
    (out, found)
}

/// What the intent's mode can render of `backendTLS` and `clientCertificates`.
fn check_tls_for_mode(
    cx: &mut Cx<'_>,
    mode: &At<Mode>,
    g: &GatewayIntent,
    tls: &[(usize, usize, Pos, String, BackendTls)],
) {
    if mode.value != Mode::Istio {
        return;
    }
    for (_, _, pos, field, t) in tls {
        if t.ca_refs.len() > 1 {
            cx.report(*pos, &format!("{field}.caCertificateRefs"), format!("istio mode renders a DestinationRule, whose credentialName is one Secret; valid: one caCertificateRef (a Secret with every CA in ca.crt), or mode gateway-api (mode written at line {})", mode.pos.line));
        }
    }
    if let Some(cc) = &g.client_certificates {
        if cc.value.allow_insecure {
            cx.report(cc.pos, "spec.gateway.clientCertificates.mode", format!("an Istio Gateway server has no AllowInsecureFallback (tls.mode MUTUAL refuses clients without a valid certificate); valid in istio mode: AllowValidOnly, or mode gateway-api (mode written at line {})", mode.pos.line));
        }
        let cert = g.certificate_refs.first();
        if cert.is_some_and(|c| cc.value.ca_refs != [c.clone()]) {
            cx.report(cc.pos, "spec.gateway.clientCertificates.caCertificateRefs", format!("in istio mode (line {}) the server's tls.mode MUTUAL reads the client CA from the server certificate's Secret (its ca.crt); valid: caCertificateRefs: [{{name: {}}}]", mode.pos.line, cert.map_or("", |c| c.as_str())));
        }
    }
}

/// A TLS, TCP or UDP listener routes connections, never requests: its one rule has
/// backendRefs only (TLS picks the intent by SNI, from `spec.hostnames`). Anything else is
/// reported where it is written, with what is valid, rather than silently dropped.
fn check_l4_rules(cx: &mut Cx<'_>, items: &[Node], p: Protocol) {
    use super::node::Value;
    let what = match p {
        Protocol::Tls => "by SNI (spec.hostnames)",
        _ => "by port",
    };
    if items.len() > 1 {
        cx.report(items[1].pos, "spec.rules[1]", format!("a {} listener sends every connection it takes {what} to one set of backends: give exactly one rule (split weights with backendRefs' `weight`)", p.as_str()));
    }
    for (i, item) in items.iter().enumerate() {
        let Value::Map(entries) = &item.value else {
            continue;
        };
        let mut has_backends = false;
        for (k, v) in entries {
            let Value::Str(key) = &k.value else { continue };
            match key.as_str() {
                "name" => {}
                "backendRefs" => {
                    has_backends = true;
                    let Value::Seq(refs) = &v.value else { continue };
                    for (j, r) in refs.iter().enumerate() {
                        let Value::Map(fields) = &r.value else {
                            continue;
                        };
                        for (rk, _) in fields {
                            if let Value::Str(rkey) = &rk.value
                                && rkey == "filters"
                            {
                                cx.report(rk.pos, &format!("spec.rules[{i}].backendRefs[{j}].filters"), format!("a {} listener forwards bytes, so request filters do not apply; valid in a backendRef: name, namespace, port, weight", p.as_str()));
                            }
                        }
                    }
                }
                other => {
                    cx.report(k.pos, &format!("spec.rules[{i}].{other}"), format!("a {} listener routes connections {what}, not requests, so `{other}` does not apply; valid in a {} rule: backendRefs (and name)", p.as_str(), p.as_str()));
                }
            }
        }
        if !has_backends {
            cx.report(item.pos, &format!("spec.rules[{i}]"), format!("this rule has no backendRefs, so every {} connection would be closed; add backendRefs", p.as_str()));
        } else if let Some((_, v)) = entries.iter().find(|(k, _)| matches!(&k.value, Value::Str(s) if s == "backendRefs"))
            && let Value::Seq(refs) = &v.value
            && !refs.is_empty()
            && refs.iter().all(|r| matches!(&r.value, Value::Map(f) if f.iter().any(|(k, w)| matches!(&k.value, Value::Str(s) if s == "weight") && matches!(&w.value, Value::Int(0)))))
        {
            cx.report(item.pos, &format!("spec.rules[{i}]"), format!("this rule gives every backendRef weight 0, so every {} connection would be closed; give one a weight", p.as_str()));
        }
    }
}

/// An L4 rule with only the fields it may have: `name`, and `backendRefs` without filters.
fn l4_rule_fields(item: &Node) -> Node {
    use super::node::Value;
    let is = |k: &Node, name: &str| matches!(&k.value, Value::Str(s) if s == name);
    let mut out = item.clone();
    if let Value::Map(entries) = &mut out.value {
        entries.retain(|(k, _)| is(k, "name") || is(k, "backendRefs"));
        for (_, v) in entries.iter_mut() {
            if let Value::Seq(refs) = &mut v.value {
                for r in refs {
                    if let Value::Map(fields) = &mut r.value {
                        fields.retain(|(k, _)| !is(k, "filters"));
                    }
                }
            }
        }
    }
    out
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

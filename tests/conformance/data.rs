//! The conformance data (`cases.yaml`, `base-manifests.yaml`, `manifests/*.yaml`), read
//! into plain structs. Fields keep the data's meaning; how an absent field is read follows
//! the `defaults:` block of `cases.yaml` and is applied where the checks are made.

use std::path::Path;

use serde_json::Value;

/// The `gatewayClassName` the manifests' placeholder becomes.
pub const GATEWAY_CLASS: &str = "tidegate";
/// The controller name GatewayClasses of the suite name (`{GATEWAY_CONTROLLER_NAME}`).
pub const GATEWAY_CONTROLLER: &str = "tidegate.io/gateway-controller";

/// Kinds committed to the repository; the rest (Services, Deployments, EndpointSlices…)
/// are modelled by the harness: echo servers and the endpoints file.
pub const COMMITTED_KINDS: &[&str] = &[
    "Namespace",
    "Gateway",
    "HTTPRoute",
    "GRPCRoute",
    "ReferenceGrant",
];

pub struct Suite {
    pub tests: Vec<TestDef>,
    pub base: Vec<Value>,
}

pub struct TestDef {
    pub short_name: String,
    pub core: bool,
    /// Objects of the test's manifests, placeholder substituted.
    pub objects: Vec<Value>,
    /// The `gateway:` field (free text naming `<ns>/<name>`, or "see groups").
    pub gateway: Option<String>,
    pub status_note: Option<String>,
    pub cases: Vec<Case>,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub id: String,
    pub group: Option<String>,
    pub request: Request,
    pub expect: Expect,
    /// Headers the echo backend is asked to add to its response (`X-Echo-Set-Header`).
    pub backend_set_response_headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// `None` when the data holds a Go expression instead of a path (see the harness'
    /// expansions).
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub tls_sni: Option<String>,
    pub grpc_method: Option<String>,
    /// A WebSocket exchange: this message is sent after the upgrade and must come back.
    pub websocket: Option<String>,
    pub authority: Option<String>,
    pub metadata: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// HTTP statuses accepted (empty for gRPC cases).
    pub status: Vec<u16>,
    pub backend_pod_prefix: Option<String>,
    pub namespace: Option<String>,
    pub backend_request: Option<BackendRequest>,
    pub redirect_location: Option<Location>,
    pub response_headers: Vec<(String, String)>,
    pub response_absent_headers: Vec<String>,
    pub response_header_one_of: Vec<(String, Vec<String>)>,
    pub mirrored_to: Vec<Mirror>,
    pub grpc_code: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct BackendRequest {
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub absent_headers: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Location {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Mirror {
    pub backend: String,
    pub namespace: String,
    pub percent: Option<f64>,
}

/// Parses a multi-document YAML text into its non-empty documents.
pub fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    let text = text
        .replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS)
        .replace("{GATEWAY_CONTROLLER_NAME}", GATEWAY_CONTROLLER);
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), s(v).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(s).collect())
        .unwrap_or_default()
}

impl Suite {
    pub fn load(dir: &Path) -> Self {
        let read = |rel: &str| {
            std::fs::read_to_string(dir.join(rel))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(rel).display()))
        };
        let cases: Value = serde_saphyr::from_str(&read("cases.yaml")).expect("cases.yaml");
        let base = parse_docs(&read("base-manifests.yaml"), "base-manifests.yaml");
        let mut tests = Vec::new();
        for file in cases["tests"].as_array().expect("tests:") {
            let go_file = s(&file["file"]).unwrap_or_default();
            let stem = go_file
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".go")
                .to_owned();
            let parsed: Vec<Case> = file["cases"]
                .as_array()
                .map(|a| a.iter().map(parse_case).collect())
                .unwrap_or_default();
            for t in file["tests"].as_array().expect("tests[].tests") {
                let mut manifest_files: Vec<String> = strings(&t["manifests"])
                    .iter()
                    .map(|m| m.rsplit('/').next().unwrap_or(m).to_owned())
                    .collect();
                // Some tests list no manifest although the Go test applies one named
                // like the file (the extraction missed it): use that file.
                if manifest_files.is_empty()
                    && dir.join("manifests").join(format!("{stem}.yaml")).exists()
                {
                    manifest_files.push(format!("{stem}.yaml"));
                }
                let objects = manifest_files
                    .iter()
                    .flat_map(|m| parse_docs(&read(&format!("manifests/{m}")), m))
                    .collect();
                tests.push(TestDef {
                    short_name: s(&t["shortName"]).expect("shortName"),
                    core: s(&t["supportLevel"]).as_deref() == Some("Core"),
                    objects,
                    gateway: s(&file["gateway"]),
                    status_note: s(&file["status"]),
                    cases: parsed.clone(),
                });
            }
        }
        Self { tests, base }
    }
}

fn parse_case(c: &Value) -> Case {
    let r = &c["request"];
    let e = &c["expect"];
    let request = Request {
        method: s(&r["method"]).unwrap_or_else(|| "GET".into()),
        path: match &r["path"] {
            Value::Null => Some("/".into()),
            Value::String(p) => Some(p.clone()),
            _ => None,
        },
        host: s(&r["host"]),
        headers: pairs(&r["headers"]),
        tls_sni: s(&r["tls_sni"]),
        grpc_method: s(&r["grpc_method"]),
        websocket: None,
        authority: s(&r["authority"]),
        metadata: pairs(&r["metadata"]),
    };
    let backend_request = e.get("backend_request").map(|b| BackendRequest {
        method: s(&b["method"]),
        // A Go expression (a template) is compared after expansion: see the harness.
        path: s(&b["path"]),
        host: s(&b["host"]),
        headers: pairs(&b["headers"]),
        absent_headers: strings(&b["absent_headers"]),
    });
    let status = match &e["status"] {
        Value::Null if e.get("grpc_code").is_some() => Vec::new(),
        Value::Null => vec![200],
        v => v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u16)
                    .collect()
            })
            .unwrap_or_else(|| v.as_u64().map(|x| vec![x as u16]).unwrap_or_default()),
    };
    Case {
        id: s(&c["id"]).unwrap_or_default(),
        group: s(&c["group"]),
        request,
        expect: Expect {
            status,
            backend_pod_prefix: s(&e["backend_pod_prefix"]),
            namespace: s(&e["namespace"]),
            backend_request,
            redirect_location: e.get("redirect_location").map(|l| Location {
                scheme: s(&l["scheme"]),
                host: s(&l["host"]),
                port: s(&l["port"]),
                path: s(&l["path"]),
            }),
            response_headers: pairs(&e["response_headers"]),
            response_absent_headers: strings(&e["response_absent_headers"]),
            response_header_one_of: e["response_header_one_of"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
                .unwrap_or_default(),
            mirrored_to: e["mirrored_to"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| Mirror {
                            backend: s(&m["backend"]).unwrap_or_default(),
                            namespace: s(&m["namespace"]).unwrap_or_default(),
                            percent: m["percent"].as_f64(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            grpc_code: s(&e["grpc_code"]),
        },
        backend_set_response_headers: pairs(&c["backend_set_response_headers"]),
    }
}

// === helpers over Kubernetes objects as JSON ===

pub fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

pub fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or("default")
}

/// `(namespace, name)` of the Gateways a route's parentRefs name.
pub fn parent_gateways(route: &Value) -> Vec<(String, String)> {
    route["spec"]["parentRefs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["kind"].as_str().unwrap_or("Gateway") == "Gateway")
                .map(|p| {
                    (
                        p["namespace"]
                            .as_str()
                            .unwrap_or(namespace(route))
                            .to_owned(),
                        p["name"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One Gateway listener, as the harness needs it.
#[derive(Clone, Debug)]
pub struct Listener {
    pub port: u16,
    pub protocol: String,
}

pub fn listeners(gateway: &Value) -> Vec<Listener> {
    gateway["spec"]["listeners"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| Listener {
                    port: l["port"].as_u64().unwrap_or(0) as u16,
                    protocol: l["protocol"].as_str().unwrap_or("").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One backendRef of a weighted rule.
#[derive(Clone, Debug)]
pub struct WeightedRef {
    pub backend: String,
    pub weight: u64,
    /// Headers its own (backendRef-level) RequestHeaderModifier sets.
    pub sets: Vec<(String, String)>,
}

/// The first rule with several backendRefs and weights, if any.
pub fn weighted_rule(objects: &[Value]) -> Option<Vec<WeightedRef>> {
    for o in objects {
        let Some(rules) = o["spec"]["rules"].as_array() else {
            continue;
        };
        for r in rules {
            let Some(refs) = r["backendRefs"].as_array() else {
                continue;
            };
            if refs.len() < 2 || refs.iter().all(|b| b.get("weight").is_none()) {
                continue;
            }
            return Some(
                refs.iter()
                    .map(|b| WeightedRef {
                        backend: s(&b["name"]).unwrap_or_default(),
                        weight: b["weight"].as_u64().unwrap_or(1),
                        sets: b["filters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|f| {
                                f["requestHeaderModifier"]["set"]
                                    .as_array()
                                    .cloned()
                                    .unwrap_or_default()
                            })
                            .map(|h| {
                                (
                                    s(&h["name"]).unwrap_or_default(),
                                    s(&h["value"]).unwrap_or_default(),
                                )
                            })
                            .collect(),
                    })
                    .collect(),
            );
        }
    }
    None
}

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::error::{Error, Result};
use crate::model::gateway_api::{HttpRouteMatch, PathMatchType};
use crate::model::summary::{Exposure, IntentSummary, Mode, Protocol, Provenance, Summary};
use crate::model::{Model, Object};

/// First line of every YAML file tidegate writes. A later render deletes stale files only
/// if they start with it, so files a person put in the output directory are never removed.
pub const YAML_MARKER: &str =
    "# Rendered by tidegate. Do not edit: the next render replaces this file.";
/// How a rendered README's line naming its commit starts (`diff` ignores that line).
pub const PROVENANCE: &str = "Rendered from commit `";
/// First line of every README tidegate writes (same purpose as [`YAML_MARKER`]).
pub const README_MARKER: &str =
    "<!-- Rendered by tidegate. Do not edit: the next render replaces this file. -->";

/// Rendered files: path relative to the output root (`/`-separated) → contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub files: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization<'a> {
    api_version: &'static str,
    kind: &'static str,
    resources: Vec<&'a str>,
}

fn to_yaml<T: Serialize>(what: &str, value: &T) -> Result<String> {
    let body = serde_saphyr::to_string(value).map_err(|source| Error::Serialize {
        what: what.to_owned(),
        source,
    })?;
    Ok(format!("{YAML_MARKER}\n{body}"))
}

/// Renders `model` into files; `summary` says where it came from and what its intents
/// are, for the READMEs.
pub fn render(model: &Model, summary: &Summary<'_>) -> Result<Rendered> {
    render_cached(model, summary, &mut Cache::default())
}

/// The YAML of the objects of the last render, by object. Expansion hands an unchanged
/// object on as the very same `Arc`, so a second revision (the head of a diff) serializes
/// only what changed: at 10,000 intents the objects' YAML is most of a render.
#[derive(Default)]
pub struct Cache {
    /// By the object's address; the `Arc` is held so the address is not reused.
    objects: foldhash::HashMap<usize, (std::sync::Arc<crate::model::Object>, String)>,
}

/// [`render`], reusing the YAML of objects `cache` saw in the previous render.
pub fn render_cached(model: &Model, summary: &Summary<'_>, cache: &mut Cache) -> Result<Rendered> {
    let mut files = BTreeMap::new();
    let mut by_ns: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut seen = foldhash::HashMap::default();
    for o in &model.objects {
        let file = format!("{}-{}.yaml", o.file_kind(), o.meta().name);
        let key = std::sync::Arc::as_ptr(o) as usize;
        let yaml = match cache.objects.remove(&key) {
            Some((same, yaml)) if std::sync::Arc::ptr_eq(&same, o) => yaml,
            _ => {
                let what = format!("{} {}/{}", o.kind(), o.namespace(), o.meta().name);
                to_yaml(&what, &**o)?
            }
        };
        seen.insert(key, (o.clone(), yaml.clone()));
        files.insert(format!("{}/{file}", o.namespace()), yaml);
        by_ns.entry(o.namespace()).or_default().push(file);
    }
    cache.objects = seen;
    for (ns, resources) in &by_ns {
        let k = Kustomization {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            resources: resources.iter().map(String::as_str).collect(),
        };
        files.insert(
            format!("{ns}/kustomization.yaml"),
            to_yaml("kustomization", &k)?,
        );
        files.insert(
            format!("{ns}/README.md"),
            namespace_readme(ns, model, summary),
        );
    }
    let top = Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: by_ns.keys().copied().collect(),
    };
    files.insert("kustomization.yaml".into(), to_yaml("kustomization", &top)?);
    files.insert("README.md".into(), top_readme(model, summary));
    Ok(Rendered { files })
}

fn source_line(source: &Provenance) -> String {
    match source {
        Provenance::Commit {
            sha,
            subject,
            prefix,
        } => {
            let dir = if prefix.is_empty() {
                String::new()
            } else {
                format!(" (directory `{prefix}/`)")
            };
            format!("{PROVENANCE}{sha}`{dir}: {subject}")
        }
        Provenance::Directory => {
            "Rendered from a plain directory, not from a commit: do not sync this to a cluster."
                .to_owned()
        }
    }
}

fn top_readme(model: &Model, summary: &Summary<'_>) -> String {
    let mut s = format!(
        "{README_MARKER}\n# Ingress manifests\n\n{}.\n\n",
        source_line(&summary.provenance)
    );
    let _ = writeln!(
        s,
        "{} intent(s) became {} object(s). Each directory is a namespace and a kustomization; `kubectl kustomize .` builds them all.\n",
        summary.intents.len(),
        model.objects.len()
    );
    s.push_str("Namespaces are only labelled, never owned: they carry `Prune=false,Delete=false` (Argo CD) and `prune: disabled` (Flux), so removing an intent never deletes a namespace.\n\n");
    s.push_str("| namespace | objects |\n|---|---|\n");
    let mut counts: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for o in &model.objects {
        counts
            .entry(o.namespace())
            .or_default()
            .insert(format!("{} {}", o.kind(), o.meta().name));
    }
    for (ns, objs) in counts {
        let _ = writeln!(
            s,
            "| [{ns}]({ns}/README.md) | {} |",
            objs.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    s
}

/// The README of one namespace directory: provenance, then for every intent whose routes
/// live here the seed's curl checks, with the names this render actually produced.
fn namespace_readme(ns: &str, model: &Model, summary: &Summary<'_>) -> String {
    let mut s = format!(
        "{README_MARKER}\n# Namespace `{ns}`\n\n{}.\n\n",
        source_line(&summary.provenance)
    );
    for i in summary.intents.iter().filter(|i| i.namespace == ns) {
        intent_checks(&mut s, i, model);
    }
    for i in summary
        .intents
        .iter()
        .filter(|i| i.namespace != ns && i.gateway_namespace == ns)
    {
        let _ = writeln!(
            s,
            "Gateway objects here serve intent `{}/{}`; its checks are in [../{}/README.md](../{}/README.md).\n",
            i.namespace, i.name, i.namespace, i.namespace
        );
    }
    s
}

fn intent_checks(s: &mut String, i: &IntentSummary<'_>, model: &Model) {
    let gw_ns = i.gateway_namespace;
    let gw = i.gateway;
    let _ = writeln!(s, "## Intent `{}` ({} mode)\n", i.name, i.mode.as_str());
    // Gateway API gateways get a Service `<name>-istio` from Istio; an injected (istio mode)
    // gateway's Service is the one rendered here, named like the gateway.
    let svc = match i.mode {
        Mode::Istio => gw.to_owned(),
        _ => format!("{gw}-istio"),
    };
    if i.protocol.is_l4() {
        connection_checks(s, i, &format!("{svc}.{gw_ns}.svc.cluster.local"));
        return;
    }
    let scheme = if i.protocol == Protocol::Https {
        "https"
    } else {
        "http"
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = if i.port == default_port {
        String::new()
    } else {
        format!(":{}", i.port)
    };
    let host = i.host;
    let curl_host = host.replace("*.", "test.");
    let _ = writeln!(
        s,
        "From a pod in the mesh (the seed's verification):\n\n```sh"
    );
    for (path, extra, expect) in samples(i) {
        let _ = writeln!(
            s,
            "{}   # {expect}",
            curl(
                scheme,
                &curl_host,
                &format!("{svc}.{gw_ns}.svc.cluster.local"),
                &port,
                &path,
                &extra
            )
        );
    }
    let _ = writeln!(s, "```\n");
    match i.exposure {
        Exposure::ClusterIP => {
            let _ = writeln!(
                s,
                "The gateway's Service is ClusterIP: not reachable from outside the cluster (exposure: ClusterIP).\n"
            );
        }
        Exposure::LoadBalancer => {
            let _ = writeln!(
                s,
                "From outside the cluster, through the gateway's LoadBalancer Service:\n\n```sh"
            );
            if i.mode == Mode::Istio {
                let _ = writeln!(
                    s,
                    "INGRESS_HOST=$(kubectl get service {svc} -n {gw_ns} -o jsonpath='{{.status.loadBalancer.ingress[0].ip}}')   # .hostname on AWS"
                );
                let _ = writeln!(s, "INGRESS_PORT={}", i.port);
            } else {
                let listener = listener_name(model, i, host).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "INGRESS_HOST=$(kubectl get gtw {gw} -n {gw_ns} -o jsonpath='{{.status.addresses[0].value}}')"
                );
                let _ = writeln!(
                    s,
                    "INGRESS_PORT=$(kubectl get gtw {gw} -n {gw_ns} -o jsonpath='{{.spec.listeners[?(@.name==\"{listener}\")].port}}')"
                );
            }
            let (path, extra, expect) = samples(i).into_iter().next().unwrap_or_default();
            let _ = writeln!(
                s,
                "{}   # {expect}\n```\n",
                curl(
                    scheme,
                    &curl_host,
                    "$INGRESS_HOST",
                    ":$INGRESS_PORT",
                    &path,
                    &extra
                )
            );
        }
        Exposure::OpenShiftRoute => {
            let _ = writeln!(
                s,
                "From outside the cluster, through the OpenShift router (Route in namespace `{gw_ns}`):\n\n```sh"
            );
            let _ = writeln!(
                s,
                "INGRESS_HOST=$(oc get service router-default -n openshift-ingress -o jsonpath='{{.status.loadBalancer.ingress[0].ip}}')   # .hostname on AWS"
            );
            let (path, extra, expect) = samples(i).into_iter().next().unwrap_or_default();
            let _ = writeln!(
                s,
                "{}   # {expect}\n```\n",
                curl(scheme, &curl_host, "$INGRESS_HOST", "", &path, &extra)
            );
        }
    }
}

/// Checks for an intent that routes connections (TLS, TCP, UDP): curl has no request to
/// make, so `openssl s_client` shows whose certificate answers a name, `nc` sends bytes.
fn connection_checks(s: &mut String, i: &IntentSummary<'_>, addr: &str) {
    let backend = i
        .rules
        .first()
        .and_then(|r| r.backend_refs.iter().find(|b| b.weight > 0))
        .map_or_else(String::new, |b| format!("{}:{}", b.name, b.port));
    let port = i.port;
    let _ = writeln!(s, "From a pod in the mesh:\n\n```sh");
    let _ = match i.protocol {
        Protocol::Tls if i.passthrough => writeln!(
            s,
            "openssl s_client -connect {addr}:{port} -servername {}   # the certificate of {backend} (passed through)",
            i.host.replace("*.", "test.")
        ),
        Protocol::Tls => writeln!(
            s,
            "openssl s_client -connect {addr}:{port} -servername {}   # the gateway's certificate; the bytes go to {backend}",
            i.host.replace("*.", "test.")
        ),
        Protocol::Udp => writeln!(s, "nc -u {addr} {port}   # datagrams go to {backend}"),
        _ => writeln!(s, "nc {addr} {port}   # bytes go to {backend}"),
    };
    let _ = writeln!(s, "```\n");
    if i.exposure == Exposure::ClusterIP {
        let _ = writeln!(
            s,
            "The gateway's Service is ClusterIP: not reachable from outside the cluster (exposure: ClusterIP).\n"
        );
    } else {
        let _ = writeln!(
            s,
            "From outside the cluster, the same with the address of the gateway's {} instead of `{addr}`.\n",
            if i.exposure == Exposure::LoadBalancer {
                "LoadBalancer Service"
            } else {
                "OpenShift Route (router-default)"
            }
        );
    }
}

/// A curl command for `host` sent to `addr`. Plain HTTP sets the Host header as the seed
/// does; HTTPS must also send the host as SNI, so it connects to `addr` with `--connect-to`.
fn curl(scheme: &str, host: &str, addr: &str, port: &str, path: &str, extra: &str) -> String {
    if scheme == "https" {
        let p = port.trim_start_matches(':');
        let p = if p.is_empty() { "443" } else { p };
        format!("curl -s -I {extra}--connect-to {host}:{p}:{addr}:{p} https://{host}:{p}{path}")
    } else {
        format!("curl -s -I {extra}-H Host:{host} http://{addr}{port}{path}")
    }
}

fn listener_name(model: &Model, i: &IntentSummary<'_>, host: &str) -> Option<String> {
    model.objects.iter().find_map(|o| match &**o {
        Object::Gateway(g)
            if g.metadata.name == i.gateway
                && g.metadata.namespace.as_deref() == Some(i.gateway_namespace) =>
        {
            g.spec
                .listeners
                .iter()
                .find(|l| l.port == i.port && l.hostname.as_deref() == Some(host))
                .map(|l| l.name.clone())
        }
        _ => None,
    })
}

/// Example requests: one per match that a request can be made for, plus one that matches
/// no rule. Returns (path with query, extra curl flags, expected outcome).
fn samples(i: &IntentSummary<'_>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in i.rules {
        let target = match rule.backend_refs.first() {
            Some(b) => format!("routed to {}:{}", b.name, b.port),
            None => "redirected".to_owned(),
        };
        for m in &rule.matches {
            if m.path.type_ == PathMatchType::RegularExpression {
                continue;
            }
            let mut extra = String::new();
            if let Some(method) = &m.method
                && method != "HEAD"
            {
                let _ = write!(extra, "-X {method} ");
            }
            if m.headers
                .iter()
                .chain(&m.query_params)
                .any(|h| h.type_ != crate::model::gateway_api::ValueMatchType::Exact)
            {
                continue;
            }
            for h in &m.headers {
                let _ = write!(extra, "-H '{}: {}' ", h.name, h.value);
            }
            let mut path = m.path.value.clone();
            if !m.query_params.is_empty() {
                let q: Vec<String> = m
                    .query_params
                    .iter()
                    .map(|q| format!("{}={}", q.name, q.value))
                    .collect();
                path = format!("'{path}?{}'", q.join("&"));
            }
            out.push((path, extra, target.clone()));
        }
    }
    // A path no rule matches: the gateway itself answers 404.
    if let Some(p) = ["/get", "/anything", "/tidegate-unmatched"]
        .into_iter()
        .find(|p| {
            !i.rules
                .iter()
                .any(|r| r.matches.iter().any(|m| path_matches(m, p)))
        })
    {
        out.push((
            p.to_owned(),
            String::new(),
            "404 from the gateway: no rule matches".to_owned(),
        ));
    }
    out
}

fn path_matches(m: &HttpRouteMatch, path: &str) -> bool {
    match m.path.type_ {
        PathMatchType::Exact => m.path.value == path,
        PathMatchType::PathPrefix => {
            let p = m.path.value.trim_end_matches('/');
            p.is_empty() || path == p || path.starts_with(&format!("{p}/"))
        }
        // Unknown without a regex engine: assume it might match, so it is not used.
        PathMatchType::RegularExpression => true,
    }
}

//! TLS on both sides of a gateway, from the model: BackendTLSPolicies → the upstream TLS of
//! the Services they target (with GEP-713 conflict resolution), a Gateway's
//! `spec.tls.backend` → the client certificate it shows backends, and its `spec.tls.frontend`
//! → client-certificate validation on its TLS listeners. Translation (`gateway_api`) and
//! status (`conditions`) read the same verdicts, so `/status` cannot say a policy applies
//! that the proxies do not apply, or the reverse.
//!
//! Invalid trust never turns into no checking: a policy whose CA cannot be had still makes
//! its Services TLS, with nothing trusted (every connection fails, 503), as the spec asks; a
//! listener whose client CA cannot be had is not served at all.

use std::collections::BTreeMap;

use crate::model::core::ConfigMap;
use crate::model::gateway_api as gw;
use crate::xds::plan::{
    ClientValidation, PortSel, ProxyPlan, San, SecretRef, ServiceRef, Trust, UpstreamTls,
    UpstreamTlsKey,
};

use super::index::Index;
use super::listeners::Owner;
use super::rules::ref_permitted;

/// A condition's outcome: holds, or does not with the spec's reason and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Outcome {
    fn ok(reason: &'static str) -> Self {
        Outcome {
            ok: true,
            reason,
            message: String::new(),
        }
    }

    fn fail(reason: &'static str, message: String) -> Self {
        Outcome {
            ok: false,
            reason,
            message,
        }
    }
}

/// A BackendTLSPolicy's `Accepted` and `ResolvedRefs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: Outcome,
    pub resolved: Outcome,
    /// The Services it targets (group "", kind Service), in its namespace.
    pub services: Vec<ServiceRef>,
}

/// Every BackendTLSPolicy of the model, resolved.
#[derive(Debug, Default)]
pub struct Policies {
    /// The winning policy's TLS per Service (and port name), client certificate unset (it
    /// is the Gateway's).
    pub tls: BTreeMap<UpstreamTlsKey, UpstreamTls>,
    /// By (namespace, name).
    pub verdicts: BTreeMap<(String, String), Verdict>,
}

/// The CA bundle of `refs` (ConfigMaps' `ca.crt`): the valid ones concatenated, with the
/// first problem. `bad_kind` is the reason a reference to another kind gets
/// (`InvalidKind` for BackendTLSPolicy, `InvalidCACertificateKind` for a Gateway).
/// `permitted` says whether a reference to another namespace is allowed.
pub fn ca_bundle<'r>(
    ix: &Index<'_>,
    refs: impl IntoIterator<Item = (&'r str, &'r str, &'r str, &'r str)>,
    bad_kind: &'static str,
    permitted: impl Fn(&str, &str) -> bool,
    checked: &mut Checked,
) -> (Trust, Option<Outcome>) {
    let mut pem = String::new();
    let mut problem = None;
    for (group, kind, ns, name) in refs {
        let failed = if !(group.is_empty() && kind == "ConfigMap") {
            Some(Outcome::fail(
                bad_kind,
                format!(
                    "caCertificateRef {group}/{kind} {name}: only ConfigMaps (group \"\") hold CA certificates"
                ),
            ))
        } else if !permitted(ns, name) {
            Some(Outcome::fail(
                "RefNotPermitted",
                format!("ConfigMap {ns}/{name}: no ReferenceGrant in {ns} allows it"),
            ))
        } else {
            match ix.config_maps.get(&(ns, name)) {
                None => Some(Outcome::fail(
                    "InvalidCACertificateRef",
                    format!("ConfigMap {ns}/{name} is not in the repository"),
                )),
                Some(cm) => match checked
                    .entry((ns.to_owned(), name.to_owned()))
                    .or_insert_with(|| check_bundle(cm).map(|_| ()))
                {
                    Ok(()) => {
                        let text = &cm.data[ConfigMap::CA_KEY];
                        pem.push_str(text.trim_end());
                        pem.push('\n');
                        None
                    }
                    Err(why) => Some(Outcome::fail(
                        "InvalidCACertificateRef",
                        format!("ConfigMap {ns}/{name}: {why}"),
                    )),
                },
            }
        };
        if problem.is_none() {
            problem = failed;
        }
    }
    let trust = if pem.is_empty() {
        Trust::Nothing(
            problem
                .as_ref()
                .map_or("no CA certificate".into(), |p| p.message.clone()),
        )
    } else {
        Trust::Pem(pem)
    };
    (trust, problem)
}

/// ConfigMaps whose `ca.crt` was checked, with the outcome: a bundle many policies name
/// is parsed once (10,000 policies on 50 bundles: 50 parses, not 10,000).
pub type Checked = BTreeMap<(String, String), Result<(), String>>;

/// A ConfigMap's `ca.crt`, when it holds only parseable certificates.
fn check_bundle(cm: &ConfigMap) -> Result<&str, String> {
    let text = cm.data.get(ConfigMap::CA_KEY).ok_or_else(|| {
        "has no key ca.crt; valid: data.ca.crt holding PEM certificates".to_owned()
    })?;
    let mut n = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| {
            format!("ca.crt is not PEM ({e}); valid: -----BEGIN CERTIFICATE----- blocks")
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "ca.crt holds a {} block; valid: CERTIFICATE blocks only",
                pem.label
            ));
        }
        pem.parse_x509()
            .map_err(|e| format!("ca.crt holds a certificate that does not parse: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err(
            "ca.crt holds no certificate; valid: -----BEGIN CERTIFICATE----- blocks".into(),
        );
    }
    Ok(text)
}

/// Resolves every BackendTLSPolicy: which one applies to each Service (and port name), and
/// each policy's conditions. Of two policies with the same target (Service and sectionName,
/// or both none) the older wins (creation, then namespace/name: GEP-713); a policy with a
/// sectionName and one without do not conflict, the sectionName one is more specific.
pub fn policies(ix: &Index<'_>) -> Policies {
    let mut out = Policies::default();
    // key → candidates (age, ns, name)
    let mut claims: BTreeMap<UpstreamTlsKey, Vec<(i64, String, String)>> = BTreeMap::new();
    let mut checked = Checked::new();
    let mut computed: BTreeMap<(String, String), UpstreamTls> = BTreeMap::new();
    for p in &ix.backend_tls_policies {
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        let id = (ns.to_owned(), p.metadata.name.clone());
        let v = &p.spec.validation;
        let (trust, problem) = match v.well_known_ca_certificates.as_deref() {
            Some(_) => (Trust::System, None),
            None => ca_bundle(
                ix,
                v.ca_certificate_refs
                    .iter()
                    .map(|r| (r.group.as_str(), r.kind.as_str(), ns, r.name.as_str())),
                "InvalidKind",
                // A BackendTLSPolicy's references are local.
                |_, _| true,
                &mut checked,
            ),
        };
        let mut services = Vec::new();
        let mut target_problem = None;
        for t in &p.spec.target_refs {
            if !(t.group.is_empty() && t.kind == "Service") {
                target_problem.get_or_insert_with(|| {
                    Outcome::fail(
                        "TargetNotFound",
                        format!(
                            "targetRef {}/{} {}: only Services (group \"\") are targeted",
                            t.group, t.kind, t.name
                        ),
                    )
                });
                continue;
            }
            let service = ServiceRef {
                name: t.name.clone(),
                namespace: ns.to_owned(),
            };
            let key = UpstreamTlsKey {
                service: service.clone(),
                port: t.section_name.clone().map_or(PortSel::Any, PortSel::Name),
            };
            claims.entry(key).or_default().push((
                p.metadata.created.unwrap_or(i64::MAX),
                id.0.clone(),
                id.1.clone(),
            ));
            if !services.contains(&service) {
                services.push(service);
            }
        }
        computed.insert(
            id.clone(),
            UpstreamTls {
                sni: Some(v.hostname.clone()),
                trust: trust.clone(),
                // subjectAltNames replace the hostname check when given.
                names: if v.subject_alt_names.is_empty() {
                    vec![San::Dns(v.hostname.clone())]
                } else {
                    v.subject_alt_names
                        .iter()
                        .map(|s| match (&s.hostname, &s.uri) {
                            (_, Some(u)) => San::Uri(u.clone()),
                            (Some(h), None) => San::Dns(h.clone()),
                            (None, None) => San::Dns(v.hostname.clone()),
                        })
                        .collect()
                },
                client_cert: None,
                source: format!("BackendTLSPolicy {}/{}", id.0, id.1),
            },
        );
        let no_ca = matches!(trust, Trust::Nothing(_));
        out.verdicts.insert(
            id,
            Verdict {
                accepted: match (&target_problem, no_ca) {
                    (_, true) => Outcome::fail(
                        "NoValidCACertificate",
                        problem
                            .as_ref()
                            .map_or_else(String::new, |p| p.message.clone()),
                    ),
                    (Some(t), false) if services.is_empty() => t.clone(),
                    _ => Outcome::ok("Accepted"),
                },
                resolved: problem.unwrap_or_else(|| Outcome::ok("ResolvedRefs")),
                services,
            },
        );
    }
    for (key, mut candidates) in claims {
        candidates.sort();
        let (_, ns, name) = &candidates[0];
        let id = (ns.clone(), name.clone());
        if let Some(tls) = computed.get(&id) {
            out.tls.insert(key.clone(), tls.clone());
        }
        for (_, ns, name) in &candidates[1..] {
            if let Some(v) = out.verdicts.get_mut(&(ns.clone(), name.clone())) {
                v.accepted = Outcome::fail(
                    "Conflicted",
                    format!(
                        "BackendTLSPolicy {}/{} is older and targets the same Service {}{}",
                        id.0,
                        id.1,
                        key.service.name,
                        match &key.port {
                            PortSel::Name(n) => format!(" port {n}"),
                            _ => String::new(),
                        }
                    ),
                );
            }
        }
    }
    // A conflicted policy applies nowhere, even where it has no rival.
    let losers: Vec<String> = out
        .verdicts
        .iter()
        .filter(|(_, v)| v.accepted.reason == "Conflicted")
        .map(|((ns, n), _)| format!("BackendTLSPolicy {ns}/{n}"))
        .collect();
    out.tls.retain(|_, t| !losers.contains(&t.source));
    out
}

/// Gives `plan` the policies of the Services it sends to, each with `client_cert` (the
/// Gateway's; a waypoint has none).
pub fn apply(policies: &Policies, plan: &mut ProxyPlan, client_cert: Option<&SecretRef>) {
    if policies.tls.is_empty() {
        return;
    }
    let mut services: Vec<ServiceRef> = plan
        .backends()
        .into_iter()
        .map(|b| ServiceRef {
            name: b.service,
            namespace: b.namespace,
        })
        .collect();
    services.dedup();
    // The policies of each backend Service: a range of the map (keys order by Service,
    // `Any` first), not a scan of every policy per proxy.
    for service in services {
        let from = UpstreamTlsKey {
            service,
            port: PortSel::Any,
        };
        let of_service = policies
            .tls
            .range(&from..)
            .take_while(|(k, _)| k.service == from.service);
        for (key, tls) in of_service {
            plan.upstream_tls.insert(
                key.clone(),
                UpstreamTls {
                    client_cert: client_cert.cloned(),
                    ..tls.clone()
                },
            );
        }
    }
}

/// The Gateway's `spec.tls.backend.clientCertificateRef`: the Secret it shows backends, or
/// why it cannot (`InvalidClientCertificateRef`, `RefNotPermitted`). A missing or unreadable
/// Secret is known only with the certificates (status, emission).
pub fn client_certificate(
    ix: &Index<'_>,
    gateway: &gw::Gateway,
) -> Option<Result<SecretRef, Outcome>> {
    let r = gateway
        .spec
        .tls
        .as_ref()?
        .backend
        .as_ref()?
        .client_certificate_ref
        .as_ref()?;
    let gw_ns = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let ns = r.namespace.as_deref().unwrap_or(gw_ns);
    Some(if !r.is_core("Secret") {
        Err(Outcome::fail(
            "InvalidClientCertificateRef",
            format!(
                "clientCertificateRef {}/{} {}: valid: a Secret (group \"\")",
                r.group, r.kind, r.name
            ),
        ))
    } else if !ref_permitted(
        ix,
        &Owner {
            kind: "Gateway",
            namespace: gw_ns,
            name: &gateway.metadata.name,
        },
        "Secret",
        ns,
        &r.name,
    ) {
        Err(Outcome::fail(
            "RefNotPermitted",
            format!(
                "clientCertificateRef {ns}/{}: no ReferenceGrant in {ns} allows the Gateway to use it",
                r.name
            ),
        ))
    } else {
        Ok(SecretRef {
            namespace: ns.to_owned(),
            name: r.name.clone(),
        })
    })
}

/// The client-certificate validation of a Gateway's TLS listener on `port` (`perPort`, else
/// `default`): `None` when none is configured, `Err` when its CA cannot be had (the listener
/// is then not served).
pub fn frontend_validation(
    ix: &Index<'_>,
    gateway: &gw::Gateway,
    port: u16,
) -> Option<Result<ClientValidation, Outcome>> {
    let f = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let config = f
        .per_port
        .iter()
        .find(|p| p.port == port)
        .map_or(&f.default, |p| &p.tls);
    let v = config.validation.as_ref()?;
    let gw_ns = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let owner = Owner {
        kind: "Gateway",
        namespace: gw_ns,
        name: &gateway.metadata.name,
    };
    let (trust, problem) = ca_bundle(
        ix,
        v.ca_certificate_refs.iter().map(|r| {
            (
                r.group.as_str(),
                r.kind.as_str(),
                r.namespace.as_deref().unwrap_or(gw_ns),
                r.name.as_str(),
            )
        }),
        "InvalidCACertificateKind",
        |ns, name| ref_permitted(ix, &owner, "ConfigMap", ns, name),
        &mut Checked::new(),
    );
    Some(match (trust, problem) {
        (Trust::Nothing(_), Some(p)) => Err(p),
        (trust, _) => Ok(ClientValidation {
            trust,
            allow_insecure: v.mode == gw::FrontendValidation::ALLOW_INSECURE_FALLBACK,
        }),
    })
}

//! TLS contexts beyond serving a certificate: towards backends (`UpstreamTlsContext`, from
//! BackendTLSPolicy or a DestinationRule) and client-certificate validation on a listener's
//! chain. Trust and client pairs that live in `--certs` go over SDS; CA bundles from the
//! repository are public and go inline.

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
    certificate_validation_context, common_tls_context, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};

use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::{
    Backend, ClientValidation, PortSel, ProxyPlan, San, ServiceRef, Trust, UpstreamTls,
    UpstreamTlsKey,
};

use super::common::{sds, secret_name};

/// The SDS name of a Secret's CA bundle (`ca.crt`), Istio's convention.
pub fn ca_secret_name(namespace: &str, name: &str) -> String {
    format!("{}-cacert", secret_name(namespace, name))
}

/// The upstream TLS of backend `b`: the entry of its port number, else of its port's name
/// (the endpoints file's `portName`), else of the whole Service.
pub(super) fn for_backend<'p>(
    plan: &'p ProxyPlan,
    b: &Backend,
    endpoints: Option<&Endpoints>,
) -> Option<&'p UpstreamTls> {
    if plan.upstream_tls.is_empty() {
        return None;
    }
    let service = ServiceRef {
        name: b.service.clone(),
        namespace: b.namespace.clone(),
    };
    let key = |port| UpstreamTlsKey {
        service: service.clone(),
        port,
    };
    let port_name = endpoints
        .and_then(|e| e.entries.get(&b.endpoints_key()))
        .and_then(|e| e.port_name.clone());
    plan.upstream_tls
        .get(&key(PortSel::Number(b.port)))
        .or_else(|| port_name.and_then(|n| plan.upstream_tls.get(&key(PortSel::Name(n)))))
        .or_else(|| plan.upstream_tls.get(&key(PortSel::Any)))
}

/// How a peer's certificate is checked, or why it cannot be (then nothing may connect).
fn validation(
    trust: &Trust,
    names: &[San],
    certs: Option<&Certs>,
) -> Result<Option<common_tls_context::ValidationContextType>, String> {
    use common_tls_context::ValidationContextType as V;
    let matchers: Vec<SubjectAltNameMatcher> = names
        .iter()
        .map(|n| {
            let (t, v) = match n {
                San::Dns(d) => (subject_alt_name_matcher::SanType::Dns, d),
                San::Uri(u) => (subject_alt_name_matcher::SanType::Uri, u),
            };
            SubjectAltNameMatcher {
                san_type: t as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(v.clone())),
                    ..StringMatcher::default()
                }),
                ..SubjectAltNameMatcher::default()
            }
        })
        .collect();
    let inline = |trust: CertificateValidationContext| {
        Ok(Some(V::ValidationContext(CertificateValidationContext {
            match_typed_subject_alt_names: matchers.clone(),
            ..trust
        })))
    };
    match trust {
        Trust::Pem(pem) => inline(CertificateValidationContext {
            trusted_ca: Some(super::common::inline_bytes(pem.as_bytes())),
            ..CertificateValidationContext::default()
        }),
        Trust::System => inline(CertificateValidationContext {
            system_root_certs: Some(certificate_validation_context::SystemRootCerts {}),
            ..CertificateValidationContext::default()
        }),
        Trust::Secret(s) => {
            if !certs.is_some_and(|c| {
                c.secret_cas
                    .contains_key(&(s.namespace.clone(), s.name.clone()))
            }) {
                return Err(match certs {
                    Some(c) => c.missing(&format!(
                        "the CA bundle secrets/{}/{}/ca.crt",
                        s.namespace, s.name
                    )),
                    None => "serve has no --certs to read its CA bundle from".into(),
                });
            }
            Ok(Some(V::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: matchers.clone(),
                        ..CertificateValidationContext::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(&ca_secret_name(
                        &s.namespace,
                        &s.name,
                    ))),
                    ..Default::default()
                },
            )))
        }
        Trust::Nothing(why) => Err(why.clone()),
        Trust::Unchecked => Ok(None),
    }
}

/// The TLS context towards a backend. `http2`: the cluster speaks HTTP/2 (gRPC), which over
/// TLS is negotiated by ALPN. Errors say why nothing may be sent to the backend.
pub(super) fn upstream(
    u: &UpstreamTls,
    http2: bool,
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
    backend: &str,
) -> Result<UpstreamTlsContext, String> {
    let validation_context_type = validation(&u.trust, &u.names, certs)?;
    let mut pairs = Vec::new();
    if let Some(c) = &u.client_cert {
        if certs.is_some_and(|x| {
            x.secrets
                .contains_key(&(c.namespace.clone(), c.name.clone()))
        }) {
            pairs.push(sds(&secret_name(&c.namespace, &c.name)));
        } else {
            // The connection is still made: a backend that does not ask for one works.
            warnings.push(format!(
                "{backend}: client certificate {}/{} not shown to the backend: {}",
                c.namespace,
                c.name,
                certs.map_or("serve has no --certs".into(), |x| x
                    .missing(&format!("secrets/{}/{}", c.namespace, c.name)))
            ));
        }
    }
    Ok(UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec![if http2 { "h2" } else { "http/1.1" }.into()],
            tls_certificate_sds_secret_configs: pairs,
            validation_context_type,
            ..CommonTlsContext::default()
        }),
        sni: u.sni.clone().unwrap_or_default(),
        ..UpstreamTlsContext::default()
    })
}

/// The validation context of a chain that checks client certificates, and whether a
/// certificate is required.
pub(super) fn client_validation(
    v: &ClientValidation,
    certs: Option<&Certs>,
) -> Result<(Option<common_tls_context::ValidationContextType>, bool), String> {
    let mut ctx = validation(&v.trust, &[], certs)?;
    if v.allow_insecure {
        // Ask for a certificate, accept any (or none): AllowInsecureFallback.
        match &mut ctx {
            Some(common_tls_context::ValidationContextType::ValidationContext(c)) => {
                c.trust_chain_verification =
                    certificate_validation_context::TrustChainVerification::AcceptUntrusted as i32;
            }
            Some(common_tls_context::ValidationContextType::CombinedValidationContext(c)) => {
                if let Some(d) = &mut c.default_validation_context {
                    d.trust_chain_verification =
                        certificate_validation_context::TrustChainVerification::AcceptUntrusted
                            as i32;
                }
            }
            _ => {}
        }
    }
    Ok((ctx, !v.allow_insecure))
}

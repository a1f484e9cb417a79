//! Secrets (SDS): the certificates the proxy's listeners and clusters name, and nothing
//! else — a proxy never receives another proxy's key.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};

use crate::xds::certs::{Certs, KeyPair};
use crate::xds::plan::{ProxyPlan, SecretRef};

use super::common::{MESH_CA, MESH_IDENTITY, Variant, inline_bytes, secret_name};
use super::tls::ca_secret_name;

/// The secrets of `plan`'s proxy; `mesh`: whether its listeners or clusters use mesh TLS.
pub(super) fn secrets(
    plan: &ProxyPlan,
    certs: Option<&Certs>,
    mesh: bool,
    variant: &Variant,
) -> BTreeMap<String, Secret> {
    let Some(certs) = certs else {
        return BTreeMap::new();
    };
    let tls_pair = |p: &KeyPair| {
        secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline_bytes(&p.chain_pem)),
            private_key: Some(inline_bytes(p.key.pem())),
            ..TlsCertificate::default()
        })
    };
    let mut secrets: Vec<(String, secret::Type)> = Vec::new();
    if mesh {
        if let Some(p) = certs.identities.get(&plan.proxy.id()) {
            secrets.push((MESH_IDENTITY.into(), tls_pair(p)));
        }
        if let Some(ca) = &certs.mesh_ca {
            secrets.push((
                MESH_CA.into(),
                secret::Type::ValidationContext(CertificateValidationContext {
                    trusted_ca: Some(inline_bytes(ca)),
                    ..CertificateValidationContext::default()
                }),
            ));
        }
    }
    if !variant.proxyless {
        for secret in plan.listeners.values().flat_map(|l| l.secrets()) {
            let SecretRef { namespace, name } = secret;
            if let Some(p) = certs.secrets.get(&(namespace.clone(), name.clone())) {
                secrets.push((secret_name(namespace, name), tls_pair(p)));
            }
        }
    }
    // Client certificates towards backends, and CA bundles (`Trust::Secret`) of upstream
    // TLS and client validation. A pair may also be a listener's: pushed once (the map
    // below keeps one).
    for secret in plan.tls_secrets() {
        let SecretRef { namespace, name } = secret;
        let key = (namespace.clone(), name.clone());
        if let Some(p) = certs.secrets.get(&key)
            && plan
                .upstream_tls
                .values()
                .any(|u| u.client_cert.as_ref() == Some(secret))
        {
            secrets.push((secret_name(namespace, name), tls_pair(p)));
        }
        if let Some(ca) = certs.secret_cas.get(&key) {
            secrets.push((
                ca_secret_name(namespace, name),
                secret::Type::ValidationContext(CertificateValidationContext {
                    trusted_ca: Some(inline_bytes(ca)),
                    ..CertificateValidationContext::default()
                }),
            ));
        }
    }
    secrets
        .into_iter()
        .map(|(name, t)| {
            (
                name.clone(),
                Secret {
                    name,
                    r#type: Some(t),
                },
            )
        })
        .collect()
}

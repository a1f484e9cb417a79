//! What a proxy's resources read from the inputs besides its plan: the endpoints file and
//! the certificates given to `serve`.
//!
//! An endpoints or certificate change re-encodes only the proxies whose reads changed, so
//! this must name **everything** the emitter (`emit::resources`, and `emit::hbone`'s
//! `tunnels` and `waypoint`) looks at in those inputs for a plan. A read
//! missing here serves a stale resource; an extra read only costs an encoding. Keep it in
//! step with the emitter: `tests/inputs.rs` checks, over a sequence of changes, that a
//! snapshot updated this way is byte for byte a fresh build.

use std::sync::Arc;

use super::certs::Certs;
use super::endpoints::{Endpoints, Entry};
use super::plan::ProxyPlan;

/// What the served config is built from besides the commit: files given to `serve`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    pub endpoints: Option<Arc<Endpoints>>,
    pub certs: Option<Arc<Certs>>,
}

impl Inputs {
    /// The very same files (not just equal ones): cheap, and what a reload replaces.
    pub fn same_as(&self, other: &Inputs) -> bool {
        same(&self.endpoints, &other.endpoints) && same(&self.certs, &other.certs)
    }
}

fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// What proxy `id` with `plan` reads of the inputs.
#[derive(Debug)]
pub struct Reads<'a> {
    id: &'a str,
    /// Endpoints entries read whole (presence, addresses, vip, appProtocol): every backend
    /// (clusters, their load assignments, h2c), the backends sent through a waypoint (their
    /// vip) and those waypoints' HBONE Service ports. Sorted, without duplicates.
    entries: Vec<String>,
    /// A waypoint reads every entry of the namespaces bound to it (one filter chain per
    /// Service port with a vip).
    bound_namespaces: &'a [String],
    /// Mesh TLS: the proxy's own identity and the mesh CA (HBONE out or in).
    mesh: bool,
    /// Secrets: HTTPS listeners' certificates, and the client certificates and CA bundles
    /// of TLS towards backends and of client validation, as `Certs` keys them.
    tls_secrets: Vec<(String, String)>,
}

/// What `plan` makes proxy `id` read; see [`Reads::same`].
pub fn reads<'a>(id: &'a str, plan: &'a ProxyPlan) -> Reads<'a> {
    let mut entries: Vec<String> = plan
        .backends()
        .iter()
        .chain(plan.via_waypoint.keys())
        .map(|b| b.endpoints_key())
        .chain(
            plan.via_waypoint
                .values()
                .map(|w| w.hbone_backend().endpoints_key()),
        )
        .collect();
    entries.sort();
    entries.dedup();
    let mut tls_secrets: Vec<(String, String)> = plan
        .listeners
        .values()
        .flat_map(|l| l.secrets())
        .chain(plan.tls_secrets())
        .map(|s| (s.namespace.clone(), s.name.clone()))
        .collect();
    tls_secrets.sort();
    tls_secrets.dedup();
    Reads {
        id,
        entries,
        bound_namespaces: plan
            .waypoint
            .as_ref()
            .map_or(&[][..], |w| w.namespaces.as_slice()),
        mesh: plan.waypoint.is_some() || !plan.via_waypoint.is_empty(),
        tls_secrets,
    }
}

impl Reads<'_> {
    /// Whether the proxy reads the same from `a` as from `b`: then its resources (and
    /// warnings) built from either are identical.
    pub fn same(&self, a: &Inputs, b: &Inputs) -> bool {
        self.same_endpoints(a.endpoints.as_deref(), b.endpoints.as_deref())
            && self.same_certs(a.certs.as_deref(), b.certs.as_deref())
    }

    fn same_endpoints(&self, a: Option<&Endpoints>, b: Option<&Endpoints>) -> bool {
        // Whether there is a file at all decides EDS or DNS clusters for every proxy.
        let (a, b) = match (a, b) {
            (None, None) => return true,
            (Some(a), Some(b)) if std::ptr::eq(a, b) => return true,
            (Some(a), Some(b)) => (a, b),
            _ => return false,
        };
        self.entries
            .iter()
            .all(|k| a.entries.get(k) == b.entries.get(k))
            && (self.bound_namespaces.is_empty() || self.bound(a).eq(self.bound(b)))
    }

    /// The entries of the bound namespaces, as the waypoint selects them.
    fn bound<'e>(&self, eps: &'e Endpoints) -> impl Iterator<Item = (&'e String, &'e Entry)> {
        eps.entries
            .iter()
            .filter(|(_, e)| self.bound_namespaces.contains(&e.service.namespace))
    }

    fn same_certs(&self, a: Option<&Certs>, b: Option<&Certs>) -> bool {
        if !self.mesh && self.tls_secrets.is_empty() {
            return true;
        }
        let (a, b) = match (a, b) {
            (None, None) => return true,
            (Some(a), Some(b)) if std::ptr::eq(a, b) => return true,
            (Some(a), Some(b)) => (a, b),
            _ => return false,
        };
        // The directory is named in the warnings of what is missing from it.
        a.dir == b.dir
            && (!self.mesh
                || (a.identities.get(self.id) == b.identities.get(self.id)
                    && a.mesh_ca == b.mesh_ca))
            && self.tls_secrets.iter().all(|s| {
                a.secrets.get(s) == b.secrets.get(s) && a.secret_cas.get(s) == b.secret_cas.get(s)
            })
    }
}

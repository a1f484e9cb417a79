//! The Gateway API rules every frontend and the status share: which route attaches to
//! which listener, hostname intersection and listener specificity, the precedence order of
//! matches, and which references (backends, certificates) a ReferenceGrant permits. The
//! translation of proxies and the Gateway API status both ask these functions, so what
//! the status says is what the proxies do.

use crate::model::gateway_api::{self as gw, HttpRoute, Listener, ReferenceGrant};

use super::index::Index;
use super::listeners::Owner;

/// How routes are ordered within a virtual host: match precedence, then the route's
/// namespace/name (Git has no creation time, the spec's first tie-breaker; namespace/name
/// is its second), then rule and match order.
pub type SortKey = (gw::Precedence, String, String, usize, usize);

/// The sort key of match `mi` of rule `ri` of `route`.
pub fn sort_key(
    m: &gw::HttpRouteMatch,
    route_ns: &str,
    route: &HttpRoute,
    ri: usize,
    mi: usize,
) -> SortKey {
    (
        m.precedence(),
        route_ns.to_owned(),
        route.metadata.name.clone(),
        ri,
        mi,
    )
}

/// Lower is more specific: exact hostname, then wildcards with more labels, then none.
pub type Specificity = (u8, std::cmp::Reverse<usize>);

pub fn specificity(hostname: Option<&str>) -> Specificity {
    match hostname {
        Some(h) if !h.starts_with('*') => (0, std::cmp::Reverse(0)),
        Some(h) => (1, std::cmp::Reverse(h.split('.').count())),
        None => (2, std::cmp::Reverse(0)),
    }
}

/// Whether `route` (of `kind`) attaches to `listener` of `owner` (a Gateway, or a
/// ListenerSet adding listeners to one; Gateway API §ParentReference): a parentRef names
/// the owner (and the listener, when it gives a sectionName or port), and the listener
/// allows the route.
pub fn attaches(
    ix: &Index<'_>,
    route: &HttpRoute,
    kind: &str,
    route_ns: &str,
    owner: &Owner<'_>,
    listener: &Listener,
) -> bool {
    let parent_matches = route
        .spec
        .parent_refs
        .iter()
        .any(|p| names_owner(p, route_ns, owner) && names_listener(p, listener));
    parent_matches && listener_allows(ix, listener, kind, route_ns, owner.namespace)
}

/// Whether parentRef `p` of a route in `route_ns` names `owner`.
pub fn names_owner(p: &gw::ParentRef, route_ns: &str, owner: &Owner<'_>) -> bool {
    p.group == gw::GROUP
        && p.kind == owner.kind
        && p.name == owner.name
        && p.namespace.as_deref().unwrap_or(route_ns) == owner.namespace
}

/// Whether parentRef `p` admits `listener` (its sectionName and port, when given).
pub fn names_listener(p: &gw::ParentRef, listener: &Listener) -> bool {
    p.section_name.as_deref().is_none_or(|s| s == listener.name)
        && p.port.is_none_or(|port| port == listener.port)
}

/// The route kinds a listener protocol carries.
pub fn protocol_kinds(protocol: &str) -> &'static [&'static str] {
    match protocol {
        "HTTP" | "HTTPS" => &["HTTPRoute", "GRPCRoute"],
        "TLS" => &["TLSRoute"],
        "TCP" => &["TCPRoute"],
        "UDP" => &["UDPRoute"],
        _ => &[],
    }
}

/// Whether `listener` accepts a route of `kind` from namespace `route_ns`.
pub fn listener_allows(
    ix: &Index<'_>,
    listener: &Listener,
    kind: &str,
    route_ns: &str,
    gw_ns: &str,
) -> bool {
    let kinds = listener.allowed_routes.as_ref().map(|a| a.kinds.as_slice());
    // A kind the listener's protocol carries, and (when the listener lists kinds) listed.
    let kind_ok = protocol_kinds(&listener.protocol).contains(&kind)
        && match kinds {
            Some(k) if !k.is_empty() => k.iter().any(|k| k.group == gw::GROUP && k.kind == kind),
            _ => true,
        };
    if !kind_ok {
        return false;
    }
    let allowed = listener.allowed_routes.as_ref().map(|a| &a.namespaces);
    match allowed.map(|n| n.from) {
        None | Some("Same") => route_ns == gw_ns,
        Some("All") => true,
        Some("Selector") => allowed
            .and_then(|n| n.selector.as_ref())
            .is_some_and(|s| ix.namespace_selected(s, route_ns)),
        Some(_) => false,
    }
}

/// The hostnames a route serves on a listener: the intersection, each as the more specific
/// of the pair. `*` when neither side restricts.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let Some(l) = listener else {
        return if route.is_empty() {
            vec!["*".into()]
        } else {
            route.to_vec()
        };
    };
    if route.is_empty() {
        return vec![l.to_owned()];
    }
    let mut out: Vec<String> = route
        .iter()
        .filter_map(|r| {
            if host_within(r, l) {
                Some(r.clone())
            } else if host_within(l, r) {
                Some(l.to_owned())
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether every name `inner` matches is also matched by `outer`.
fn host_within(inner: &str, outer: &str) -> bool {
    if inner == outer {
        return true;
    }
    match outer.strip_prefix("*.") {
        // `*.example.com` covers `a.example.com`, `a.b.example.com` and `*.a.example.com`,
        // but not `example.com`.
        Some(suffix) => inner
            .trim_start_matches("*.")
            .ends_with(&format!(".{suffix}")),
        None => false,
    }
}

/// Whether a backendRef names a Service (the only backend kind tidegate routes to).
pub fn is_service(b: &gw::HttpBackendRef) -> bool {
    b.group.is_empty() && b.kind == "Service"
}

/// Whether a route of `route_kind` in `route_ns` may send to Service `ns`/`name`: its own
/// namespace, or a ReferenceGrant there allows it. Translation and route status both ask
/// this, so what the status says is what the proxies do.
pub fn service_permitted(
    grants: &[&ReferenceGrant],
    route_kind: &str,
    route_ns: &str,
    ns: &str,
    name: &str,
) -> bool {
    ns == route_ns
        || grants.iter().any(|g| {
            g.metadata.namespace.as_deref() == Some(ns) && g.allows(route_kind, route_ns, name)
        })
}

/// Whether the listeners of `owner` (a Gateway or a ListenerSet) may use Secret
/// `ns`/`name` for TLS: the owner's own namespace, or a ReferenceGrant there allows objects
/// of the owner's kind from its namespace.
pub fn secret_permitted(ix: &Index<'_>, owner: &Owner<'_>, ns: &str, name: &str) -> bool {
    ref_permitted(ix, owner, "Secret", ns, name)
}

/// Whether `owner` may use the core object `kind`/`name` in `ns` (its own namespace, or a
/// ReferenceGrant there allows it): Secrets, and ConfigMaps holding CA bundles.
pub fn ref_permitted(ix: &Index<'_>, owner: &Owner<'_>, kind: &str, ns: &str, name: &str) -> bool {
    ns == owner.namespace
        || ix.grants.iter().any(|g| {
            g.metadata.namespace.as_deref() == Some(ns)
                && g.allows_ref(owner.kind, owner.namespace, kind, name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_intersection() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(intersect(None, &[]), v(&["*"]));
        assert_eq!(intersect(Some("a.example.com"), &[]), v(&["a.example.com"]));
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["a.example.com", "other.org"])),
            v(&["a.example.com"])
        );
        assert_eq!(
            intersect(Some("very.specific.com"), &v(&["*.specific.com"])),
            v(&["very.specific.com"])
        );
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["example.com"])),
            Vec::<String>::new()
        );
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["*.a.example.com"])),
            v(&["*.a.example.com"])
        );
    }
}

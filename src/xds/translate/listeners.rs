//! The listeners a Gateway serves: its own, then those its ListenerSets add, in the spec's
//! precedence order, each with the conflict (if any) that keeps it from being served.
//! Translation and status both read this list, so a listener the status calls conflicted
//! is one no proxy serves.

use std::collections::HashSet;

use foldhash::HashMap;

use crate::model::gateway_api::{self as gw, Listener, ListenerSet};
use crate::model::meta::ObjectMeta;

use super::index::Index;

/// The object a listener belongs to: routes attach to it by parentRef, and its namespace
/// is what `allowedRoutes.namespaces.from: Same` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner<'a> {
    /// `Gateway` or `ListenerSet`.
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
}

#[derive(Clone, Debug)]
pub struct Effective<'a> {
    pub listener: &'a Listener,
    pub owner: Owner<'a>,
    /// `HostnameConflict` or `ProtocolConflict` when an earlier listener has the port.
    pub conflict: Option<&'static str>,
}

/// A ListenerSet naming a Gateway, and whether the Gateway takes its listeners.
#[derive(Clone, Debug)]
pub struct SetState<'a> {
    pub set: &'a ListenerSet,
    /// `None`: accepted; otherwise the reason (`NotAllowed`, `ParentNotAccepted`) and why.
    pub refused: Option<(&'static str, String)>,
}

/// Creation order, as the spec breaks ties: oldest first (`created`: where in Git history
/// the object appeared; unknown sorts last), then namespace and name.
pub fn age_key(meta: &ObjectMeta) -> (i64, &str, &str) {
    (
        meta.created.unwrap_or(i64::MAX),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_str(),
    )
}

/// The ListenerSets that name `gateway`, oldest first, each accepted or not.
pub fn listener_sets<'a>(ix: &Index<'a>, gateway: &gw::Gateway) -> Vec<SetState<'a>> {
    let gw_ns = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let mut sets: Vec<&ListenerSet> = ix
        .listener_sets
        .get(&(gw_ns, gateway.metadata.name.as_str()))
        .cloned()
        .unwrap_or_default();
    sets.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    let allowed = gateway
        .spec
        .allowed_listeners
        .as_ref()
        .map(|a| &a.namespaces);
    sets.into_iter()
        .map(|set| {
            let ns = set.metadata.namespace.as_deref().unwrap_or_default();
            let ok = match allowed.map(|n| n.from) {
                None | Some("None") => false,
                Some("Same") => ns == gw_ns,
                Some("All") => true,
                Some("Selector") => allowed
                    .and_then(|n| n.selector.as_ref())
                    .is_some_and(|s| ix.namespace_selected(s, ns)),
                Some(_) => false,
            };
            SetState {
                set,
                refused: (!ok).then(|| {
                    (
                        "NotAllowed",
                        format!(
                            "Gateway {gw_ns}/{} does not allow ListenerSets from namespace {ns} (spec.allowedListeners)",
                            gateway.metadata.name
                        ),
                    )
                }),
            }
        })
        .collect()
}

/// Every listener `gateway` serves, in precedence order: the Gateway's own, then those of
/// its accepted ListenerSets (oldest first). A listener that conflicts with an earlier one
/// (that is itself served) carries the conflict and is not served: a second protocol on a
/// port (TCP and UDP on one port too), or a hostname the port already serves (TCP and UDP
/// listeners have none, so two on a port conflict).
pub fn effective<'a>(ix: &Index<'a>, gateway: &'a gw::Gateway) -> Vec<Effective<'a>> {
    let gw_owner = Owner {
        kind: "Gateway",
        namespace: gateway.metadata.namespace.as_deref().unwrap_or_default(),
        name: &gateway.metadata.name,
    };
    let own = gateway.spec.listeners.iter().map(|l| (l, gw_owner));
    let sets = listener_sets(ix, gateway);
    let added = sets
        .iter()
        .filter(|s| s.refused.is_none())
        .flat_map(|s| {
            let owner = Owner {
                kind: "ListenerSet",
                namespace: s.set.metadata.namespace.as_deref().unwrap_or_default(),
                name: &s.set.metadata.name,
            };
            s.set.spec.listeners.iter().map(move |l| (l, owner))
        })
        .collect::<Vec<_>>();
    // Per port: the protocol of its first served listener and the hostnames served on it
    // (a map, not a scan of the listeners before: a Gateway may have hundreds).
    let mut ports: HashMap<u16, (&str, HashSet<Option<&str>>)> = HashMap::default();
    let mut out: Vec<Effective<'a>> = Vec::new();
    for (listener, owner) in own.chain(added) {
        let hostname = listener.hostname.as_deref();
        let conflict = match ports.get_mut(&listener.port) {
            None => {
                ports.insert(
                    listener.port,
                    (listener.protocol.as_str(), HashSet::from_iter([hostname])),
                );
                None
            }
            Some((protocol, _)) if *protocol != listener.protocol => Some("ProtocolConflict"),
            Some((_, hosts)) => (!hosts.insert(hostname)).then_some("HostnameConflict"),
        };
        out.push(Effective {
            listener,
            owner,
            conflict,
        });
    }
    out
}

//! Age and generation of plain objects, from Git history (`gitsync::history`), set on the
//! model as `metadata.created` and `metadata.generation`:
//!
//! - the oldest of competing objects wins, as the spec says (TLSRoutes, TCPRoutes and
//!   UDPRoutes on one listener, ListenerSets on one Gateway, BackendTLSPolicies on one
//!   Service, DestinationRules on one host), not the first by name;
//! - status says which generation of a GatewayClass, Gateway, ListenerSet, L4 route or
//!   BackendTLSPolicy it describes
//!   (`observedGeneration`), as a controller does.
//!
//! Only those kinds are dated: each costs a walk through history, and they are few (routes
//! by the thousand are HTTPRoutes, whose ties are broken by name).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use git2::{Oid, Repository};

use super::config::Config;
use super::node::{Node, Value, parse_documents};
use crate::gitsync::history::{Probe, dated};
use crate::model::{Model, Object};

/// Whether an object is dated.
fn dated_kind(o: &Object) -> bool {
    matches!(
        o,
        Object::L4Route(_)
            | Object::ListenerSet(_)
            | Object::Gateway(_)
            | Object::GatewayClass(_)
            | Object::BackendTlsPolicy(_)
            | Object::DestinationRule(_)
    )
}

fn text(node: Option<&Node>) -> Option<&str> {
    match &node?.value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// A fingerprint of a node's value, positions left out (moving a block is no change).
fn fingerprint(node: &Node, h: &mut impl Hasher) {
    match &node.value {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Int(i) => (2u8, i).hash(h),
        Value::Float(f) => (3u8, f.to_bits()).hash(h),
        Value::Str(s) => (4u8, s).hash(h),
        Value::Seq(items) => {
            (5u8, items.len()).hash(h);
            for i in items {
                fingerprint(i, h);
            }
        }
        Value::Map(entries) => {
            (6u8, entries.len()).hash(h);
            for (k, v) in entries {
                fingerprint(k, h);
                fingerprint(v, h);
            }
        }
    }
}

/// The spec fingerprint of the object of `kind` named `name` in `namespace` among `docs`,
/// if it is there.
fn look(docs: &[Node], kind: &str, namespace: &str, name: &str) -> Option<u64> {
    docs.iter().find_map(|d| {
        let meta = d.field("metadata");
        let found = text(d.field("kind")) == Some(kind)
            && text(meta.and_then(|m| m.field("name"))) == Some(name)
            && text(meta.and_then(|m| m.field("namespace"))).unwrap_or_default() == namespace;
        found.then(|| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            if let Some(spec) = d.field("spec") {
                fingerprint(spec, &mut h);
            }
            h.finish()
        })
    })
}

/// Whether `config` has objects to date (else history need not be opened at all).
pub fn any_dated(config: &Config) -> bool {
    config.resources.iter().any(|r| dated_kind(&r.object))
}

/// Sets `metadata.created` and `metadata.generation` on the dated objects of `model` that
/// come from `resources/` of commit `sha` (`prefix`: the config root in the repository).
/// An object whose dates are unchanged stays the very object it was.
pub fn stamp(
    config: &Config,
    model: &mut Model,
    repo: &Repository,
    sha: &str,
    prefix: &str,
) -> Result<(), crate::gitsync::Error> {
    let wanted: Vec<(&str, &Object)> = config
        .resources
        .iter()
        .filter(|r| dated_kind(&r.object))
        .map(|r| (r.file.as_str(), &*r.object))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let probes: Vec<Probe> = wanted
        .iter()
        .map(|(file, _)| Probe {
            path: (*file).to_owned(),
        })
        .collect();
    // A file holds several objects: each version of it is parsed once, whatever the
    // number of probes it holds.
    let mut parsed: HashMap<Oid, Vec<Node>> = HashMap::new();
    let dates = dated(repo, sha, prefix, &probes, &mut |i, oid, bytes| {
        let docs = parsed.entry(oid).or_insert_with(|| {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| parse_documents(t).ok())
                .unwrap_or_default()
        });
        let (o, meta) = (wanted[i].1, wanted[i].1.meta());
        // Cluster-scoped objects (GatewayClass) have no namespace.
        let ns = meta.namespace.as_deref().unwrap_or_default();
        look(docs, o.kind(), ns, &meta.name)
    })?;
    for ((_, o), d) in wanted.iter().zip(dates) {
        let key = o.key();
        if let Some(slot) = model
            .objects
            .iter_mut()
            .find(|x| x.key() == key && x.kind() == o.kind())
            && (slot.meta().created, slot.meta().generation) != (Some(d.since), Some(d.generation))
        {
            let meta = Arc::make_mut(slot).meta_mut();
            meta.created = Some(d.since);
            meta.generation = Some(d.generation);
        }
    }
    Ok(())
}

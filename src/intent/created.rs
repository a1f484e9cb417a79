//! Creation times of the plain objects that compete (TLSRoutes, TCPRoutes and UDPRoutes on
//! one listener, ListenerSets on one Gateway): read from Git history (`gitsync::history`),
//! set on the model as `metadata.created`, so the oldest wins as the spec says, not the
//! first by name.

use std::sync::Arc;

use git2::Repository;

use super::config::Config;
use super::node::{Node, Value, parse_documents};
use crate::gitsync::history::{Probe, appeared};
use crate::model::{Model, Object};

/// Whether an object's creation time decides anything.
fn competes(o: &Object) -> bool {
    matches!(o, Object::L4Route(_) | Object::ListenerSet(_))
}

fn text(node: Option<&Node>) -> Option<&str> {
    match &node?.value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// Whether YAML `bytes` hold an object of `kind` named `name` in `namespace`.
fn holds(bytes: &[u8], kind: &str, namespace: &str, name: &str) -> bool {
    let Ok(docs) = std::str::from_utf8(bytes).map(parse_documents) else {
        return false;
    };
    docs.unwrap_or_default().iter().any(|d| {
        let meta = d.field("metadata");
        text(d.field("kind")) == Some(kind)
            && text(meta.and_then(|m| m.field("name"))) == Some(name)
            && text(meta.and_then(|m| m.field("namespace"))).unwrap_or_default() == namespace
    })
}

/// Sets `metadata.created` on the competing objects of `model` that come from
/// `resources/` of commit `sha` (`prefix`: the config root in the repository). Unchanged
/// objects stay the very objects they were unless their time is new to them.
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
        .filter(|r| competes(&r.object))
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
    let times = appeared(repo, sha, prefix, &probes, &mut |i, bytes| {
        let o = wanted[i].1;
        holds(bytes, o.kind(), o.namespace(), &o.meta().name)
    })?;
    for ((_, o), time) in wanted.iter().zip(times) {
        let key = o.key();
        if let Some(slot) = model
            .objects
            .iter_mut()
            .find(|x| x.key() == key && x.kind() == o.kind())
            && slot.meta().created != Some(time)
        {
            Arc::make_mut(slot).meta_mut().created = Some(time);
        }
    }
    Ok(())
}

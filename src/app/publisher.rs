//! The one task that publishes the served snapshot.
//!
//! Everything that changes what is served — a new commit's plans, a new endpoints file,
//! new certificates, a hand-made snapshot (tests) — is an [`Update`] sent on one bounded
//! channel. The publisher owns the [`SnapshotWriter`] and applies updates in the order
//! they were sent, each to its latest state: a commit is encoded with the newest inputs,
//! so it can never put back endpoints or certificates a later update replaced. Updates
//! queued together are folded into one build (the result is the same as applying them one
//! by one: a snapshot is a function of its plans and inputs). Encoding runs on the
//! blocking pool, never on the async workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::model::Model;
use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::ProxyPlan;
use crate::xds::snapshot::{Inputs, Origin, Snapshot, SnapshotWriter};

/// Updates waiting for the publisher. Senders wait when it is full: a burst of file
/// changes is held back rather than queued without bound.
pub const UPDATES: usize = 16;

pub enum Update {
    /// A validated commit: its plans (shared with the plan cache) and its model.
    Commit {
        origin: Origin,
        plans: BTreeMap<String, Arc<ProxyPlan>>,
        model: Arc<Model>,
        /// Told, once it is served, how long encoding it took.
        served: oneshot::Sender<Duration>,
    },
    /// A validated commit of a preview branch: served to proxies naming that branch, beside
    /// the followed branch's config (which it leaves alone).
    Preview {
        branch: String,
        origin: Origin,
        plans: BTreeMap<String, Arc<ProxyPlan>>,
        model: Arc<Model>,
        served: oneshot::Sender<Duration>,
    },
    /// A preview branch is no longer served (deleted past its grace period): its proxies
    /// get an empty config.
    DropPreview(String),
    Endpoints(Arc<Endpoints>),
    Certs(Arc<Certs>),
    /// Serve this snapshot as it is (with its own inputs) from now on.
    Replace(Snapshot, oneshot::Sender<Duration>),
}

/// Runs until every sender is gone.
pub async fn run(writer: SnapshotWriter, mut updates: mpsc::Receiver<Update>) {
    while let Some(first) = updates.recv().await {
        let mut batch = vec![first];
        while batch.len() < UPDATES {
            match updates.try_recv() {
                Ok(u) => batch.push(u),
                Err(_) => break,
            }
        }
        let current = writer.current();
        let applied = tokio::task::spawn_blocking(move || apply(&current, batch)).await;
        match applied {
            Ok((next, waiting, took)) => {
                if let Some(next) = next {
                    writer.publish(next);
                }
                for w in waiting {
                    let _ = w.send(took);
                }
            }
            // A panic while encoding: keep serving the current snapshot (senders waiting
            // see their channel closed).
            Err(e) => tracing::error!("building the snapshot failed: {e}"),
        }
    }
}

enum Base {
    Commit {
        origin: Origin,
        plans: BTreeMap<String, Arc<ProxyPlan>>,
        model: Arc<Model>,
    },
    Replace(Snapshot),
}

/// `current` with `batch` applied in order: the next snapshot (none if nothing changed),
/// who waits for it, and how long it took.
pub fn apply(
    current: &Snapshot,
    batch: Vec<Update>,
) -> (Option<Snapshot>, Vec<oneshot::Sender<Duration>>, Duration) {
    let started = Instant::now();
    let mut inputs = current.inputs().clone();
    let mut base = None;
    let mut waiting = Vec::new();
    // By branch, the latest of its changes: a commit, or `None` to stop serving it.
    let mut previews: BTreeMap<String, Option<PreviewCommit>> = BTreeMap::new();
    for u in batch {
        match u {
            Update::Preview {
                branch,
                origin,
                plans,
                model,
                served,
            } => {
                previews.insert(branch, Some((origin, plans, model)));
                waiting.push(served);
            }
            Update::DropPreview(branch) => {
                previews.insert(branch, None);
            }
            Update::Endpoints(e) => inputs.endpoints = Some(e),
            Update::Certs(c) => inputs.certs = Some(c),
            Update::Commit {
                origin,
                plans,
                model,
                served,
            } => {
                base = Some(Base::Commit {
                    origin,
                    plans,
                    model,
                });
                waiting.push(served);
            }
            Update::Replace(s, served) => {
                inputs = s.inputs().clone();
                base = Some(Base::Replace(s));
                waiting.push(served);
            }
        }
    }
    if !matches!(base, Some(Base::Replace(_))) && same_values(current.inputs(), &inputs) {
        // Equal files read again: keep the served ones, so nothing is compared or rebuilt.
        inputs = current.inputs().clone();
    }
    let main = match base {
        Some(Base::Commit {
            origin,
            plans,
            model,
        }) => Some(
            Snapshot::build_shared(origin, plans, inputs.clone(), Some(current)).with_model(model),
        ),
        Some(Base::Replace(s)) if s.inputs().same_as(&inputs) => Some(s),
        Some(Base::Replace(s)) => Some(s.with_inputs(inputs.clone())),
        None if current.inputs().same_as(&inputs) => None,
        None => Some(current.with_inputs(inputs.clone())),
    };
    let followed = main.as_ref().unwrap_or(current);
    let served = apply_previews(current.previews(), previews, &inputs, followed);
    let next = match (main, served) {
        (Some(mut m), served) => {
            m.set_previews(served.map_or_else(|| current.previews().clone(), Arc::new));
            Some(m)
        }
        (None, Some(served)) => Some(current.with_previews(Arc::new(served))),
        (None, None) => None,
    };
    (next, waiting, started.elapsed())
}

type PreviewCommit = (Origin, BTreeMap<String, Arc<ProxyPlan>>, Arc<Model>);

/// The preview branches to serve after `changes` and new `inputs`, or `None` if they are
/// the served ones. A preview reuses, per proxy, its own previous encoding or else the
/// followed branch's (`followed`, already rebuilt for `inputs`): a gateway the branch did
/// not change is encoded once for both.
fn apply_previews(
    served: &Arc<BTreeMap<String, Arc<Snapshot>>>,
    changes: BTreeMap<String, Option<PreviewCommit>>,
    inputs: &Inputs,
    followed: &Snapshot,
) -> Option<BTreeMap<String, Arc<Snapshot>>> {
    let mut next = BTreeMap::clone(served);
    let mut changed = false;
    for (branch, change) in changes {
        match change {
            None => changed |= next.remove(&branch).is_some(),
            Some((origin, plans, model)) => {
                let previous = next.get(&branch).cloned();
                let mut from: Vec<&Snapshot> = previous.iter().map(|p| &**p).collect();
                from.push(followed);
                let built =
                    Snapshot::build_from(origin, plans, inputs.clone(), &from).with_model(model);
                next.insert(branch, Arc::new(built));
                changed = true;
            }
        }
    }
    for preview in next.values_mut() {
        if !preview.inputs().same_as(inputs) {
            *preview = Arc::new(preview.with_inputs_sharing(inputs.clone(), &[followed]));
            changed = true;
        }
    }
    changed.then_some(next)
}

/// Equal files (a watcher woken by a touch sends what is already served).
fn same_values(a: &Inputs, b: &Inputs) -> bool {
    a.same_as(b) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::snapshot;

    fn endpoints(text: &str) -> Arc<Endpoints> {
        Arc::new(Endpoints::parse(text).unwrap())
    }

    fn origin(revision: &str) -> Origin {
        Origin {
            revision: revision.into(),
            ..Origin::default()
        }
    }

    fn commit(revision: &str) -> (Update, oneshot::Receiver<Duration>) {
        let (served, published) = oneshot::channel();
        let update = Update::Commit {
            origin: origin(revision),
            plans: BTreeMap::new(),
            model: Arc::default(),
            served,
        };
        (update, published)
    }

    #[tokio::test]
    async fn updates_apply_in_order_to_the_latest_state() {
        let old = endpoints("a.b:80: [\"10.0.0.1:80\"]\n");
        let new = endpoints("a.b:80: [\"10.0.0.2:80\"]\n");
        let (writer, reader) = snapshot::channel(Snapshot::build(
            origin("start"),
            BTreeMap::new(),
            Inputs {
                endpoints: Some(old),
                certs: None,
            },
        ));
        let (tx, rx) = mpsc::channel(UPDATES);
        let publisher = tokio::spawn(run(writer, rx));

        // The endpoints change after the commit was read, before it is encoded: the
        // commit is served with the new endpoints, not the ones it was read with.
        tx.send(Update::Endpoints(new.clone())).await.unwrap();
        let (update, published) = commit("c1");
        tx.send(update).await.unwrap();
        published.await.unwrap();
        let served = reader.load();
        assert_eq!(served.origin.revision, "c1");
        assert!(Arc::ptr_eq(served.endpoints().unwrap(), &new));

        // And the other way round: endpoints after a commit apply to that commit.
        let newer = endpoints("a.b:80: [\"10.0.0.3:80\"]\n");
        let (update, published) = commit("c2");
        tx.send(update).await.unwrap();
        tx.send(Update::Endpoints(newer.clone())).await.unwrap();
        published.await.unwrap();
        let mut changes = reader.changes();
        changes
            .wait_for(|_| {
                reader
                    .load()
                    .endpoints()
                    .is_some_and(|e| Arc::ptr_eq(e, &newer))
            })
            .await
            .unwrap();
        assert_eq!(reader.load().origin.revision, "c2");

        drop(tx);
        publisher.await.unwrap();
    }

    fn preview(branch: &str, revision: &str, plans: &BTreeMap<String, Arc<ProxyPlan>>) -> Update {
        let (served, _) = oneshot::channel();
        Update::Preview {
            branch: branch.into(),
            origin: origin(revision),
            plans: plans.clone(),
            model: Arc::default(),
            served,
        }
    }

    #[test]
    fn previews_share_the_followed_branchs_encodings_and_leave_it_alone() {
        let plan = |warning: &str| {
            Arc::new(ProxyPlan {
                warnings: vec![warning.to_owned()],
                ..ProxyPlan::default()
            })
        };
        let main_plans: BTreeMap<String, Arc<ProxyPlan>> = [
            ("a.ns".to_owned(), plan("a")),
            ("b.ns".to_owned(), plan("b")),
        ]
        .into();
        let mut main =
            Snapshot::build_shared(origin("m1"), main_plans.clone(), Inputs::default(), None);
        main.set_previews(Arc::default());
        let main_a = main.proxy("a.ns", &Default::default());

        // A preview that changed gateway b only (its plan is a new, different value).
        let mut changed = main_plans.clone();
        changed.insert("b.ns".into(), plan("b changed"));
        let (next, _, _) = apply(&main, vec![preview("preview/x", "p1", &changed)]);
        let next = next.expect("a new preview is published");
        assert_eq!(next.origin.revision, "m1");
        assert!(Arc::ptr_eq(
            &next.proxy("a.ns", &Default::default()),
            &main_a
        ));
        let p = next.at_ref(Some("preview/x")).expect("served");
        assert_eq!(p.origin.revision, "p1");
        // Unchanged gateway: the followed branch's very encoding.
        assert!(Arc::ptr_eq(&p.proxy("a.ns", &Default::default()), &main_a));
        assert_eq!(p.proxy("b.ns", &Default::default()).warnings, ["b changed"]);
        assert_eq!(next.proxy("b.ns", &Default::default()).warnings, ["b"]);

        // New endpoints: both rebuilt for them, still sharing.
        let eps = endpoints("a.b:80: [\"10.0.0.9:80\"]\n");
        let (after, _, _) = apply(&next, vec![Update::Endpoints(eps.clone())]);
        let after = after.unwrap();
        let p = after.at_ref(Some("preview/x")).unwrap();
        assert!(Arc::ptr_eq(p.endpoints().unwrap(), &eps));
        assert!(Arc::ptr_eq(
            &p.proxy("a.ns", &Default::default()),
            &after.proxy("a.ns", &Default::default())
        ));

        // Dropped: its proxies are unknown from now on; the followed branch is untouched.
        let (dropped, _, _) = apply(&after, vec![Update::DropPreview("preview/x".into())]);
        let dropped = dropped.unwrap();
        assert!(dropped.at_ref(Some("preview/x")).is_none());
        assert!(!dropped.knows_at(Some("preview/x"), "a.ns"));
        assert!(dropped.knows_at(None, "a.ns"));
        // Dropping what is not served publishes nothing.
        let (none, _, _) = apply(&dropped, vec![Update::DropPreview("preview/x".into())]);
        assert!(none.is_none());
    }

    #[test]
    fn a_batch_is_folded_into_one_build_and_no_change_publishes_nothing() {
        let e1 = endpoints("a.b:80: [\"10.0.0.1:80\"]\n");
        let current = Snapshot::build(
            origin("start"),
            BTreeMap::new(),
            Inputs {
                endpoints: Some(e1.clone()),
                certs: None,
            },
        );
        // The same file read again (another Arc, equal contents): nothing to publish.
        let (next, waiting, _) = apply(
            &current,
            vec![Update::Endpoints(endpoints("a.b:80: [\"10.0.0.1:80\"]\n"))],
        );
        assert!(next.is_none() && waiting.is_empty());

        let e2 = endpoints("a.b:80: [\"10.0.0.2:80\"]\n");
        let e3 = endpoints("a.b:80: [\"10.0.0.3:80\"]\n");
        let (c1, _r1) = commit("c1");
        let (next, waiting, _) = apply(
            &current,
            vec![Update::Endpoints(e2), c1, Update::Endpoints(e3.clone())],
        );
        let next = next.unwrap();
        assert_eq!(next.origin.revision, "c1");
        assert!(Arc::ptr_eq(next.endpoints().unwrap(), &e3));
        assert_eq!(waiting.len(), 1);
    }
}

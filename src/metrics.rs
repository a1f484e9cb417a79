//! Prometheus metrics, served at `/metrics` on the admin endpoint.
//!
//! One [`Metrics`] per server (not a global), so several servers in one process (tests)
//! count separately.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A stream's protocol and the branch its proxy is served (`serve --preview-branches`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// `sotw` or `delta`.
    pub protocol: String,
    /// The branch; empty until the proxy's first request says which.
    pub r#ref: String,
}

/// The branch a commit was read from: the followed one or a preview.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefLabel {
    pub r#ref: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// `CDS`, `EDS`, `LDS`, `RDS`.
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `read`, `validate`, `render`, `translate`.
    pub stage: String,
}

/// An outcome: of an authenticated webhook event, `triggered`, `coalesced` (a look was
/// already pending) or `ignored` (not a followed branch); of a certificate reload, `ok` or
/// `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Why a webhook request was refused: `missing-signature`, `bad-signature`, `too-large`,
/// `bad-payload`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

fn seconds_histogram() -> Histogram {
    // 100 µs … ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub connected: Family<StreamLabel, Gauge>,
    pub pushes: Family<TypeLabel, Counter>,
    pub nacks: Family<TypeLabel, Counter>,
    pub stage_seconds: Family<StageLabel, Histogram, fn() -> Histogram>,
    pub commit_lag_seconds: Histogram,
    pub served_commits: Family<RefLabel, Counter>,
    pub rejected_commits: Family<RefLabel, Counter>,
    pub source_errors: Counter,
    pub denied: Counter,
    /// Reloads of the xDS server's certificate files, by `result` (`ok`, `failed`).
    pub tls_reloads: Family<ResultLabel, Counter>,
    /// Looks at the repository (poll, watched ref, webhook or `sync_now`), counted so
    /// coalescing can be seen.
    pub source_checks: Counter,
    pub webhook_events: Family<ResultLabel, Counter>,
    pub webhook_rejected: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tidegate");
        let connected = Family::<StreamLabel, Gauge>::default();
        registry.register(
            "connected_proxies",
            "xDS streams open now, by protocol and the branch they are served",
            connected.clone(),
        );
        let pushes = Family::<TypeLabel, Counter>::default();
        registry.register(
            "xds_pushes",
            "Discovery responses sent, by resource type",
            pushes.clone(),
        );
        let nacks = Family::<TypeLabel, Counter>::default();
        registry.register(
            "xds_nacks",
            "Responses a proxy rejected, by resource type",
            nacks.clone(),
        );
        let stage_seconds =
            Family::<StageLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram as fn() -> Histogram,
            );
        registry.register(
            "build_stage_seconds",
            "Time to read, validate, render and translate a commit",
            stage_seconds.clone(),
        );
        let commit_lag_seconds = seconds_histogram();
        registry.register(
            "commit_lag_seconds",
            "From a commit's committer time to its config being served",
            commit_lag_seconds.clone(),
        );
        let served_commits = Family::<RefLabel, Counter>::default();
        registry.register(
            "served_commits",
            "Commits served, by branch",
            served_commits.clone(),
        );
        let rejected_commits = Family::<RefLabel, Counter>::default();
        registry.register(
            "rejected_commits",
            "Commits rejected as invalid, by branch",
            rejected_commits.clone(),
        );
        let source_errors = Counter::default();
        registry.register(
            "source_errors",
            "Failures to read the repository (unreachable remote, missing branch)",
            source_errors.clone(),
        );
        let denied = Counter::default();
        registry.register(
            "xds_denied",
            "xDS streams refused: the client certificate does not name the claimed gateway",
            denied.clone(),
        );
        let tls_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "xds_tls_reloads",
            "Reloads of the xDS server certificate, key and client CA after a change, by result (a failed one keeps the previous)",
            tls_reloads.clone(),
        );
        let source_checks = Counter::default();
        registry.register(
            "source_checks",
            "Times the repository was looked at (poll, ref watch, webhook), however many events asked",
            source_checks.clone(),
        );
        let webhook_events = Family::<ResultLabel, Counter>::default();
        registry.register(
            "webhook_events",
            "Authenticated webhook events, by result (triggered, coalesced, ignored)",
            webhook_events.clone(),
        );
        let webhook_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "webhook_rejected",
            "Webhook requests refused, by reason (missing-signature, bad-signature, too-large, bad-payload)",
            webhook_rejected.clone(),
        );
        Self {
            tls_reloads,
            registry,
            connected,
            pushes,
            nacks,
            stage_seconds,
            commit_lag_seconds,
            served_commits,
            rejected_commits,
            source_errors,
            denied,
            source_checks,
            webhook_events,
            webhook_rejected,
        }
    }

    /// An authenticated webhook event ended as `result`.
    pub fn webhook_event(&self, result: &str) {
        self.webhook_events
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// A webhook request was refused for `reason`.
    pub fn webhook_rejection(&self, reason: &str) {
        self.webhook_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A commit of branch `r#ref` was served (`rejected`: was refused).
    pub fn commit(&self, r#ref: &str, rejected: bool) {
        let family = if rejected {
            &self.rejected_commits
        } else {
            &self.served_commits
        };
        family
            .get_or_create(&RefLabel {
                r#ref: r#ref.to_owned(),
            })
            .inc();
    }

    pub fn stage(&self, stage: &str) -> Histogram {
        self.stage_seconds
            .get_or_create(&StageLabel {
                stage: stage.to_owned(),
            })
            .clone()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

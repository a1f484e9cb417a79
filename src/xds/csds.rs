//! CSDS (`envoy.service.status.v3.ClientStatusDiscoveryService`): what every connected
//! proxy has been served and whether it accepted it, for standard tooling
//! (`istioctl`-style proxy status, Envoy Gateway's `egctl`, gRPC's CSDS clients).
//!
//! Who sees what: over TLS, a client sees only the proxies its certificate may receive the
//! config of (a proxy sees its own status, as with ADS), unless its certificate names one
//! of the identities given the whole view (`serve --csds-identity`). Without TLS (loopback,
//! or `--allow-plaintext`), everyone sees everything, as everyone may ask ADS for anything.
//! The admin endpoint (`/csds`, loopback by default) always has the whole view.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::admin::v3::UpdateFailureState;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::{
    ClientStatusDiscoveryService, ClientStatusDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::status::v3::{
    ClientConfig, ClientConfigStatus, ClientStatusRequest, ClientStatusResponse, ConfigStatus,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::identity::San;
use super::snapshot::SnapshotReader;
use super::status::{Registry, SyncState};
use super::type_url::TypeUrl;

#[derive(Clone)]
pub struct Csds {
    snapshots: SnapshotReader,
    registry: Arc<Registry>,
    /// Certificate SANs (a DNS name or a URI, as written) given every proxy's status.
    full_view: Arc<Vec<String>>,
}

/// Whose status a CSDS client may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// Every proxy's (no TLS, the admin endpoint, or an identity given the whole view).
    All,
    /// The proxies a client certificate with these SANs may receive the config of.
    Certificate(Vec<San>),
}

impl Viewer {
    fn sees(&self, proxy: &str) -> bool {
        match self {
            Viewer::All => true,
            Viewer::Certificate(sans) => super::identity::allowed(proxy, sans),
        }
    }
}

impl Csds {
    pub fn new(snapshots: SnapshotReader, registry: Arc<Registry>) -> Self {
        Self {
            snapshots,
            registry,
            full_view: Arc::default(),
        }
    }

    /// Gives clients whose certificate has one of `identities` (DNS names or URIs) every
    /// proxy's status.
    pub fn with_full_view(mut self, identities: Vec<String>) -> Self {
        self.full_view = Arc::new(identities);
        self
    }

    /// Who the client of `request` is: its certificate's SANs over TLS.
    fn viewer<T>(&self, request: &Request<T>) -> Viewer {
        let Some(certs) = request.peer_certs() else {
            return Viewer::All;
        };
        let sans = certs
            .first()
            .map(|c| super::identity::sans(c.as_ref()))
            .unwrap_or_default();
        let named = sans.iter().any(|san| {
            let value = match san {
                San::Dns(d) => d,
                San::Uri(u) => u,
            };
            self.full_view.iter().any(|v| v == value)
        });
        if named {
            Viewer::All
        } else {
            Viewer::Certificate(sans)
        }
    }

    pub fn into_service(self) -> ClientStatusDiscoveryServiceServer<Self> {
        ClientStatusDiscoveryServiceServer::new(self).max_encoding_message_size(64 << 20)
    }

    /// The status of every connected proxy `viewer` may see that the request's node
    /// matchers select (all when there are none; node id matchers with exact, prefix or
    /// suffix patterns).
    pub fn status(&self, req: &ClientStatusRequest, viewer: &Viewer) -> ClientStatusResponse {
        let snapshot = self.snapshots.load();
        let selected = |id: &str| {
            req.node_matchers.is_empty()
                || req.node_matchers.iter().any(|m| {
                    m.node_id.as_ref().is_none_or(|sm| match &sm.match_pattern {
                        Some(MatchPattern::Exact(e)) => id == e,
                        Some(MatchPattern::Prefix(p)) => id.starts_with(p.as_str()),
                        Some(MatchPattern::Suffix(s)) => id.ends_with(s.as_str()),
                        Some(MatchPattern::Contains(c)) => id.contains(c.as_str()),
                        _ => true,
                    })
                })
        };
        let config = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|p| viewer.sees(&p.proxy) && selected(&p.node_id))
            .map(|p| {
                let served = snapshot.proxy_at(p.r#ref.as_deref(), &p.proxy, &p.variant);
                let mut generic = Vec::new();
                for t in TypeUrl::ALL {
                    let Some(ts) = p.types.get(t.short()) else {
                        continue;
                    };
                    let (config_status, client_status) = match ts.state {
                        SyncState::Synced => {
                            (ConfigStatus::Synced, ClientConfigStatus::ClientAcked)
                        }
                        SyncState::Stale => {
                            (ConfigStatus::Stale, ClientConfigStatus::ClientRequested)
                        }
                        SyncState::Nacked => {
                            (ConfigStatus::Error, ClientConfigStatus::ClientNacked)
                        }
                        SyncState::NotSent => {
                            (ConfigStatus::NotSent, ClientConfigStatus::ClientRequested)
                        }
                    };
                    for (name, r) in &served.of(t).resources {
                        generic.push(GenericXdsConfig {
                            type_url: t.url(),
                            name: name.clone(),
                            version_info: r.version.clone(),
                            xds_config: (!req.exclude_resource_contents).then(|| {
                                if t == TypeUrl::Secret {
                                    redacted(&r.any)
                                } else {
                                    r.any.clone()
                                }
                            }),
                            config_status: config_status as i32,
                            client_status: client_status as i32,
                            error_state: ts
                                .last_nack
                                .as_ref()
                                .filter(|_| ts.state == SyncState::Nacked)
                                .map(|n| UpdateFailureState {
                                    details: n.message.clone(),
                                    version_info: n.version.clone(),
                                    ..UpdateFailureState::default()
                                }),
                            ..GenericXdsConfig::default()
                        });
                    }
                }
                ClientConfig {
                    node: Some(Node {
                        id: p.node_id.clone(),
                        cluster: p.proxy.clone(),
                        ..Node::default()
                    }),
                    generic_xds_configs: generic,
                    ..ClientConfig::default()
                }
            })
            .collect();
        ClientStatusResponse { config }
    }
}

type CsdsStream = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for Csds {
    type StreamClientStatusStream = CsdsStream;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<CsdsStream>, Status> {
        let this = self.clone();
        let viewer = self.viewer(&request);
        let answers = request
            .into_inner()
            .map(move |req| req.map(|r| this.status(&r, &viewer)));
        Ok(Response::new(Box::pin(answers)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        let viewer = self.viewer(&request);
        Ok(Response::new(self.status(request.get_ref(), &viewer)))
    }
}

/// A Secret with its private key replaced, as Envoy's own config dump shows it: CSDS
/// answers anyone with a valid client certificate, and keys must not leave through it.
fn redacted(
    any: &envoy_types::pb::google::protobuf::Any,
) -> envoy_types::pb::google::protobuf::Any {
    use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    use prost::Message;
    let Ok(mut s) = Secret::decode(any.value.as_slice()) else {
        return envoy_types::pb::google::protobuf::Any {
            type_url: any.type_url.clone(),
            value: Vec::new(),
        };
    };
    if let Some(secret::Type::TlsCertificate(t)) = s.r#type.as_mut() {
        t.private_key = Some(DataSource {
            specifier: Some(Specifier::InlineString("[redacted]".into())),
            ..DataSource::default()
        });
    }
    crate::xds::emit::any(&s)
}

//! Endpoints (EDS): the addresses of a Service port, from the endpoints file.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::common::socket_address;

pub(super) fn load_assignment(
    cluster: &str,
    addresses: Vec<(String, u16)>,
) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: addresses
                .into_iter()
                .map(|(ip, port)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(&ip, port)),
                        ..Endpoint::default()
                    })),
                    ..LbEndpoint::default()
                })
                .collect(),
            // gRPC ignores endpoints without a locality and a locality weight (gRFC A27);
            // Envoy does not mind them.
            locality: Some(core::Locality::default()),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    }
}

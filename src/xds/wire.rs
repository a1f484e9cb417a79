//! The xDS streaming RPCs at the HTTP/2 level, without tonic's per-stream buffers.
//!
//! tonic's generated servers encode every response into a buffer that each stream keeps
//! for its whole life, sized by the largest batch it ever sent (measured with heaptrack:
//! ~31 KiB per idle stream with a 100-route gateway, a third of a stream's memory), and
//! decode requests through an 8 KiB buffer. With ten thousand proxies that is most of the
//! server's memory. Here each response is encoded once into its own gRPC frame, handed to
//! HTTP/2 as is and freed when sent; requests (ACKs, a few hundred bytes) are decoded
//! through a 1 KiB buffer. Everything else — HTTP/2, TLS, routing by service name — is
//! still tonic's.
//!
//! One [`XdsService`] per service name (ADS, CDS, EDS, LDS, RDS): `Stream*` methods are
//! state-of-the-world streams, `Delta*` methods delta streams, `Fetch*` (REST-style
//! polling) is answered `UNIMPLEMENTED`. What runs a stream is given as [`Streams`]: this
//! module knows the transport, not the protocol (the ADS server imports it, not the
//! other way round).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use http_body::Frame;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder, Streaming};
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

/// Opens the streams of the two protocols: each gets its requests and returns the
/// receiver of what to send.
pub trait Streams: Clone + Send + Sync + 'static {
    fn open_sotw(
        &self,
        request: tonic::Request<Streaming<DiscoveryRequest>>,
    ) -> mpsc::Receiver<Outgoing>;
    fn open_delta(
        &self,
        request: tonic::Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> mpsc::Receiver<Outgoing>;
}

/// One response, already framed, or the status that ends the stream.
pub type Outgoing = Result<Bytes, Box<Status>>;

/// Largest request accepted (a node's metadata can be large; requests otherwise are not).
const MAX_REQUEST: usize = 4 << 20;

/// A message as one gRPC frame: uncompressed flag, big-endian length, bytes.
pub fn frame<M: prost::Message>(m: &M) -> Bytes {
    frame_concat(&[], m)
}

/// One gRPC frame of a message whose encoding is `head` followed by `tail`'s (protobuf
/// encodings concatenate into the merged message): a shared encoded body plus a small
/// per-stream part, without re-encoding the body.
pub fn frame_concat<M: prost::Message>(head: &[u8], tail: &M) -> Bytes {
    let len = head.len() + tail.encoded_len();
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    buf.extend_from_slice(head);
    // Encoding into a Vec cannot run out of room.
    let _ = tail.encode(&mut buf);
    buf.into()
}

/// Protobuf requests through a small buffer.
struct RequestDecoder<T>(PhantomData<fn() -> T>);

impl<T: prost::Message + Default + 'static> Decoder for RequestDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("undecodable request: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(1024, 32 * 1024)
    }
}

/// The response body of a stream: frames as the stream task sends them, then trailers.
struct ResponseBody {
    rx: mpsc::Receiver<Outgoing>,
    done: bool,
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    let _ = status.add_header(&mut h);
    h
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Err(status))) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
            }
            // The stream task ended (client gone, or the server stopping).
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(&Status::ok(""))))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The gRPC service names served this way.
pub trait ServiceName: Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! service_names {
    ($($ty:ident = $name:literal;)*) => {$(
        pub struct $ty;
        impl ServiceName for $ty {
            const NAME: &'static str = $name;
        }
    )*};
}

service_names! {
    AggregatedName = "envoy.service.discovery.v3.AggregatedDiscoveryService";
    ClusterName = "envoy.service.cluster.v3.ClusterDiscoveryService";
    EndpointName = "envoy.service.endpoint.v3.EndpointDiscoveryService";
    ListenerName = "envoy.service.listener.v3.ListenerDiscoveryService";
    RouteName = "envoy.service.route.v3.RouteDiscoveryService";
}

pub struct XdsService<N, S> {
    streams: S,
    _name: PhantomData<fn() -> N>,
}

impl<N, S> XdsService<N, S> {
    pub fn new(streams: S) -> Self {
        Self {
            streams,
            _name: PhantomData,
        }
    }
}

impl<N, S: Clone> Clone for XdsService<N, S> {
    fn clone(&self) -> Self {
        Self::new(self.streams.clone())
    }
}

impl<N: ServiceName, S> NamedService for XdsService<N, S> {
    const NAME: &'static str = N::NAME;
}

impl<N: ServiceName, S: Streams> Service<http::Request<Body>> for XdsService<N, S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let method = parts.uri.path().rsplit('/').next().unwrap_or_default();
        let rx = if method.starts_with("Stream") {
            let requests =
                Streaming::new_request(RequestDecoder(PhantomData), body, None, Some(MAX_REQUEST));
            self.streams
                .open_sotw(tonic::Request::from_http(http::Request::from_parts(
                    parts, requests,
                )))
        } else if method.starts_with("Delta") {
            let requests =
                Streaming::new_request(RequestDecoder(PhantomData), body, None, Some(MAX_REQUEST));
            self.streams
                .open_delta(tonic::Request::from_http(http::Request::from_parts(
                    parts, requests,
                )))
        } else {
            return std::future::ready(Ok(Status::unimplemented(
                "fetch is not served: use a stream (ADS or this service's stream)",
            )
            .into_http()));
        };
        let mut response = http::Response::new(Body::new(ResponseBody { rx, done: false }));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        std::future::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    #[test]
    fn a_shared_body_plus_a_nonce_is_the_whole_response() {
        let whole = DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![
                Any {
                    type_url: "t".into(),
                    value: vec![1, 2, 3],
                },
                Any {
                    type_url: "t".into(),
                    value: vec![4],
                },
            ],
            type_url: "t".into(),
            nonce: "7".into(),
            ..DiscoveryResponse::default()
        };
        let body = DiscoveryResponse {
            nonce: String::new(),
            ..whole.clone()
        }
        .encode_to_vec();
        let tail = DiscoveryResponse {
            nonce: "7".into(),
            ..DiscoveryResponse::default()
        };
        let framed = frame_concat(&body, &tail);
        let len = u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize;
        assert_eq!((framed[0], len), (0, framed.len() - 5));
        assert_eq!(DiscoveryResponse::decode(&framed[5..]).unwrap(), whole);
        assert_eq!(framed.len(), frame(&whole).len());
    }
}

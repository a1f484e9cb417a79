//! Mesh echo "pods": what the mesh suite's Istio echo image (`echo-advanced`) answers, on
//! loopback. One listener per pod speaks HTTP/1.1, HTTP/2 prior knowledge (h2c) and gRPC
//! (`proto.EchoTestService/Echo`); every answer is the Istio echo text format the mesh
//! checks read: `Key=value` lines, one `RequestHeader=Name:value` per header value seen,
//! and `Hostname=<pod>`. gRPC answers carry that text as `EchoResponse.message`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http1::{Head, drain_body, read_head};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The gRPC method the Istio echo client calls.
pub const ECHO_METHOD: &str = "/proto.EchoTestService/Echo";

#[derive(Default)]
pub struct Pods {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Pods {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct Pod {
    name: String,
    version: String,
}

impl Pods {
    /// A listener for pod `name` (of Deployment version `version`).
    pub async fn listen(&mut self, name: &str, version: &str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("addr");
        let pod = Pod {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        self.tasks.push(tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(connection(sock, pod.clone(), addr.port()));
            }
        }));
        addr
    }
}

/// The echo text of one request.
fn text(
    pod: &Pod,
    port: u16,
    proto: &str,
    method: &str,
    url: &str,
    host: &str,
    headers: &[(String, String)],
) -> String {
    let mut out = format!(
        "ServiceVersion={}\nServicePort={port}\nStatusCode=200\nHost={host}\nURL={url}\nMethod={method}\nProto={proto}\n",
        pod.version
    );
    for (k, v) in headers {
        out.push_str(&format!("RequestHeader={k}:{v}\n"));
    }
    out.push_str(&format!("Hostname={}\n", pod.name));
    out
}

async fn connection(sock: TcpStream, pod: Pod, port: u16) {
    // HTTP/2 prior knowledge or HTTP/1.1, by the first bytes, without consuming them.
    let mut buf = [0u8; 24];
    let h2 = loop {
        let Ok(n) = sock.peek(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if buf[..n] != H2_PREFACE[..n] {
            break false;
        }
        if n == H2_PREFACE.len() {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    if h2 {
        let Ok(mut conn) = h2::server::handshake(sock).await else {
            return;
        };
        while let Some(Ok((req, respond))) = conn.accept().await {
            tokio::spawn(h2_stream(req, respond, pod.clone(), port));
        }
    } else {
        serve_h1(sock, pod, port).await;
    }
}

async fn serve_h1(mut sock: TcpStream, pod: Pod, port: u16) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut sock, &mut buf).await else {
            return;
        };
        // Request bodies (the mesh cases send none) are dropped.
        if drain_body(&mut sock, &mut buf, &head).await.is_none() {
            return;
        }
        let Head {
            method,
            target: url,
            headers,
        } = head;
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let host = get("host").unwrap_or_default();
        let body = text(&pod, port, "HTTP/1.1", &method, &url, &host, &headers);
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn h2_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    pod: Pod,
    port: u16,
) {
    let (parts, mut body) = req.into_parts();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let grpc = parts
        .headers
        .get("content-type")
        .is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"));
    let url = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let host = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let proto = if grpc { "GRPC" } else { "HTTP/2.0" };
    let body = text(
        &pod,
        port,
        proto,
        parts.method.as_str(),
        &url,
        &host,
        &headers,
    );
    if grpc {
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let Ok(mut send) = respond.send_response(resp, false) else {
            return;
        };
        let _ = send.send_data(grpc_frame(&echo_message(&body)), false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let _ = send.send_trailers(trailers);
        return;
    }
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(())
        .unwrap();
    let Ok(mut send) = respond.send_response(resp, false) else {
        return;
    };
    let _ = send.send_data(Bytes::from(body), true);
}

/// `EchoRequest`/`EchoResponse` `{ string message = 1; }` in protobuf wire format.
pub fn echo_message(message: &str) -> Vec<u8> {
    let mut out = vec![0x0a];
    let mut n = message.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(message.as_bytes());
    out
}

/// The `message` field of an `EchoResponse`.
pub fn echo_message_text(bytes: &[u8]) -> Option<String> {
    let (&tag, mut rest) = bytes.split_first()?;
    if tag != 0x0a {
        return None;
    }
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let (&b, r) = rest.split_first()?;
        rest = r;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    rest.get(..len)
        .map(|m| String::from_utf8_lossy(m).into_owned())
}

/// One gRPC message: the 5-byte prefix (uncompressed, length) and the message.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_messages_round_trip() {
        for text in ["", "Hostname=a\n", &"x".repeat(300)] {
            assert_eq!(
                echo_message_text(&echo_message(text)).as_deref(),
                Some(text)
            );
        }
        assert_eq!(echo_message_text(b"\x12\x01a"), None);
    }
}

//! One HTTP/1.1 request off a connection, as the harnesses' echo pods read them: the head,
//! then the body (content-length or chunked) read and dropped.

use tokio::io::{AsyncRead, AsyncReadExt};

/// A request line and its headers.
pub struct Head {
    pub method: String,
    /// The request target as sent (path and query, or a URL).
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// Reads more of `sock` into `buf`; `None` at the end of the stream or on an error.
async fn fill<S: AsyncRead + Unpin>(sock: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match sock.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// The next request head; `buf` holds what was read past the previous request and keeps
/// what is read past this head. `None` when the connection ends first.
pub async fn read_head<S: AsyncRead + Unpin>(sock: &mut S, buf: &mut Vec<u8>) -> Option<Head> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(sock, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Head {
        method,
        target,
        headers,
    })
}

/// Reads and drops the body of the request `head` (chunked or by content-length). `None`
/// when the connection ends first.
pub async fn drain_body<S: AsyncRead + Unpin>(
    sock: &mut S,
    buf: &mut Vec<u8>,
    head: &Head,
) -> Option<()> {
    if head
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(sock, buf).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
                .unwrap_or(0);
            let need = line_end + 2 + size + 2;
            while buf.len() < need {
                fill(sock, buf).await?;
            }
            buf.drain(..need);
            if size == 0 {
                return Some(());
            }
        }
    }
    let length: usize = head
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buf.len() < length {
        fill(sock, buf).await?;
    }
    buf.drain(..length);
    Some(())
}

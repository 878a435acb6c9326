//! A range-honest S3 endpoint on loopback: serves `GetObject` (whole object, `bytes=a-b`,
//! `bytes=a-`, `bytes=-n`, `If-Match`) of in-memory [`Spliced`] objects, path-style, in time
//! proportional to the bytes it sends. moto, the project's local endpoint, copies the whole
//! object for every ranged GET, so on moto a 64 KiB read of a 2 GiB object costs about as much
//! as downloading it; figure 1 is measured on both endpoints to tell bakdrop's cost from the
//! endpoint's. Requests are not authenticated; it serves nothing but the objects put into it.
//!
//! On loopback a request costs only CPU; [`RangeEndpoint::start_with_latency`] holds every
//! response back before its first byte, modelling the round trip to a real S3 endpoint, so that
//! what concurrent requests save can be measured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bakdrop_core::model::object::ObjectRef;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::splice::Spliced;

type Objects = Arc<Mutex<HashMap<String, (Arc<Spliced>, String)>>>;

/// The endpoint; dropping it stops accepting connections.
#[derive(Debug)]
pub struct RangeEndpoint {
    addr: SocketAddr,
    first_byte_latency: Duration,
    objects: Objects,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for RangeEndpoint {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl RangeEndpoint {
    /// Listens on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn start() -> std::io::Result<RangeEndpoint> {
        RangeEndpoint::start_with_latency(Duration::ZERO).await
    }

    /// Listens on `127.0.0.1:0`; every response waits `first_byte_latency` before it is sent.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn start_with_latency(
        first_byte_latency: Duration,
    ) -> std::io::Result<RangeEndpoint> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let objects: Objects = Arc::default();
        let served = objects.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let objects = served.clone();
                tokio::spawn(async move {
                    // A broken connection only ends that connection.
                    let _ = serve(stream, objects, first_byte_latency).await;
                });
            }
        });
        Ok(RangeEndpoint {
            addr,
            first_byte_latency,
            objects,
            accept,
        })
    }

    /// The delay before each response's first byte.
    pub fn first_byte_latency(&self) -> Duration {
        self.first_byte_latency
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `object` as `bucket/key`; returns its reference (ETag derived from the size).
    pub fn insert(&self, bucket: &str, key: &str, object: Spliced) -> ObjectRef {
        let size = object.size();
        let etag = format!("{size:032x}");
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(format!("{bucket}/{key}"), (Arc::new(object), etag.clone()));
        ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: None,
            etag: Some(etag),
            size,
        }
    }

    /// Stops serving `bucket/key`.
    pub fn remove(&self, bucket: &str, key: &str) {
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&format!("{bucket}/{key}"));
    }
}

/// Answers requests on one keep-alive connection until the client closes it.
async fn serve(stream: TcpStream, objects: Objects, latency: Duration) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        if let Some(len) = headers
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            tokio::io::copy(&mut (&mut read).take(len), &mut tokio::io::sink()).await?;
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default();
        let name = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        let found = objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned();
        let Some((object, etag)) = found else {
            respond_error(&mut write, "404 Not Found", "NoSuchKey").await?;
            continue;
        };
        if method != "GET" {
            respond_error(&mut write, "405 Method Not Allowed", "MethodNotAllowed").await?;
            continue;
        }
        if let Some(expected) = headers.get("if-match") {
            if expected.trim_matches('"') != etag {
                respond_error(&mut write, "412 Precondition Failed", "PreconditionFailed").await?;
                continue;
            }
        }
        let size = object.size();
        let range = headers.get("range").and_then(|r| parse_range(r, size));
        let (status, start, len) = match range {
            Some((start, len)) => ("206 Partial Content", start, len),
            None => ("200 OK", 0, size),
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\
             ETag: \"{etag}\"\r\nAccept-Ranges: bytes\r\nLast-Modified: Sun, 29 Nov 2026 00:00:00 GMT\r\n"
        );
        if range.is_some() && len > 0 {
            head.push_str(&format!(
                "Content-Range: bytes {start}-{}/{size}\r\n",
                start + len - 1
            ));
        }
        head.push_str("\r\n");
        write.write_all(head.as_bytes()).await?;
        const CHUNK: u64 = 1 << 20;
        let mut sent = 0;
        while sent < len {
            let n = CHUNK.min(len - sent);
            write.write_all(&object.slice(start + sent, n)).await?;
            sent += n;
        }
        write.flush().await?;
    }
}

/// `(start, len)` of a single-range header against `size` (None: serve the whole object).
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        let n = n.min(size);
        return Some((size - n, n));
    }
    let start: u64 = a.parse().ok()?;
    if start >= size {
        return None;
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        b.parse::<u64>().ok()?.min(size - 1)
    };
    (end >= start).then(|| (start, end - start + 1))
}

async fn respond_error(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    status: &str,
    code: &str,
) -> std::io::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
    );
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await?;
    write.write_all(body.as_bytes()).await?;
    write.flush().await
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_read_as_s3_reads_them() {
        assert_eq!(parse_range("bytes=0-1048575", 10 << 20), Some((0, 1 << 20)));
        assert_eq!(parse_range("bytes=-65536", 100), Some((0, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 10)));
        assert_eq!(parse_range("bytes=100-200", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}

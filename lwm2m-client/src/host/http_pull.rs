//! http:// and https:// pulls through ureq, streamed and resumed with Range / If-Range.
//!
//! A resume sends `Range: bytes=OFFSET-` with `If-Range: ETAG`: a server that still has the
//! same representation answers 206 from the offset; one whose package changed answers 200
//! with the whole new body, and the sink restarts from 0. Without an ETag no resume is tried.

use std::io::Read;
use std::time::Duration;

use ureq::tls::{TlsConfig, TlsProvider};
use ureq::Agent;

use crate::pull::{PackageSink, PullError, Resume};

/// Bytes read from the connection at a time; also the largest write handed to the sink.
const CHUNK: usize = 4096;

/// Limits of an HTTP pull.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Connect timeout, and the longest the body may stall between two reads.
    pub stall: Duration,
    /// Largest package accepted (the candidate slot's capacity).
    pub max_size: u64,
}

/// Outcome of a completed pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// Total package size in bytes.
    pub size: u64,
    /// Whether the transfer continued from the resume offset.
    pub resumed: bool,
    /// The server's entity tag, to persist for a later resume.
    pub etag: Option<Vec<u8>>,
}

fn agent(limits: &HttpLimits) -> Agent {
    Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::NativeTls)
                .build(),
        )
        .timeout_connect(Some(limits.stall))
        .timeout_recv_response(Some(limits.stall))
        .timeout_recv_body(None)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Pulls `url` into `sink`, resuming from `resume` when the server still has the same entity.
pub fn pull(
    url: &str,
    resume: Option<&Resume>,
    limits: &HttpLimits,
    sink: &mut dyn PackageSink,
) -> Result<Pulled, PullError> {
    let resume = resume.filter(|r| r.offset > 0 && r.etag.is_some());
    let mut req = agent(limits).get(url);
    if let Some(Resume {
        offset,
        etag: Some(etag),
    }) = resume
    {
        req = req
            .header("Range", format!("bytes={offset}-"))
            .header("If-Range", String::from_utf8_lossy(etag).into_owned());
    }
    let mut resp = req.call().map_err(map_error)?;
    let status = resp.status().as_u16();
    let start = match (status, resume) {
        (206, Some(r)) => r.offset,
        (200, _) => 0,
        (404 | 410, _) => return Err(PullError::NotFound),
        (s, _) => return Err(PullError::ConnectionLost(format!("HTTP status {s}"))),
    };
    let etag = resp.headers().get("etag").map(|v| v.as_bytes().to_vec());
    let declared = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let total = declared.map(|len| start + len);
    if total.is_some_and(|t| t > limits.max_size) {
        return Err(PullError::TooLarge);
    }
    sink.start(start, etag.as_deref(), total)?;
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(PullError::ConnectionLost(e.to_string())),
        };
        if offset + n as u64 > limits.max_size {
            return Err(PullError::TooLarge);
        }
        sink.write(offset, &buf[..n])?;
        offset += n as u64;
    }
    if declared.is_some_and(|len| offset != start + len) {
        return Err(PullError::ConnectionLost(
            "body shorter than Content-Length".into(),
        ));
    }
    Ok(Pulled {
        size: offset,
        resumed: start > 0,
        etag,
    })
}

fn map_error(e: ureq::Error) -> PullError {
    match e {
        ureq::Error::BadUri(u) => PullError::InvalidUri(u),
        ureq::Error::HostNotFound => PullError::InvalidUri("host not found".into()),
        other => PullError::ConnectionLost(other.to_string()),
    }
}

/// What the blocking HTTP reader hands to the async side.
enum Chunk {
    Start(u64, Option<Vec<u8>>, Option<u64>),
    Data(u64, Vec<u8>),
}

/// A sink on the blocking side: forwards to the async side through a bounded channel, so
/// the reader never runs ahead of the flash by more than a few chunks.
struct ChannelSink(tokio::sync::mpsc::Sender<Chunk>);

impl PackageSink for ChannelSink {
    fn start(
        &mut self,
        from: u64,
        etag: Option<&[u8]>,
        total: Option<u64>,
    ) -> Result<(), crate::pull::SinkError> {
        self.0
            .blocking_send(Chunk::Start(from, etag.map(<[u8]>::to_vec), total))
            .map_err(|_| crate::pull::SinkError(object5::UpdateResult::Cancelled))
    }
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), crate::pull::SinkError> {
        self.0
            .blocking_send(Chunk::Data(offset, bytes.to_vec()))
            .map_err(|_| crate::pull::SinkError(object5::UpdateResult::Cancelled))
    }
}

/// [`pull`] for an async caller whose sink lives on its own task (Object 5 on the engine's
/// task): the blocking HTTP client runs on tokio's blocking pool and the bytes come back
/// through a bounded channel, so the engine keeps answering its server during the download.
pub async fn pull_async(
    url: &str,
    resume: Option<&Resume>,
    limits: &HttpLimits,
    sink: &mut dyn PackageSink,
) -> Result<Pulled, PullError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let (url, resume, limits) = (url.to_owned(), resume.cloned(), limits.clone());
    let reader = tokio::task::spawn_blocking(move || {
        pull(&url, resume.as_ref(), &limits, &mut ChannelSink(tx))
    });
    let mut refused = None;
    while let Some(chunk) = rx.recv().await {
        let r = match chunk {
            Chunk::Start(from, etag, total) => sink.start(from, etag.as_deref(), total),
            Chunk::Data(offset, bytes) => sink.write(offset, &bytes),
        };
        if let Err(e) = r {
            // Dropping the receiver stops the reader at its next chunk.
            refused = Some(e);
            break;
        }
    }
    drop(rx);
    let outcome = reader
        .await
        .map_err(|e| PullError::ConnectionLost(e.to_string()))?;
    match refused {
        Some(e) => Err(e.into()),
        None => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::MemSink;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    /// A one-file HTTP/1.1 server with ETag / Range / If-Range, answering `requests` requests.
    /// `cut_after` closes the connection after that many body bytes.
    fn serve(
        body: Vec<u8>,
        etag: &'static str,
        requests: usize,
        cut_after: Option<usize>,
    ) -> (String, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/fw.suit", listener.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..requests {
                let (mut s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    head.push_str(&line);
                    line.clear();
                }
                seen.push(head.clone());
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                };
                if !head.starts_with("GET /fw.suit ") {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                let range = header("range")
                    .and_then(|v| v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
                    .filter(|_| header("if-range").as_deref() == Some(etag));
                let (status, from) = match range {
                    Some(from) => ("206 Partial Content", from),
                    None => ("200 OK", 0usize),
                };
                let part = &body[from..];
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    part.len()
                );
                let _ = s.write_all(&part[..cut_after.unwrap_or(part.len()).min(part.len())]);
            }
            seen
        });
        (url, t)
    }

    fn limits() -> HttpLimits {
        HttpLimits {
            stall: Duration::from_secs(5),
            max_size: 1 << 20,
        }
    }

    fn image(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn full_pull_streams_the_whole_body() {
        let body = image(100_000);
        let (url, t) = serve(body.clone(), "\"v1\"", 1, None);
        let mut sink = MemSink::default();
        let got = pull(&url, None, &limits(), &mut sink).unwrap();
        assert_eq!(sink.data, body);
        assert_eq!((got.size, got.resumed), (100_000, false));
        assert_eq!(got.etag.as_deref(), Some(&b"\"v1\""[..]));
        t.join().unwrap();
    }

    #[test]
    fn resume_continues_from_the_offset_when_the_etag_matches() {
        let body = image(50_000);
        let (url, t) = serve(body.clone(), "\"v1\"", 1, None);
        let mut sink = MemSink {
            data: body[..20_480].to_vec(),
            starts: vec![],
        };
        let resume = Resume {
            offset: 20_480,
            etag: Some(b"\"v1\"".to_vec()),
        };
        let got = pull(&url, Some(&resume), &limits(), &mut sink).unwrap();
        assert!(got.resumed);
        assert_eq!(sink.starts, vec![20_480]);
        assert_eq!(sink.data, body);
        let seen = t.join().unwrap();
        assert!(
            seen[0].to_ascii_lowercase().contains("range: bytes=20480-"),
            "{}",
            seen[0]
        );
    }

    #[test]
    fn changed_entity_restarts_from_zero() {
        let body = image(30_000);
        let (url, t) = serve(body.clone(), "\"v2\"", 1, None);
        let mut sink = MemSink {
            data: vec![0xAA; 4096],
            starts: vec![],
        };
        let resume = Resume {
            offset: 4096,
            etag: Some(b"\"v1\"".to_vec()),
        };
        let got = pull(&url, Some(&resume), &limits(), &mut sink).unwrap();
        assert!(!got.resumed);
        assert_eq!(sink.starts, vec![0]);
        assert_eq!(sink.data, body);
        t.join().unwrap();
    }

    #[test]
    fn errors_map_to_their_update_results() {
        use object5::UpdateResult as R;
        // 404 -> 7
        let (url, t) = serve(image(10), "\"x\"", 1, None);
        let url404 = url.replace("fw.suit", "missing.suit");
        let e = pull(&url404, None, &limits(), &mut MemSink::default()).unwrap_err();
        assert_eq!(
            (e.clone(), e.update_result()),
            (PullError::NotFound, R::InvalidUri)
        );
        t.join().unwrap();
        // Connection cut mid-body -> 4
        let (url, t) = serve(image(64_000), "\"x\"", 1, Some(10_000));
        let e = pull(&url, None, &limits(), &mut MemSink::default()).unwrap_err();
        assert_eq!(e.update_result(), R::ConnectionLost, "{e}");
        t.join().unwrap();
        // Nobody listening -> 4
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = pull(
            &format!("http://127.0.0.1:{port}/fw"),
            None,
            &limits(),
            &mut MemSink::default(),
        )
        .unwrap_err();
        assert_eq!(e.update_result(), R::ConnectionLost, "{e}");
        // Larger than the slot -> 2
        let (url, t) = serve(image(5000), "\"x\"", 1, None);
        let small = HttpLimits {
            max_size: 4096,
            ..limits()
        };
        let e = pull(&url, None, &small, &mut MemSink::default()).unwrap_err();
        assert_eq!(e.update_result(), R::NotEnoughFlash);
        t.join().unwrap();
    }
}

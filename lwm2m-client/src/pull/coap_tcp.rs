//! coap+tcp:// and coaps+tcp:// pulls (RFC 8323) with BERT blocks, sans-IO.
//!
//! [`TcpPull`] takes the bytes the connection delivers and gives back the bytes to write; the
//! host shell ([`crate::host::tcp_pull`]) owns the TCP or TLS stream. The exchange:
//! - both sides open with a CSM (RFC 8323 §5.3); the pull announces its Max-Message-Size and
//!   Block-Wise-Transfer, and waits for the host's CSM before its first request, since BERT
//!   may only be asked for from a host that announced it;
//! - the first GET asks for block 0 (or the resume block) with Size2 = 0, as the UDP pull does,
//!   with SZX 7 (BERT, §6) when the host supports it, else SZX 6;
//! - the answer fixes the ETag, the total size and the block length (a BERT block is any
//!   multiple of 1024 bytes); the following blocks are then asked for `window` at a time on
//!   the one connection (each request its own token), so a long round trip is paid once per
//!   window, not once per block;
//! - ETag rules as for the UDP pull ([`super::coap`]): a resume continues only under the same
//!   ETag, a changed ETag restarts from byte 0 (a few times at most), so bytes of two versions
//!   never meet in the slot.
//!
//! TCP is reliable, so there are no retransmissions: a stalled or closed connection is the
//! shell's to report (Update Result 4).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

use super::coap::{CoapUri, Pulled};
use super::{PackageSink, PullError, Resume};
use crate::coap::Rng;
use crate::codec::block::{decode_uint_option, uint_option};
use crate::codec::coap_tcp::{self, BertBlock, Signal, BASE_MAX_MESSAGE_SIZE, BERT_SZX, BERT_UNIT};
use object5::UpdateResult;

/// How often a package whose ETag changes under the transfer is started over before the
/// pull gives up (Update Result 5): a host alternating versions would otherwise loop forever.
pub const MAX_RESTARTS: u8 = 3;

/// A coap+tcp:// or coaps+tcp:// URI (RFC 8323 §8.1, §8.2): the same authority, path and
/// query rules and default ports (5683, 5684) as coap:// and coaps://.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpUri {
    /// coaps+tcp:// (TLS) rather than coap+tcp://.
    pub secure: bool,
    /// Host, port, path and query (its `secure` says the same as ours).
    pub coap: CoapUri,
}

impl TcpUri {
    /// Parses `coap[s]+tcp://host[:port][/path][?query]`; another scheme is
    /// [`PullError::UnsupportedProtocol`].
    pub fn parse(uri: &str) -> Result<Self, PullError> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| PullError::InvalidUri(uri.to_string()))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "coap+tcp" => false,
            "coaps+tcp" => true,
            other => return Err(PullError::UnsupportedProtocol(other.to_string())),
        };
        let udp_scheme = if secure { "coaps" } else { "coap" };
        let coap = CoapUri::parse(&format!("{udp_scheme}://{rest}")).map_err(|e| match e {
            PullError::InvalidUri(_) => PullError::InvalidUri(uri.to_string()),
            other => other,
        })?;
        Ok(TcpUri { secure, coap })
    }
}

/// How a CoAP-over-TCP pull is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPullParams {
    /// Max-Message-Size announced in the CSM: the largest message the device buffers, which
    /// bounds the BERT block the host sends (at least 1152, RFC 8323 §5.3.1).
    pub max_message_size: u32,
    /// Block requests in flight at once on the connection (at least 1).
    pub window: usize,
    /// Largest package accepted (the candidate slot's capacity).
    pub max_size: u64,
}

impl Default for TcpPullParams {
    /// 17 KiB messages (16 KiB BERT blocks and their header), 16 requests in flight: 256 KiB
    /// per round trip, so on a long link TCP's congestion window, not the request window,
    /// sets the pace (with 4, a 256 KiB pull at RTT 100 ms took 1.48x HTTP's time, with 16
    /// 1.30x: `cargo bench -p tests --bench lossy_link`).
    fn default() -> Self {
        Self {
            max_message_size: 17 * 1024,
            window: 16,
            max_size: u64::MAX,
        }
    }
}

/// What a request in flight asked for.
#[derive(Clone, Copy, Debug)]
struct Asked {
    token: [u8; 4],
    offset: u64,
}

/// A block that arrived ahead of the bytes before it.
#[derive(Debug)]
struct Early {
    payload: Vec<u8>,
    more: bool,
}

/// A CoAP-over-TCP download in progress.
#[derive(Debug)]
pub struct TcpPull {
    uri: CoapUri,
    params: TcpPullParams,
    rng: Rng,
    /// Bytes to write to the connection.
    out: Vec<u8>,
    /// Bytes read from the connection and not yet a whole message.
    input: Vec<u8>,
    /// The host's CSM: its Max-Message-Size and BERT support.
    peer: Option<(u32, bool)>,
    /// SZX asked for: 7 (BERT) or 0..=6.
    szx: u8,
    /// Bytes one block carries, learnt from the first answer (requests before that ask for
    /// one block only).
    block_len: Option<u64>,
    /// Bytes accepted by the sink.
    offset: u64,
    /// Next offset to ask for.
    next_ask: u64,
    /// Where the package ends, once known (Size2 or the last block).
    total: Option<u64>,
    /// The last block has been seen and ends here.
    end: Option<u64>,
    resume_etag: Option<Vec<u8>>,
    etag: Option<Vec<u8>>,
    started: bool,
    resumed: bool,
    restarts: u8,
    asked: VecDeque<Asked>,
    early: BTreeMap<u64, Early>,
}

fn lost(what: impl Into<String>) -> PullError {
    PullError::ConnectionLost(what.into())
}

impl TcpPull {
    /// Prepares a pull of `uri`; the CSM is ready to write at once. With `resume`, the first
    /// request asks for the 1024-byte block holding the persisted offset.
    pub fn new(uri: CoapUri, resume: Option<&Resume>, params: TcpPullParams, seed: u64) -> Self {
        let params = TcpPullParams {
            max_message_size: params.max_message_size.max(BASE_MAX_MESSAGE_SIZE),
            window: params.window.max(1),
            ..params
        };
        let (offset, resume_etag) = match resume {
            Some(Resume {
                offset,
                etag: Some(e),
            }) if *offset > 0 => (offset / BERT_UNIT * BERT_UNIT, Some(e.clone())),
            _ => (0, None),
        };
        TcpPull {
            uri,
            params,
            rng: Rng::new(seed),
            out: coap_tcp::csm(params.max_message_size, true),
            input: Vec::new(),
            peer: None,
            szx: BERT_SZX,
            block_len: None,
            offset,
            next_ask: offset,
            total: None,
            end: None,
            resume_etag,
            etag: None,
            started: false,
            resumed: false,
            restarts: 0,
            asked: VecDeque::new(),
            early: BTreeMap::new(),
        }
    }

    /// Bytes stored so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The largest message this pull accepts.
    pub fn max_message_size(&self) -> u32 {
        self.params.max_message_size
    }

    /// Bytes to write to the connection, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| core::mem::take(&mut self.out))
    }

    /// Feeds bytes read from the connection. Returns the finished pull once the last block
    /// is stored. A protocol error queues an Abort (write it before closing) and is returned
    /// as "connection lost".
    pub fn handle_bytes(
        &mut self,
        bytes: &[u8],
        sink: &mut dyn PackageSink,
    ) -> Result<Option<Pulled>, PullError> {
        self.input.extend_from_slice(bytes);
        let mut used = 0;
        let result = loop {
            let rest = self.input.get(used..).unwrap_or_default();
            match coap_tcp::decode(rest, self.params.max_message_size) {
                Ok(None) => break Ok(None),
                Ok(Some((packet, n))) => {
                    used += n;
                    match self.on_message(&packet, sink) {
                        Ok(None) => {}
                        other => break other,
                    }
                }
                Err(e) => {
                    self.out
                        .extend_from_slice(&coap_tcp::abort(&e.to_string(), None));
                    break Err(lost(format!(
                        "malformed message from the package host: {e}"
                    )));
                }
            }
        };
        self.input.drain(..used.min(self.input.len()));
        result
    }

    fn on_message(
        &mut self,
        p: &Packet,
        sink: &mut dyn PackageSink,
    ) -> Result<Option<Pulled>, PullError> {
        match coap_tcp::signal(p) {
            Some(Ok(Signal::Csm {
                max_message_size,
                block_wise,
            })) => {
                let first = self.peer.is_none();
                self.peer = Some((
                    max_message_size.unwrap_or(BASE_MAX_MESSAGE_SIZE),
                    block_wise,
                ));
                if first {
                    self.szx = if block_wise { BERT_SZX } else { 6 };
                    self.ask_more();
                }
                return Ok(None);
            }
            Some(Ok(Signal::Ping)) => {
                self.out.extend_from_slice(&coap_tcp::pong(p.get_token()));
                return Ok(None);
            }
            Some(Ok(Signal::Pong | Signal::Other(_))) => return Ok(None),
            Some(Ok(Signal::Release)) => {
                return Err(lost("the package host released the connection"))
            }
            Some(Ok(Signal::Abort)) => {
                return Err(lost(format!(
                    "the package host aborted the connection: {}",
                    String::from_utf8_lossy(&p.payload)
                )))
            }
            Some(Err(e)) => {
                let bad = match e {
                    coap_tcp::FrameError::BadCsmOption(n) => Some(n),
                    _ => None,
                };
                self.out
                    .extend_from_slice(&coap_tcp::abort(&e.to_string(), bad));
                return Err(lost(format!("bad CSM from the package host: {e}")));
            }
            None => {}
        }
        if p.header.code == MessageClass::Empty {
            return Ok(None); // may be sent at any time and is ignored (RFC 8323 §3.4)
        }
        if self.peer.is_none() {
            // RFC 8323 §5.3: the CSM is the first message; anything else is a connection error.
            self.out
                .extend_from_slice(&coap_tcp::abort("CSM expected first", None));
            return Err(lost("the package host sent a message before its CSM"));
        }
        let Some(at) = self.asked.iter().position(|a| a.token == p.get_token()) else {
            return Ok(None); // an answer to a request of an abandoned transfer
        };
        let asked = self.asked.remove(at).unwrap_or(Asked {
            token: [0; 4],
            offset: 0,
        });
        self.on_response(p, asked.offset, sink)
    }

    /// Sends a GET for the block at `offset`.
    fn ask(&mut self, offset: u64) -> Result<(), PullError> {
        let unit = if self.szx == BERT_SZX {
            BERT_UNIT
        } else {
            1u64 << (self.szx + 4)
        };
        let num = u32::try_from(offset / unit).map_err(|_| PullError::TooLarge)?;
        let block = BertBlock {
            num,
            more: false,
            szx: self.szx,
        }
        .encode()
        .ok_or(PullError::TooLarge)?;
        let token = (self.rng.next_u64() as u32).to_be_bytes();
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        p.set_token(token.to_vec());
        for seg in &self.uri.path {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in &self.uri.query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.add_option(CoapOption::Block2, block);
        if !self.started {
            p.add_option(CoapOption::Size2, uint_option(0));
        }
        self.out.extend_from_slice(&coap_tcp::encode(&p));
        self.asked.push_back(Asked { token, offset });
        Ok(())
    }

    /// Fills the window: one request until the first answer tells the block length, then up
    /// to `window` ahead, never past the end when it is known.
    fn ask_more(&mut self) {
        let limit = match self.block_len {
            None => 1,
            Some(_) => self.params.window,
        };
        // Bytes wanted again after a block shorter than expected left a gap.
        if self.asked.is_empty() && !self.early.contains_key(&self.offset) {
            self.next_ask = self.next_ask.min(self.offset);
        }
        while self.asked.len() < limit {
            let end = self.end.or(self.total);
            let past_end = end.is_some_and(|e| self.next_ask >= e);
            if past_end || (self.total.is_none() && !self.asked.is_empty()) {
                break;
            }
            let at = self.next_ask;
            if self.ask(at).is_err() {
                break;
            }
            self.next_ask = at + self.block_len.unwrap_or(BERT_UNIT);
        }
    }

    /// Forgets the transfer under way and asks for block 0 again.
    fn restart(&mut self) -> Result<Option<Pulled>, PullError> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(PullError::Sink(UpdateResult::IntegrityFailure));
        }
        self.offset = 0;
        self.next_ask = 0;
        self.resume_etag = None;
        self.etag = None;
        self.started = false;
        self.resumed = false;
        self.total = None;
        self.end = None;
        self.block_len = None;
        self.asked.clear();
        self.early.clear();
        self.ask_more();
        Ok(None)
    }

    fn on_response(
        &mut self,
        p: &Packet,
        asked_at: u64,
        sink: &mut dyn PackageSink,
    ) -> Result<Option<Pulled>, PullError> {
        match p.header.code {
            MessageClass::Response(ResponseType::Content) => {}
            MessageClass::Response(ResponseType::NotFound) => return Err(PullError::NotFound),
            // A request past the end of a package whose size was not announced.
            MessageClass::Response(_) if self.end.is_some_and(|e| asked_at >= e) => {
                return Ok(None)
            }
            MessageClass::Response(code) => {
                return Err(lost(format!("package host answered {code:?}")))
            }
            _ => return Err(lost("unexpected message from the package host")),
        }
        let etag = p.get_first_option(CoapOption::ETag).cloned();
        let size2 = p
            .get_first_option(CoapOption::Size2)
            .and_then(|raw| decode_uint_option(raw).ok())
            .map(u64::from);
        let block = match p.get_first_option(CoapOption::Block2) {
            Some(raw) => {
                Some(BertBlock::decode(raw).ok_or_else(|| lost("malformed Block2 option"))?)
            }
            None => None,
        };
        if !self.started {
            if self.offset > 0 && (etag.is_none() || etag != self.resume_etag) {
                // The persisted bytes belong to another representation: start over.
                return self.restart();
            }
            if size2.is_some_and(|s| s > self.params.max_size) {
                return Err(PullError::TooLarge);
            }
            sink.start(self.offset, etag.as_deref(), size2)?;
            self.resumed = self.offset > 0;
            self.etag = etag.clone();
            self.started = true;
            self.total = size2.filter(|s| *s > 0);
        } else if etag != self.etag {
            // The package changed under the transfer (RFC 7959 §2.4): start over.
            return self.restart();
        }
        let (at, more) = match block {
            Some(b) => (b.offset(), b.more),
            None if asked_at == 0 => (0, false),
            None => return Err(lost("Block2 missing in answer")),
        };
        if at != asked_at {
            return Err(lost(format!(
                "block at offset {at} answers a request for offset {asked_at}"
            )));
        }
        let len = p.payload.len() as u64;
        if let Some(b) = block.filter(|_| more) {
            // A block before the last is whole: a multiple of 1024 bytes for BERT, exactly
            // 2^(SZX+4) otherwise (RFC 8323 §6, RFC 7959 §2.2).
            let whole = if b.is_bert() {
                len > 0 && len.is_multiple_of(BERT_UNIT)
            } else {
                len == b.unit()
            };
            if !whole {
                return Err(lost(format!("short block of {len} bytes before the last")));
            }
            if b.szx > self.szx {
                return Err(lost("the host answered with larger blocks than asked for"));
            }
            // Follow a smaller size the host chose (RFC 7959 §2.4).
            self.szx = b.szx;
            self.block_len.get_or_insert(len);
            // The first answer tells the block length the requests so far only guessed.
            self.next_ask = self.next_ask.max(at + len);
        }
        if at.saturating_add(len) > self.params.max_size {
            return Err(PullError::TooLarge);
        }
        if !more {
            self.end = Some(at + len);
            if self.total.is_some_and(|t| t != at + len) {
                return Err(lost(format!(
                    "package ended at {} bytes, Size2 said {}",
                    at + len,
                    self.total.unwrap_or(0)
                )));
            }
        }
        if self.early.len() <= self.params.window {
            self.early.insert(
                at,
                Early {
                    payload: p.payload.clone(),
                    more,
                },
            );
        }
        // Store what continues the bytes already stored.
        while let Some((&start, _)) = self.early.range(..=self.offset).next_back() {
            let Some(e) = self.early.remove(&start) else {
                break;
            };
            let end = start + e.payload.len() as u64;
            if end > self.offset {
                let skip = usize::try_from(self.offset - start).unwrap_or(usize::MAX);
                sink.write(self.offset, e.payload.get(skip..).unwrap_or_default())?;
                self.offset = end;
            }
            if !e.more && self.offset == end {
                return Ok(Some(Pulled {
                    size: self.offset,
                    resumed: self.resumed,
                    etag: self.etag.clone(),
                }));
            }
        }
        self.ask_more();
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::MemSink;

    /// An in-process host: answers each request frame of `wire` for `body` with BERT blocks
    /// of `bert` bytes (or the SZX asked for when it is not 7).
    struct Host {
        body: Vec<u8>,
        etag: Vec<u8>,
        bert: usize,
        block_wise: bool,
        input: Vec<u8>,
        requests: usize,
    }

    impl Host {
        fn new(body: Vec<u8>, etag: &[u8]) -> Self {
            Host {
                body,
                etag: etag.to_vec(),
                bert: 4096,
                block_wise: true,
                input: Vec::new(),
                requests: 0,
            }
        }

        fn answer(&mut self, wire: &[u8]) -> Vec<u8> {
            self.input.extend_from_slice(wire);
            let mut out = Vec::new();
            while let Some((req, n)) = coap_tcp::decode(&self.input, u32::MAX).unwrap() {
                self.input.drain(..n);
                if let Some(Ok(Signal::Csm { .. })) = coap_tcp::signal(&req) {
                    out.extend(coap_tcp::csm(8192, self.block_wise));
                    continue;
                }
                self.requests += 1;
                let b =
                    BertBlock::decode(req.get_first_option(CoapOption::Block2).unwrap()).unwrap();
                let len = if b.is_bert() {
                    self.bert
                } else {
                    b.unit() as usize
                };
                let start = (b.offset() as usize).min(self.body.len());
                let end = (start + len).min(self.body.len());
                let mut r = Packet::new();
                r.header.code = MessageClass::Response(ResponseType::Content);
                r.set_token(req.get_token().to_vec());
                r.add_option(CoapOption::ETag, self.etag.clone());
                r.add_option(
                    CoapOption::Block2,
                    BertBlock {
                        num: b.num,
                        more: end < self.body.len(),
                        szx: b.szx,
                    }
                    .encode()
                    .unwrap(),
                );
                if req.get_first_option(CoapOption::Size2).is_some() {
                    r.add_option(CoapOption::Size2, uint_option(self.body.len() as u32));
                }
                r.payload = self.body[start..end].to_vec();
                out.extend(coap_tcp::encode(&r));
            }
            out
        }
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn uri() -> CoapUri {
        TcpUri::parse("coap+tcp://127.0.0.1/fw/p.suit")
            .unwrap()
            .coap
    }

    /// Runs `pull` against `host`, delivering the host's bytes in pieces of `chunk` bytes.
    fn run(
        pull: &mut TcpPull,
        host: &mut Host,
        sink: &mut MemSink,
        chunk: usize,
    ) -> Result<Pulled, PullError> {
        for _ in 0..100_000 {
            let wire = pull
                .poll_transmit()
                .expect("the pull has something to send");
            let reply = host.answer(&wire);
            for piece in reply.chunks(chunk.max(1)) {
                if let Some(done) = pull.handle_bytes(piece, sink)? {
                    return Ok(done);
                }
            }
        }
        panic!("pull did not finish");
    }

    #[test]
    fn uri_schemes_and_default_ports() {
        let u = TcpUri::parse("coaps+tcp://[::1]/fw/a").unwrap();
        assert!(u.secure && u.coap.port == 5684 && u.coap.host == "::1");
        let u = TcpUri::parse("COAP+TCP://h:99/x?y=1").unwrap();
        assert!(!u.secure && u.coap.port == 99 && u.coap.query == ["y=1"]);
        assert!(matches!(
            TcpUri::parse("coap+ws://h/x"),
            Err(PullError::UnsupportedProtocol(_))
        ));
        for bad in ["coap+tcp://", "coap+tcp://h:70000/x", "coap+tcp:/h"] {
            assert!(
                matches!(TcpUri::parse(bad), Err(PullError::InvalidUri(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bert_pull_with_a_window_in_odd_pieces() {
        let data = body(100_000);
        for (window, chunk) in [(1, 7), (4, 1000), (8, 65536)] {
            let mut host = Host::new(data.clone(), b"e1");
            let params = TcpPullParams {
                window,
                ..TcpPullParams::default()
            };
            let mut pull = TcpPull::new(uri(), None, params, 9);
            let mut sink = MemSink::default();
            let done = run(&mut pull, &mut host, &mut sink, chunk).unwrap();
            assert_eq!(done.size, 100_000);
            assert!(sink.data == data);
            // 25 BERT blocks of 4 KiB, never one past the end.
            assert_eq!(host.requests, 25, "window {window}");
        }
    }

    #[test]
    fn falls_back_to_szx_6_without_bert() {
        let data = body(5000);
        let mut host = Host::new(data.clone(), b"e1");
        host.block_wise = false;
        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 1);
        let mut sink = MemSink::default();
        run(&mut pull, &mut host, &mut sink, 512).unwrap();
        assert!(sink.data == data);
        assert_eq!(host.requests, 5);
    }

    #[test]
    fn resume_same_etag_continues_other_etag_restarts() {
        let data = body(50_000);
        let resume = Resume {
            offset: 20_000,
            etag: Some(b"e1".to_vec()),
        };
        let mut host = Host::new(data.clone(), b"e1");
        let mut pull = TcpPull::new(uri(), Some(&resume), TcpPullParams::default(), 2);
        let mut sink = MemSink {
            data: data[..19_456].to_vec(),
            starts: vec![],
        };
        let done = run(&mut pull, &mut host, &mut sink, 4096).unwrap();
        assert!(done.resumed);
        assert_eq!(sink.starts, vec![19 * 1024]);
        assert!(sink.data == data);

        let mut host = Host::new(data.clone(), b"e2");
        let mut pull = TcpPull::new(uri(), Some(&resume), TcpPullParams::default(), 3);
        let mut sink = MemSink {
            data: vec![0xEE; 19_456],
            starts: vec![],
        };
        let done = run(&mut pull, &mut host, &mut sink, 4096).unwrap();
        assert!(!done.resumed);
        assert_eq!(sink.starts, vec![0]);
        assert!(sink.data == data);
    }

    #[test]
    fn an_etag_change_mid_transfer_restarts_and_a_flapping_host_is_refused() {
        let data = body(40_000);
        let mut host = Host::new(data.clone(), b"v1");
        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 4);
        let mut sink = MemSink::default();
        // Two round trips under v1, then the host changes version.
        for _ in 0..2 {
            let wire = pull.poll_transmit().unwrap();
            let reply = host.answer(&wire);
            assert!(pull.handle_bytes(&reply, &mut sink).unwrap().is_none());
        }
        assert!(sink.data.len() >= 4096);
        host.etag = b"v2".to_vec();
        let done = run(&mut pull, &mut host, &mut sink, 4096).unwrap();
        assert_eq!(done.etag.as_deref(), Some(&b"v2"[..]));
        assert_eq!(sink.starts, vec![0, 0]);
        assert!(sink.data == data);

        // A host whose ETag changes on every answer never gets bytes mixed: the pull ends
        // with Update Result 5 after MAX_RESTARTS.
        let mut host = Host::new(data.clone(), b"a");
        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 5);
        let mut sink = MemSink::default();
        let mut n = 0u32;
        let e = loop {
            let wire = pull.poll_transmit().unwrap();
            n += 1;
            host.etag = n.to_be_bytes().to_vec();
            match pull.handle_bytes(&host.answer(&wire), &mut sink) {
                Ok(None) => continue,
                Ok(Some(_)) => panic!("finished with mixed versions"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.update_result(), UpdateResult::IntegrityFailure);
        assert!(sink.starts.iter().all(|s| *s == 0));
    }

    #[test]
    fn ping_is_answered_and_protocol_errors_abort() {
        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 6);
        let _csm = pull.poll_transmit().unwrap();
        // A request/response before the host's CSM is a connection error (RFC 8323 §5.3).
        let mut r = Packet::new();
        r.header.code = MessageClass::Response(ResponseType::Content);
        let e = pull
            .handle_bytes(&coap_tcp::encode(&r), &mut MemSink::default())
            .unwrap_err();
        assert_eq!(e.update_result(), UpdateResult::ConnectionLost);
        let abort = pull.poll_transmit().unwrap();
        let (a, _) = coap_tcp::decode(&abort, 4096).unwrap().unwrap();
        assert_eq!(coap_tcp::signal(&a), Some(Ok(Signal::Abort)));

        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 7);
        let _csm = pull.poll_transmit().unwrap();
        let mut wire = coap_tcp::csm(4096, true);
        wire.extend(coap_tcp::ping(&[1, 2]));
        pull.handle_bytes(&wire, &mut MemSink::default()).unwrap();
        let out = pull.poll_transmit().unwrap();
        let (get, n) = coap_tcp::decode(&out, 4096).unwrap().unwrap();
        assert_eq!(get.header.code, MessageClass::Request(RequestType::Get));
        let (pong, _) = coap_tcp::decode(&out[n..], 4096).unwrap().unwrap();
        assert_eq!(
            (coap_tcp::signal(&pong), pong.get_token()),
            (Some(Ok(Signal::Pong)), &[1u8, 2][..])
        );
        // A frame over our Max-Message-Size is refused from its header alone.
        let e = pull
            .handle_bytes(&[0xF0, 0x7F, 0, 0, 0], &mut MemSink::default())
            .unwrap_err();
        assert!(e.to_string().contains("Max-Message-Size"), "{e}");
        // Abort from the host.
        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 8);
        let e = pull
            .handle_bytes(&coap_tcp::abort("go away", None), &mut MemSink::default())
            .unwrap_err();
        assert!(e.to_string().contains("go away"), "{e}");
    }

    #[test]
    fn not_found_too_large_and_short_blocks() {
        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 10);
        let mut host = Host::new(body(10), b"e");
        let wire = pull.poll_transmit().unwrap();
        pull.handle_bytes(&host.answer(&wire), &mut MemSink::default())
            .unwrap();
        let get = pull.poll_transmit().unwrap();
        let (req, _) = coap_tcp::decode(&get, 4096).unwrap().unwrap();
        let mut nf = Packet::new();
        nf.header.code = MessageClass::Response(ResponseType::NotFound);
        nf.set_token(req.get_token().to_vec());
        let e = pull
            .handle_bytes(&coap_tcp::encode(&nf), &mut MemSink::default())
            .unwrap_err();
        assert_eq!(e.update_result(), UpdateResult::InvalidUri);

        let params = TcpPullParams {
            max_size: 8192,
            ..TcpPullParams::default()
        };
        let mut pull = TcpPull::new(uri(), None, params, 11);
        let mut host = Host::new(body(9000), b"e");
        let e = run(&mut pull, &mut host, &mut MemSink::default(), 100).unwrap_err();
        assert_eq!(e.update_result(), UpdateResult::NotEnoughFlash);

        // A BERT block that is not a multiple of 1024 before the last.
        let mut pull = TcpPull::new(uri(), None, TcpPullParams::default(), 12);
        let mut host = Host::new(body(9000), b"e");
        host.bert = 1500;
        let e = run(&mut pull, &mut host, &mut MemSink::default(), 100).unwrap_err();
        assert!(e.to_string().contains("short block"), "{e}");
    }
}

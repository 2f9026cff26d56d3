//! coap:// and coaps:// pulls with Block2 (RFC 7959), sans-IO.
//!
//! [`Block2Pull`] produces the GET requests, matches responses by token, retransmits each
//! confirmable request on the RFC 7252 schedule (a block whose retries run out ends the pull with
//! "connection lost"), streams every block into the [`PackageSink`] and follows the entity tag:
//! a resume starts at the persisted offset and continues only if the server still has the same
//! ETag; a different ETag (at resume or mid-transfer) restarts from byte 0. Block numbers use
//! the full 20 bits, so packages past 4 MiB work. The first request carries Size2 = 0 so the
//! server tells the total size and an oversized package is refused before it is stored.
//!
//! A device that restarts draws new message ids but may draw ones it used shortly before,
//! which the host still holds for EXCHANGE_LIFETIME (RFC 7252 §4.4, §4.5): it answers such a
//! request with the response it cached for the old one, whose token is not ours, to every
//! retransmission. That answer makes the request go again at once under a message id drawn
//! anew ([`MAX_MID_REDRAWS`] times per pull, so a host that always answers with a foreign
//! token cannot keep it busy) instead of retransmitting into the cache until the pull is lost.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use super::{PackageSink, PullError, Resume};
use crate::coap::{empty, packet, Rng, TxParams};
use crate::codec::block::{decode_uint_option, uint_option, BlockOpt};

/// A parsed coap:// or coaps:// URI: what the transport needs to connect and the request
/// options to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoapUri {
    /// coaps:// (DTLS) rather than coap://.
    pub secure: bool,
    /// Host name or IP literal (without IPv6 brackets).
    pub host: String,
    /// UDP port (5683 / 5684 by default).
    pub port: u16,
    /// Uri-Path segments, percent-decoded.
    pub path: Vec<String>,
    /// Uri-Query arguments, percent-decoded.
    pub query: Vec<String>,
}

fn percent_decode(s: &str) -> Result<String, PullError> {
    let bad = || PullError::InvalidUri(s.to_string());
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = core::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl CoapUri {
    /// Parses `coap[s]://host[:port][/path][?query]` (RFC 7252 §6.4).
    pub fn parse(uri: &str) -> Result<Self, PullError> {
        let bad = || PullError::InvalidUri(uri.to_string());
        let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "coap" => false,
            "coaps" => true,
            other => return Err(PullError::UnsupportedProtocol(other.to_string())),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if secure => 5684,
            None => 5683,
        };
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_query, None),
        };
        let path = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect::<Result<Vec<_>, _>>()?;
        let query = query
            .map(|q| {
                q.split('&')
                    .filter(|s| !s.is_empty())
                    .map(percent_decode)
                    .collect()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(CoapUri {
            secure,
            host: host.to_string(),
            port,
            path,
            query,
        })
    }
}

/// The request in flight and its retransmission state.
#[derive(Debug)]
struct Outstanding {
    bytes: Vec<u8>,
    mid: u16,
    token: [u8; 4],
    num: u32,
    retransmits: u8,
    timeout_ms: u64,
    deadline_ms: u64,
    /// The server sent an empty ACK: stop retransmitting, wait for the separate response.
    acked: bool,
    /// Not put on the wire yet.
    unsent: bool,
}

/// A completed pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// Total bytes of the package.
    pub size: u64,
    /// Whether the transfer continued from a resume offset.
    pub resumed: bool,
    /// The entity tag of what was downloaded.
    pub etag: Option<Vec<u8>>,
}

/// Message ids drawn anew per pull after the host answered one with another request's
/// response.
pub const MAX_MID_REDRAWS: u8 = 8;

/// A pull's message ids: consecutive from a random start, drawn anew when the host answers one
/// from its deduplication cache (module doc).
#[derive(Debug)]
pub(crate) struct MessageIds {
    next: u16,
    redraws: u8,
}

impl MessageIds {
    pub(crate) fn new(rng: &mut Rng) -> Self {
        Self {
            next: rng.next_u64() as u16,
            redraws: 0,
        }
    }

    /// The id for the next request.
    pub(crate) fn take(&mut self) -> u16 {
        let mid = self.next;
        self.next = self.next.wrapping_add(1);
        mid
    }

    /// True when `p`, which came under our request's message id, is the host's cached answer
    /// to an older request with that id: a piggybacked response whose token is not ours
    /// (`ours` false). The next id is then drawn anew for the request to go again,
    /// [`MAX_MID_REDRAWS`] times per pull at most.
    pub(crate) fn stale_answer(&mut self, p: &Packet, ours: bool, rng: &mut Rng) -> bool {
        let piggybacked = p.header.get_type() == MessageType::Acknowledgement
            && p.header.code != MessageClass::Empty;
        if ours || !piggybacked || self.redraws >= MAX_MID_REDRAWS {
            return false;
        }
        self.redraws += 1;
        self.next = rng.next_u64() as u16;
        true
    }
}

/// A Block2 download in progress.
#[derive(Debug)]
pub struct Block2Pull {
    uri: CoapUri,
    szx: u8,
    tx: TxParams,
    rng: Rng,
    max_size: u64,
    /// Bytes accepted by the sink.
    offset: u64,
    /// ETag the persisted bytes belong to (resume), checked against the first answer.
    resume_etag: Option<Vec<u8>>,
    /// ETag of the transfer under way, fixed by its first answer.
    etag: Option<Vec<u8>>,
    /// The sink has been told where this transfer starts.
    started: bool,
    resumed: bool,
    mids: MessageIds,
    out: Option<Outstanding>,
    acks: VecDeque<Vec<u8>>,
    /// A block accepted (counted in `offset`) but not yet given to the sink: its offset and
    /// bytes (see [`Block2Pull::store`]).
    unstored: Option<(u64, Vec<u8>)>,
}

impl Block2Pull {
    /// Prepares a pull of `uri` with blocks of `block_size` bytes (rounded down to a power of
    /// two in 16..=1024). With `resume`, the first request asks for the block holding the
    /// persisted offset (rounded down to a block boundary).
    pub fn new(
        uri: CoapUri,
        resume: Option<&Resume>,
        block_size: usize,
        tx: TxParams,
        seed: u64,
        max_size: u64,
    ) -> Self {
        let szx = BlockOpt::szx_for_size(block_size);
        let mut rng = Rng::new(seed);
        let mids = MessageIds::new(&mut rng);
        let bs = 1u64 << (szx + 4);
        let (offset, resume_etag) = Resume::block_start(resume, bs);
        let mut pull = Block2Pull {
            uri,
            szx,
            tx,
            rng,
            max_size,
            offset,
            resume_etag,
            etag: None,
            started: false,
            resumed: false,
            mids,
            out: None,
            acks: VecDeque::new(),
            unstored: None,
        };
        pull.request_block(u32::try_from(offset / bs).unwrap_or(u32::MAX));
        pull
    }

    /// The URI being pulled (the transport connects to its host and port).
    pub fn uri(&self) -> &CoapUri {
        &self.uri
    }

    /// Bytes given to the sink so far.
    pub fn offset(&self) -> u64 {
        self.offset - self.unstored.as_ref().map_or(0, |(_, b)| b.len() as u64)
    }

    fn request_block(&mut self, num: u32) {
        let mid = self.mids.take();
        let token = (self.rng.next_u64() as u32).to_be_bytes();
        let mut p = packet(
            MessageType::Confirmable,
            MessageClass::Request(RequestType::Get),
            mid,
            &token,
        );
        for seg in &self.uri.path {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in &self.uri.query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        // A block number past 20 bits cannot be asked for: the package is too large anyway.
        let block = BlockOpt::new(num, false, self.szx).unwrap_or(BlockOpt {
            num: crate::codec::block::MAX_NUM,
            more: false,
            szx: self.szx,
        });
        p.add_option(CoapOption::Block2, block.encode());
        if !self.started {
            p.add_option(CoapOption::Size2, uint_option(0));
        }
        let timeout_ms = self.tx.initial_timeout(&mut self.rng);
        self.out = Some(Outstanding {
            bytes: p.to_bytes().unwrap_or_default(),
            mid,
            token,
            num,
            retransmits: 0,
            timeout_ms,
            deadline_ms: 0,
            acked: false,
            unsent: true,
        });
    }

    /// The next datagram to send: pending ACKs first, then a request not sent yet.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if let Some(a) = self.acks.pop_front() {
            return Some(a);
        }
        let out = self.out.as_mut()?;
        if !out.unsent {
            return None;
        }
        out.unsent = false;
        out.deadline_ms = now_ms + out.timeout_ms;
        Some(out.bytes.clone())
    }

    /// When [`Block2Pull::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.out
            .as_ref()
            .filter(|o| !o.unsent)
            .map(|o| o.deadline_ms)
    }

    /// The timer fired: retransmit the request (doubling the timeout), or give up.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), PullError> {
        let tx = self.tx;
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        if out.unsent || now_ms < out.deadline_ms {
            return Ok(());
        }
        if out.acked || out.retransmits >= tx.max_retransmit {
            return Err(PullError::ConnectionLost(format!(
                "no answer for block {} after {} retransmissions",
                out.num, out.retransmits
            )));
        }
        out.retransmits += 1;
        out.timeout_ms *= 2;
        out.unsent = true;
        Ok(())
    }

    /// Feeds a datagram from the package host. Returns the finished pull when the last block
    /// was stored.
    pub fn handle_datagram(
        &mut self,
        datagram: &[u8],
        now_ms: u64,
        sink: &mut dyn PackageSink,
    ) -> Result<Option<Pulled>, PullError> {
        // Blocks reach the sink in order: one accepted earlier goes first.
        self.store(sink)?;
        let Ok(p) = Packet::from_bytes(datagram) else {
            return Ok(None); // not CoAP: ignore, as RFC 7252 §4.2 allows
        };
        let Some(out) = self.out.as_mut() else {
            return Ok(None);
        };
        let mine_by_mid = p.header.message_id == out.mid;
        match (p.header.get_type(), p.header.code) {
            (MessageType::Reset, _) if mine_by_mid => {
                return Err(PullError::ConnectionLost(
                    "request reset by the server".into(),
                ))
            }
            (MessageType::Acknowledgement, MessageClass::Empty) if mine_by_mid => {
                out.acked = true;
                out.deadline_ms = now_ms + self.tx.max_transmit_wait_ms();
                return Ok(None);
            }
            (MessageType::Confirmable, _) => {
                // Acknowledge every confirmable response, even a stale duplicate, so the
                // server stops retransmitting it.
                if let Ok(ack) = empty(MessageType::Acknowledgement, p.header.message_id).to_bytes()
                {
                    self.acks.push_back(ack);
                }
            }
            _ => {}
        }
        if p.get_token() != out.token.as_slice() {
            let num = out.num;
            if mine_by_mid && self.mids.stale_answer(&p, false, &mut self.rng) {
                self.request_block(num);
            }
            return Ok(None);
        }
        let num = out.num;
        self.out = None;
        self.on_response(p, num, sink)
    }

    fn on_response(
        &mut self,
        mut p: Packet,
        num: u32,
        sink: &mut dyn PackageSink,
    ) -> Result<Option<Pulled>, PullError> {
        match p.header.code {
            MessageClass::Response(ResponseType::Content) => {}
            MessageClass::Response(ResponseType::NotFound) => return Err(PullError::NotFound),
            MessageClass::Response(code) => {
                return Err(PullError::ConnectionLost(format!(
                    "package host answered {code:?}"
                )))
            }
            _ => return Err(PullError::ConnectionLost("unexpected message".into())),
        }
        let etag = p
            .get_option(CoapOption::ETag)
            .and_then(|v| v.front().cloned());
        let block = match p.get_option(CoapOption::Block2).and_then(|v| v.front()) {
            Some(raw) => Some(
                BlockOpt::decode(raw)
                    .map_err(|_| PullError::ConnectionLost("malformed Block2 option".into()))?,
            ),
            None => None,
        };
        let size2 = p
            .get_option(CoapOption::Size2)
            .and_then(|v| v.front())
            .and_then(|raw| decode_uint_option(raw).ok())
            .map(u64::from);

        if !self.started {
            if self.offset > 0 && (etag.is_none() || etag != self.resume_etag) {
                // The persisted bytes belong to another representation: start over.
                self.offset = 0;
                self.resume_etag = None;
                self.started = false;
                self.request_block(0);
                return Ok(None);
            }
            if size2.is_some_and(|s| s > self.max_size) {
                return Err(PullError::TooLarge);
            }
            sink.start(self.offset, etag.as_deref(), size2)?;
            self.resumed = self.offset > 0;
            self.etag = etag.clone();
            self.started = true;
        } else if etag != self.etag {
            // The package changed under the transfer (RFC 7959 §2.4): restart from 0.
            self.offset = 0;
            self.started = false;
            self.resumed = false;
            self.request_block(0);
            return Ok(None);
        }

        let (more, at) = match block {
            Some(b) => (b.more, b.offset()),
            // No Block2: the whole representation in one response (only valid for block 0).
            None if num == 0 => (false, 0),
            None => return Err(PullError::ConnectionLost("Block2 missing in answer".into())),
        };
        if at != self.offset {
            return Err(PullError::ConnectionLost(format!(
                "block at offset {at} does not continue offset {}",
                self.offset
            )));
        }
        let payload = core::mem::take(&mut p.payload);
        let len = payload.len() as u64;
        let end = self.offset + len;
        if end > self.max_size {
            return Err(PullError::TooLarge);
        }
        if !more {
            sink.write(self.offset, &payload)?;
            self.offset = end;
            return Ok(Some(Pulled {
                size: self.offset,
                resumed: self.resumed,
                etag: self.etag.clone(),
            }));
        }
        if let Some(b) = block {
            // Follow a smaller block size the server chose (RFC 7959 §2.4).
            self.szx = self.szx.min(b.szx);
        }
        let bs = 1u64 << (self.szx + 4);
        if len == 0 || !end.is_multiple_of(bs) {
            return Err(PullError::ConnectionLost(
                "short block before the last".into(),
            ));
        }
        let next = u32::try_from(end / bs).map_err(|_| PullError::TooLarge)?;
        if next > crate::codec::block::MAX_NUM {
            return Err(PullError::TooLarge);
        }
        // The next request is queued before this block reaches the sink: see `store`.
        self.request_block(next);
        self.unstored = Some((self.offset, payload));
        self.offset = end;
        Ok(None)
    }

    /// Writes the block the last [`Block2Pull::handle_datagram`] accepted into `sink`.
    ///
    /// The request for the following block is queued by then, so a driver that sends it
    /// ([`Block2Pull::poll_transmit`]) before calling this overlaps the sink's work (digest,
    /// flash writes) with the round trip, as libcoap's client does. A driver that does not call
    /// it loses nothing: the next `handle_datagram` stores the block first, and the last block
    /// is stored before the pull reports completion.
    pub fn store(&mut self, sink: &mut dyn PackageSink) -> Result<(), PullError> {
        match self.unstored.take() {
            Some((at, bytes)) => sink.write(at, &bytes).map_err(PullError::from),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::{MemSink, SinkError};
    use object5::UpdateResult;

    /// A package host in-process: answers a request datagram for `body` with `etag`.
    fn answer(req: &[u8], body: &[u8], etag: &[u8], con: bool) -> Vec<u8> {
        let req = Packet::from_bytes(req).unwrap();
        let b = BlockOpt::decode(&req.get_option(CoapOption::Block2).unwrap().front().unwrap()[..])
            .unwrap();
        let start = (b.offset() as usize).min(body.len());
        let end = (start + b.size()).min(body.len());
        let (t, mid) = if con {
            (
                MessageType::Confirmable,
                req.header.message_id.wrapping_add(1000),
            )
        } else {
            (MessageType::Acknowledgement, req.header.message_id)
        };
        let mut r = packet(
            t,
            MessageClass::Response(ResponseType::Content),
            mid,
            req.get_token(),
        );
        r.add_option(CoapOption::ETag, etag.to_vec());
        r.add_option(
            CoapOption::Block2,
            BlockOpt::new(b.num, end < body.len(), b.szx)
                .unwrap()
                .encode(),
        );
        if req.get_option(CoapOption::Size2).is_some() {
            r.add_option(CoapOption::Size2, uint_option(body.len() as u32));
        }
        r.payload = body[start..end].to_vec();
        r.to_bytes().unwrap()
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8).collect()
    }

    fn uri() -> CoapUri {
        CoapUri::parse("coap://127.0.0.1:5683/fw/pkg.suit").unwrap()
    }

    /// Runs a pull against `body` to completion with a lossless in-process host.
    fn run(pull: &mut Block2Pull, body: &[u8], etag: &[u8], sink: &mut MemSink) -> Pulled {
        for _ in 0..200_000 {
            let req = pull.poll_transmit(0).expect("a request");
            if let Some(done) = pull
                .handle_datagram(&answer(&req, body, etag, false), 0, sink)
                .unwrap()
            {
                return done;
            }
        }
        panic!("pull did not finish");
    }

    #[test]
    fn uri_parsing() {
        let u = CoapUri::parse("coaps://[::1]/a%20b/c?x=1&y").unwrap();
        assert_eq!((u.secure, u.host.as_str(), u.port), (true, "::1", 5684));
        assert_eq!(u.path, vec!["a b", "c"]);
        assert_eq!(u.query, vec!["x=1", "y"]);
        assert!(matches!(
            CoapUri::parse("http://h/x"),
            Err(PullError::UnsupportedProtocol(_))
        ));
        for bad in [
            "coap://",
            "coap://h:99999/x",
            "coap://h/%zz",
            "coap://u@h/x",
            "nope",
        ] {
            assert!(
                matches!(CoapUri::parse(bad), Err(PullError::InvalidUri(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn pulls_past_block_4096_with_20_bit_numbers() {
        // 4 MiB + 1 KiB with 1 KiB blocks: the last block number is 4096.
        let data = body(4 * 1024 * 1024 + 1024);
        let mut pull = Block2Pull::new(uri(), None, 1024, TxParams::default(), 1, 8 << 20);
        let mut sink = MemSink::default();
        let done = run(&mut pull, &data, b"e1", &mut sink);
        assert_eq!(done.size, data.len() as u64);
        assert!(sink.data == data);
    }

    #[test]
    fn resume_with_same_etag_continues_and_changed_etag_restarts() {
        let data = body(10_000);
        let resume = Resume {
            offset: 4096,
            etag: Some(b"e1".to_vec()),
        };
        let mut pull = Block2Pull::new(uri(), Some(&resume), 512, TxParams::default(), 2, 1 << 20);
        let mut sink = MemSink {
            data: data[..4096].to_vec(),
            starts: vec![],
        };
        let done = run(&mut pull, &data, b"e1", &mut sink);
        assert!(done.resumed);
        assert_eq!(sink.starts, vec![4096]);
        assert!(sink.data == data);

        let mut pull = Block2Pull::new(uri(), Some(&resume), 512, TxParams::default(), 3, 1 << 20);
        let mut sink = MemSink {
            data: vec![0xEE; 4096],
            starts: vec![],
        };
        let done = run(&mut pull, &data, b"e2", &mut sink);
        assert!(!done.resumed);
        assert_eq!(sink.starts, vec![0]);
        assert!(sink.data == data);
    }

    #[test]
    fn next_request_is_queued_before_the_block_reaches_the_sink() {
        let data = body(2500);
        let mut pull = Block2Pull::new(uri(), None, 1024, TxParams::default(), 9, 1 << 20);
        let mut sink = MemSink::default();
        let req = pull.poll_transmit(0).unwrap();
        let got = pull.handle_datagram(&answer(&req, &data, b"e", false), 0, &mut sink);
        assert_eq!(got, Ok(None));
        // The request for block 1 can leave now; block 0 waits for `store` (libcoap's order:
        // the next request first, then the application's write).
        let next = Packet::from_bytes(&pull.poll_transmit(0).expect("next request")).unwrap();
        let b = BlockOpt::decode(next.get_first_option(CoapOption::Block2).unwrap()).unwrap();
        assert_eq!(b.num, 1);
        assert!(sink.data.is_empty());
        assert_eq!(pull.offset(), 0);
        pull.store(&mut sink).unwrap();
        assert!(sink.data == data[..1024]);
        assert_eq!(pull.offset(), 1024);
        pull.store(&mut sink).unwrap();
        assert_eq!(sink.data.len(), 1024, "stored once");
        // A driver that never calls `store`: the next datagram stores the pending block first,
        // and the last block is stored before completion is reported.
        let resp = answer(&next.to_bytes().unwrap(), &data, b"e", false);
        assert_eq!(pull.handle_datagram(&resp, 0, &mut sink), Ok(None));
        let last = pull.poll_transmit(0).unwrap();
        let done = pull
            .handle_datagram(&answer(&last, &data, b"e", false), 0, &mut sink)
            .unwrap()
            .expect("done");
        assert_eq!(done.size, 2500);
        assert!(sink.data == data);
    }

    #[test]
    fn a_sink_error_on_a_stored_block_ends_the_pull() {
        struct Refuse;
        impl PackageSink for Refuse {
            fn start(&mut self, _: u64, _: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
                Ok(())
            }
            fn write(&mut self, _: u64, _: &[u8]) -> Result<(), SinkError> {
                Err(SinkError(UpdateResult::NotEnoughFlash))
            }
        }
        let data = body(5000);
        let mut pull = Block2Pull::new(uri(), None, 1024, TxParams::default(), 10, 1 << 20);
        let req = pull.poll_transmit(0).unwrap();
        assert_eq!(
            pull.handle_datagram(&answer(&req, &data, b"e", false), 0, &mut Refuse),
            Ok(None)
        );
        assert_eq!(
            pull.store(&mut Refuse),
            Err(PullError::Sink(UpdateResult::NotEnoughFlash))
        );
    }

    fn mid_of(datagram: &[u8]) -> u16 {
        Packet::from_bytes(datagram).unwrap().header.message_id
    }

    #[test]
    fn a_message_id_the_host_still_holds_is_drawn_anew_after_a_restart() {
        let data = body(12 * 1024);
        // The host answers each message id once and repeats that answer for it after, as
        // RFC 7252 §4.5 deduplication does (aiocoap, libcoap, Californium).
        let mut cache = alloc::collections::BTreeMap::<u16, Vec<u8>>::new();
        let mut host = |req: &[u8]| {
            cache
                .entry(mid_of(req))
                .or_insert_with(|| answer(req, &data, b"e", false))
                .clone()
        };
        // Before the restart: four blocks, message ids m..m+4.
        let mut before = Block2Pull::new(uri(), None, 1024, TxParams::default(), 1, 1 << 20);
        let mut sink = MemSink::default();
        let first = mid_of(&before.poll_transmit(0).unwrap());
        before.out.as_mut().unwrap().unsent = true;
        for _ in 0..4 {
            let req = before.poll_transmit(0).unwrap();
            assert!(before
                .handle_datagram(&host(&req), 0, &mut sink)
                .unwrap()
                .is_none());
        }
        // After it: a pull whose first message id is the one block 2 went with.
        let seed = (2u64..)
            .find(|&s| {
                let mut p = Block2Pull::new(uri(), None, 1024, TxParams::default(), s, 1 << 20);
                mid_of(&p.poll_transmit(0).unwrap()) == first.wrapping_add(2)
            })
            .unwrap();
        let mut after = Block2Pull::new(uri(), None, 1024, TxParams::default(), seed, 1 << 20);
        let mut sink = MemSink::default();
        let mut now = 0;
        let done = loop {
            match after.poll_transmit(now) {
                Some(req) => {
                    if let Some(done) = after.handle_datagram(&host(&req), now, &mut sink).unwrap()
                    {
                        break done;
                    }
                }
                // Nothing to send: the timer (a retransmission into the cache, before).
                None => {
                    now = after.poll_timeout().unwrap();
                    after.handle_timeout(now).expect("the pull goes on");
                }
            }
        };
        assert_eq!(done.size, data.len() as u64);
        assert!(sink.data == data);
        assert_eq!(now, 0, "no retransmission was needed");
        assert_eq!(after.mids.redraws, 1);
    }

    #[test]
    fn retransmits_on_the_rfc_schedule_then_reports_connection_lost() {
        let tx = TxParams::default();
        let mut pull = Block2Pull::new(uri(), None, 1024, tx, 4, 1 << 20);
        let first = pull.poll_transmit(0).unwrap();
        let mut now = pull.poll_timeout().unwrap();
        assert!((2000..=3000).contains(&now), "initial timeout {now}");
        let mut gaps = vec![now];
        for _ in 0..4 {
            pull.handle_timeout(now).unwrap();
            let again = pull.poll_transmit(now).unwrap();
            assert_eq!(again, first, "a retransmission is the same message");
            let next = pull.poll_timeout().unwrap();
            gaps.push(next - now);
            now = next;
        }
        assert_eq!(gaps[1], gaps[0] * 2);
        assert_eq!(gaps[4], gaps[0] * 16);
        let e = pull.handle_timeout(now).unwrap_err();
        assert_eq!(e.update_result(), UpdateResult::ConnectionLost);
    }

    #[test]
    fn separate_confirmable_responses_are_acked_and_used() {
        let data = body(3000);
        let mut pull = Block2Pull::new(uri(), None, 1024, TxParams::default(), 5, 1 << 20);
        let mut sink = MemSink::default();
        let mut done = None;
        for _ in 0..10 {
            let req = pull.poll_transmit(0).unwrap();
            let mid = Packet::from_bytes(&req).unwrap().header.message_id;
            // Empty ACK first, then the response as a CON of its own.
            let ack = empty(MessageType::Acknowledgement, mid).to_bytes().unwrap();
            assert!(pull.handle_datagram(&ack, 0, &mut sink).unwrap().is_none());
            let resp = answer(&req, &data, b"e", true);
            done = pull.handle_datagram(&resp, 0, &mut sink).unwrap();
            let our_ack = Packet::from_bytes(&pull.poll_transmit(0).unwrap()).unwrap();
            assert_eq!(our_ack.header.get_type(), MessageType::Acknowledgement);
            assert_eq!(
                our_ack.header.message_id,
                Packet::from_bytes(&resp).unwrap().header.message_id
            );
            if done.is_some() {
                break;
            }
        }
        assert_eq!(done.unwrap().size, 3000);
        assert!(sink.data == data);
    }

    #[test]
    fn not_found_too_large_and_garbage() {
        let mut pull = Block2Pull::new(uri(), None, 1024, TxParams::default(), 6, 1 << 20);
        let req = Packet::from_bytes(&pull.poll_transmit(0).unwrap()).unwrap();
        let mut nf = packet(
            MessageType::Acknowledgement,
            MessageClass::Response(ResponseType::NotFound),
            req.header.message_id,
            req.get_token(),
        );
        nf.payload.clear();
        let e = pull
            .handle_datagram(&nf.to_bytes().unwrap(), 0, &mut MemSink::default())
            .unwrap_err();
        assert_eq!(e.update_result(), UpdateResult::InvalidUri);

        let data = body(5000);
        let mut pull = Block2Pull::new(uri(), None, 1024, TxParams::default(), 7, 4096);
        let req = pull.poll_transmit(0).unwrap();
        let e = pull
            .handle_datagram(
                &answer(&req, &data, b"e", false),
                0,
                &mut MemSink::default(),
            )
            .unwrap_err();
        assert_eq!(e.update_result(), UpdateResult::NotEnoughFlash);

        let mut pull = Block2Pull::new(uri(), None, 1024, TxParams::default(), 8, 4096);
        let _ = pull.poll_transmit(0);
        for junk in [
            &b""[..],
            &[0xff; 3],
            &[0x40, 0x01],
            &[0x61, 0x45, 0, 1, 0xff],
        ] {
            assert!(pull
                .handle_datagram(junk, 0, &mut MemSink::default())
                .unwrap()
                .is_none());
        }
    }
}

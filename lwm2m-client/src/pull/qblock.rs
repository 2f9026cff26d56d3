//! coap:// and coaps:// pulls with Q-Block2 (RFC 9177), sans-IO, falling back to Block2.
//!
//! Block2 keeps one block in flight, so a pull costs one round trip per block. With Q-Block2
//! the host answers a request with a burst of up to MAX_PAYLOADS blocks sent as NON
//! (RFC 9177 §4.4) and the device asks for the next set ("Continue") only once a set is
//! complete, so the pull costs one round trip per set. Lost blocks are asked for again in
//! one request carrying one Q-Block2 option per missing block.
//!
//! [`QBlock2Pull`] first probes the host with a Confirmable GET of the first 16 bytes of its
//! `/.well-known/core` with Q-Block2 (§4.1: support is probed with CON, so a host without Q-Block2
//! answers 4.02 Bad Option), as libcoap's and go-coap's clients do, then asks for the body with
//! NON requests: the blocks of one body go all CON or all NON (§7), and a host asked for a set
//! with CON sends the set as CON responses, one round trip each (§4.4, as libcoap does). The probe
//! does not ask for the package itself: a host that keeps a body per request for its missing
//! blocks (go-coap) would then hold two bodies matching the same request options and refuse the
//! requests for missing blocks as ambiguous (4.00). A host that answers 4.02, answers with Block2,
//! without any block option or with an error (aiocoap's file server, libcoap built without
//! Q-Block, the shim with Q-Block disabled, a host without `/.well-known/core`), or resets the
//! request, gets the same pull over plain Block2 ([`Block2Pull`]) instead. Later requests are
//! NON.
//!
//! Loss recovery, RFC 9177 §7.2 with the defaults of [`QBlockParams`]:
//! - a host sends the blocks of one request in order, all with that request's token, so a
//!   block that arrives proves the blocks its request asked for before it lost: they are asked
//!   for again as soon as the burst's last block (or the set's) arrives, within one round trip;
//! - otherwise, after NON_RECEIVE_TIMEOUT without a new block the missing blocks (or the
//!   Continue) are asked for again, the wait doubling each time; after NON_MAX_RETRANSMIT such
//!   requests, or NON_PARTIAL_TIMEOUT without progress, the pull ends as connection lost.
//!
//! Blocks arrive out of order but the [`PackageSink`] is a stream: a block that continues the
//! stream is written at once, a later one waits in a window of [`QBlockParams::window_blocks`]
//! blocks (RAM: window x block size, 20 KiB with the defaults and 1 KiB blocks, plus 6 bytes of
//! bookkeeping per block); blocks beyond the window are dropped and asked for again later.
//!
//! Entity tags as for Block2: a resume continues only if the host still has the persisted
//! ETag; a block of another ETag mid-transfer restarts the download from byte 0 (blocks of a
//! version given up are ignored); a host whose package keeps changing ends the pull with
//! [`PullError::Inconsistent`] (Update Result 5). A malformed Q-Block2 option, a block that
//! contradicts the body's size or two block options in one response end it as connection lost
//! (Update Result 4), like a malformed Block2 option; nothing of such a datagram is stored.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use super::coap::{Block2Pull, CoapUri, MessageIds, Pulled};
use super::{PackageSink, PullError, Resume};
use crate::coap::{empty, packet, Rng, TxParams};
use crate::codec::block::{decode_uint_option, uint_option, BlockOpt, MAX_NUM};
use crate::codec::qblock::{self, q_block2, q_block2_options, set_end, set_start};

/// The receiver's RFC 9177 §7.2 parameters (the host's NON_TIMEOUT paces its own sending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QBlockParams {
    /// MAX_PAYLOADS: blocks per set (10).
    pub max_payloads: u32,
    /// NON_RECEIVE_TIMEOUT in ms: wait for a missing block before asking again (4000).
    pub non_receive_timeout_ms: u64,
    /// NON_MAX_RETRANSMIT: requests without a new block before giving up (4).
    pub non_max_retransmit: u8,
    /// NON_PARTIAL_TIMEOUT in ms: longest time without a new block (247 000).
    pub non_partial_timeout_ms: u64,
    /// Blocks kept out of order (at least MAX_PAYLOADS; 2 x MAX_PAYLOADS by default, so a
    /// set the host sends unasked while an earlier one is incomplete is kept).
    pub window_blocks: u32,
}

impl Default for QBlockParams {
    fn default() -> Self {
        Self {
            max_payloads: qblock::MAX_PAYLOADS,
            non_receive_timeout_ms: qblock::NON_RECEIVE_TIMEOUT_MS,
            non_max_retransmit: qblock::NON_MAX_RETRANSMIT,
            non_partial_timeout_ms: qblock::NON_PARTIAL_TIMEOUT_MS,
            window_blocks: 2 * qblock::MAX_PAYLOADS,
        }
    }
}

impl QBlockParams {
    /// The defaults with the timers scaled to `ack_timeout_ms` as RFC 9177 §7.2 derives them
    /// (NON_TIMEOUT = ACK_TIMEOUT, NON_RECEIVE_TIMEOUT = 2 x NON_TIMEOUT), for links whose
    /// ACK_TIMEOUT is tuned.
    pub fn scaled(ack_timeout_ms: u64) -> Self {
        Self {
            non_receive_timeout_ms: 2 * ack_timeout_ms,
            ..Self::default()
        }
    }
}

/// The probe's one option: block 0 alone (M unset) in 16-byte blocks, the least a host can
/// send to show it speaks Q-Block2.
const PROBE: BlockOpt = BlockOpt {
    num: 0,
    more: false,
    szx: 0,
};

/// Where the probe asks: RFC 6690's discovery resource, as libcoap and go-coap probe.
const PROBE_PATH: [&str; 2] = [".well-known", "core"];

/// Changes of the package within one download before the pull gives up.
const MAX_RESTARTS: usize = 3;

/// Request tokens: 4 random bytes naming the transfer and a 2-byte request counter, so every
/// request has its own token (RFC 9177 §4.4) and an answer names the request it belongs to.
const TOKEN_LEN: usize = 6;

/// The Confirmable first request and its RFC 7252 retransmission state.
#[derive(Debug)]
struct Probe {
    bytes: Vec<u8>,
    mid: u16,
    retransmits: u8,
    timeout_ms: u64,
    deadline_ms: u64,
    /// The host sent an empty ACK: wait for the separate response without retransmitting.
    acked: bool,
    unsent: bool,
}

/// Blocks received ahead of the stream, in a ring indexed by block number.
#[derive(Debug)]
struct Window {
    cap: u32,
    bs: usize,
    data: Vec<u8>,
    /// Payload length of a stored block.
    len: Vec<Option<u16>>,
    /// Counter of the request that last asked for the block (see [`QBlock2Pull::lost`]).
    asked: Vec<Option<u16>>,
}

impl Window {
    fn new(cap: u32) -> Self {
        Self {
            cap,
            bs: 0,
            data: Vec::new(),
            len: vec![None; cap as usize],
            asked: vec![None; cap as usize],
        }
    }

    fn reset(&mut self, bs: usize) {
        self.bs = bs;
        self.data.resize(self.cap as usize * bs, 0);
        self.len.fill(None);
        self.asked.fill(None);
    }

    fn slot(&self, num: u32) -> usize {
        (num % self.cap) as usize
    }

    fn has(&self, num: u32) -> bool {
        self.len[self.slot(num)].is_some()
    }

    fn asked(&self, num: u32) -> Option<u16> {
        self.asked[self.slot(num)]
    }

    fn set_asked(&mut self, num: u32, counter: u16) {
        let s = self.slot(num);
        self.asked[s] = Some(counter);
    }

    fn put(&mut self, num: u32, bytes: &[u8]) {
        let s = self.slot(num);
        let at = s * self.bs;
        self.data[at..at + bytes.len()].copy_from_slice(bytes);
        self.len[s] = Some(bytes.len() as u16);
    }

    fn bytes(&self, num: u32) -> &[u8] {
        let s = self.slot(num);
        let at = s * self.bs;
        &self.data[at..at + usize::from(self.len[s].unwrap_or(0))]
    }

    fn clear(&mut self, num: u32) {
        let s = self.slot(num);
        self.len[s] = None;
        self.asked[s] = None;
    }
}

/// A Q-Block2 download in progress (or the Block2 download it fell back to).
#[derive(Debug)]
pub struct QBlock2Pull {
    uri: CoapUri,
    resume: Option<Resume>,
    block_size: usize,
    tx: TxParams,
    params: QBlockParams,
    rng: Rng,
    max_size: u64,
    szx: u8,
    mids: MessageIds,
    token_base: [u8; 4],
    counter: u16,
    /// Some while the host's support is unknown.
    probe: Option<Probe>,
    fallback: Option<Block2Pull>,
    /// ACKs and NON requests waiting to be sent.
    out: VecDeque<Vec<u8>>,
    /// Next block to write to the sink.
    next: u32,
    /// Bytes accepted by the sink (or the resume point before the first block).
    offset: u64,
    total: Option<u64>,
    last: Option<u32>,
    /// One past the highest block asked for (or sent by the host unasked) so far.
    asked_end: u32,
    /// ETag of the version being stored, fixed by the transfer's first stored block.
    etag: Option<Vec<u8>>,
    /// Versions given up within this pull: their late blocks are ignored.
    stale: Vec<Option<Vec<u8>>>,
    /// ETag the persisted bytes of a resume belong to.
    resume_etag: Option<Vec<u8>>,
    started: bool,
    resumed: bool,
    window: Window,
    /// Counter and highest block of the latest request.
    round: (u16, u32),
    retry: u8,
    /// Last new block or request: the NON_RECEIVE_TIMEOUT wait runs from here.
    heard_ms: u64,
    /// Last new block: the NON_PARTIAL_TIMEOUT runs from here.
    progress_ms: u64,
    requests: u32,
}

fn malformed(what: &str) -> PullError {
    PullError::ConnectionLost(format!("malformed Q-Block2 response: {what}"))
}

impl QBlock2Pull {
    /// Prepares a pull of `uri` with blocks of `block_size` bytes (a power of two in
    /// 16..=1024, rounded down). With `resume`, the first request asks for the set holding the
    /// persisted offset (rounded down to a block boundary). `tx` times the first,
    /// Confirmable request and the Block2 fallback. Without `params` the pull is plain Block2
    /// from the start.
    pub fn new(
        uri: CoapUri,
        resume: Option<&Resume>,
        block_size: usize,
        tx: TxParams,
        params: Option<QBlockParams>,
        seed: u64,
        max_size: u64,
    ) -> Self {
        let Some(params) = params else {
            let mut pull = Self::new(
                uri,
                resume,
                block_size,
                tx,
                Some(Default::default()),
                seed,
                max_size,
            );
            let _ = pull.fall_back();
            pull.requests = 0;
            return pull;
        };
        let szx = BlockOpt::szx_for_size(block_size);
        let mut rng = Rng::new(seed);
        let mids = MessageIds::new(&mut rng);
        let token_base = (rng.next_u64() as u32).to_be_bytes();
        let bs = 1u64 << (szx + 4);
        let (offset, resume_etag) = Resume::block_start(resume, bs);
        let params = QBlockParams {
            max_payloads: params.max_payloads.max(1),
            window_blocks: params.window_blocks.max(params.max_payloads.max(1)),
            ..params
        };
        let mut pull = Self {
            uri,
            resume: resume.cloned(),
            block_size,
            tx,
            params,
            rng,
            max_size,
            szx,
            mids,
            token_base,
            counter: 0,
            probe: None,
            fallback: None,
            out: VecDeque::new(),
            next: 0,
            offset,
            total: None,
            last: None,
            asked_end: 0,
            etag: None,
            stale: Vec::new(),
            resume_etag,
            started: false,
            resumed: false,
            window: Window::new(params.window_blocks),
            round: (0, 0),
            retry: 0,
            heard_ms: 0,
            progress_ms: 0,
            requests: 0,
        };
        let first = u32::try_from(offset / bs).unwrap_or(MAX_NUM).min(MAX_NUM);
        pull.begin(first);
        let (bytes, mid) = pull.probe_request();
        let timeout_ms = pull.tx.initial_timeout(&mut pull.rng);
        pull.probe = Some(Probe {
            bytes,
            mid,
            retransmits: 0,
            timeout_ms,
            deadline_ms: 0,
            acked: false,
            unsent: true,
        });
        pull
    }

    /// The URI being pulled.
    pub fn uri(&self) -> &CoapUri {
        &self.uri
    }

    /// Bytes stored so far.
    pub fn offset(&self) -> u64 {
        match &self.fallback {
            Some(b) => b.offset(),
            None => self.offset,
        }
    }

    /// Whether the host speaks Q-Block2: `None` while the first request is unanswered,
    /// `Some(false)` once the pull fell back to Block2.
    pub fn uses_qblock(&self) -> Option<bool> {
        match (&self.fallback, &self.probe) {
            (Some(_), _) => Some(false),
            (None, Some(_)) => None,
            (None, None) => Some(true),
        }
    }

    /// Q-Block2 requests sent (the first one and its retransmissions count once).
    pub fn requests_sent(&self) -> u32 {
        self.requests
    }

    /// (Re)starts the transfer at block `first`, nothing stored yet.
    fn begin(&mut self, first: u32) {
        self.next = first;
        self.offset = u64::from(first) << (self.szx + 4);
        self.asked_end = first;
        self.started = false;
        self.total = None;
        self.last = None;
        self.etag = None;
        self.window.reset(0);
    }

    /// A GET with the next message id and the next token; returns it and its message id.
    fn new_get(&mut self, kind: MessageType) -> (Packet, u16) {
        let mid = self.mids.take();
        let mut token = [0u8; TOKEN_LEN];
        token[..4].copy_from_slice(&self.token_base);
        token[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        self.requests += 1;
        (
            packet(kind, MessageClass::Request(RequestType::Get), mid, &token),
            mid,
        )
    }

    /// The Confirmable probe of [`PROBE_PATH`]; returns it and its message id.
    fn probe_request(&mut self) -> (Vec<u8>, u16) {
        let (mut p, mid) = self.new_get(MessageType::Confirmable);
        for seg in PROBE_PATH {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        p.add_option(q_block2(), PROBE.encode());
        (p.to_bytes().unwrap_or_default(), mid)
    }

    /// Builds a GET for the pulled resource with these Q-Block2 options; returns it and its
    /// message id. Every request gets the next token.
    fn request(&mut self, kind: MessageType, asks: &[BlockOpt], size2: bool) -> (Vec<u8>, u16) {
        let counter = self.counter;
        let (mut p, mid) = self.new_get(kind);
        for seg in &self.uri.path {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in &self.uri.query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        for ask in asks {
            p.add_option(q_block2(), ask.encode());
        }
        if size2 {
            p.add_option(CoapOption::Size2, uint_option(0));
        }
        let highest = asks.iter().map(|a| a.num).max().unwrap_or(0);
        self.round = (counter, highest);
        (p.to_bytes().unwrap_or_default(), mid)
    }

    /// Sends a NON request now (asking for Size2 with `size2`) and restarts the receive timer
    /// from it.
    fn send_non(&mut self, asks: &[BlockOpt], size2: bool, now_ms: u64) {
        let (bytes, _) = self.request(MessageType::NonConfirmable, asks, size2);
        self.out.push_back(bytes);
        self.heard_ms = now_ms;
    }

    /// The option asking for the set from `asked_end` (RFC 9177 §4.4: "Continue", the rest of
    /// a set, or the whole body from block 0), marking its blocks asked by the next request.
    fn next_set(&mut self) -> BlockOpt {
        let from = self.asked_end;
        let mut to = set_end(from, self.params.max_payloads);
        if let Some(last) = self.last {
            to = to.min(last.saturating_add(1));
        }
        let counter = self.counter;
        self.mark_asked(from..to, counter);
        self.asked_end = to;
        BlockOpt {
            num: from,
            more: true,
            szx: self.szx,
        }
    }

    /// Asks for the next set with a NON request (asking for Size2 with `size2`).
    fn ask_next_set(&mut self, size2: bool, now_ms: u64) {
        let ask = self.next_set();
        self.send_non(&[ask], size2, now_ms);
        self.round.1 = self.asked_end.saturating_sub(1);
    }

    /// Asks again for `blocks` (each its own Q-Block2 option with M unset).
    fn ask_blocks(&mut self, blocks: &[u32], now_ms: u64) {
        let counter = self.counter;
        let asks: Vec<BlockOpt> = blocks
            .iter()
            .map(|&num| {
                self.window.set_asked(num, counter);
                BlockOpt {
                    num,
                    more: false,
                    szx: self.szx,
                }
            })
            .collect();
        self.send_non(&asks, false, now_ms);
    }

    fn mark_asked(&mut self, range: core::ops::Range<u32>, counter: u16) {
        if self.window.bs == 0 {
            return;
        }
        let end = range.end.min(self.next.saturating_add(self.window.cap));
        for n in range.start.max(self.next)..end {
            self.window.set_asked(n, counter);
        }
    }

    /// Missing blocks between the stream's end and the window's end (or `asked_end`), at
    /// most MAX_PAYLOADS of them.
    fn holes(&self) -> Vec<u32> {
        let end = self
            .asked_end
            .min(self.next.saturating_add(self.window.cap));
        (self.next..end)
            .filter(|&n| !self.window.has(n))
            .take(self.params.max_payloads as usize)
            .collect()
    }

    /// Missing blocks below `num` that its request (`counter`) asked for, or that belong to
    /// its set and were never asked for (a set the host sent unasked): the host sends a
    /// request's blocks in order, so they were lost.
    fn lost(&self, counter: u16, num: u32) -> Vec<u32> {
        let end = num.min(self.next.saturating_add(self.window.cap));
        let set = set_start(num, self.params.max_payloads);
        (self.next..end)
            .filter(|&n| {
                !self.window.has(n)
                    && match self.window.asked(n) {
                        Some(c) => c == counter,
                        None => set_start(n, self.params.max_payloads) == set,
                    }
            })
            .take(self.params.max_payloads as usize)
            .collect()
    }

    /// The next datagram to send: ACKs and NON requests first, then the first request.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if let Some(d) = self.out.pop_front() {
            return Some(d);
        }
        if let Some(b) = &mut self.fallback {
            return b.poll_transmit(now_ms);
        }
        let probe = self.probe.as_mut().filter(|p| p.unsent)?;
        probe.unsent = false;
        probe.deadline_ms = now_ms + probe.timeout_ms;
        if probe.retransmits == 0 {
            self.heard_ms = now_ms;
            self.progress_ms = now_ms;
        }
        Some(probe.bytes.clone())
    }

    /// When [`QBlock2Pull::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        if let Some(b) = &self.fallback {
            return b.poll_timeout();
        }
        if let Some(p) = &self.probe {
            return (!p.unsent).then_some(p.deadline_ms);
        }
        Some(
            self.receive_deadline()
                .min(self.progress_ms + self.params.non_partial_timeout_ms),
        )
    }

    fn receive_deadline(&self) -> u64 {
        let wait = self
            .params
            .non_receive_timeout_ms
            .saturating_mul(1u64 << self.retry.min(32));
        self.heard_ms.saturating_add(wait)
    }

    /// A timer fired: retransmit the first request, ask again for what is missing, or give up.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), PullError> {
        if let Some(b) = &mut self.fallback {
            return b.handle_timeout(now_ms);
        }
        if let Some(p) = &mut self.probe {
            if p.unsent || now_ms < p.deadline_ms {
                return Ok(());
            }
            if p.acked || p.retransmits >= self.tx.max_retransmit {
                return Err(PullError::ConnectionLost(format!(
                    "no answer to the Q-Block2 request after {} retransmissions",
                    p.retransmits
                )));
            }
            p.retransmits += 1;
            p.timeout_ms *= 2;
            p.unsent = true;
            return Ok(());
        }
        if now_ms >= self.progress_ms + self.params.non_partial_timeout_ms {
            return Err(PullError::ConnectionLost(format!(
                "no new block for {} ms (NON_PARTIAL_TIMEOUT)",
                self.params.non_partial_timeout_ms
            )));
        }
        if now_ms < self.receive_deadline() {
            return Ok(());
        }
        if self.retry >= self.params.non_max_retransmit {
            return Err(PullError::ConnectionLost(format!(
                "no new block after {} requests for block {} (NON_MAX_RETRANSMIT)",
                self.retry, self.next
            )));
        }
        self.retry += 1;
        // Never empty: the block at `next` is missing while the pull is not done.
        let holes = self.holes();
        self.ask_blocks(&holes, now_ms);
        Ok(())
    }

    fn fall_back(&mut self) -> Result<Option<Pulled>, PullError> {
        let seed = self.rng.next_u64();
        self.probe = None;
        self.fallback = Some(Block2Pull::new(
            self.uri.clone(),
            self.resume.as_ref(),
            self.block_size,
            self.tx,
            seed,
            self.max_size,
        ));
        Ok(None)
    }

    fn counter_of(&self, token: &[u8]) -> Option<u16> {
        match token {
            [a, b, c, d, hi, lo] if [*a, *b, *c, *d] == self.token_base => {
                Some(u16::from_be_bytes([*hi, *lo]))
            }
            _ => None,
        }
    }

    /// Feeds a datagram from the package host. Returns the finished pull when the last block
    /// was stored.
    pub fn handle_datagram(
        &mut self,
        datagram: &[u8],
        now_ms: u64,
        sink: &mut dyn PackageSink,
    ) -> Result<Option<Pulled>, PullError> {
        if let Some(b) = &mut self.fallback {
            return b.handle_datagram(datagram, now_ms, sink);
        }
        let Ok(p) = Packet::from_bytes(datagram) else {
            return Ok(None); // not CoAP: ignore, as RFC 7252 §4.2 allows
        };
        let kind = p.header.get_type();
        if kind == MessageType::Confirmable {
            // Acknowledge every confirmable message, even a stale duplicate.
            if let Ok(ack) = empty(MessageType::Acknowledgement, p.header.message_id).to_bytes() {
                self.out.push_back(ack);
            }
        }
        let ours = self.counter_of(p.get_token()).is_some();
        if let Some(probe) = &mut self.probe {
            if p.header.message_id == probe.mid {
                match (kind, p.header.code) {
                    // A host that resets a GET with an option it does not know.
                    (MessageType::Reset, _) => return self.fall_back(),
                    (MessageType::Acknowledgement, MessageClass::Empty) => {
                        probe.acked = true;
                        probe.deadline_ms = now_ms + self.tx.max_transmit_wait_ms();
                        return Ok(None);
                    }
                    // The host's cached answer to an older request with this message id:
                    // the probe goes again under a new one (see `super::coap`).
                    _ if self.mids.stale_answer(&p, ours, &mut self.rng) => {
                        let (bytes, mid) = self.probe_request();
                        if let Some(probe) = &mut self.probe {
                            probe.bytes = bytes;
                            probe.mid = mid;
                            probe.unsent = true;
                        }
                        return Ok(None);
                    }
                    _ => {}
                }
            }
        }
        let Some(counter) = self.counter_of(p.get_token()) else {
            return Ok(None);
        };
        match p.header.code {
            MessageClass::Response(ResponseType::Content) if self.probe.is_some() => {
                if p.get_option(q_block2()).is_none() {
                    // Block2 or the whole body: the host does not speak Q-Block2.
                    return self.fall_back();
                }
                // It does. The probe's block is not part of the body, whose blocks all go as
                // NON (§7); the first set is asked for now.
                self.probe = None;
                self.ask_next_set(true, now_ms);
                Ok(None)
            }
            MessageClass::Response(ResponseType::Content) => {
                self.on_block(&p, counter, now_ms, sink)
            }
            // 4.02 for the option, or no discovery resource: pull as Block2.
            MessageClass::Response(_) if self.probe.is_some() => self.fall_back(),
            MessageClass::Response(ResponseType::NotFound) => Err(PullError::NotFound),
            MessageClass::Response(code) => Err(PullError::ConnectionLost(format!(
                "package host answered {code:?}"
            ))),
            _ => Ok(None),
        }
    }

    /// Writes the block a Block2 fallback accepted last ([`Block2Pull::store`]), for a driver
    /// that sends the next request first; Q-Block2 blocks reach the sink as they arrive.
    pub fn store(&mut self, sink: &mut dyn PackageSink) -> Result<(), PullError> {
        match &mut self.fallback {
            Some(b) => b.store(sink),
            None => Ok(()),
        }
    }

    /// Checks and stores one block of a 2.05 response.
    fn on_block(
        &mut self,
        p: &Packet,
        counter: u16,
        now_ms: u64,
        sink: &mut dyn PackageSink,
    ) -> Result<Option<Pulled>, PullError> {
        let b = match q_block2_options(p).map_err(|e| malformed(&e.to_string()))?[..] {
            [b] => b,
            _ => return Err(malformed("not exactly one Q-Block2 option")),
        };
        if p.get_option(CoapOption::Block2).is_some() {
            return Err(malformed("Block2 beside Q-Block2"));
        }
        let etag = p
            .get_option(CoapOption::ETag)
            .and_then(|v| v.front().cloned());
        let size2 = match p.get_option(CoapOption::Size2).and_then(|v| v.front()) {
            Some(raw) => Some(u64::from(
                decode_uint_option(raw).map_err(|_| malformed("Size2 longer than 4 bytes"))?,
            )),
            None => None,
        };
        if self.started && etag != self.etag {
            if self.stale.contains(&etag) {
                return Ok(None); // a late block of a version given up
            }
            return self.restart(now_ms);
        }
        if !self.started {
            if self.stale.contains(&etag) {
                return Ok(None);
            }
            if self.offset > 0 && (etag.is_none() || etag != self.resume_etag) {
                // The persisted bytes belong to another version: start over from byte 0.
                self.resume_etag = None;
                self.begin(0);
                self.ask_next_set(false, now_ms);
                return Ok(None);
            }
            if b.szx > self.szx {
                return Err(malformed("larger blocks than asked for"));
            }
            if b.szx < self.szx {
                // The host chose smaller blocks (RFC 7959 §2.4): renumber from the offset.
                self.szx = b.szx;
                let first = u32::try_from(self.offset >> (b.szx + 4)).unwrap_or(MAX_NUM);
                self.begin(first);
                self.asked_end = set_end(first, self.params.max_payloads);
            }
        }
        let bs = 1usize << (self.szx + 4);
        if b.szx != self.szx {
            return Err(malformed("block size changed"));
        }
        if b.num < self.next || b.num >= self.next.saturating_add(self.window.cap.max(1)) {
            // Already stored, or beyond the window: dropped, asked for again later.
            return Ok(self.after_block(counter, b.num, now_ms));
        }
        if !self.started {
            self.start(etag, size2, sink)?;
        }
        if size2.is_some() && self.total.is_some() && size2 != self.total {
            return Err(malformed("Size2 changed"));
        }
        self.check(b, p.payload.len(), bs)?;
        if self.window.has(b.num) {
            return Ok(None); // duplicate
        }
        if (u64::from(b.num) * bs as u64) + p.payload.len() as u64 > self.max_size {
            return Err(PullError::TooLarge);
        }
        self.retry = 0;
        self.heard_ms = now_ms;
        self.progress_ms = now_ms;
        let mut end = set_end(b.num, self.params.max_payloads);
        if let Some(last) = self.last {
            end = end.min(last.saturating_add(1));
        }
        self.asked_end = self.asked_end.max(end);
        if b.num == self.next {
            sink.write(self.offset, &p.payload)?;
            self.offset += p.payload.len() as u64;
            self.window.clear(b.num);
            self.next += 1;
            while self.window.has(self.next) {
                sink.write(self.offset, self.window.bytes(self.next))?;
                self.offset += self.window.bytes(self.next).len() as u64;
                self.window.clear(self.next);
                self.next += 1;
            }
        } else {
            self.window.put(b.num, &p.payload);
        }
        if self.last.is_some_and(|last| self.next > last) {
            self.out.retain(|d| d.get(1) == Some(&0)); // keep ACKs (code 0.00), drop requests
            return Ok(Some(Pulled {
                size: self.offset,
                resumed: self.resumed,
                etag: self.etag.clone(),
            }));
        }
        Ok(self.after_block(counter, b.num, now_ms))
    }

    /// Fixes the transfer's version on its first stored block and tells the sink.
    fn start(
        &mut self,
        etag: Option<Vec<u8>>,
        size2: Option<u64>,
        sink: &mut dyn PackageSink,
    ) -> Result<(), PullError> {
        if size2.is_some_and(|s| s > self.max_size) {
            return Err(PullError::TooLarge);
        }
        sink.start(self.offset, etag.as_deref(), size2)?;
        let bs = 1u64 << (self.szx + 4);
        self.last = match size2 {
            Some(0) => Some(0),
            Some(t) => Some(u32::try_from((t - 1) / bs).map_err(|_| PullError::TooLarge)?),
            None => None,
        };
        if self.last.is_some_and(|l| l > MAX_NUM) {
            return Err(PullError::TooLarge);
        }
        if let Some(last) = self.last {
            self.asked_end = self.asked_end.min(last.saturating_add(1));
        }
        self.total = size2;
        self.resumed = self.offset > 0;
        self.etag = etag;
        self.started = true;
        self.window.reset(1usize << (self.szx + 4));
        let (round, _) = self.round;
        self.mark_asked(self.next..self.asked_end, round);
        Ok(())
    }

    /// Checks a block against what is known of the body's size.
    fn check(&mut self, b: BlockOpt, len: usize, bs: usize) -> Result<(), PullError> {
        if b.more {
            if len != bs {
                return Err(malformed("short block before the last"));
            }
            if self.last.is_some_and(|last| b.num >= last) {
                return Err(malformed("more blocks announced past the last"));
            }
            return Ok(());
        }
        if len > bs {
            return Err(malformed("block longer than its size"));
        }
        let end = u64::from(b.num) * bs as u64 + len as u64;
        match (self.last, self.total) {
            (Some(last), _) if b.num != last => Err(malformed("last block at the wrong number")),
            (_, Some(total)) if end != total => Err(malformed("last block does not end at Size2")),
            (Some(_), Some(_)) => Ok(()),
            _ => {
                let beyond = b.num.saturating_add(1)..self.next.saturating_add(self.window.cap);
                if beyond.clone().any(|n| self.window.has(n)) {
                    return Err(malformed("blocks stored past the last one"));
                }
                self.last = Some(b.num);
                self.total = Some(end);
                self.asked_end = self.asked_end.min(b.num.saturating_add(1));
                Ok(())
            }
        }
    }

    /// After a new block: ask for the next set when everything asked for is stored, or again
    /// for the blocks this block proves lost.
    fn after_block(&mut self, counter: u16, num: u32, now_ms: u64) -> Option<Pulled> {
        if !self.started {
            return None;
        }
        if self.next >= self.asked_end {
            self.ask_next_set(false, now_ms);
            return None;
        }
        let ends_set = num.saturating_add(1) == set_end(num, self.params.max_payloads)
            || Some(num) == self.last;
        let ends_round = (counter, num) == self.round;
        if ends_set || ends_round {
            let lost = self.lost(counter, num);
            if !lost.is_empty() {
                self.ask_blocks(&lost, now_ms);
            }
        }
        None
    }

    /// The package changed under the transfer: start again from byte 0, or give up when it
    /// keeps changing.
    fn restart(&mut self, now_ms: u64) -> Result<Option<Pulled>, PullError> {
        self.stale.push(self.etag.take());
        if self.stale.len() > MAX_RESTARTS {
            return Err(PullError::Inconsistent(format!(
                "the package changed {} times during the download",
                self.stale.len()
            )));
        }
        self.resume_etag = None;
        self.begin(0);
        self.ask_next_set(false, now_ms);
        Ok(None)
    }
}

#[cfg(test)]
mod tests;

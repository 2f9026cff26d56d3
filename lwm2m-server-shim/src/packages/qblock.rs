//! The package host's Q-Block2 face (RFC 9177): a `GET /fw/<name>` carrying Q-Block2 options
//! is answered with a burst of up to MAX_PAYLOADS blocks, the first as the response and the
//! rest with the request's token (§4.4), each with ETag, Q-Block2 and Size2: NON messages
//! after a NON request; after a CON request for the whole body (or "Continue"), every later
//! block of the body as CON, which the endpoint sends one at a time (a body's blocks are all
//! CON or all NON, §7 and Appendix A.2).
//!
//! What a request asks for follows §4.4 ([`Ask`]): the whole body (NUM 0, M set), "Continue"
//! with the set at NUM, the rest of NUM's set, or single blocks, one option each (a device
//! asking again for what it lost). Overlapping options send a block once and a burst never
//! holds more than MAX_PAYLOADS blocks, so a request cannot make the host amplify.
//!
//! Congestion control (§7.2, NON requests only: in a CON exchange the client asks for every
//! set): after a set, the host waits NON_TIMEOUT_RANDOM (NON_TIMEOUT to
//! NON_TIMEOUT x ACK_RANDOM_FACTOR) for the device's next request, then sends the next set
//! unasked with the last token it saw; [`QBlockSenderParams::max_unasked_sets`] in a row without a
//! word from the device end the transfer, so a device that went away is not sent the rest of
//! the package. A package changed mid-transfer ends it too (later requests get the new ETag,
//! from which the device restarts). Transfers are kept per device and package, at most
//! [`QBlockSenderParams::max_transfers`] of them, and forgotten after NON_PARTIAL_TIMEOUT.
//!
//! Requests without Q-Block2 never reach this module: Block2 clients are served by
//! [`super::coap`] as before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_lite::{
    CoapOption, ContentFormat as LiteFormat, MessageClass, MessageType, Packet, RequestType,
    ResponseType,
};
use lwm2m_client::codec::block::{uint_option, MAX_NUM};
use lwm2m_client::codec::qblock::{self, q_block2, q_block2_options, set_end, Ask};
use lwm2m_client::codec::BlockOpt;
use tokio::sync::Notify;

use crate::coap::endpoint::{CoapEndpoint, Responses};
use crate::coap::message::{response, with_reason};
use crate::coap::timing::randomized;
use crate::packages::host::{PackageHost, PackageHostError, Snapshot};

/// The sender's RFC 9177 §7.2 parameters: the package host sending Q-Block2 bursts and the
/// pusher sending Q-Block1 sets (the device's receiver side is
/// `lwm2m_client::pull::qblock::QBlockParams`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QBlockSenderParams {
    /// MAX_PAYLOADS: blocks per burst (10).
    pub max_payloads: u32,
    /// NON_TIMEOUT: the wait for the device's next request after a set (2 s).
    pub non_timeout: Duration,
    /// ACK_RANDOM_FACTOR: NON_TIMEOUT_RANDOM lies between NON_TIMEOUT and this multiple (1.5).
    pub ack_random_factor: f64,
    /// Sets sent unasked in a row before the transfer is given up (NON_MAX_RETRANSMIT, 4).
    pub max_unasked_sets: u32,
    /// NON_PARTIAL_TIMEOUT: a transfer not heard of for this long is forgotten (247 s).
    pub non_partial_timeout: Duration,
    /// Transfers remembered at once; the one heard of longest ago goes first.
    pub max_transfers: usize,
}

impl Default for QBlockSenderParams {
    fn default() -> Self {
        Self {
            max_payloads: qblock::MAX_PAYLOADS,
            non_timeout: Duration::from_millis(qblock::NON_TIMEOUT_MS),
            ack_random_factor: 1.5,
            max_unasked_sets: u32::from(qblock::NON_MAX_RETRANSMIT),
            non_partial_timeout: Duration::from_millis(qblock::NON_PARTIAL_TIMEOUT_MS),
            max_transfers: 4096,
        }
    }
}

/// A transfer the host continues by itself when the device is silent.
#[derive(Debug, Clone)]
struct Transfer {
    /// Token of the device's latest request: unasked sets are sent with it.
    token: Vec<u8>,
    etag: [u8; 8],
    szx: u8,
    /// First block of the set to send next.
    next_set: u32,
    total_blocks: u32,
    due: Instant,
    unasked: u32,
    heard: Instant,
}

/// Unasked sets that are due: to whom, with which token, which responses.
pub type Due = Vec<(SocketAddr, Vec<u8>, Vec<Packet>)>;

/// The transfers under way and their timers: a pure state machine, time given by the caller.
#[derive(Debug)]
pub struct Schedule {
    params: QBlockSenderParams,
    transfers: HashMap<(SocketAddr, String), Transfer>,
}

/// Answers Q-Block2 requests for one CoAP endpoint and sends the sets that come due.
pub struct QBlockServer {
    schedule: Mutex<Schedule>,
    wake: Notify,
}

/// One block as a 2.05 response in `format`.
fn block_response(snapshot: &Snapshot, data: Vec<u8>, opt: BlockOpt, format: LiteFormat) -> Packet {
    let mut r = response(ResponseType::Content);
    r.set_content_format(format);
    r.add_option(CoapOption::ETag, snapshot.info.etag.to_vec());
    r.add_option(q_block2(), opt.encode());
    r.add_option(
        CoapOption::Size2,
        uint_option(u32::try_from(snapshot.info.size).unwrap_or(u32::MAX)),
    );
    r.payload = data;
    r
}

/// The responses for `nums` of one version of a representation (blocks of 2^(szx+4) bytes).
fn blocks(
    snapshot: &Snapshot,
    szx: u8,
    total_blocks: u32,
    nums: &[u32],
    format: LiteFormat,
) -> Result<Vec<Packet>, PackageHostError> {
    nums.iter()
        .map(|&num| {
            let size = 1usize << (szx + 4);
            let data = snapshot.read(u64::from(num) * size as u64, size)?;
            let opt = BlockOpt {
                num,
                more: num.saturating_add(1) < total_blocks,
                szx,
            };
            Ok(block_response(snapshot, data, opt, format))
        })
        .collect()
}

/// Whether `request` is a GET with a Q-Block2 option: the requests this face answers.
fn is_q_block2_get(request: &Packet) -> bool {
    request.get_option(q_block2()).is_some()
        && request.header.code == MessageClass::Request(RequestType::Get)
}

/// An error response, the whole answer to a request.
type Refusal = Packet;

/// The Q-Block2 options of a GET, all of one block size and without Block2 (§4.4); 4.02
/// otherwise.
fn asks_of(request: &Packet) -> Result<Vec<BlockOpt>, Refusal> {
    let asks = match q_block2_options(request) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return Err(bad_option("no Q-Block2 option")),
        Err(_) => return Err(bad_option("malformed Q-Block2 option")),
    };
    if request.get_option(CoapOption::Block2).is_some() {
        return Err(bad_option("Block2 and Q-Block2 in one request"));
    }
    if asks.iter().any(|a| a.szx != asks[0].szx) {
        return Err(bad_option("Q-Block2 options of different block sizes"));
    }
    Ok(asks)
}

/// What one Q-Block2 request gets: its blocks, the first of them the response, and where the
/// transfer stands after them.
struct Burst {
    packets: Vec<Packet>,
    szx: u8,
    total_blocks: u32,
    highest: u32,
    asked_set: bool,
}

/// The blocks `asks` ask for of one version of a representation in `format` (§4.4), in
/// order, each once, at most `max_payloads`; `max_szx` caps the block size as for Block2.
fn burst(
    snapshot: &Snapshot,
    asks: &[BlockOpt],
    max_szx: u8,
    max_payloads: u32,
    format: LiteFormat,
) -> Result<Burst, Refusal> {
    let szx = asks.first().map_or(max_szx, |a| a.szx.min(max_szx));
    let size = 1u64 << (szx + 4);
    let Ok(total_blocks) = u32::try_from(snapshot.info.size.div_ceil(size).max(1)) else {
        return Err(response(ResponseType::RequestEntityTooLarge));
    };
    if total_blocks - 1 > MAX_NUM {
        // Beyond 2^20 blocks at this size: the device must ask for larger blocks.
        return Err(response(ResponseType::RequestEntityTooLarge));
    }
    let mp = max_payloads.max(1);
    let mut asked_set = false;
    let mut nums: Vec<u32> = Vec::new();
    for a in asks {
        // Asked with larger blocks than served: the same offset in the smaller blocks.
        let num = u32::try_from(a.offset() / size).unwrap_or(u32::MAX);
        let ask = Ask::of(BlockOpt { num, ..*a }, mp);
        asked_set |= !matches!(ask, Ask::Block(_));
        nums.extend(ask.blocks(mp, total_blocks));
    }
    nums.sort_unstable();
    nums.dedup();
    nums.truncate(mp as usize);
    let Some(&highest) = nums.last() else {
        return Err(bad_option("block beyond the end of the package"));
    };
    match blocks(snapshot, szx, total_blocks, &nums, format) {
        Ok(packets) => Ok(Burst {
            packets,
            szx,
            total_blocks,
            highest,
            asked_set,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "package host");
            Err(response(ResponseType::InternalServerError))
        }
    }
}

impl Burst {
    /// The response and the messages after it. A NON request gets the burst. A CON request
    /// for the whole body or "Continue" gets every later block of the body, read as each is
    /// sent: the endpoint sends them as CON one at a time, and a body's blocks are all CON
    /// (RFC 9177 §7, Appendix A.2), so no NON set follows and the client sends no "Continue".
    fn into_responses(
        mut self,
        snapshot: &Snapshot,
        to_the_end: bool,
        format: LiteFormat,
    ) -> (Packet, Responses) {
        let first = self.packets.remove(0);
        let rest = self.packets.into_iter();
        if !to_the_end {
            return (first, Box::new(rest));
        }
        let (snapshot, szx, total) = (snapshot.clone(), self.szx, self.total_blocks);
        let later = (self.highest.saturating_add(1)..total).map_while(move |num| {
            match blocks(&snapshot, szx, total, &[num], format) {
                Ok(mut one) => one.pop(),
                Err(e) => {
                    tracing::warn!(error = %e, "package host");
                    None
                }
            }
        });
        (first, Box::new(rest.chain(later)))
    }
}

/// Whether `request` is a CON request for the whole body or a "Continue" (§4.4), which in a
/// CON exchange the host answers with the rest of the body.
fn to_the_end(request: &Packet, asks: &[BlockOpt], max_payloads: u32) -> bool {
    request.header.get_type() == MessageType::Confirmable
        && matches!(asks, [a] if matches!(Ask::of(*a, max_payloads), Ask::Body | Ask::Continue(_)))
}

fn bad_option(reason: &str) -> Refusal {
    with_reason(ResponseType::BadOption, reason)
}

/// A refusal as an answer: the response alone.
fn refused(response: Refusal) -> (Packet, Responses) {
    (response, Box::new(std::iter::empty()))
}

impl Schedule {
    /// No transfers yet.
    pub fn new(params: QBlockSenderParams) -> Self {
        Self {
            params,
            transfers: HashMap::new(),
        }
    }

    /// NON_TIMEOUT_RANDOM after `now`.
    fn due_after(&self, now: Instant) -> Instant {
        now + randomized(self.params.non_timeout, self.params.ack_random_factor)
    }

    /// Answers a GET under `/fw` carrying Q-Block2 options: the first response and the ones
    /// after it: the burst, or for a CON request for the whole body every later block.
    /// `max_szx` caps the block size as for Block2.
    pub fn answer(
        &mut self,
        host: &PackageHost,
        request: &Packet,
        path: &[String],
        max_szx: u8,
        peer: SocketAddr,
        now: Instant,
    ) -> (Packet, Responses) {
        let asks = match asks_of(request) {
            Ok(a) => a,
            Err(refusal) => return refused(refusal),
        };
        let [_, name] = path else {
            return refused(response(ResponseType::NotFound));
        };
        let snapshot = match host.snapshot(name) {
            Ok(s) => s,
            Err(e) => return refused(super::coap::error_response(&e)),
        };
        let format = LiteFormat::ApplicationOctetStream;
        let mp = self.params.max_payloads;
        let b = match burst(&snapshot, &asks, max_szx, mp, format) {
            Ok(b) => b,
            Err(refusal) => return refused(refusal),
        };
        if request.header.get_type() == MessageType::Confirmable {
            // No unasked sets in a CON exchange: they would go as NON (§7, §7.2).
            return b.into_responses(&snapshot, to_the_end(request, &asks, mp), format);
        }
        self.heard(
            peer,
            name,
            request.get_token(),
            &snapshot,
            b.szx,
            b.total_blocks,
            b.highest,
            b.asked_set,
            now,
        );
        b.into_responses(&snapshot, false, format)
    }

    /// Updates the transfer after a request: a set asked for (re)starts its timer at the set
    /// after the burst; single blocks asked again keep it waiting for the device.
    #[allow(clippy::too_many_arguments)]
    fn heard(
        &mut self,
        peer: SocketAddr,
        name: &str,
        token: &[u8],
        snapshot: &Snapshot,
        szx: u8,
        total_blocks: u32,
        highest: u32,
        asked_set: bool,
        now: Instant,
    ) {
        let key = (peer, name.to_string());
        let next = set_end(highest, self.params.max_payloads);
        let due = self.due_after(now);
        let current = self
            .transfers
            .get(&key)
            .filter(|t| t.etag == snapshot.info.etag && t.szx == szx);
        let next_set = match current {
            Some(t) => t.next_set.max(next),
            None if asked_set => next,
            None => return,
        };
        if next_set >= total_blocks {
            self.transfers.remove(&key);
            return;
        }
        self.transfers.insert(
            key,
            Transfer {
                token: token.to_vec(),
                etag: snapshot.info.etag,
                szx,
                next_set,
                total_blocks,
                due,
                unasked: 0,
                heard: now,
            },
        );
        self.bound(now);
    }

    /// Forgets transfers past NON_PARTIAL_TIMEOUT, then the oldest beyond the cap.
    fn bound(&mut self, now: Instant) {
        let partial = self.params.non_partial_timeout;
        self.transfers
            .retain(|_, t| now.saturating_duration_since(t.heard) < partial);
        while self.transfers.len() > self.params.max_transfers.max(1) {
            let oldest = self
                .transfers
                .iter()
                .min_by_key(|(_, t)| t.heard)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.transfers.remove(&k),
                None => break,
            };
        }
    }

    /// When the next unasked set is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.transfers.values().map(|t| t.due).min()
    }

    /// The sets due at `now`, each for its device with its token; their transfers move on.
    pub fn due(&mut self, host: &PackageHost, now: Instant) -> Due {
        let mut out = Vec::new();
        let mut finished = Vec::new();
        let mp = self.params.max_payloads.max(1);
        let due_keys: Vec<_> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due_keys {
            let next_due = self.due_after(now);
            let Some(t) = self.transfers.get_mut(&key) else {
                continue;
            };
            let snapshot = match host.snapshot(&key.1) {
                // The package changed (or went): the transfer ends.
                Ok(s) if s.info.etag == t.etag => s,
                _ => {
                    finished.push(key);
                    continue;
                }
            };
            let end = set_end(t.next_set, mp).min(t.total_blocks);
            let nums: Vec<u32> = (t.next_set..end).collect();
            let format = LiteFormat::ApplicationOctetStream;
            match blocks(&snapshot, t.szx, t.total_blocks, &nums, format) {
                Ok(packets) => out.push((key.0, t.token.clone(), packets)),
                Err(e) => tracing::warn!(error = %e, "package host"),
            }
            t.next_set = end;
            t.unasked += 1;
            t.due = next_due;
            if t.next_set >= t.total_blocks || t.unasked >= self.params.max_unasked_sets {
                finished.push(key);
            }
        }
        for key in finished {
            self.transfers.remove(&key);
        }
        self.bound(now);
        out
    }

    /// Transfers under way.
    pub fn len(&self) -> usize {
        self.transfers.len()
    }

    /// True when no transfer is under way.
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }
}

impl QBlockServer {
    /// A server with these parameters and no transfers.
    pub fn new(params: QBlockSenderParams) -> Self {
        Self {
            schedule: Mutex::new(Schedule::new(params)),
            wake: Notify::new(),
        }
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The burst for a request under `/fw`, or `None` when it carries no Q-Block2 option or
    /// is not a GET (the Block2 face answers those).
    pub fn handle(
        &self,
        host: &PackageHost,
        request: &Packet,
        path: &[String],
        max_szx: u8,
        peer: SocketAddr,
    ) -> Option<(Packet, Responses)> {
        if !is_q_block2_get(request) {
            return None;
        }
        let answer = self
            .schedule()
            .answer(host, request, path, max_szx, peer, Instant::now());
        self.wake.notify_one();
        Some(answer)
    }

    /// The burst for a Q-Block2 GET of a document held in memory (the shim's discovery
    /// resources), or `None` without a Q-Block2 option or for another method. No transfer is
    /// kept: these are a few blocks, and a NON client asks for any further set ("Continue",
    /// §4.4); a CON client gets the rest of the document as CON.
    pub fn answer_document(
        &self,
        snapshot: &Snapshot,
        request: &Packet,
        max_szx: u8,
        format: LiteFormat,
    ) -> Option<(Packet, Responses)> {
        if !is_q_block2_get(request) {
            return None;
        }
        let mp = self.schedule().params.max_payloads;
        let answer = asks_of(request)
            .and_then(|asks| Ok((burst(snapshot, &asks, max_szx, mp, format)?, asks)))
            .map_or_else(refused, |(b, asks)| {
                b.into_responses(snapshot, to_the_end(request, &asks, mp), format)
            });
        Some(answer)
    }

    /// Sends the sets that come due through `endpoint` until the task is dropped.
    pub async fn run(self: Arc<Self>, endpoint: CoapEndpoint, host: Arc<PackageHost>) {
        loop {
            let next = self.schedule().next_due();
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = self.wake.notified() => continue,
                    }
                }
                None => {
                    self.wake.notified().await;
                    continue;
                }
            }
            let due = self.schedule().due(&host, Instant::now());
            for (peer, token, packets) in due {
                for p in packets {
                    endpoint.send_non(p, &token, peer).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

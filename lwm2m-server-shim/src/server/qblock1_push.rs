//! Pushes a body to a device with Q-Block1 (RFC 9177 §4.3): bursts of MAX_PAYLOADS blocks as
//! NON requests, one round trip per set instead of one per block (Block1, RFC 7959), which is
//! what a push over a long link (NB-IoT, LTE-M: round trips of 0.1 to 3 s) needs.
//!
//! Block 0 first goes as a CON request, the probe (§4.1): a device without Q-Block1 answers it 4.02
//! Bad Option, as RFC 7252 §5.4.1 requires for an unknown critical option, and the caller falls
//! back to Block1 ([`Pushed::Unsupported`]); one with Q-Block1 answers 2.31 or only acknowledges
//! it, keeping its response for the complete body (§4.3, as libcoap does); a device that took the
//! block for a whole body (answered 2.04 although more blocks follow) gets the same fall back,
//! whose block 0 restarts the body. Once the probe showed Q-Block1, the body goes again from
//! block 0 under a new Request-Tag, every block NON: the payloads of one body are all CON or all
//! NON (§7), and go-coap's receiver refuses (4.00) the NON blocks of a body that began with a CON
//! one; a receiver takes block 0 with a new tag for a new body that replaces the probe's, as
//! libcoap's, go-coap's and our device's do. A one-block body the device answers at once is done
//! by the probe alone; one it only acknowledges goes once more, NON, like any body. Every block
//! names its body with a Request-Tag (RFC 9175 §3.2) and has its own token; Size1 gives the
//! body's size.
//!
//! The device answers each complete set with 2.31 Continue (the next set goes at once),
//! missing blocks with 4.08 and their numbers as `application/missing-blocks+cbor-seq`
//! (§4.4, §5: those blocks are sent again), and the last block with the write's result.
//! Congestion control (§7.2, the shim's [`QBlockSenderParams`]): after a set the pusher waits
//! NON_TIMEOUT_RANDOM (NON_TIMEOUT to NON_TIMEOUT x ACK_RANDOM_FACTOR) for an answer; when
//! none comes it sends the last block it sent again, which asks the device where the body
//! stands (it answers 2.31 or 4.08), rather than the next set, which a device that keeps no
//! blocks after a gap would drop. NON_MAX_RETRANSMIT such waits in a row end the push as a
//! timeout; a 4.08 listing blocks that do not exist is a protocol error,
//! and the blocks sent in all are bounded (four times the body, plus a few).

use std::collections::HashMap;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};
use lwm2m_client::codec::block::{decode_uint_option, uint_option};
use lwm2m_client::codec::qblock::{
    decode_missing, q_block1, q_block1_option, request_tag, set_end, MISSING_BLOCKS_CBOR_SEQ,
};
use lwm2m_client::codec::BlockOpt;

use crate::coap::endpoint::{CoapEndpoint, ExchangeError};
use crate::coap::timing::{random_u64, randomized};
use crate::packages::qblock::QBlockSenderParams;

/// Why a Q-Block1 push ended without the device's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The first (confirmable) exchange failed, or the socket did.
    Exchange(ExchangeError),
    /// The device broke the protocol (a 4.08 naming blocks past the body, a 2.31 without
    /// Q-Block1, asking for blocks again without end, ...).
    Protocol(&'static str),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exchange(e) => write!(f, "{e}"),
            Self::Protocol(why) => write!(f, "Q-Block1 push failed: {why}"),
        }
    }
}

impl std::error::Error for PushError {}

impl From<ExchangeError> for PushError {
    fn from(e: ExchangeError) -> Self {
        Self::Exchange(e)
    }
}

/// How a Q-Block1 push ended.
#[derive(Debug)]
pub enum Pushed {
    /// The device's answer to the last block, or the error that ended the push.
    Answered(Packet),
    /// The device does not do Q-Block1 (4.02 to the first block, or it answered as if the
    /// block were the whole body): push with Block1 instead.
    Unsupported,
}

fn code(p: &Packet) -> Option<ResponseType> {
    match p.header.code {
        MessageClass::Response(r) => Some(r),
        _ => None,
    }
}

/// A Request-Tag other than `tag`, for the body after the probe's.
fn next_tag(tag: [u8; 4]) -> [u8; 4] {
    u32::from_be_bytes(tag).wrapping_add(1).to_be_bytes()
}

/// A body cut into Q-Block1 requests.
struct Body<'a> {
    req: &'a Packet,
    payload: &'a [u8],
    szx: u8,
    total: u32,
    tag: [u8; 4],
}

impl Body<'_> {
    fn block(&self, num: u32) -> Result<Packet, PushError> {
        let size = 1usize << (self.szx + 4);
        let start = (num as usize).saturating_mul(size);
        let end = start.saturating_add(size).min(self.payload.len());
        let more = num.saturating_add(1) < self.total;
        let opt = BlockOpt::new(num, more, self.szx)
            .map_err(|_| PushError::Protocol("body needs more than 2^20 blocks"))?;
        let mut r = self.req.clone();
        r.add_option(q_block1(), opt.encode());
        r.add_option(request_tag(), self.tag.to_vec());
        r.add_option(
            CoapOption::Size1,
            uint_option(u32::try_from(self.payload.len()).unwrap_or(u32::MAX)),
        );
        r.payload = self.payload.get(start..end).unwrap_or_default().to_vec();
        Ok(r)
    }
}

/// Pushes `payload` with `req` (method, Uri-Path and Content-Format set) to `peer` in
/// blocks of 2^(szx+4) bytes; `timeout` bounds the first, confirmable, exchange.
pub async fn push(
    endpoint: &CoapEndpoint,
    peer: std::net::SocketAddr,
    req: &Packet,
    payload: &[u8],
    szx: u8,
    params: &QBlockSenderParams,
    timeout: Duration,
) -> Result<Pushed, PushError> {
    let tag = (random_u64() as u32).to_be_bytes();
    let mut szx = szx;
    let (body, first) = loop {
        let size = 1usize << (szx + 4);
        let total = u32::try_from(payload.len().div_ceil(size).max(1))
            .map_err(|_| PushError::Protocol("body needs more than 2^20 blocks"))?;
        let body = Body {
            req,
            payload,
            szx,
            total,
            tag,
        };
        // An empty ACK: the receiver took the block and answers once the body is complete
        // (§4.3 for CON; libcoap does this). A receiver without Q-Block1 must have answered
        // 4.02 instead (RFC 7252 §5.4.1).
        let Some(first) = endpoint
            .request_until_acked(peer, body.block(0)?, timeout)
            .await?
        else {
            break (body, None);
        };
        // 4.13 with a smaller SZX in Q-Block1: the device's block size (as RFC 7959 §2.9.3
        // has it for Block1); start again with it.
        match q_block1_option(&first) {
            Ok(Some(b))
                if code(&first) == Some(ResponseType::RequestEntityTooLarge) && b.szx < szx =>
            {
                szx = b.szx;
            }
            _ => break (body, Some(first)),
        }
    };
    let total = body.total;
    if let Some(first) = first {
        match code(&first) {
            Some(ResponseType::BadOption) => return Ok(Pushed::Unsupported),
            Some(ResponseType::Continue) if total > 1 => match q_block1_option(&first) {
                Ok(Some(b)) if b.num == 0 => {}
                // 2.31 for Block1, or for another block: not a Q-Block1 receiver.
                _ => return Ok(Pushed::Unsupported),
            },
            // A 2.xx to block 0 of a longer body: the device ignored the option.
            Some(_) if total > 1 && u8::from(first.header.code) >> 5 == 2 => {
                return Ok(Pushed::Unsupported)
            }
            _ => return Ok(Pushed::Answered(first)),
        }
    }
    // The body proper: all NON, under a tag of its own.
    let body = Body {
        tag: next_tag(tag),
        ..body
    };
    let mut non = endpoint.non_requests(peer);
    let mp = params.max_payloads.max(1);
    // The first block not acknowledged by a 2.31.
    let mut next = 0u32;
    let mut to_send: Vec<u32> = (next..set_end(next, mp).min(total)).collect();
    let mut silent = 0u32;
    // Datagrams the push may take: every block a few times over, so a device that keeps
    // asking for blocks cannot hold the shim forever.
    let mut budget = u64::from(total).saturating_mul(4).saturating_add(64);
    // The block each token carried, and what the latest 4.08 showed the device holds: every
    // block up to `held.0` but those in `held.1`, the ones it listed missing.
    let mut block_of: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut held: Option<(u32, Vec<u32>)> = None;
    loop {
        for &num in &to_send {
            budget = budget
                .checked_sub(1)
                .ok_or(PushError::Protocol("device keeps asking for blocks again"))?;
            let token = non.send(body.block(num)?).await?;
            block_of.insert(token, num);
        }
        let probe = to_send.last().copied();
        let deadline =
            tokio::time::Instant::now() + randomized(params.non_timeout, params.ack_random_factor);
        let Some(resp) = non.next(deadline).await? else {
            silent += 1;
            tracing::trace!(%peer, next, silent, ?probe, "Q-Block1 push: no answer");
            if silent > params.max_unasked_sets {
                return Err(PushError::Exchange(ExchangeError::Timeout));
            }
            // Ask where the body stands with the last block sent (or the next one).
            to_send = vec![probe.unwrap_or(next.min(total - 1))];
            continue;
        };
        tracing::trace!(%peer, next, code = ?code(&resp), payload = ?resp.payload, "Q-Block1 push: answer");
        match code(&resp) {
            Some(ResponseType::Continue) => {
                let acked = q_block1_option(&resp)
                    .ok()
                    .flatten()
                    .ok_or(PushError::Protocol("2.31 without Q-Block1"))?;
                // A 2.31 inside a set once the blocks a 4.08 listed came (libcoap sends one):
                // the blocks that 4.08 did not list are held too, so they do not go again.
                let through = match &held {
                    Some((h, missing)) if missing.iter().all(|&m| m <= acked.num) => {
                        acked.num.max(*h)
                    }
                    _ => acked.num,
                };
                if through.saturating_add(1) <= next {
                    // A late or repeated 2.31: nothing new, wait for the current set.
                    to_send.clear();
                    continue;
                }
                next = through.saturating_add(1).min(total - 1);
                silent = 0;
                to_send = (next..set_end(next, mp).min(total)).collect();
            }
            Some(ResponseType::RequestEntityIncomplete) => {
                let cf = resp
                    .get_first_option(CoapOption::ContentFormat)
                    .and_then(|v| decode_uint_option(v).ok());
                let missing = if cf == Some(u32::from(MISSING_BLOCKS_CBOR_SEQ)) {
                    decode_missing(&resp.payload, total as usize)
                        .map_err(|_| PushError::Protocol("malformed missing-blocks list"))?
                } else {
                    // No list: the device lost the body; start again from the start.
                    vec![0]
                };
                if missing.iter().any(|&n| n >= total) {
                    return Err(PushError::Protocol("device asks for blocks past the body"));
                }
                if let Some(&first) = missing.first() {
                    next = next.min(first);
                    // The device has the block this 4.08 answers, and every block before it
                    // that it did not list, within the set of the first missing one (a device
                    // that drops blocks after a gap lists them all up to that set's end).
                    if let Some(&t) = block_of.get(resp.get_token()) {
                        let cap = set_end(first, mp).saturating_sub(1);
                        held = Some((t.min(cap), missing.clone()));
                    }
                }
                silent = 0;
                to_send = missing;
            }
            _ => return Ok(Pushed::Answered(resp)),
        }
    }
}

//! CoAP message-layer pieces of RFC 7252 the engine composes: transmission parameters,
//! retransmission timing, the deduplication cache and message construction over coap-lite.

use crate::codec::block::uint_option;
use crate::object::OpError;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};

/// RFC 7252 section 4.8 transmission parameters, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxParams {
    /// ACK_TIMEOUT (2 s).
    pub ack_timeout_ms: u64,
    /// ACK_RANDOM_FACTOR as a fraction numerator over 1000 (1.5 -> 1500).
    pub ack_random_factor_milli: u64,
    /// MAX_RETRANSMIT (4).
    pub max_retransmit: u8,
    /// EXCHANGE_LIFETIME (247 s): how long a response stays cached for duplicates.
    pub exchange_lifetime_ms: u64,
}

impl Default for TxParams {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 2000,
            ack_random_factor_milli: 1500,
            max_retransmit: 4,
            exchange_lifetime_ms: 247_000,
        }
    }
}

impl TxParams {
    /// The first timeout: uniformly random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
    pub fn initial_timeout(&self, rng: &mut Rng) -> u64 {
        let max = self
            .ack_timeout_ms
            .saturating_mul(self.ack_random_factor_milli)
            / 1000;
        let span = max.saturating_sub(self.ack_timeout_ms);
        self.ack_timeout_ms
            + if span == 0 {
                0
            } else {
                rng.next_u64() % (span + 1)
            }
    }

    /// MAX_TRANSMIT_WAIT (RFC 7252 §4.8.2): how long a separate response may take after the
    /// peer's empty ACK.
    /// Saturates rather than overflows for parameters out of any sensible range.
    pub fn max_transmit_wait_ms(&self) -> u64 {
        let factor = self
            .ack_timeout_ms
            .saturating_mul(self.ack_random_factor_milli)
            / 1000;
        factor.saturating_mul((1u64 << (self.max_retransmit.min(62) + 1)) - 1)
    }
}

/// xorshift64*: message ids, tokens and timeout jitter need variety, not secrecy.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (a zero seed is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    /// Next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Remembers answers to recent requests by (peer, message id) so that a retransmitted request
/// gets the same answer without being executed twice (RFC 7252 section 4.5). Bounded: the
/// oldest entry goes first when full, keeping memory constant during long block transfers.
#[derive(Debug)]
pub struct DedupCache<P> {
    entries: VecDeque<DedupEntry<P>>,
    capacity: usize,
}

#[derive(Debug)]
struct DedupEntry<P> {
    peer: P,
    mid: u16,
    expires_ms: u64,
    /// The bytes sent in reply (None while a deferred operation is still running: answer with
    /// an empty ACK again).
    reply: Option<Vec<u8>>,
}

/// What the cache knows about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Not seen: process it.
    New,
    /// Seen and answered with these bytes.
    Answered(&'a [u8]),
    /// Seen, answer still pending (empty ACK sent).
    Pending,
}

impl<P: PartialEq> DedupCache<P> {
    /// A cache holding at most `capacity` exchanges.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }
    /// Drops expired entries.
    pub fn expire(&mut self, now_ms: u64) {
        self.entries.retain(|e| e.expires_ms > now_ms);
    }
    /// Looks up a request.
    pub fn lookup(&self, peer: &P, mid: u16) -> Seen<'_> {
        match self
            .entries
            .iter()
            .find(|e| e.mid == mid && &e.peer == peer)
        {
            None => Seen::New,
            Some(DedupEntry { reply: Some(r), .. }) => Seen::Answered(r),
            Some(_) => Seen::Pending,
        }
    }
    /// Records the reply (or `None` for pending) to a request.
    pub fn insert(&mut self, peer: P, mid: u16, expires_ms: u64, reply: Option<Vec<u8>>) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.mid == mid && e.peer == peer)
        {
            e.reply = reply;
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(DedupEntry {
            peer,
            mid,
            expires_ms,
            reply,
        });
    }
    /// Earliest expiry, for the timer.
    pub fn next_expiry(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.expires_ms).min()
    }
    /// Number of cached exchanges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A packet with version 1, the given type, code, message id and token.
pub fn packet(t: MessageType, code: MessageClass, mid: u16, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(t);
    p.header.code = code;
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p
}

/// An empty ACK or RST for message `mid`.
pub fn empty(t: MessageType, mid: u16) -> Packet {
    packet(t, MessageClass::Empty, mid, &[])
}

/// Sets a uint option (Content-Format, Size1, Observe...).
pub fn set_uint(p: &mut Packet, opt: CoapOption, v: u32) {
    p.clear_option(opt);
    p.add_option(opt, uint_option(v));
}

/// The response code for an operation error.
pub fn error_code(e: OpError) -> ResponseType {
    match e {
        OpError::NotFound => ResponseType::NotFound,
        OpError::MethodNotAllowed => ResponseType::MethodNotAllowed,
        OpError::BadRequest => ResponseType::BadRequest,
        OpError::Unauthorized => ResponseType::Unauthorized,
        OpError::TooLarge { .. } => ResponseType::RequestEntityTooLarge,
        OpError::Incomplete => ResponseType::RequestEntityIncomplete,
        OpError::NotAcceptable => ResponseType::NotAcceptable,
        OpError::UnsupportedFormat => ResponseType::UnsupportedContentFormat,
        OpError::Internal => ResponseType::InternalServerError,
        OpError::BadOption => ResponseType::BadOption,
    }
}

/// Serialises a packet (coap-lite's size limit is lifted: the engine bounds block sizes itself).
pub fn to_bytes(p: &Packet) -> Vec<u8> {
    // Encoding fails only for option values over 65804 bytes, which the engine never builds.
    p.to_bytes_unlimited().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_timeout_stays_in_rfc_range() {
        let p = TxParams::default();
        let mut rng = Rng::new(7);
        let (mut lo, mut hi) = (u64::MAX, 0);
        for _ in 0..1000 {
            let t = p.initial_timeout(&mut rng);
            lo = lo.min(t);
            hi = hi.max(t);
        }
        assert!(lo >= 2000 && hi <= 3000, "{lo}..{hi}");
        assert!(
            lo < 2100 && hi > 2900,
            "jitter covers the range: {lo}..{hi}"
        );
    }

    #[test]
    fn dedup_cache_is_bounded_and_expires() {
        let mut c = DedupCache::new(2);
        c.insert(1u8, 10, 100, Some(alloc::vec![1]));
        c.insert(1u8, 11, 100, None);
        assert_eq!(c.lookup(&1, 10), Seen::Answered(&[1]));
        assert_eq!(c.lookup(&1, 11), Seen::Pending);
        assert_eq!(c.lookup(&2, 10), Seen::New);
        c.insert(1u8, 12, 200, None);
        assert_eq!(c.lookup(&1, 10), Seen::New);
        c.expire(150);
        assert_eq!(c.len(), 1);
    }
}

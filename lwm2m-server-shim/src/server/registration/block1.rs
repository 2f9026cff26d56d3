//! Reassembles block-wise requests (RFC 7959 Block1) to the registration interface: a client
//! whose Register or Update payload does not fit one datagram sends it in blocks, and only the
//! complete payload may register. Each intermediate block is answered 2.31 Continue; bounded
//! in body size, in time between blocks and in transfers held at once. Sans-IO: the time is
//! an argument.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, Packet, ResponseType};
use lwm2m_client::codec::block::{decode_uint_option, uint_option};
use lwm2m_client::codec::BlockOpt;

use crate::coap::message::{option_values, response};

/// Bounds on block-wise requests being reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block1Limits {
    /// Largest reassembled body; a larger one is refused with 4.13 and this size in Size1.
    pub max_body: usize,
    /// A transfer whose next block does not come within this time is dropped.
    pub max_gap: Duration,
    /// Transfers held at once; a new one beyond it evicts the one idle longest.
    pub max_transfers: usize,
}

impl Default for Block1Limits {
    fn default() -> Self {
        Self {
            // Object links of hundreds of instances fit; a registration is never megabytes.
            max_body: 64 * 1024,
            // EXCHANGE_LIFETIME is 247 s, but a client sends the next block right after the
            // 2.31 (RFC 7959 2.5); a minute leaves room for its retransmissions.
            max_gap: Duration::from_secs(60),
            max_transfers: 256,
        }
    }
}

/// What to do with a request after [`Block1Assembly::offer`].
#[derive(Debug, Clone, PartialEq)]
pub enum Block1Step {
    /// No Block1 option: handle the request as it is.
    Whole,
    /// An intermediate block was kept, or the transfer was refused: send this answer.
    Answer(Packet),
    /// The last block arrived: handle `request` (the whole body, without Block1) and put
    /// `block1` in its answer (RFC 7959 2.3).
    Complete {
        /// The request carrying the reassembled payload.
        request: Box<Packet>,
        /// The Block1 option of the final response.
        block1: BlockOpt,
    },
}

/// One block-wise request by a peer to a URI with the same query (RFC 7959 2.5 matches
/// blocks by endpoint and request options, not by token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    peer: SocketAddr,
    path: Vec<Vec<u8>>,
    query: Vec<Vec<u8>>,
}

struct Transfer {
    body: Vec<u8>,
    /// Offset of the last block appended (a repeated block is acknowledged again).
    last_offset: usize,
    last_seen: Instant,
}

/// Block-wise requests being reassembled (see the module docs).
pub struct Block1Assembly {
    limits: Block1Limits,
    transfers: Mutex<HashMap<Key, Transfer>>,
}

fn with_block1(code: ResponseType, opt: BlockOpt) -> Packet {
    let mut p = response(code);
    p.add_option(CoapOption::Block1, opt.encode());
    p
}

impl Block1Assembly {
    /// An empty assembly with these bounds.
    pub fn new(limits: Block1Limits) -> Self {
        Self {
            limits,
            transfers: Mutex::new(HashMap::new()),
        }
    }

    /// Transfers in progress.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Transfer>> {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn too_large(&self) -> Packet {
        let mut p = response(ResponseType::RequestEntityTooLarge);
        p.add_option(
            CoapOption::Size1,
            uint_option(u32::try_from(self.limits.max_body).unwrap_or(u32::MAX)),
        );
        p
    }

    /// Takes one request from `peer` at `now`: see [`Block1Step`].
    pub fn offer(&self, request: &Packet, peer: SocketAddr, now: Instant) -> Block1Step {
        let Some(raw) = request.get_first_option(CoapOption::Block1) else {
            return Block1Step::Whole;
        };
        let Ok(opt) = BlockOpt::decode(raw) else {
            return Block1Step::Answer(response(ResponseType::BadRequest));
        };
        let announced = request
            .get_first_option(CoapOption::Size1)
            .and_then(|v| decode_uint_option(v).ok())
            .and_then(|s| usize::try_from(s).ok());
        let key = Key {
            peer,
            path: option_values(request, CoapOption::UriPath),
            query: option_values(request, CoapOption::UriQuery),
        };
        let mut transfers = self.lock();
        transfers.retain(|_, t| now.saturating_duration_since(t.last_seen) < self.limits.max_gap);
        if announced.is_some_and(|s| s > self.limits.max_body) {
            transfers.remove(&key);
            return Block1Step::Answer(self.too_large());
        }
        // RFC 7959 2.2: every block but the last fills its size.
        if opt.more && request.payload.len() != opt.size() {
            transfers.remove(&key);
            return Block1Step::Answer(response(ResponseType::BadRequest));
        }
        let offset = usize::try_from(opt.offset()).unwrap_or(usize::MAX);
        if opt.num == 0 {
            if !transfers.contains_key(&key) && transfers.len() >= self.limits.max_transfers {
                evict_idlest(&mut transfers);
            }
            transfers.insert(
                key.clone(),
                Transfer {
                    body: Vec::new(),
                    last_offset: 0,
                    last_seen: now,
                },
            );
        }
        let Some(t) = transfers.get_mut(&key) else {
            return Block1Step::Answer(response(ResponseType::RequestEntityIncomplete));
        };
        let repeated = opt.num > 0
            && offset == t.last_offset
            && offset.saturating_add(request.payload.len()) == t.body.len();
        if repeated && opt.more {
            t.last_seen = now;
            return Block1Step::Answer(with_block1(ResponseType::Continue, opt));
        }
        if !repeated {
            if offset != t.body.len() {
                transfers.remove(&key);
                return Block1Step::Answer(response(ResponseType::RequestEntityIncomplete));
            }
            if offset.saturating_add(request.payload.len()) > self.limits.max_body {
                transfers.remove(&key);
                return Block1Step::Answer(self.too_large());
            }
            t.body.extend_from_slice(&request.payload);
            t.last_offset = offset;
            t.last_seen = now;
        }
        if opt.more {
            return Block1Step::Answer(with_block1(ResponseType::Continue, opt));
        }
        let body = transfers.remove(&key).map(|t| t.body).unwrap_or_default();
        let mut whole = request.clone();
        whole.clear_option(CoapOption::Block1);
        whole.clear_option(CoapOption::Size1);
        whole.payload = body;
        Block1Step::Complete {
            request: Box::new(whole),
            block1: opt,
        }
    }
}

fn evict_idlest(transfers: &mut HashMap<Key, Transfer>) {
    let idlest = transfers
        .iter()
        .min_by_key(|(_, t)| t.last_seen)
        .map(|(k, _)| k.clone());
    if let Some(k) = idlest {
        transfers.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{MessageClass, RequestType};

    fn block(num: u32, more: bool, payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Post);
        p.add_option(CoapOption::UriPath, b"rd".to_vec());
        p.add_option(
            CoapOption::Block1,
            BlockOpt::new(num, more, 0).expect("opt").encode(),
        );
        p.payload = payload.to_vec();
        p
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn code(s: &Block1Step) -> Option<ResponseType> {
        match s {
            Block1Step::Answer(p) => match p.header.code {
                MessageClass::Response(r) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn blocks_reassemble_in_order_and_a_repeat_is_acknowledged_again() {
        let a = Block1Assembly::new(Block1Limits::default());
        let t = Instant::now();
        let first = block(0, true, &[1; 16]);
        assert_eq!(
            code(&a.offer(&first, peer(1), t)),
            Some(ResponseType::Continue)
        );
        // The same block again (a retransmission with a new message id) changes nothing.
        let again = block(1, true, &[2; 16]);
        assert_eq!(
            code(&a.offer(&again, peer(1), t)),
            Some(ResponseType::Continue)
        );
        assert_eq!(
            code(&a.offer(&again, peer(1), t)),
            Some(ResponseType::Continue)
        );
        // Another peer's blocks are its own transfer.
        assert_eq!(
            code(&a.offer(&block(2, false, b"x"), peer(2), t)),
            Some(ResponseType::RequestEntityIncomplete)
        );
        match a.offer(&block(2, false, b"end"), peer(1), t) {
            Block1Step::Complete { request, block1 } => {
                assert_eq!(request.payload.len(), 35);
                assert_eq!(request.payload.get(32..), Some(&b"end"[..]));
                assert!(request.get_first_option(CoapOption::Block1).is_none());
                assert_eq!((block1.num, block1.more), (2, false));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.pending(), 0);
        let mut plain = block(0, false, b"x");
        plain.clear_option(CoapOption::Block1);
        assert_eq!(a.offer(&plain, peer(1), t), Block1Step::Whole);
    }

    #[test]
    fn transfers_are_bounded_in_time_size_and_number() {
        let limits = Block1Limits {
            max_body: 40,
            max_gap: Duration::from_secs(5),
            max_transfers: 2,
        };
        let a = Block1Assembly::new(limits);
        let t = Instant::now();
        assert_eq!(
            code(&a.offer(&block(0, true, &[0; 16]), peer(1), t)),
            Some(ResponseType::Continue)
        );
        // The next block comes too late: the transfer is gone.
        let late = t + Duration::from_secs(6);
        assert_eq!(
            code(&a.offer(&block(1, true, &[0; 16]), peer(1), late)),
            Some(ResponseType::RequestEntityIncomplete)
        );
        // Past max_body: 4.13 with Size1 = 40.
        for n in 0..2 {
            a.offer(&block(n, true, &[0; 16]), peer(1), late);
        }
        match a.offer(&block(2, true, &[0; 16]), peer(1), late) {
            Block1Step::Answer(p) => {
                assert_eq!(
                    p.header.code,
                    MessageClass::Response(ResponseType::RequestEntityTooLarge)
                );
                assert_eq!(p.get_first_option(CoapOption::Size1), Some(&vec![40]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.pending(), 0);
        // A short intermediate block is malformed.
        assert_eq!(
            code(&a.offer(&block(0, true, &[0; 3]), peer(1), late)),
            Some(ResponseType::BadRequest)
        );
        // A third peer evicts the idlest transfer.
        for (p, at) in [(1, 1), (2, 2), (3, 3)] {
            a.offer(
                &block(0, true, &[0; 16]),
                peer(p),
                late + Duration::from_millis(at),
            );
        }
        assert_eq!(a.pending(), 2);
        assert_eq!(
            code(&a.offer(&block(1, true, &[0; 16]), peer(1), late)),
            Some(ResponseType::RequestEntityIncomplete)
        );
    }
}

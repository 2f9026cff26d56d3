//! Q-Block1 writes (RFC 9177 §4.3): a server pushes a large body (a firmware package to
//! /5/0/0) as bursts of MAX_PAYLOADS NON requests, one block each, and hears back once per
//! set: 2.31 Continue when the set is complete, 4.08 Request Entity Incomplete with the
//! blocks still missing (§4.4, payload `application/missing-blocks+cbor-seq`, §5), and the
//! write's own answer (2.04) after the last block.
//!
//! A Class-1 device has no RAM for a set of blocks, so nothing is buffered: a block that
//! continues the body goes straight to the object through the same path as a Block1 block
//! ([`Engine::write_block`]); a block after a gap is dropped and counted missing, and the
//! 4.08 asks for everything from the gap to the end of its set. The server's retransmission
//! of those blocks then continues the stream. The state of a transfer is a few dozen bytes.
//!
//! The body is named by peer, path and Request-Tag (RFC 9175 §3.2; RFC 9177 §4.3): block 0
//! with a new tag starts a new body (as Block1's block 0 does), so a restarted push replaces
//! the old one, while a stray block of another body never touches the one under way. A block
//! whose size exponent, Content-Format or Size1 differs from the body's is refused with 4.00
//! and changes nothing: the slot keeps what arrived. ETag has no role here: in a request it
//! only validates a GET (RFC 7252 §5.10.6). A malformed or repeated Q-Block1 option is
//! treated as an unrecognised critical option, 4.02 (RFC 7252 §5.4.3), like a request that
//! carries both Q-Block1 and Block1 (RFC 9177 §4.1); a device with Q-Block1 switched off
//! ([`super::Config::qblock1`]) answers 4.02 to every Q-Block1 request, as RFC 7252 §5.4.1
//! requires of an unknown critical option, and the server falls back to Block1.
//!
//! Timers (§7.2, [`crate::pull::qblock::QBlockParams`]): NON_RECEIVE_TIMEOUT after the latest block of a set that
//! is not complete, the missing blocks are asked for again with a NON 4.08 (token of that
//! latest block), the wait doubling each time, NON_MAX_RETRANSMIT times; the transfer is
//! forgotten after NON_PARTIAL_TIMEOUT without a block (a later block then gets a 4.08 asking
//! for the body from block 0, and Object 5 stays in Downloading until the server restarts
//! or resets the push, as for an abandoned Block1 push).

use alloc::vec::Vec;

use coap_lite::{CoapOption, MessageType, Packet, ResponseType};

use super::dm::{first_uint, reply, Answer};
use super::Engine;
use crate::coap;
use crate::codec::qblock::{
    encode_missing, q_block1, q_block1_option, request_tag_of, set_end, MISSING_BLOCKS_CBOR_SEQ,
};
use crate::codec::{BlockOpt, ContentFormat, Path};
use crate::object::{Completion, OpError};

/// The Q-Block1 body being received (one at a time, like Block1).
#[derive(Debug)]
pub(crate) struct QBlock1Rx<P> {
    peer: P,
    path: Path,
    /// Request-Tag values (length-prefixed), empty when the server sent none.
    tag: Vec<u8>,
    szx: u8,
    format: Option<ContentFormat>,
    size1: Option<u32>,
    /// Blocks written: the number of the next block the stream needs.
    next: u32,
    /// Number of the body's last block, once a block without M was seen.
    last: Option<u32>,
    /// Token of the latest block: a 4.08 sent by the timer answers it.
    token: Vec<u8>,
    /// When the latest block arrived.
    heard_ms: u64,
    /// 4.08s the timer sent since the latest block.
    asked: u8,
    /// When the timer sent the latest of them: the next wait counts from there.
    asked_ms: u64,
    /// A block beyond the gap arrived since the last complete set.
    ahead: bool,
    /// The answer to the last block, repeated when it comes again.
    done: Option<Packet>,
}

impl<P> QBlock1Rx<P> {
    /// The blocks the receiver asks for: from the gap to the end of its set (nothing after
    /// a gap was kept), not past the body's last block.
    fn missing(&self, max_payloads: u32) -> core::ops::Range<u32> {
        let end = set_end(self.next, max_payloads);
        let end = self.last.map_or(end, |l| end.min(l.saturating_add(1)));
        let block = 1u32 << (self.szx + 4);
        let end = self
            .size1
            .map_or(end, |s| end.min(s.div_ceil(block).max(1)));
        self.next..end.max(self.next)
    }
}

/// 2.31 Continue acknowledging the set that ends with block `num` (RFC 9177 §4.3).
fn continue_after(num: u32, szx: u8) -> Packet {
    let mut p = reply(ResponseType::Continue);
    if let Ok(o) = BlockOpt::new(num, true, szx) {
        p.add_option(q_block1(), o.encode());
    }
    p
}

/// 4.08 listing `missing` as a CBOR Sequence (RFC 9177 §4.4, §5).
fn incomplete(missing: core::ops::Range<u32>) -> Packet {
    let mut p = reply(ResponseType::RequestEntityIncomplete);
    coap::set_uint(
        &mut p,
        CoapOption::ContentFormat,
        u32::from(MISSING_BLOCKS_CBOR_SEQ),
    );
    encode_missing(missing, &mut p.payload);
    p
}

/// An error with a diagnostic payload (RFC 7252 §5.5.2) saying what was wrong.
fn refusal(code: ResponseType, why: &str) -> Answer {
    let mut p = reply(code);
    p.payload = why.as_bytes().to_vec();
    Answer::Now(p)
}

impl<P: Clone + PartialEq> Engine<P> {
    /// Refuses a request carrying a critical option the engine does not implement (RFC 7252
    /// §5.4.1): 4.02 Bad Option, instead of acting on a request it misreads (a Q-Block1
    /// block taken for a whole body). Q-Block1 is known while it is switched on.
    pub(crate) fn check_critical_options(&self, req: &Packet) -> Result<(), OpError> {
        let known_qblock1 = self.config.qblock1.is_some();
        let unknown = req.options().any(|(&n, _)| {
            n & 1 == 1
                && matches!(CoapOption::from(n), CoapOption::Unknown(_))
                && !(known_qblock1 && CoapOption::from(n) == q_block1())
        });
        if unknown {
            Err(OpError::BadOption)
        } else {
            Ok(())
        }
    }

    /// One block of a Q-Block1 write: see the module documentation.
    pub(crate) fn qblock1_write(
        &mut self,
        now: u64,
        peer: &P,
        req: &Packet,
        path: &Path,
        cf: Option<ContentFormat>,
    ) -> Result<Answer, OpError> {
        let Some(params) = self.config.qblock1 else {
            return Err(OpError::BadOption);
        };
        let mp = params.max_payloads.max(1);
        if req.get_option(CoapOption::Block1).is_some() {
            return Ok(refusal(ResponseType::BadOption, "Q-Block1 with Block1"));
        }
        let Ok(Some(b)) = q_block1_option(req) else {
            return Ok(refusal(ResponseType::BadOption, "malformed Q-Block1"));
        };
        let Ok(tag) = request_tag_of(req) else {
            return Ok(refusal(ResponseType::BadRequest, "malformed Request-Tag"));
        };
        if b.szx > self.config.max_block_szx {
            // The size this device takes, in the option as for Block1 (RFC 7959 §2.9.3).
            let mut p = reply(ResponseType::RequestEntityTooLarge);
            if let Ok(o) = BlockOpt::new(0, true, self.config.max_block_szx) {
                p.add_option(q_block1(), o.encode());
            }
            return Ok(Answer::Now(p));
        }
        let len = req.payload.len();
        if (b.more && len != b.size()) || len > b.size() {
            return Ok(refusal(ResponseType::BadRequest, "block size mismatch"));
        }
        let size1 = first_uint(req, CoapOption::Size1)?;
        let confirmable = req.header.get_type() == MessageType::Confirmable;
        let ours = self
            .qblock1
            .as_ref()
            .is_some_and(|rx| rx.peer == *peer && rx.path == *path && rx.tag == tag);
        if !ours {
            if b.num != 0 {
                // A block of a body not under way: ask for it from the start, keep the
                // transfer under way (if any) as it is.
                let answer_now = confirmable || !b.more || (b.num + 1) % mp == 0;
                return Ok(if answer_now {
                    Answer::Now(incomplete(0..set_end(0, mp).min(b.num + 1)))
                } else {
                    Answer::Silent
                });
            }
            self.qblock1 = Some(QBlock1Rx {
                peer: peer.clone(),
                path: *path,
                tag,
                szx: b.szx,
                format: cf,
                size1,
                next: 0,
                last: None,
                token: Vec::new(),
                heard_ms: now,
                asked: 0,
                asked_ms: now,
                ahead: false,
                done: None,
            });
        }
        let Some(rx) = self.qblock1.as_mut() else {
            return Err(OpError::Internal);
        };
        if rx.szx != b.szx || rx.format != cf || size1.zip(rx.size1).is_some_and(|(a, b)| a != b) {
            return Ok(refusal(
                ResponseType::BadRequest,
                "body changed mid-transfer",
            ));
        }
        rx.token = req.get_token().to_vec();
        rx.heard_ms = now;
        rx.asked = 0;
        if rx.size1.is_none() {
            rx.size1 = size1;
        }
        if !b.more {
            rx.last = Some(b.num);
        }
        if let Some(done) = &rx.done {
            // The last block again: its answer was lost.
            return Ok(if b.more {
                Answer::Silent
            } else {
                Answer::Now(done.clone())
            });
        }
        let set_last = !b.more || (b.num + 1) % mp == 0;
        if b.num != rx.next {
            if b.num < rx.next && !set_last && !confirmable {
                return Ok(Answer::Silent);
            }
            rx.ahead |= b.num > rx.next;
            if b.num > rx.next && !set_last && !confirmable {
                // After a gap: dropped, asked for when the set ends or the timer fires.
                return Ok(Answer::Silent);
            }
            // The set's last block (or a server asking where the body stands).
            return Ok(Answer::Now(
                if rx.next % mp == 0 && rx.next > 0 && b.num < rx.next {
                    continue_after(rx.next - 1, b.szx)
                } else {
                    incomplete(rx.missing(mp))
                },
            ));
        }
        let c = match self.write_block(now, peer, req, b, path, cf) {
            Ok(c) => c,
            Err(e) => {
                self.qblock1 = None;
                return Err(e);
            }
        };
        let Some(rx) = self.qblock1.as_mut() else {
            return Err(OpError::Internal);
        };
        rx.next = b.num + 1;
        if !b.more {
            let mut ok = reply(ResponseType::Changed);
            if let Ok(o) = BlockOpt::new(b.num, false, b.szx) {
                ok.add_option(q_block1(), o.encode());
            }
            rx.done = Some(ok.clone());
            return Ok(Answer::changed(c == Completion::Deferred, ok, path));
        }
        if set_last {
            rx.ahead = false;
        }
        Ok(if set_last || confirmable || c == Completion::Deferred {
            Answer::changed(
                c == Completion::Deferred,
                continue_after(b.num, b.szx),
                path,
            )
        } else {
            Answer::Silent
        })
    }

    /// When the Q-Block1 receiver's timer fires next: NON_RECEIVE_TIMEOUT (doubling) after
    /// the latest block while its set is incomplete, else NON_PARTIAL_TIMEOUT.
    pub(crate) fn qblock1_deadline(&self) -> Option<u64> {
        let params = self.config.qblock1?;
        let rx = self.qblock1.as_ref()?;
        let forget = rx.heard_ms.saturating_add(params.non_partial_timeout_ms);
        let waiting = rx.done.is_none()
            && rx.asked < params.non_max_retransmit
            && (rx.next % params.max_payloads.max(1) != 0 || rx.ahead || rx.last.is_some());
        if !waiting {
            return Some(forget);
        }
        let wait = params
            .non_receive_timeout_ms
            .saturating_mul(1u64 << rx.asked.min(16));
        let since = if rx.asked == 0 {
            rx.heard_ms
        } else {
            rx.asked_ms
        };
        Some(since.saturating_add(wait).min(forget))
    }

    /// Runs the Q-Block1 receiver's timer: asks again for missing blocks, or forgets a
    /// transfer not heard of for NON_PARTIAL_TIMEOUT.
    pub(crate) fn qblock1_timer(&mut self, now: u64) {
        let (Some(params), Some(due)) = (self.config.qblock1, self.qblock1_deadline()) else {
            return;
        };
        if due > now {
            return;
        }
        let Some(rx) = self.qblock1.as_mut() else {
            return;
        };
        if now >= rx.heard_ms.saturating_add(params.non_partial_timeout_ms) {
            self.qblock1 = None;
            return;
        }
        let mut p = incomplete(rx.missing(params.max_payloads.max(1)));
        rx.asked = rx.asked.saturating_add(1);
        p.header.set_type(MessageType::NonConfirmable);
        p.set_token(rx.token.clone());
        let peer = rx.peer.clone();
        // Each wait counts from the latest 4.08, doubling; NON_PARTIAL_TIMEOUT still counts
        // from the latest block.
        rx.asked_ms = now;
        p.header.message_id = self.mid();
        self.send(peer, &p);
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::vec;

    use coap_lite::{MessageClass, RequestType};

    use super::*;
    use crate::codec::qblock::{decode_missing, request_tag};
    use crate::objects::{DiscardBackend, FirmwareUpdate};
    use crate::pull::qblock::QBlockParams;
    use crate::{Config, ObjectHandler};

    const MP: u32 = 4;
    const BLOCKS: u32 = 10;

    fn engine() -> Engine<u8> {
        let mut config = Config::new("t");
        config.qblock1 = Some(QBlockParams {
            max_payloads: MP,
            non_receive_timeout_ms: 1000,
            non_max_retransmit: 2,
            non_partial_timeout_ms: 60_000,
            ..QBlockParams::default()
        });
        let objects: Vec<Box<dyn ObjectHandler>> =
            vec![Box::new(FirmwareUpdate::new(DiscardBackend::default()))];
        Engine::new(config, 1, objects)
    }

    /// Block `num` of a 10-block body of 16-byte blocks, NON, with token `num` and a new
    /// message id (a block sent again is a new message, not a duplicate).
    fn block(num: u32) -> Vec<u8> {
        static MID: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(100);
        let mut p = Packet::new();
        p.header.set_type(MessageType::NonConfirmable);
        p.header.code = MessageClass::Request(RequestType::Put);
        p.header.message_id = MID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        p.set_token(vec![num as u8]);
        for s in ["5", "0", "0"] {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        let o = BlockOpt::new(num, num + 1 < BLOCKS, 0).unwrap();
        p.add_option(q_block1(), o.encode());
        p.add_option(request_tag(), vec![1]);
        p.payload = vec![num as u8; 16];
        coap::to_bytes(&p)
    }

    /// The datagrams the engine sent, decoded: (code, token, missing list or Q-Block1 NUM).
    fn sent(e: &mut Engine<u8>) -> Vec<(ResponseType, u8, Vec<u32>)> {
        let mut out = Vec::new();
        while let Some(t) = e.poll_transmit() {
            let p = Packet::from_bytes(&t.data).unwrap();
            let MessageClass::Response(code) = p.header.code else {
                continue;
            };
            let detail = match code {
                ResponseType::RequestEntityIncomplete => decode_missing(&p.payload, 64).unwrap(),
                _ => q_block1_option(&p)
                    .unwrap()
                    .map(|b| vec![b.num])
                    .unwrap_or_default(),
            };
            out.push((code, p.get_token()[0], detail));
        }
        out
    }

    #[test]
    fn sets_are_acknowledged_gaps_asked_for_and_timers_ask_again() {
        let mut e = engine();
        // Set 0..4 complete: one 2.31 for the set's last block, nothing for the others.
        for n in 0..4 {
            e.handle_datagram(n as u64, 1, &block(n));
        }
        assert_eq!(sent(&mut e), [(ResponseType::Continue, 3, vec![3])]);
        // The 2.31 got lost: the server sends block 3 again and gets it again.
        e.handle_datagram(10, 1, &block(3));
        assert_eq!(sent(&mut e), [(ResponseType::Continue, 3, vec![3])]);
        // Set 4..8 with block 5 lost: 6 is dropped, 7 (the set's last) asks for 5..8.
        for n in [4, 6, 7] {
            e.handle_datagram(20, 1, &block(n));
        }
        assert_eq!(
            sent(&mut e),
            [(ResponseType::RequestEntityIncomplete, 7, vec![5, 6, 7])]
        );
        // Only 5 and 6 come again: after NON_RECEIVE_TIMEOUT the device asks for 7 (token of
        // the latest block), then after twice that once more, then gives up asking.
        e.handle_datagram(30, 1, &block(5));
        e.handle_datagram(31, 1, &block(6));
        assert!(sent(&mut e).is_empty());
        assert_eq!(e.poll_timeout(), Some(1031));
        e.handle_timeout(1031);
        assert_eq!(
            sent(&mut e),
            [(ResponseType::RequestEntityIncomplete, 6, vec![7])]
        );
        assert_eq!(e.poll_timeout(), Some(3031));
        e.handle_timeout(3031);
        assert_eq!(
            sent(&mut e),
            [(ResponseType::RequestEntityIncomplete, 6, vec![7])]
        );
        // NON_PARTIAL_TIMEOUT counts from the latest block (31), not the latest 4.08.
        assert_eq!(e.poll_timeout(), Some(31 + 60_000));
        // The rest arrives: 2.31 for 7, then 2.04 for the last block, repeated when the
        // last block comes again (its answer was lost).
        for n in 7..BLOCKS {
            e.handle_datagram(4000, 1, &block(n));
        }
        assert_eq!(
            sent(&mut e),
            [
                (ResponseType::Continue, 7, vec![7]),
                (ResponseType::Changed, 9, vec![9])
            ]
        );
        e.handle_datagram(4001, 1, &block(9));
        assert_eq!(sent(&mut e), [(ResponseType::Changed, 9, vec![9])]);
    }

    /// A push the server abandons is forgotten NON_PARTIAL_TIMEOUT after its latest block,
    /// however many 4.08s the timer sent since; a block of it after that gets a 4.08 asking
    /// for the body from block 0.
    #[test]
    fn an_abandoned_push_is_forgotten_non_partial_timeout_after_its_latest_block() {
        let mut e = engine();
        for n in [0, 1, 3] {
            e.handle_datagram(u64::from(n), 1, &block(n));
        }
        assert_eq!(
            sent(&mut e),
            [(ResponseType::RequestEntityIncomplete, 3, vec![2, 3])]
        );
        for at in [1003, 3003] {
            assert_eq!(e.poll_timeout(), Some(at));
            e.handle_timeout(at);
            assert_eq!(
                sent(&mut e),
                [(ResponseType::RequestEntityIncomplete, 3, vec![2, 3])]
            );
        }
        assert_eq!(e.poll_timeout(), Some(3 + 60_000));
        e.handle_timeout(3 + 59_999);
        assert!(e.qblock1.is_some());
        e.handle_timeout(3 + 60_000);
        assert!(e.qblock1.is_none(), "forgotten");
        // The set's last block (others of an unknown body get no answer).
        e.handle_datagram(70_000, 1, &block(3));
        assert_eq!(
            sent(&mut e),
            [(ResponseType::RequestEntityIncomplete, 3, vec![0, 1, 2, 3])]
        );
    }

    #[test]
    fn blocks_larger_than_ours_get_4_13_naming_our_size() {
        let mut e = engine();
        e.config.max_block_szx = 4;
        let mut p = Packet::from_bytes(&block(0)).unwrap();
        p.clear_option(q_block1());
        p.add_option(q_block1(), BlockOpt::new(0, true, 6).unwrap().encode());
        p.payload = vec![0; 1024];
        e.handle_datagram(1, 1, &coap::to_bytes(&p));
        let r = Packet::from_bytes(&e.poll_transmit().unwrap().data).unwrap();
        assert_eq!(
            r.header.code,
            MessageClass::Response(ResponseType::RequestEntityTooLarge)
        );
        assert_eq!(q_block1_option(&r).unwrap().map(|b| b.szx), Some(4));
        assert!(e.poll_transmit().is_none());
    }

    /// libcoap's Q-Block support probe (RFC 9177 §4.1: a CON GET carrying Q-Block2, NUM 0,
    /// SZX 0; libcoap 4.3.4 sends it to `/`) is answered at once with 4.02 Bad Option: the
    /// device sends no Q-Block2, so the peer learns that and pushes with Block1 instead of
    /// waiting for retransmissions to time out.
    #[test]
    fn a_q_block2_probe_gets_bad_option() {
        let mut e = engine();
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = 7;
        p.set_token(vec![0xAB]);
        p.add_option(crate::codec::qblock::q_block2(), vec![0]);
        e.handle_datagram(0, 1, &coap::to_bytes(&p));
        let t = e.poll_transmit().expect("an answer");
        let r = Packet::from_bytes(&t.data).unwrap();
        assert_eq!(
            r.header.code,
            MessageClass::Response(ResponseType::BadOption)
        );
        assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
        assert_eq!((r.header.message_id, r.get_token()), (7, &[0xAB][..]));
        assert!(e.poll_transmit().is_none());
    }
}

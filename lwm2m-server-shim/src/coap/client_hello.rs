//! First ClientHellos of the coaps listener, before the cookie exchange (RFC 6347 §4.2.1):
//! recognising one, and putting one that came in fragments (§4.2.3) back together.
//!
//! OpenSSL's `DTLSv1_listen` takes a ClientHello only whole, in one record, so a client with a
//! small path MTU and a long ClientHello (OpenSSL's own client offering its default suites
//! with `-mtu 256`, for one) never got past it. The fragments are collected here and handed
//! on as the one unfragmented record the client would have sent with room for it; the
//! handshake transcript is unchanged by that, as it is computed over each message as if it
//! had been sent whole (§4.2.6).
//!
//! This is state kept for peers that have not yet proved their address, so it is bounded:
//! at most [`MAX_PENDING`] peers, [`MAX_HELLO`] bytes each, forgotten after [`HELLO_TIMEOUT`]
//! or when the table is full and a newer peer arrives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// DTLS record header: type, version, epoch, sequence number, length.
const RECORD_HEADER: usize = 13;
/// DTLS handshake header: type, length, message_seq, fragment_offset, fragment_length.
const HANDSHAKE_HEADER: usize = 12;
/// Content type of handshake records.
const HANDSHAKE: u8 = 22;
/// Handshake type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Longest ClientHello body reassembled (real ones are a few hundred bytes).
pub const MAX_HELLO: usize = 4096;
/// Peers whose ClientHello fragments are kept at once.
pub const MAX_PENDING: usize = 256;
/// How long the fragments of one ClientHello may take to arrive.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `d` starts with an epoch-0 ClientHello record, whole or a fragment (13-byte record
/// header: type 22, version, epoch 0; then handshake type 1, RFC 6347 §4.3.2): the start of a
/// (re)handshake.
pub(crate) fn is_client_hello(d: &[u8]) -> bool {
    d.first() == Some(&HANDSHAKE) && d.get(3..5) == Some(&[0, 0][..]) && d.get(13) == Some(&1)
}

/// The 32-byte random of a whole ClientHello record: after the record and handshake headers
/// and the 2-byte client version.
pub(crate) fn client_random(d: &[u8]) -> Option<Vec<u8>> {
    d.get(27..59).map(<[u8]>::to_vec)
}

/// What [`HelloFragments::take`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hello {
    /// Not a fragmented ClientHello: handle the datagram as it is.
    AsIs,
    /// A fragment was kept (or dropped as unusable); nothing to hand on yet.
    Pending,
    /// The last fragment arrived: this datagram holds the whole ClientHello in one record.
    Whole(Vec<u8>),
}

/// One ClientHello fragment, as read from its record.
struct Fragment<'a> {
    version: [u8; 2],
    record_seq: [u8; 6],
    message_seq: [u8; 2],
    length: usize,
    offset: usize,
    bytes: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// The ClientHello fragment `d` holds in its only record, if it is one.
    fn parse(d: &'a [u8]) -> Option<Self> {
        if !is_client_hello(d) {
            return None;
        }
        let record = d.get(..RECORD_HEADER)?;
        let len = usize::from(u16::from_be_bytes([record[11], record[12]]));
        if d.len() != RECORD_HEADER + len {
            return None;
        }
        let body = &d[RECORD_HEADER..];
        let h = body.get(..HANDSHAKE_HEADER)?;
        let u24 = |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let (length, offset, fragment) = (u24(&h[1..4]), u24(&h[6..9]), u24(&h[9..12]));
        let bytes = body.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + fragment)?;
        if offset.checked_add(fragment)? > length || body.len() != HANDSHAKE_HEADER + fragment {
            return None;
        }
        Some(Self {
            version: [record[1], record[2]],
            record_seq: record[5..11].try_into().ok()?,
            message_seq: [h[4], h[5]],
            length,
            offset,
            bytes,
        })
    }

    fn is_whole(&self) -> bool {
        self.offset == 0 && self.bytes.len() == self.length
    }
}

/// The fragments of one peer's ClientHello received so far.
struct Partial {
    started: Instant,
    version: [u8; 2],
    record_seq: [u8; 6],
    message_seq: [u8; 2],
    body: Vec<u8>,
    /// Byte ranges of `body` received, sorted and merged.
    have: Vec<(usize, usize)>,
}

impl Partial {
    fn new(f: &Fragment<'_>, now: Instant) -> Self {
        Self {
            started: now,
            version: f.version,
            record_seq: f.record_seq,
            message_seq: f.message_seq,
            body: vec![0; f.length],
            have: Vec::new(),
        }
    }

    /// Whether `f` belongs to the ClientHello collected here.
    fn same_message(&self, f: &Fragment<'_>) -> bool {
        self.message_seq == f.message_seq && self.body.len() == f.length
    }

    fn add(&mut self, f: &Fragment<'_>) {
        let (start, end) = (f.offset, f.offset + f.bytes.len());
        if let Some(dst) = self.body.get_mut(start..end) {
            dst.copy_from_slice(f.bytes);
        }
        self.have.push((start, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
    }

    fn is_complete(&self) -> bool {
        self.have == [(0, self.body.len())]
    }

    /// The ClientHello as one record: the first fragment's record fields, the handshake
    /// header of an unfragmented message.
    fn record(&self) -> Vec<u8> {
        let len = self.body.len();
        let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let mut d = Vec::with_capacity(RECORD_HEADER + HANDSHAKE_HEADER + len);
        d.push(HANDSHAKE);
        d.extend_from_slice(&self.version);
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&self.record_seq);
        d.extend_from_slice(&((HANDSHAKE_HEADER + len) as u16).to_be_bytes());
        d.push(CLIENT_HELLO);
        d.extend_from_slice(&u24(len));
        d.extend_from_slice(&self.message_seq);
        d.extend_from_slice(&u24(0));
        d.extend_from_slice(&u24(len));
        d.extend_from_slice(&self.body);
        d
    }
}

/// ClientHellos arriving in fragments, by peer address.
#[derive(Default)]
pub(crate) struct HelloFragments {
    pending: HashMap<SocketAddr, Partial>,
}

impl HelloFragments {
    /// Takes datagram `d` from `peer` at `now`: a fragment of a ClientHello is kept until the
    /// last one arrives, then the whole ClientHello comes back as one record. Anything else
    /// (a whole ClientHello, any other record, a datagram of several records) is left as it
    /// is; a fragment of a ClientHello longer than [`MAX_HELLO`] is dropped.
    pub(crate) fn take(&mut self, d: &[u8], peer: SocketAddr, now: Instant) -> Hello {
        let Some(f) = Fragment::parse(d) else {
            return Hello::AsIs;
        };
        if f.is_whole() {
            self.pending.remove(&peer);
            return Hello::AsIs;
        }
        if f.length > MAX_HELLO {
            return Hello::Pending;
        }
        let fresh = self
            .pending
            .get(&peer)
            .is_none_or(|p| !p.same_message(&f) || now.duration_since(p.started) > HELLO_TIMEOUT);
        if fresh {
            if !self.pending.contains_key(&peer) {
                self.make_room(now);
            }
            self.pending.insert(peer, Partial::new(&f, now));
        }
        let Some(p) = self.pending.get_mut(&peer) else {
            return Hello::Pending;
        };
        p.add(&f);
        if !p.is_complete() {
            return Hello::Pending;
        }
        let whole = p.record();
        self.pending.remove(&peer);
        Hello::Whole(whole)
    }

    /// Peers with fragments kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }

    /// Before a new peer is added: drops the expired ones, then the oldest if still full.
    fn make_room(&mut self, now: Instant) {
        if self.pending.len() < MAX_PENDING {
            return;
        }
        self.pending
            .retain(|_, p| now.duration_since(p.started) <= HELLO_TIMEOUT);
        if self.pending.len() >= MAX_PENDING {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.pending.remove(&a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole ClientHello record with `body` (record sequence 7, message_seq 1).
    fn whole(body: &[u8]) -> Vec<u8> {
        let p = Partial {
            started: Instant::now(),
            version: [0xfe, 0xfd],
            record_seq: [0, 0, 0, 0, 0, 7],
            message_seq: [0, 1],
            body: body.to_vec(),
            have: Vec::new(),
        };
        p.record()
    }

    /// The record of the fragment `[start, end)` of a ClientHello with `body`, as a client
    /// sends it (record sequence `seq`).
    fn fragment(body: &[u8], start: usize, end: usize, seq: u8) -> Vec<u8> {
        let len = body.len();
        let part = &body[start..end];
        let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let mut d = vec![HANDSHAKE, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, seq];
        d.extend_from_slice(&((HANDSHAKE_HEADER + part.len()) as u16).to_be_bytes());
        d.push(CLIENT_HELLO);
        d.extend_from_slice(&u24(len));
        d.extend_from_slice(&[0, 1]);
        d.extend_from_slice(&u24(start));
        d.extend_from_slice(&u24(part.len()));
        d.extend_from_slice(part);
        d
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);

    #[test]
    fn fragments_in_any_order_with_repeats_become_the_whole_record() {
        let b = body(700);
        let now = Instant::now();
        let mut h = HelloFragments::default();
        // Out of order, overlapping, one repeated: the first fragment's record sequence wins.
        let parts = [(200, 450, 7), (0, 220, 8), (200, 450, 9), (440, 700, 10)];
        let mut out = Vec::new();
        for (s, e, seq) in parts {
            out.push(h.take(&fragment(&b, s, e, seq), PEER, now));
        }
        assert_eq!(&out[..3], [Hello::Pending, Hello::Pending, Hello::Pending]);
        assert_eq!(out[3], Hello::Whole(whole(&b)));
        assert!(is_client_hello(&whole(&b)));
        assert_eq!(h.len(), 0, "nothing kept once handed on");
    }

    #[test]
    fn whole_hellos_and_other_records_pass_as_they_are() {
        let now = Instant::now();
        let mut h = HelloFragments::default();
        let b = body(300);
        assert_eq!(h.take(&whole(&b), PEER, now), Hello::AsIs);
        let mut app = whole(&b);
        app[0] = 23;
        assert_eq!(h.take(&app, PEER, now), Hello::AsIs);
        // Two records in one datagram, a truncated record, a fragment past its message.
        let mut two = fragment(&b, 0, 100, 1);
        two.extend(fragment(&b, 100, 300, 2));
        assert_eq!(h.take(&two, PEER, now), Hello::AsIs);
        let f = fragment(&b, 0, 100, 1);
        assert_eq!(h.take(&f[..f.len() - 1], PEER, now), Hello::AsIs);
        let mut past = fragment(&b, 250, 300, 1);
        past[19] = 1; // fragment_offset 0x010000 + 250, past the 300-byte message
        assert_eq!(h.take(&past, PEER, now), Hello::AsIs);
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn a_new_message_or_a_stale_one_starts_over_and_oversize_is_dropped() {
        let now = Instant::now();
        let mut h = HelloFragments::default();
        let (old, new) = (body(400), body(500));
        assert_eq!(
            h.take(&fragment(&old, 0, 200, 1), PEER, now),
            Hello::Pending
        );
        // Another length: another ClientHello; the old fragments are gone.
        assert_eq!(
            h.take(&fragment(&new, 0, 250, 2), PEER, now),
            Hello::Pending
        );
        assert_eq!(
            h.take(&fragment(&old, 200, 400, 3), PEER, now),
            Hello::Pending
        );
        // Too late to complete the first attempt at `new`: it starts over.
        let late = now + HELLO_TIMEOUT + Duration::from_secs(1);
        assert_eq!(
            h.take(&fragment(&new, 250, 500, 4), PEER, late),
            Hello::Pending
        );
        assert_eq!(
            h.take(&fragment(&new, 0, 250, 5), PEER, late),
            Hello::Whole({
                let mut w = whole(&new);
                w[10] = 4; // the record sequence of the fragment that started it over
                w
            })
        );
        let big = body(MAX_HELLO + 1);
        assert_eq!(
            h.take(&fragment(&big, 0, 1000, 1), PEER, now),
            Hello::Pending
        );
        assert_eq!(h.len(), 0, "an oversize ClientHello is not kept");
    }

    #[test]
    fn the_table_is_bounded_and_the_oldest_peer_goes_first() {
        let now = Instant::now();
        let mut h = HelloFragments::default();
        let b = body(600);
        let peer = |i: usize| SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16));
        for i in 0..MAX_PENDING + 10 {
            let at = now + Duration::from_millis(i as u64);
            assert_eq!(
                h.take(&fragment(&b, 0, 300, 1), peer(i), at),
                Hello::Pending
            );
        }
        assert_eq!(h.len(), MAX_PENDING);
        // The first ten were evicted: their second halves start over, the newest complete.
        let at = now + Duration::from_secs(1);
        assert_eq!(
            h.take(&fragment(&b, 300, 600, 2), peer(0), at),
            Hello::Pending
        );
        assert!(matches!(
            h.take(&fragment(&b, 300, 600, 2), peer(MAX_PENDING + 9), at),
            Hello::Whole(_)
        ));
    }
}

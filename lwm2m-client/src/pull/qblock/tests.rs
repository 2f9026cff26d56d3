//! The Q-Block2 pull against an in-process package host over a simulated link with fake
//! time: a fixed one-way delay, and datagrams dropped by a seeded generator or a script.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use object5::UpdateResult;

use super::*;
use crate::codec::qblock::Ask;
use crate::pull::{MemSink, SinkError};

const RTT: u64 = 100;

fn body(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ salt).collect()
}

fn uri() -> CoapUri {
    CoapUri::parse("coap://127.0.0.1:5683/fw/pkg.suit").unwrap()
}

/// How the in-process host answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// RFC 9177 Q-Block2: bursts of up to MAX_PAYLOADS blocks.
    QBlock,
    /// Ignores Q-Block2 and serves Block2 (aiocoap's file server does this).
    Block2,
    /// Rejects the unknown critical option with 4.02.
    BadOption,
    /// Resets the request.
    Reset,
}

/// The body and ETag the host serves to its n-th request.
type Versions = Box<dyn FnMut(u32) -> (Vec<u8>, Vec<u8>)>;
/// Rewrites the response carrying block n before it is sent.
type Tamper = Box<dyn FnMut(u32, &mut Packet)>;

/// A package host: answers request datagrams with response datagrams.
struct Host {
    mode: Mode,
    /// The body and ETag served to the n-th request (a script can change the package).
    versions: Versions,
    /// Rewrites a response before it is sent (malformed-option tests).
    tamper: Tamper,
    requests: u32,
    mp: u32,
}

impl Host {
    fn new(mode: Mode, body: Vec<u8>) -> Self {
        Self {
            mode,
            versions: Box::new(move |_| (body.clone(), b"e1".to_vec())),
            tamper: Box::new(|_, _| {}),
            requests: 0,
            mp: 10,
        }
    }

    fn answer(&mut self, req: &[u8]) -> Vec<Vec<u8>> {
        let Ok(req) = Packet::from_bytes(req) else {
            return vec![];
        };
        if req.header.code == MessageClass::Empty {
            return vec![];
        }
        let n = self.requests;
        self.requests += 1;
        let (body, etag) = (self.versions)(n);
        let con = req.header.get_type() == MessageType::Confirmable;
        let reply = |code, first: bool| {
            let (t, mid) = match (con && first, code) {
                (true, _) => (MessageType::Acknowledgement, req.header.message_id),
                _ => (MessageType::NonConfirmable, 7000 + n as u16),
            };
            packet(t, MessageClass::Response(code), mid, req.get_token())
        };
        match self.mode {
            Mode::Reset => {
                return vec![empty(MessageType::Reset, req.header.message_id)
                    .to_bytes()
                    .unwrap()]
            }
            Mode::BadOption if req.get_option(q_block2()).is_some() => {
                return vec![reply(ResponseType::BadOption, true).to_bytes().unwrap()]
            }
            Mode::Block2 | Mode::BadOption => {
                let b = req
                    .get_option(CoapOption::Block2)
                    .and_then(|v| v.front())
                    .map(|v| BlockOpt::decode(v).unwrap())
                    .unwrap_or(BlockOpt {
                        num: 0,
                        more: false,
                        szx: 6,
                    });
                let start = (b.offset() as usize).min(body.len());
                let end = (start + b.size()).min(body.len());
                let mut r = reply(ResponseType::Content, true);
                r.add_option(CoapOption::ETag, etag);
                r.add_option(
                    CoapOption::Block2,
                    BlockOpt::new(b.num, end < body.len(), b.szx)
                        .unwrap()
                        .encode(),
                );
                r.payload = body[start..end].to_vec();
                return vec![r.to_bytes().unwrap()];
            }
            Mode::QBlock => {}
        }
        let asks = q_block2_options(&req).unwrap();
        let szx = asks[0].szx;
        let bs = 1usize << (szx + 4);
        let total_blocks = body.len().div_ceil(bs).max(1) as u32;
        let mut blocks: Vec<u32> = asks
            .iter()
            .flat_map(|a| Ask::of(*a, self.mp).blocks(self.mp, total_blocks))
            .collect();
        blocks.sort_unstable();
        blocks.dedup();
        blocks.truncate(self.mp as usize);
        let mut out = Vec::new();
        for (i, num) in blocks.into_iter().enumerate() {
            let start = num as usize * bs;
            let end = (start + bs).min(body.len());
            let mut r = reply(ResponseType::Content, i == 0);
            if i > 0 {
                r.header.message_id = 8000 + (n * 16 + i as u32) as u16;
            }
            r.add_option(CoapOption::ETag, etag.clone());
            r.add_option(
                q_block2(),
                BlockOpt::new(num, num + 1 < total_blocks, szx)
                    .unwrap()
                    .encode(),
            );
            r.add_option(CoapOption::Size2, uint_option(body.len() as u32));
            r.payload = body[start..end].to_vec();
            (self.tamper)(num, &mut r);
            out.push(r.to_bytes().unwrap());
        }
        out
    }
}

/// What crossed the simulated link.
#[derive(Debug, Default)]
struct Link {
    to_host: u32,
    to_device: u32,
    /// Fake time when the pull ended.
    end_ms: u64,
    /// When each request left the device.
    request_times: Vec<u64>,
}

/// xorshift for loss decisions.
struct Loss(u64, f64);

impl Loss {
    fn drop(&mut self) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) < self.1
    }
}

/// Runs `pull` against `host` over a link with RTT/2 each way, dropping datagrams for which
/// `drop(to_host, index)` says so.
fn run(
    pull: &mut QBlock2Pull,
    host: &mut Host,
    sink: &mut dyn PackageSink,
    mut drop: impl FnMut(bool, u32) -> bool,
) -> (Result<Pulled, PullError>, Link) {
    let mut link = Link::default();
    let mut queue: BTreeMap<(u64, u32), (bool, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u32;
    let mut now = 0u64;
    for _ in 0..200_000 {
        while let Some(d) = pull.poll_transmit(now) {
            let index = link.to_host;
            link.to_host += 1;
            if Packet::from_bytes(&d).unwrap().header.code != MessageClass::Empty {
                link.request_times.push(now);
            }
            if !drop(true, index) {
                queue.insert((now + RTT / 2, seq), (true, d));
                seq += 1;
            }
        }
        let next_event = queue.keys().next().map(|k| k.0);
        let timer = pull.poll_timeout();
        match (next_event, timer) {
            (Some(t), tm) if tm.is_none_or(|tm| t <= tm) => {
                let key = *queue.keys().next().unwrap();
                let (to_host, d) = queue.remove(&key).unwrap();
                now = t;
                if to_host {
                    for r in host.answer(&d) {
                        let index = link.to_device;
                        link.to_device += 1;
                        if !drop(false, index) {
                            queue.insert((now + RTT / 2, seq), (false, r));
                            seq += 1;
                        }
                    }
                } else {
                    match pull.handle_datagram(&d, now, sink) {
                        Ok(Some(done)) => {
                            link.end_ms = now;
                            return (Ok(done), link);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            link.end_ms = now;
                            return (Err(e), link);
                        }
                    }
                }
            }
            (_, Some(tm)) => {
                now = now.max(tm);
                if let Err(e) = pull.handle_timeout(now) {
                    link.end_ms = now;
                    return (Err(e), link);
                }
            }
            (_, None) => panic!("pull stalled without a timer"),
        }
    }
    panic!("pull did not end");
}

fn fast() -> TxParams {
    TxParams {
        ack_timeout_ms: 300,
        ..TxParams::default()
    }
}

fn new_pull(resume: Option<&Resume>, params: QBlockParams, max: u64) -> QBlock2Pull {
    QBlock2Pull::new(uri(), resume, 1024, fast(), Some(params), 42, max)
}

#[test]
fn loss_free_pull_costs_one_round_trip_per_set() {
    let data = body(256 * 1024, 0);
    let mut host = Host::new(Mode::QBlock, data.clone());
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let mut sink = MemSink::default();
    let (done, link) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    let done = done.unwrap();
    assert_eq!(done.size, data.len() as u64);
    assert!(sink.data == data);
    assert_eq!(pull.uses_qblock(), Some(true));
    // The CON probe, the request for the body and 25 Continues for 26 sets; the probe's
    // 16 bytes and 256 blocks back.
    assert_eq!((link.to_host, link.to_device), (27, 257));
    assert_eq!(
        link.end_ms,
        27 * RTT,
        "one round trip per set, plus the probe's"
    );
    // Block2 would need a round trip per block: 256 x 100 ms.
    let first = Packet::from_bytes(&host_request(&mut new_pull(
        None,
        QBlockParams::default(),
        1 << 20,
    )))
    .unwrap();
    assert_eq!(first.header.get_type(), MessageType::Confirmable);
    assert_eq!(
        q_block2_options(&first).unwrap(),
        vec![BlockOpt::new(0, false, 0).unwrap()],
        "the probe asks for the first 16 bytes alone"
    );
}

fn host_request(pull: &mut QBlock2Pull) -> Vec<u8> {
    pull.poll_transmit(0).unwrap()
}

/// Sends the probe, feeds the host's answer and returns the request for the body that
/// follows it (NON, the whole body: NUM 0, M set); nothing is stored yet.
fn probe_then_body(pull: &mut QBlock2Pull, host: &mut Host, sink: &mut MemSink) -> Vec<u8> {
    let probe = pull.poll_transmit(0).unwrap();
    let answer = host.answer(&probe);
    assert_eq!(answer.len(), 1, "the probe asks for one block");
    assert!(pull
        .handle_datagram(&answer[0], 50, sink)
        .unwrap()
        .is_none());
    assert!(sink.data.is_empty(), "the probe's bytes are not the body's");
    let body = pull.poll_transmit(50).unwrap();
    let p = Packet::from_bytes(&body).unwrap();
    assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(uri_path(&p), ["fw", "pkg.suit"]);
    assert_eq!(
        q_block2_options(&p).unwrap(),
        vec![BlockOpt::new(0, true, 6).unwrap()]
    );
    body
}

#[test]
fn heavy_loss_completes_with_about_one_and_a_half_times_the_datagrams() {
    let data = body(256 * 1024, 0);
    // Loss-free: 26 requests and 256 blocks (see above).
    let loss_free = 282.0;
    let mut ratios = Vec::new();
    for seed in 1..=8u64 {
        let mut host = Host::new(Mode::QBlock, data.clone());
        // 20% each way makes five failed rounds in a row likely somewhere in 26 sets: more
        // retries than NON_MAX_RETRANSMIT's default 4, as a lossy deployment would configure.
        let params = QBlockParams {
            non_max_retransmit: 8,
            ..QBlockParams::scaled(300)
        };
        let mut pull = new_pull(None, params, 1 << 20);
        let mut sink = MemSink::default();
        let mut loss = Loss(seed * 7919, 0.2);
        let (done, link) = run(&mut pull, &mut host, &mut sink, |_, _| loss.drop());
        assert_eq!(done.unwrap().size, data.len() as u64, "seed {seed}");
        assert!(sink.data == data, "seed {seed}");
        ratios.push(f64::from(link.to_host + link.to_device) / loss_free);
    }
    // Blocks lost must be sent again (1.25x at 20%), plus the requests for them.
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    assert!(mean <= 1.45, "mean {mean:.2}x: {ratios:?}");
    assert!(ratios.iter().all(|r| *r <= 1.55), "{ratios:?}");
}

#[test]
fn a_host_without_q_block2_gets_the_same_pull_over_block2() {
    let data = body(30_000, 0);
    for mode in [Mode::Block2, Mode::BadOption, Mode::Reset] {
        let mut host = Host::new(mode, data.clone());
        if mode == Mode::Reset {
            // A host that resets Q-Block2 requests but serves Block2.
            let mut inner = Host::new(Mode::Block2, data.clone());
            let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
            let mut sink = MemSink::default();
            let probe = pull.poll_transmit(0).unwrap();
            let rst = host.answer(&probe).remove(0);
            assert!(pull.handle_datagram(&rst, 1, &mut sink).unwrap().is_none());
            assert_eq!(pull.uses_qblock(), Some(false));
            let (done, _) = run(&mut pull, &mut inner, &mut sink, |_, _| false);
            assert_eq!(done.unwrap().size, data.len() as u64);
            assert!(sink.data == data);
            continue;
        }
        let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
        let mut sink = MemSink::default();
        let (done, link) = run(&mut pull, &mut host, &mut sink, |_, _| false);
        assert_eq!(done.unwrap().size, data.len() as u64);
        assert!(sink.data == data);
        assert_eq!(pull.uses_qblock(), Some(false));
        // The probe, then one Block2 request per block.
        assert_eq!(link.to_host, 1 + 30);
    }
}

#[test]
fn resume_continues_with_the_same_etag_and_restarts_with_another() {
    let data = body(100_000, 0);
    let resume = Resume {
        offset: 40 * 1024 + 300,
        etag: Some(b"e1".to_vec()),
    };
    let mut host = Host::new(Mode::QBlock, data.clone());
    let mut pull = new_pull(Some(&resume), QBlockParams::default(), 1 << 20);
    let mut sink = MemSink {
        data: data[..40 * 1024].to_vec(),
        starts: vec![],
    };
    let (done, link) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    let done = done.unwrap();
    assert!(done.resumed);
    assert_eq!(sink.starts, vec![40 * 1024]);
    assert!(sink.data == data);
    // The probe's answer, then blocks 40..97: the rest of set 4 and five more sets.
    assert_eq!(link.to_device, 1 + 98 - 40);

    let mut host = Host::new(Mode::QBlock, data.clone());
    host.versions = Box::new(move |_| (data.clone(), b"e2".to_vec()));
    let mut pull = new_pull(Some(&resume), QBlockParams::default(), 1 << 20);
    let mut sink = MemSink {
        data: vec![0xEE; 40 * 1024],
        starts: vec![],
    };
    let (done, _) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    assert!(!done.unwrap().resumed);
    assert_eq!(sink.starts, vec![0]);
    assert_eq!(sink.data.len(), 100_000);
}

/// A sink that checks every byte against the version it was started with.
struct VersionSink {
    versions: Vec<(Vec<u8>, Vec<u8>)>,
    current: Option<usize>,
    written: u64,
    starts: Vec<(u64, Vec<u8>)>,
}

impl PackageSink for VersionSink {
    fn start(&mut self, from: u64, etag: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
        let etag = etag.unwrap_or_default().to_vec();
        self.current = self.versions.iter().position(|v| v.1 == etag);
        assert!(self.current.is_some(), "started with an unknown ETag");
        self.written = from;
        self.starts.push((from, etag));
        Ok(())
    }
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        assert_eq!(offset, self.written, "non-contiguous write");
        let body = &self.versions[self.current.unwrap()].0;
        assert!(
            body[offset as usize..offset as usize + bytes.len()] == *bytes,
            "bytes of another version written at {offset}"
        );
        self.written += bytes.len() as u64;
        Ok(())
    }
}

fn version_sink(versions: &[(Vec<u8>, Vec<u8>)]) -> VersionSink {
    VersionSink {
        versions: versions.to_vec(),
        current: None,
        written: 0,
        starts: vec![],
    }
}

#[test]
fn a_package_that_changes_restarts_and_one_that_keeps_changing_is_refused() {
    let v1 = (body(50_000, 0), b"v1".to_vec());
    let v2 = (body(50_000, 0x55), b"v2".to_vec());
    // Changed once, after the third request: the pull starts over and stores v2 only.
    let versions = [v1.clone(), v2.clone()];
    let mut host = Host::new(Mode::QBlock, vec![]);
    let vs = versions.clone();
    host.versions = Box::new(move |n| vs[usize::from(n >= 3)].clone());
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let mut sink = version_sink(&versions);
    let (done, _) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    assert_eq!(done.unwrap().etag.as_deref(), Some(&b"v2"[..]));
    assert_eq!(
        sink.starts,
        vec![(0, b"v1".to_vec()), (0, b"v2".to_vec())],
        "restarted from byte 0"
    );
    assert_eq!(sink.written, 50_000);

    // A version per request: given up after three changes, Update Result 5.
    let versions: Vec<_> = (0..12u8)
        .map(|i| (body(50_000, i), vec![b'v', i]))
        .collect();
    let mut host = Host::new(Mode::QBlock, vec![]);
    let vs = versions.clone();
    host.versions = Box::new(move |n| vs[n as usize % 12].clone());
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let mut sink = version_sink(&versions);
    let (done, _) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    let e = done.unwrap_err();
    assert!(matches!(e, PullError::Inconsistent(_)), "{e}");
    assert_eq!(e.update_result(), UpdateResult::IntegrityFailure);
}

#[test]
fn malformed_q_block2_answers_end_the_pull_without_storing_them() {
    type Edit = fn(u32, &mut Packet);
    let cases: [(&str, Edit); 7] = [
        ("longer than 3 bytes", |n, p| {
            if n == 13 {
                p.set_option(q_block2(), [vec![0, 0, 0xD0, 0x0E]].into_iter().collect());
            }
        }),
        ("reserved block SZX 7", |n, p| {
            if n == 13 {
                p.set_option(q_block2(), [vec![0xDF]].into_iter().collect());
            }
        }),
        ("not exactly one Q-Block2 option", |n, p| {
            if n == 13 {
                p.add_option(q_block2(), BlockOpt::new(14, true, 6).unwrap().encode());
            }
        }),
        ("Block2 beside Q-Block2", |n, p| {
            if n == 13 {
                p.add_option(
                    CoapOption::Block2,
                    BlockOpt::new(13, true, 6).unwrap().encode(),
                );
            }
        }),
        ("short block before the last", |n, p| {
            if n == 13 {
                p.payload.truncate(100);
            }
        }),
        ("last block at the wrong number", |n, p| {
            if n == 13 {
                p.set_option(
                    q_block2(),
                    [BlockOpt::new(13, false, 5).unwrap().encode()]
                        .into_iter()
                        .collect(),
                );
            }
        }),
        ("larger blocks than asked for", |n, p| {
            if n == 0 {
                p.set_option(q_block2(), [vec![0x0E]].into_iter().collect());
            }
        }),
    ];
    let data = body(40_000, 0);
    for (what, tamper) in cases {
        let mut host = Host::new(Mode::QBlock, data.clone());
        host.tamper = Box::new(tamper);
        // Blocks of 512 bytes: a "larger" SZX 6 answer is not what was asked for.
        let mut pull = QBlock2Pull::new(
            uri(),
            None,
            512,
            fast(),
            Some(Default::default()),
            9,
            1 << 20,
        );
        let mut sink = MemSink::default();
        let (done, _) = run(&mut pull, &mut host, &mut sink, |_, _| false);
        let e = done.expect_err(what);
        assert_eq!(
            e.update_result(),
            UpdateResult::ConnectionLost,
            "{what}: {e}"
        );
        assert!(alloc::format!("{e}").contains(what), "{what}: {e}");
        assert!(
            data.starts_with(&sink.data),
            "{what}: only a prefix of the package was stored"
        );
    }
}

#[test]
fn lost_blocks_are_asked_for_in_one_request_as_soon_as_their_burst_ends() {
    let data = body(20 * 1024, 0);
    let mut host = Host::new(Mode::QBlock, data.clone());
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let mut sink = MemSink::default();
    let mut requests = Vec::new();
    // Blocks 2, 5 and 6 of the first burst lost (the probe's answer came first).
    let (done, link) = run(&mut pull, &mut host, &mut sink, |to_host, i| {
        !to_host && [3, 6, 7].contains(&i)
    });
    done.unwrap();
    assert!(sink.data == data);
    requests.extend(link.request_times.iter().copied());
    // The probe at 0, the body at one RTT, the request for 2, 5 and 6 when block 9 arrives
    // (two RTTs), then the Continue.
    assert_eq!(requests, vec![0, RTT, 2 * RTT, 3 * RTT]);
    assert_eq!(link.to_device, 1 + 20 + 3);
}

#[test]
fn silence_is_met_with_requests_on_the_non_receive_timeout_schedule_then_given_up() {
    let data = body(64 * 1024, 0);
    let mut host = Host::new(Mode::QBlock, data);
    let params = QBlockParams::default();
    let mut pull = new_pull(None, params, 1 << 20);
    let mut sink = MemSink::default();
    // The probe's answer and the first burst get through, then nothing from the host.
    let (done, link) = run(&mut pull, &mut host, &mut sink, |to_host, i| {
        !to_host && i >= 11
    });
    assert_eq!(
        done.unwrap_err().update_result(),
        UpdateResult::ConnectionLost
    );
    let t = &link.request_times;
    // The probe, the body at one RTT, the Continue at two, then four retries after 4, 8, 16
    // and 32 s of silence.
    assert_eq!(t.len(), 7, "{t:?}");
    assert_eq!(t[..3], [0, RTT, 2 * RTT]);
    let gaps: Vec<u64> = t.windows(2).skip(2).map(|w| w[1] - w[0]).collect();
    let r = params.non_receive_timeout_ms;
    assert_eq!(gaps, vec![r, 2 * r, 4 * r, 8 * r]);
    assert_eq!(link.end_ms, t[6] + 16 * r);
    assert_eq!(sink.data.len(), 10 * 1024);
}

#[test]
fn the_window_bounds_memory_and_blocks_beyond_it_are_asked_for_later() {
    let data = body(40 * 1024, 0);
    let params = QBlockParams {
        window_blocks: 10,
        ..QBlockParams::default()
    };
    let mut pull = new_pull(None, params, 1 << 20);
    assert!(
        pull.window.data.capacity() == 0,
        "nothing allocated before a block"
    );
    let mut host = Host::new(Mode::QBlock, data.clone());
    let mut sink = MemSink::default();
    let body_request = probe_then_body(&mut pull, &mut host, &mut sink);
    let burst = host.answer(&body_request);
    // Block 0 lost; set 1 arrives too, as from a host that sent it unasked: beyond the window.
    let mut cont = Packet::from_bytes(&body_request).unwrap();
    cont.clear_option(q_block2());
    cont.add_option(q_block2(), BlockOpt::new(10, true, 6).unwrap().encode());
    let set1 = host.answer(&cont.to_bytes().unwrap());
    for d in burst.iter().skip(1).chain(&set1) {
        assert!(pull.handle_datagram(d, 100, &mut sink).unwrap().is_none());
    }
    assert_eq!(pull.window.data.len(), 10 * 1024, "window x block size");
    assert!(sink.data.is_empty());
    // Block 9 ended the burst: block 0 is asked for at once.
    let ask = Packet::from_bytes(&pull.poll_transmit(100).unwrap()).unwrap();
    assert_eq!(
        q_block2_options(&ask).unwrap(),
        vec![BlockOpt::new(0, false, 6).unwrap()]
    );
    let (done, _) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    done.unwrap();
    assert!(sink.data == data);
}

fn uri_path(p: &Packet) -> Vec<String> {
    p.get_option(CoapOption::UriPath)
        .map(|segs| {
            segs.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_probe_asks_the_discovery_resource_and_a_host_without_one_gets_block2() {
    // A probe of the package itself leaves go-coap's host with two bodies for the same
    // request options, and it refuses the requests for missing blocks (4.00).
    let data = body(5000, 0);
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let probe = Packet::from_bytes(&pull.poll_transmit(0).unwrap()).unwrap();
    assert_eq!(probe.header.get_type(), MessageType::Confirmable);
    assert_eq!(uri_path(&probe), [".well-known", "core"]);
    assert_eq!(
        q_block2_options(&probe).unwrap(),
        vec![BlockOpt::new(0, false, 0).unwrap()]
    );
    // No discovery resource: 4.04, and the package is pulled with Block2.
    let not_found = packet(
        MessageType::Acknowledgement,
        MessageClass::Response(ResponseType::NotFound),
        probe.header.message_id,
        probe.get_token(),
    );
    let mut sink = MemSink::default();
    let answer = not_found.to_bytes().unwrap();
    assert!(pull
        .handle_datagram(&answer, 1, &mut sink)
        .unwrap()
        .is_none());
    assert_eq!(pull.uses_qblock(), Some(false));
    let mut host = Host::new(Mode::Block2, data.clone());
    let (done, _) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    assert_eq!(done.unwrap().size, data.len() as u64);
    assert!(sink.data == data);
}

#[test]
fn a_probe_answered_with_another_requests_cached_response_goes_again_under_a_new_id() {
    // The host still holds the probe's message id from before a restart (RFC 7252 §4.5)
    // and repeats its old answer, under the old token, to every retransmission.
    let data = body(5000, 0);
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let probe = Packet::from_bytes(&pull.poll_transmit(0).unwrap()).unwrap();
    let mut stale = packet(
        MessageType::Acknowledgement,
        MessageClass::Response(ResponseType::Content),
        probe.header.message_id,
        b"old!",
    );
    stale.payload = b"</>".to_vec();
    let mut sink = MemSink::default();
    let stale = stale.to_bytes().unwrap();
    assert!(pull
        .handle_datagram(&stale, 1, &mut sink)
        .unwrap()
        .is_none());
    let again = Packet::from_bytes(&pull.poll_transmit(1).expect("the probe again")).unwrap();
    assert_ne!(again.header.message_id, probe.header.message_id);
    assert_eq!(uri_path(&again), [".well-known", "core"]);
    // Answered under its new id, the pull goes on with Q-Block2.
    let mut host = Host::new(Mode::QBlock, data.clone());
    let answer = host.answer(&again.to_bytes().unwrap());
    assert!(pull
        .handle_datagram(&answer[0], 2, &mut sink)
        .unwrap()
        .is_none());
    assert_eq!(pull.uses_qblock(), Some(true));
    let (done, _) = run(&mut pull, &mut host, &mut sink, |_, _| false);
    assert_eq!(done.unwrap().size, data.len() as u64);
    assert!(sink.data == data);
}

#[test]
fn the_first_request_is_retransmitted_like_any_confirmable_request() {
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let first = pull.poll_transmit(0).unwrap();
    let mut now = pull.poll_timeout().unwrap();
    assert!((300..=450).contains(&now), "{now}");
    for _ in 0..4 {
        pull.handle_timeout(now).unwrap();
        assert_eq!(pull.poll_transmit(now).unwrap(), first);
        now = pull.poll_timeout().unwrap();
    }
    let e = pull.handle_timeout(now).unwrap_err();
    assert_eq!(e.update_result(), UpdateResult::ConnectionLost);
    assert!(alloc::format!("{e}").contains("Q-Block2"));
}

#[test]
fn confirmable_blocks_are_acknowledged_and_foreign_tokens_ignored() {
    let data = body(5000, 0);
    let mut host = Host::new(Mode::QBlock, data.clone());
    let mut pull = new_pull(None, QBlockParams::default(), 1 << 20);
    let mut sink = MemSink::default();
    let body_request = probe_then_body(&mut pull, &mut host, &mut sink);
    let burst = host.answer(&body_request);
    // A block with another token changes nothing.
    let mut foreign = Packet::from_bytes(&burst[1]).unwrap();
    foreign.set_token(vec![1, 2, 3, 4, 5, 6]);
    assert!(pull
        .handle_datagram(&foreign.to_bytes().unwrap(), 1, &mut sink)
        .unwrap()
        .is_none());
    assert!(sink.data.is_empty());
    let mut done = None;
    for d in &burst {
        let mut p = Packet::from_bytes(d).unwrap();
        p.header.set_type(MessageType::Confirmable);
        done = pull
            .handle_datagram(&p.to_bytes().unwrap(), 2, &mut sink)
            .unwrap();
        let ack = Packet::from_bytes(&pull.poll_transmit(2).unwrap()).unwrap();
        assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(ack.header.message_id, p.header.message_id);
    }
    assert_eq!(done.unwrap().size, 5000);
    assert!(sink.data == data);
}

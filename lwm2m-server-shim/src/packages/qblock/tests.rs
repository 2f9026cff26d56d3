//! The Q-Block2 face with fake time: what a request's options ask for, bursts, refusals, and
//! the sets sent unasked.

use super::*;

struct Fixture {
    host: PackageHost,
    dir: std::path::PathBuf,
    data: Vec<u8>,
}

impl Fixture {
    fn new(tag: &str, len: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("shim-qblock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let host = PackageHost::new(&dir).expect("dir");
        let data: Vec<u8> = (0..len as u32).map(|i| (i % 251) as u8).collect();
        host.store("p.bin", &data).expect("store");
        Self { host, dir, data }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// A NON GET with these Q-Block2 options, as a device pulling with Q-Block2 sends them.
fn get(asks: &[(u32, bool)], szx: u8, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::NonConfirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.set_token(token.to_vec());
    for &(num, more) in asks {
        p.add_option(q_block2(), BlockOpt::new(num, more, szx).unwrap().encode());
    }
    p
}

/// [`Schedule::answer`] for the fixture's package, the responses after the first collected.
fn answer(
    s: &mut Schedule,
    f: &Fixture,
    request: &Packet,
    szx: u8,
    from: SocketAddr,
    now: Instant,
) -> (Packet, Vec<Packet>) {
    let (first, more) = s.answer(&f.host, request, &path(), szx, from, now);
    (first, more.collect())
}

fn path() -> Vec<String> {
    vec!["fw".into(), "p.bin".into()]
}

/// The Q-Block2 values of a burst, in order.
fn nums(first: &Packet, more: &[Packet]) -> Vec<(u32, bool)> {
    std::iter::once(first)
        .chain(more)
        .map(|p| {
            let o = q_block2_options(p).unwrap();
            assert_eq!(o.len(), 1);
            (o[0].num, o[0].more)
        })
        .collect()
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

#[test]
fn requests_are_answered_as_rfc_9177_section_4_4_reads_them() {
    let f = Fixture::new("asks", 25 * 1024 + 100); // blocks 0..=25 of 1 KiB
    let mut s = Schedule::new(QBlockSenderParams::default());
    let now = Instant::now();
    let mut ask = |asks: &[(u32, bool)]| {
        let (first, more) = answer(&mut s, &f, &get(asks, 6, b"t"), 6, peer(), now);
        assert_eq!(code(&first), MessageClass::Response(ResponseType::Content));
        nums(&first, &more)
    };
    let set = |r: std::ops::Range<u32>| r.map(|n| (n, true)).collect::<Vec<_>>();
    assert_eq!(
        ask(&[(0, true)]),
        set(0..10),
        "the whole body: its first set"
    );
    assert_eq!(ask(&[(10, true)]), set(10..20), "Continue");
    assert_eq!(ask(&[(13, true)]), set(13..20), "the rest of a set");
    assert_eq!(
        ask(&[(7, false), (3, false), (7, false)]),
        vec![(3, true), (7, true)]
    );
    // Overlapping options send each block once.
    assert_eq!(ask(&[(15, false), (13, true)]), set(13..20));
    // The last set is short and its last block says so.
    let mut last = set(20..25);
    last.push((25, false));
    assert_eq!(ask(&[(20, true)]), last);
    // Never more than MAX_PAYLOADS blocks for one request.
    let many: Vec<(u32, bool)> = (0..26).map(|n| (n, false)).collect();
    assert_eq!(ask(&many).len(), 10);
}

#[test]
fn every_block_carries_etag_size2_and_its_bytes() {
    let f = Fixture::new("bytes", 3000);
    let mut s = Schedule::new(QBlockSenderParams::default());
    let info = f.host.info("p.bin").unwrap();
    let (first, more) = answer(
        &mut s,
        &f,
        &get(&[(0, true)], 4, b"t"),
        6,
        peer(),
        Instant::now(),
    );
    assert_eq!(more.len(), 9, "256-byte blocks asked for");
    for (i, p) in std::iter::once(&first).chain(&more).enumerate() {
        assert_eq!(
            p.get_first_option(CoapOption::ETag),
            Some(&info.etag.to_vec())
        );
        assert_eq!(
            p.get_first_option(CoapOption::Size2),
            Some(&uint_option(3000))
        );
        assert_eq!(p.payload, f.data[i * 256..(i + 1) * 256].to_vec());
    }
    // Asked with 1 KiB blocks from a host serving 512: the same offsets in 512-byte blocks.
    let (first, more) = answer(
        &mut s,
        &f,
        &get(&[(1, false)], 6, b"t"),
        5,
        peer(),
        Instant::now(),
    );
    assert_eq!(nums(&first, &more), vec![(2, true)]);
    assert_eq!(first.payload, f.data[1024..1536].to_vec());
}

#[test]
fn malformed_options_missing_packages_and_blocks_past_the_end_are_refused() {
    let f = Fixture::new("refused", 5000);
    let mut s = Schedule::new(QBlockSenderParams::default());
    let now = Instant::now();
    let mut bad = get(&[], 6, b"t");
    bad.add_option(q_block2(), vec![0, 0, 0, 0x0E]);
    let mut szx7 = get(&[], 6, b"t");
    szx7.add_option(q_block2(), vec![0x0F]);
    let mut both = get(&[(0, true)], 6, b"t");
    both.add_option(
        CoapOption::Block2,
        BlockOpt::new(0, false, 6).unwrap().encode(),
    );
    let mut mixed = get(&[(0, false)], 6, b"t");
    mixed.add_option(q_block2(), BlockOpt::new(3, false, 4).unwrap().encode());
    for (what, req) in [
        ("four-byte value", bad),
        ("SZX 7", szx7),
        ("Block2 beside it", both),
        ("two block sizes", mixed),
        ("past the end", get(&[(5, false)], 6, b"t")),
    ] {
        let (r, more) = answer(&mut s, &f, &req, 6, peer(), now);
        assert_eq!(
            code(&r),
            MessageClass::Response(ResponseType::BadOption),
            "{what}"
        );
        assert!(more.is_empty());
    }
    let missing = vec!["fw".into(), "nope.bin".into()];
    let request = get(&[(0, true)], 6, b"t");
    let (r, _) = s.answer(&f.host, &request, &missing, 6, peer(), now);
    assert_eq!(code(&r), MessageClass::Response(ResponseType::NotFound));
    assert!(s.is_empty(), "refused requests start no transfer");
}

#[test]
fn a_silent_device_gets_the_next_set_after_non_timeout_and_then_no_more() {
    let f = Fixture::new("timer", 100 * 1024);
    let params = QBlockSenderParams::default();
    let mut s = Schedule::new(params);
    let t0 = Instant::now();
    answer(&mut s, &f, &get(&[(0, true)], 6, b"tok1"), 6, peer(), t0);
    let due = s.next_due().unwrap();
    assert!(due >= t0 + params.non_timeout && due <= t0 + params.non_timeout.mul_f64(1.5));
    assert!(s.due(&f.host, due - Duration::from_millis(1)).is_empty());
    let mut sent = Vec::new();
    let mut now = due;
    while let Some(at) = s.next_due() {
        now = now.max(at);
        for (to, token, packets) in s.due(&f.host, now) {
            assert_eq!((to, token.as_slice()), (peer(), &b"tok1"[..]));
            sent.push(nums(&packets[0], &packets[1..]));
        }
    }
    // Sets 1 to 4 unasked, then the host stops: the device may be gone.
    assert_eq!(sent.len(), params.max_unasked_sets as usize);
    assert_eq!(sent[0][0], (10, true));
    assert_eq!(sent[3][9], (49, true));
    assert!(s.is_empty());
}

#[test]
fn requests_move_the_transfer_on_and_a_changed_package_ends_it() {
    let f = Fixture::new("moves", 100 * 1024);
    let mut s = Schedule::new(QBlockSenderParams::default());
    let t0 = Instant::now();
    answer(&mut s, &f, &get(&[(0, true)], 6, b"a"), 6, peer(), t0);
    // Blocks 3 and 24 asked again: the next unasked set is the one after block 24's.
    let t1 = t0 + Duration::from_secs(1);
    answer(
        &mut s,
        &f,
        &get(&[(3, false), (24, false)], 6, b"b"),
        6,
        peer(),
        t1,
    );
    let due = s.next_due().unwrap();
    assert!(
        due >= t1 + Duration::from_secs(2),
        "the device's request restarts the wait"
    );
    let sent = s.due(&f.host, due);
    assert_eq!(sent[0].1, b"b".to_vec(), "sent with the latest token");
    assert_eq!(q_block2_options(&sent[0].2[0]).unwrap()[0].num, 30);
    // Single blocks from a device with no transfer start none.
    let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    answer(&mut s, &f, &get(&[(3, false)], 6, b"c"), 6, other, t1);
    assert_eq!(s.len(), 1);
    // The package changes: the transfer ends without sending blocks of the new version.
    f.host.store("p.bin", &vec![9u8; 100 * 1024]).unwrap();
    let due = s.next_due().unwrap();
    assert!(s.due(&f.host, due).is_empty());
    assert!(s.is_empty());
    // The whole body in one set: nothing left to send unasked.
    let small = Fixture::new("small", 4000);
    let mut s = Schedule::new(QBlockSenderParams::default());
    answer(&mut s, &small, &get(&[(0, true)], 6, b"a"), 6, peer(), t0);
    assert!(s.is_empty());
}

#[test]
fn a_confirmable_request_gets_the_rest_of_the_body_and_no_unasked_sets() {
    let f = Fixture::new("con", 100 * 1024 + 5);
    let mut s = Schedule::new(QBlockSenderParams::default());
    let con = |asks: &[(u32, bool)]| {
        let mut r = get(asks, 6, b"a");
        r.header.set_type(MessageType::Confirmable);
        r
    };
    // The whole body: every block to the last (101), not one set (Appendix A.2).
    let (first, more) = answer(&mut s, &f, &con(&[(0, true)]), 6, peer(), Instant::now());
    let all = nums(&first, &more);
    assert_eq!(all.len(), 101);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, &(n, m))| n == i as u32 && m == (i < 100)));
    let bytes: Vec<u8> = std::iter::once(&first)
        .chain(&more)
        .flat_map(|p| p.payload.clone())
        .collect();
    assert!(bytes == f.data);
    // "Continue" in a CON exchange: from there to the end.
    let (first, more) = answer(&mut s, &f, &con(&[(90, true)]), 6, peer(), Instant::now());
    assert_eq!(nums(&first, &more).first(), Some(&(90, true)));
    assert_eq!(more.len(), 10);
    // Single blocks asked again: just those.
    let (first, more) = answer(
        &mut s,
        &f,
        &con(&[(3, false), (7, false)]),
        6,
        peer(),
        Instant::now(),
    );
    assert_eq!(nums(&first, &more), [(3, true), (7, true)]);
    // The client of a CON exchange is sent nothing unasked; unasked sets would be NON (§7).
    assert!(s.is_empty());
    assert_eq!(s.next_due(), None);
}

#[test]
fn transfers_are_bounded_in_number_and_time() {
    let f = Fixture::new("bound", 100 * 1024);
    let params = QBlockSenderParams {
        max_transfers: 3,
        ..QBlockSenderParams::default()
    };
    let mut s = Schedule::new(params);
    let t0 = Instant::now();
    for port in 0..10u16 {
        let p = SocketAddr::from(([127, 0, 0, 1], 41000 + port));
        answer(
            &mut s,
            &f,
            &get(&[(0, true)], 6, b"a"),
            6,
            p,
            t0 + Duration::from_millis(port.into()),
        );
    }
    assert_eq!(s.len(), 3);
    let later = t0 + params.non_partial_timeout + Duration::from_secs(1);
    answer(&mut s, &f, &get(&[(0, true)], 6, b"a"), 6, peer(), later);
    assert_eq!(
        s.len(),
        1,
        "transfers not heard of for NON_PARTIAL_TIMEOUT are forgotten"
    );
}

#[test]
fn random_q_block2_requests_never_panic() {
    let f = Fixture::new("random", 7000);
    let mut s = Schedule::new(QBlockSenderParams::default());
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let now = Instant::now();
    for _ in 0..20_000 {
        let mut p = get(&[], 6, b"r");
        for _ in 0..next() % 6 {
            let len = (next() % 5) as usize;
            p.add_option(q_block2(), (0..len).map(|_| next() as u8).collect());
        }
        if next() % 4 == 0 {
            p.add_option(CoapOption::Block2, vec![next() as u8]);
        }
        let (r, more) = answer(&mut s, &f, &p, (next() % 7) as u8, peer(), now);
        assert!(more.len() < 10);
        if code(&r) == MessageClass::Response(ResponseType::Content) {
            assert!(r.payload.len() <= 1024);
        }
        let _ = s.due(&f.host, now + Duration::from_secs(next() % 10));
    }
}

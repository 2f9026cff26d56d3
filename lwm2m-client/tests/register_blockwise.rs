//! Block-wise Register and Update with fake time: a server answering 4.13 with a Block1
//! option (RFC 7959 section 2.9.3) gets the same request again in blocks of the size it named,
//! 2.31 Continue per block (section 2.5, including a switch to smaller blocks), and the
//! registration completes with the last block.

mod common;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use common::*;
use lwm2m_client::codec::BlockOpt;
use lwm2m_client::{Event, RegState};

fn block1(p: &Packet) -> Option<BlockOpt> {
    p.get_first_option(CoapOption::Block1)
        .map(|v| BlockOpt::decode(v).unwrap())
}

/// Answers `req` with `code` and a Block1 option.
fn with_block1(req: &Packet, code: ResponseType, b: BlockOpt) -> Packet {
    let mut r = ack(req, code);
    r.add_option(CoapOption::Block1, b.encode());
    r
}

#[test]
fn register_answered_4_13_with_block1_is_sent_block_wise_at_that_size() {
    let mut e = engine();
    e.start(0);
    let whole = one(&mut e);
    assert!(whole.payload.len() > 64, "{}", whole.payload.len());
    assert_eq!(block1(&whole), None);
    // 4.13 with the server's block size: 32 bytes (SZX 1).
    let r = with_block1(
        &whole,
        ResponseType::RequestEntityTooLarge,
        BlockOpt::new(0, false, 1).unwrap(),
    );
    e.handle_datagram(10, SERVER, &bytes(&r));
    let mut got = Vec::new();
    let mut now = 10;
    let mut mids = vec![whole.header.message_id];
    loop {
        let b = one(&mut e);
        now += 10;
        let opt = block1(&b).expect("every retry carries Block1");
        assert_eq!(code(&b), MessageClass::Request(RequestType::Post));
        assert_eq!(option_values(&b, CoapOption::UriPath), [b"rd".to_vec()]);
        assert_eq!(queries(&b), queries(&whole), "same query on every block");
        assert_eq!(uint(&b, CoapOption::ContentFormat), Some(40));
        assert!(
            !mids.contains(&b.header.message_id),
            "a new message per block"
        );
        mids.push(b.header.message_id);
        assert_eq!(opt.offset(), got.len() as u64, "blocks in order");
        // The first 64 bytes in 32-byte blocks; then the server asks for 16 (SZX 0).
        let szx = if got.len() < 64 { 1 } else { 0 };
        assert_eq!(opt.szx, szx, "block at {}", got.len());
        if opt.num == 0 {
            assert_eq!(
                uint(&b, CoapOption::Size1),
                Some(whole.payload.len() as u32)
            );
        }
        got.extend_from_slice(&b.payload);
        if !opt.more {
            assert!(b.payload.len() <= opt.size());
            let mut r = with_block1(&b, ResponseType::Created, opt);
            r.add_option(CoapOption::LocationPath, b"rd".to_vec());
            r.add_option(CoapOption::LocationPath, b"big".to_vec());
            e.handle_datagram(now, SERVER, &bytes(&r));
            break;
        }
        assert_eq!(b.payload.len(), opt.size(), "non-final blocks are full");
        let echo = if got.len() == 64 {
            BlockOpt::new(opt.num, true, 0).unwrap()
        } else {
            opt
        };
        e.handle_datagram(
            now,
            SERVER,
            &bytes(&with_block1(&b, ResponseType::Continue, echo)),
        );
    }
    assert_eq!(got, whole.payload, "the blocks reassemble to the payload");
    assert_eq!(
        events(&mut e),
        vec![Event::Registered {
            location: "rd/big".into()
        }]
    );
    assert_eq!(e.registration(), RegState::Registered);
}

#[test]
fn update_with_object_links_answered_4_13_is_sent_block_wise() {
    let mut e = registered();
    e.objects_changed(100);
    let whole = one(&mut e);
    assert_eq!(
        option_values(&whole, CoapOption::UriPath),
        [b"rd".to_vec(), b"abc".to_vec()]
    );
    assert!(
        !whole.payload.is_empty(),
        "the Update carries the object links"
    );
    let r = with_block1(
        &whole,
        ResponseType::RequestEntityTooLarge,
        BlockOpt::new(0, false, 0).unwrap(),
    );
    e.handle_datagram(110, SERVER, &bytes(&r));
    let mut got = Vec::new();
    for n in 0u32.. {
        let b = one(&mut e);
        let opt = block1(&b).unwrap();
        assert_eq!(
            option_values(&b, CoapOption::UriPath),
            [b"rd".to_vec(), b"abc".to_vec()]
        );
        assert_eq!((opt.num, opt.szx), (n, 0));
        got.extend_from_slice(&b.payload);
        let code = if opt.more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        e.handle_datagram(
            120 + u64::from(n),
            SERVER,
            &bytes(&with_block1(&b, code, opt)),
        );
        if !opt.more {
            break;
        }
    }
    assert_eq!(got, whole.payload);
    assert_eq!(events(&mut e), vec![Event::Updated]);
}

#[test]
fn block_wise_retries_end_when_the_server_does_not_shrink_its_size() {
    // 4.13 without Block1: a plain failure, retried after the Server object's Communication
    // Retry Timer (60 s by default), then twice that.
    let mut e = engine();
    e.start(0);
    let whole = one(&mut e);
    e.handle_datagram(
        1,
        SERVER,
        &bytes(&ack(&whole, ResponseType::RequestEntityTooLarge)),
    );
    assert_eq!(
        events(&mut e),
        vec![Event::RegistrationFailed {
            code: Some("4.13".into()),
            retry_in_ms: 60_000
        }]
    );
    assert!(sent(&mut e).is_empty());
    // 4.13 to a block at the same size: the transfer fails instead of restarting forever.
    e.handle_timeout(60_001);
    let whole = one(&mut e);
    let too_large = BlockOpt::new(0, false, 2).unwrap();
    let r = with_block1(&whole, ResponseType::RequestEntityTooLarge, too_large);
    e.handle_datagram(60_002, SERVER, &bytes(&r));
    let b = one(&mut e);
    assert_eq!(block1(&b).map(|o| o.szx), Some(2));
    e.handle_datagram(
        60_003,
        SERVER,
        &bytes(&with_block1(
            &b,
            ResponseType::RequestEntityTooLarge,
            too_large,
        )),
    );
    assert_eq!(
        events(&mut e),
        vec![Event::RegistrationFailed {
            code: Some("4.13".into()),
            retry_in_ms: 120_000
        }]
    );
    assert!(sent(&mut e).is_empty());
}

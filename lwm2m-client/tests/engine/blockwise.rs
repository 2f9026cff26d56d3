//! Block-wise transfers (RFC 7959): Block1 package pushes into Object 5 beyond 4096 blocks,
//! restarts, out-of-order blocks, renegotiation, sink errors; Block2 reads; a slow first block.

use coap_lite::{CoapOption, MessageClass, MessageType, RequestType, ResponseType};
use lwm2m_client::codec::{BlockOpt, ResourceType};
use lwm2m_client::{Ops, ResourceDef};

use crate::common::*;
use crate::support::*;

/// A sink that checks every byte of a pushed package against a generator.
struct Checker {
    expect_len: u64,
    got: u64,
}

fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

impl lwm2m_client::objects::FirmwareBackend for Checker {
    fn begin(&mut self, _etag: Option<&[u8]>) -> Result<(), object5::UpdateResult> {
        self.got = 0;
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), object5::UpdateResult> {
        let offset = self.got;
        for (k, b) in data.iter().enumerate() {
            if *b != pattern(offset + k as u64) {
                return Err(object5::UpdateResult::IntegrityFailure);
            }
        }
        self.got += data.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<lwm2m_client::objects::Finished, object5::UpdateResult> {
        if self.got == self.expect_len {
            Ok(lwm2m_client::objects::Finished::Downloaded {
                name: "fw".into(),
                version: "2".into(),
            })
        } else {
            Err(object5::UpdateResult::IntegrityFailure)
        }
    }
    fn discard(&mut self, _: object5::UpdateResult) {}
    fn capacity(&self) -> Option<u32> {
        Some(1 << 20)
    }
}

fn block_put(mid: u16, num: u32, more: bool, szx: u8, data: &[u8]) -> coap_lite::Packet {
    let mut p = request_with(RequestType::Put, mid, b"pk", "/5/0/0", 42, data);
    p.add_option(
        CoapOption::Block1,
        BlockOpt::new(num, more, szx).unwrap().encode(),
    );
    p
}

#[test]
fn block1_push_beyond_4096_blocks_restart_and_out_of_order() {
    let blocks: u32 = 5000;
    let len = u64::from(blocks - 1) * 16 + 5;
    let mut objs = objects();
    objs.pop();
    objs.push(Box::new(lwm2m_client::objects::FirmwareUpdate::new(
        Checker {
            expect_len: len,
            got: 0,
        },
    )));
    let mut e = engine_with(objs);
    let data: Vec<u8> = (0..len).map(pattern).collect();
    // Restart: blocks 0-1, then block 0 again resets the transfer.
    for (mid, num) in [(1u16, 0u32), (2, 1), (3, 0)] {
        let r = call(
            &mut e,
            1,
            &block_put(
                mid,
                num,
                true,
                0,
                &data[num as usize * 16..num as usize * 16 + 16],
            ),
        );
        assert_eq!(code(&r), resp(ResponseType::Continue));
    }
    // Out of order (block 5 when 1 is expected): 4.08.
    let r = call(&mut e, 1, &block_put(4, 5, true, 0, &data[80..96]));
    assert_eq!(code(&r), resp(ResponseType::RequestEntityIncomplete));
    let mut mid = 10u16;
    for num in 1..blocks {
        let start = num as usize * 16;
        let more = num + 1 < blocks;
        let end = (start + 16).min(data.len());
        let r = call(&mut e, 2, &block_put(mid, num, more, 0, &data[start..end]));
        mid = mid.wrapping_add(1);
        let b = BlockOpt::decode(r.get_first_option(CoapOption::Block1).unwrap()).unwrap();
        assert_eq!(
            (b.num, b.more, b.szx),
            (num, more, 0),
            "Block1 echo for block {num}"
        );
        let want = if more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        assert_eq!(code(&r), resp(want), "block {num}");
    }
    let r = call(&mut e, 3, &request(RequestType::Get, 60000, b"s", "/5/0/3"));
    assert_eq!(r.payload, b"2", "Downloaded after the last block");
    let r = call(&mut e, 3, &request(RequestType::Get, 60001, b"s", "/5/0/7"));
    assert_eq!(r.payload, b"2");
}

#[test]
fn block1_larger_than_ours_is_renegotiated_and_sink_errors_map_to_4_13() {
    let mut cfg = lwm2m_client::Config::new("ep1");
    cfg.max_block_szx = 4; // 256 bytes
    let mut e = lwm2m_client::Engine::new(cfg, SERVER, objects());
    let r = call(&mut e, 1, &block_put(1, 0, true, 6, &[7u8; 1024]));
    assert_eq!(code(&r), resp(ResponseType::Continue));
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block1).unwrap()).unwrap();
    assert_eq!(
        (b.num, b.szx),
        (0, 4),
        "server is asked for 256-byte blocks"
    );
    // The server continues at byte 1024 = block 4 of 256 bytes.
    let r = call(&mut e, 1, &block_put(2, 4, false, 4, &[7u8; 10]));
    assert_eq!(code(&r), resp(ResponseType::Changed));

    struct Full;
    impl lwm2m_client::objects::FirmwareBackend for Full {
        fn begin(&mut self, _: Option<&[u8]>) -> Result<(), object5::UpdateResult> {
            Ok(())
        }
        fn write(&mut self, _: &[u8]) -> Result<(), object5::UpdateResult> {
            Ok(())
        }
        fn finish(&mut self) -> Result<lwm2m_client::objects::Finished, object5::UpdateResult> {
            Ok(lwm2m_client::objects::Finished::Downloaded {
                name: String::new(),
                version: String::new(),
            })
        }
        fn discard(&mut self, _: object5::UpdateResult) {}
        fn capacity(&self) -> Option<u32> {
            Some(100)
        }
    }
    let mut objs = objects();
    objs.pop();
    objs.push(Box::new(lwm2m_client::objects::FirmwareUpdate::new(Full)));
    let mut e = engine_with(objs);
    let r = call(
        &mut e,
        1,
        &with_uint(
            block_put(1, 0, true, 2, &[0u8; 64]),
            CoapOption::Size1,
            5000,
        ),
    );
    assert_eq!(code(&r), resp(ResponseType::RequestEntityTooLarge));
    assert_eq!(uint(&r, CoapOption::Size1), Some(100));
    let r = call(&mut e, 2, &request(RequestType::Get, 3, b"s", "/5/0/5"));
    assert_eq!(r.payload, b"2", "Update Result: not enough flash");
}

const BIG: usize = 70_000;

#[test]
fn block2_read_beyond_block_4096() {
    let mut objs = objects();
    objs.push(Box::new(BigOpaque {
        len: BIG,
        pattern: |i| pattern(i as u64),
    }));
    let mut e = engine_with(objs);
    // Without Block2 the body is cut into 1024-byte blocks with Size2.
    let r = call(&mut e, 1, &request(RequestType::Get, 1, b"b", "/33000/0/0"));
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more, b.szx, r.payload.len()), (0, true, 6, 1024));
    assert_eq!(uint(&r, CoapOption::Size2), Some(BIG as u32));
    // Block 4500 of 16 bytes (offset 72000 > 70000): past the end.
    let far = get_with(
        2,
        b"b",
        "/33000/0/0",
        CoapOption::Block2,
        (4500 << 4) as u32,
    );
    assert_eq!(code(&call(&mut e, 1, &far)), resp(ResponseType::BadRequest));
    // Block 4300 (offset 68800): correct bytes, more follow; the last block has M = 0.
    let r = call(
        &mut e,
        1,
        &get_with(3, b"b", "/33000/0/0", CoapOption::Block2, 4300 << 4),
    );
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more, b.szx), (4300, true, 0));
    let want: Vec<u8> = (68_800..68_816).map(pattern).collect();
    assert_eq!(r.payload, want);
    let last = (BIG as u32 - 1) / 16;
    let r = call(
        &mut e,
        1,
        &get_with(4, b"b", "/33000/0/0", CoapOption::Block2, last << 4),
    );
    let b = BlockOpt::decode(r.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((b.num, b.more), (last, false));
    assert_eq!(r.payload.len(), BIG - last as usize * 16);
}

/// Object 5 stand-in whose first package block needs a slow flash erase.
const ERASING_SINK: Deferring = Deferring {
    id: 5,
    model: &[ResourceDef::new(0, Ops::W, false, ResourceType::Opaque)],
};

#[test]
fn slow_first_block_is_acked_then_continued_by_separate_response() {
    let mut objs = objects();
    objs.pop();
    objs.push(Box::new(ERASING_SINK));
    let mut e = engine_with(objs);
    let a = call(&mut e, 1, &block_put(1, 0, true, 0, &[1; 16]));
    assert_eq!(
        (a.header.get_type(), code(&a)),
        (MessageType::Acknowledgement, MessageClass::Empty)
    );
    let id = deferred_id(&mut e);
    e.complete_deferred(3_000, id, Ok(()));
    let s = one(&mut e);
    assert_eq!(
        (s.header.get_type(), code(&s)),
        (MessageType::Confirmable, resp(ResponseType::Continue))
    );
    assert_eq!(s.get_token(), b"pk");
    let b = BlockOpt::decode(s.get_first_option(CoapOption::Block1).unwrap()).unwrap();
    assert_eq!((b.num, b.more), (0, true));
    let r = call(&mut e, 3_100, &block_put(2, 1, false, 0, &[2; 3]));
    assert_eq!(code(&r), resp(ResponseType::Changed));
}

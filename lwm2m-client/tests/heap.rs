//! Heap high-water of the engine during registration and a full Block1 firmware download into
//! a discarding Object 5 sink, measured with a counting global allocator. Target: at most
//! 16 KiB, and the same for a 64 KiB and a 2 MiB image (no part of the image is kept).
//!
//! Only allocations made inside engine calls count: the scripted server's own buffers are
//! built with counting switched off. Runs without the libtest harness so no other thread
//! allocates meanwhile.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::BlockOpt;
use lwm2m_client::objects::{Device, DeviceInfo, DiscardBackend, FirmwareUpdate, Security, Server};
use lwm2m_client::{Config, Engine, Event, ObjectHandler};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::SeqCst};

struct Counting;
static ON: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.load(SeqCst) {
            let now = CURRENT.fetch_add(l.size() as isize, SeqCst) + l.size() as isize;
            PEAK.fetch_max(now, SeqCst);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if ON.load(SeqCst) {
            CURRENT.fetch_sub(l.size() as isize, SeqCst);
        }
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f` with counting on.
fn counted<T>(f: impl FnOnce() -> T) -> T {
    ON.store(true, SeqCst);
    let r = f();
    ON.store(false, SeqCst);
    r
}

fn packet(t: MessageType, code: MessageClass, mid: u16, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(t);
    p.header.code = code;
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p
}

/// Takes the single datagram the engine sent, parsed outside the counted region.
fn take(e: &mut Engine<u8>) -> Packet {
    let t = counted(|| e.poll_transmit()).expect("engine answered");
    let p = Packet::from_bytes(&t.data).expect("valid CoAP");
    // Free the engine's buffer inside the counted region so the books balance.
    counted(move || drop(t));
    p
}

fn run(image_len: usize) -> (isize, isize) {
    CURRENT.store(0, SeqCst);
    PEAK.store(0, SeqCst);
    let mut e = counted(|| {
        let objects: Vec<Box<dyn ObjectHandler>> = vec![
            Box::new(Security::no_sec("coap://127.0.0.1:5683")),
            Box::new(Server::new(300)),
            Box::new(Device::new(DeviceInfo {
                manufacturer: "Acme".into(),
                model: "Sim-1".into(),
                serial: "SN-0001".into(),
                firmware_version: "1.0.0".into(),
            })),
            Box::new(FirmwareUpdate::new(DiscardBackend::default())),
        ];
        let mut e = Engine::new(Config::new("heap-ep"), 1u8, objects);
        e.start(0);
        e
    });
    let reg = take(&mut e);
    let mut created = packet(
        MessageType::Acknowledgement,
        MessageClass::Response(ResponseType::Created),
        reg.header.message_id,
        reg.get_token(),
    );
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    created.add_option(CoapOption::LocationPath, b"x".to_vec());
    let bytes = created.to_bytes().unwrap();
    counted(|| {
        e.handle_datagram(10, 1, &bytes);
        while e.poll_event().is_some() {}
    });
    let after_registration = PEAK.load(SeqCst);

    let block = vec![0xA5u8; 1024];
    let blocks = image_len.div_ceil(1024);
    let mut now = 20;
    for num in 0..blocks {
        let more = num + 1 < blocks;
        let len = if more { 1024 } else { image_len - num * 1024 };
        let mut p = packet(
            MessageType::Confirmable,
            MessageClass::Request(RequestType::Put),
            num as u16,
            b"fw",
        );
        for s in ["5", "0", "0"] {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        p.add_option(CoapOption::ContentFormat, uint_option(42));
        p.add_option(
            CoapOption::Block1,
            BlockOpt::new(num as u32, more, 6).unwrap().encode(),
        );
        if num == 0 {
            p.add_option(CoapOption::Size1, uint_option(image_len as u32));
        }
        p.payload = block[..len].to_vec();
        let dgram = p.to_bytes().unwrap();
        now += 5;
        counted(|| {
            e.handle_datagram(now, 1, &dgram);
            while let Some(ev) = e.poll_event() {
                if let Event::BlockReceived { last: true, .. } = ev {
                    assert!(!more);
                }
            }
        });
        let r = take(&mut e);
        let want = if more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        assert_eq!(r.header.code, MessageClass::Response(want), "block {num}");
    }
    // The download really completed: State = Downloaded.
    let get = {
        let mut p = packet(
            MessageType::Confirmable,
            MessageClass::Request(RequestType::Get),
            60000,
            b"s",
        );
        for s in ["5", "0", "3"] {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        p.to_bytes().unwrap()
    };
    counted(|| e.handle_datagram(now + 1, 1, &get));
    assert_eq!(take(&mut e).payload, b"2");
    counted(move || drop(e));
    (after_registration, PEAK.load(SeqCst))
}

fn main() {
    let (reg_small, small) = run(64 * 1024);
    let (_, large) = run(2 * 1024 * 1024);
    println!("heap high-water: registration {reg_small} B; registration + 64 KiB download {small} B; + 2 MiB download {large} B");
    assert!(
        small <= 16 * 1024,
        "64 KiB download peaked at {small} B > 16 KiB"
    );
    assert!(
        large <= 16 * 1024,
        "2 MiB download peaked at {large} B > 16 KiB"
    );
    assert_eq!(
        small, large,
        "the high-water mark must not depend on the image size"
    );
    println!("test heap_high_water ... ok");
}

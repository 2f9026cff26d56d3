//! The engine survives any sequence of datagrams: the input is split into datagrams at 0xFF 0xFE
//! markers and fed to a registered client with objects 1, 3 and 5; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::objects::{Device, DeviceInfo, DiscardSink, FirmwareUpdate, Security, Server};
use lwm2m_client::{Config, Engine, ObjectHandler};

fuzz_target!(|data: &[u8]| {
    let objects: Vec<Box<dyn ObjectHandler>> = vec![
        Box::new(Security::no_sec("coap://127.0.0.1")),
        Box::new(Server::new(60)),
        Box::new(Device::new(DeviceInfo {
            manufacturer: "m".into(),
            model: "x".into(),
            serial: "1".into(),
            firmware_version: "1".into(),
        })),
        Box::new(FirmwareUpdate::new(DiscardSink::default())),
    ];
    let mut e = Engine::new(Config::new("fuzz"), 1u8, objects);
    e.start(0);
    let mut now = 0u64;
    for (i, dgram) in data.split(|b| *b == 0xFE).enumerate() {
        now += 700;
        e.handle_datagram(now, (i % 2) as u8, dgram);
        while e.poll_transmit().is_some() {}
        while e.poll_event().is_some() {}
        if let Some(t) = e.poll_timeout() {
            if t <= now + 5000 {
                e.handle_timeout(t.max(now));
            }
        }
    }
});

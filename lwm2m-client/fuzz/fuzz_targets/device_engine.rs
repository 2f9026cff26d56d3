//! The engine of the engine fuzz targets: a device with the Security, Server, Device and
//! Firmware Update objects (the package streams into a discarding backend), server peer 1.

use lwm2m_client::objects::{Device, DeviceInfo, DiscardBackend, FirmwareUpdate, Security, Server};
use lwm2m_client::{Config, Engine, ObjectHandler};

/// A started engine named "fuzz".
pub fn device_engine() -> Engine<u8> {
    let mut e = Engine::new(
        Config::new("fuzz"),
        1u8,
        objects(Security::no_sec("coap://127.0.0.1")),
    );
    e.start(0);
    e
}

/// [`device_engine`] in Queue Mode with an awake window of 1 s: once registered it sleeps
/// between datagrams and wakes to send.
#[allow(dead_code)] // Not every target that includes this module sleeps.
pub fn sleepy_engine() -> Engine<u8> {
    let mut config = Config::new("fuzz");
    config.queue_mode = lwm2m_client::QueueMode {
        always: true,
        awake_ms: 1000,
    };
    let mut e = Engine::new(config, 1u8, objects(Security::no_sec("coap://127.0.0.1")));
    e.start(0);
    e
}

/// An engine named "fuzz" bootstrapping from peer 1: it answers Bootstrap-Delete, -Write,
/// -Discover and -Finish (LwM2M 1.1 Core §6.1) from there.
#[allow(dead_code)] // Not every target that includes this module bootstraps.
pub fn bootstrapping_engine() -> Engine<u8> {
    let mut e = Engine::new(
        Config::new("fuzz"),
        1u8,
        objects(Security::bootstrap("coap://127.0.0.1")),
    );
    e.bootstrap(0);
    e
}

fn objects(security: Security) -> Vec<Box<dyn ObjectHandler>> {
    vec![
        Box::new(security),
        Box::new(Server::new(60)),
        Box::new(Device::new(DeviceInfo {
            manufacturer: "m".into(),
            model: "x".into(),
            serial: "1".into(),
            firmware_version: "1".into(),
        })),
        Box::new(FirmwareUpdate::new(DiscardBackend::default())),
    ]
}

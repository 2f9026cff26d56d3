//! A saved configuration read back from a store is untrusted (`Engine::restore_config`): any
//! bytes are taken whole or not at all, and never panic; what is taken saves to bytes that
//! restore the same. An input starting with an odd byte damages a valid saved configuration
//! instead (pairs of position and XOR mask), so the decoding past the layout is reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_client::objects::security::{Account, CertificateUsage, MatchingType, SecurityMode};
use lwm2m_client::objects::server::RetryPolicy;
use lwm2m_client::objects::{Device, DeviceInfo, Security, Server};
use lwm2m_client::{Config, Engine, ObjectHandler};

const BOOTSTRAP: &str = "coap://127.0.0.1:5783";

fn engine(security: Security, server: Server) -> Engine<u8> {
    let objects: Vec<Box<dyn ObjectHandler>> = vec![
        Box::new(security),
        Box::new(server),
        Box::new(Device::new(DeviceInfo {
            manufacturer: "m".into(),
            model: "x".into(),
            serial: "1".into(),
            firmware_version: "1".into(),
        })),
    ];
    Engine::new(Config::new("fuzz"), 1u8, objects)
}

fn factory() -> Engine<u8> {
    let mut server = Server::new(300);
    server.present = false;
    engine(Security::bootstrap(BOOTSTRAP), server)
}

fn valid() -> Vec<u8> {
    let mut security = Security::bootstrap(BOOTSTRAP);
    security.accounts.push(Account {
        id: 1,
        server_uri: "coaps://127.0.0.1:5684".into(),
        bootstrap: false,
        mode: SecurityMode::Psk,
        identity: b"id".to_vec(),
        server_key: Vec::new(),
        key: b"0123456789abcdef".to_vec(),
        short_server_id: 7,
        hold_off_s: 0,
        matching_type: MatchingType::Exact,
        sni: String::new(),
        usage: CertificateUsage::DomainIssuedCertificate,
        // A multiple resource (/0/1/16) among the bytes to damage.
        cipher_suites: vec![0xC0A8, 0xC0A4],
        kept: Vec::new(),
    });
    let server = Server::new(120).with_retry(RetryPolicy {
        count: 3,
        timer_s: 2,
        sequence_delay_s: 120,
        sequence_count: 2,
    });
    engine(security, server)
        .saved_config()
        .expect("a provisioned engine saves")
}

fuzz_target!(|data: &[u8]| {
    let input = match data.split_first() {
        Some((first, rest)) if first % 2 == 1 => {
            let mut saved = valid();
            let len = saved.len();
            for pair in rest.chunks_exact(2) {
                saved[usize::from(pair[0]) % len] ^= pair[1];
            }
            saved
        }
        _ => data.to_vec(),
    };
    let mut e = factory();
    let before = e.saved_config().expect("the factory objects save");
    match e.restore_config(0, &input, BOOTSTRAP) {
        Ok(_) => {
            let saved = e.saved_config().expect("restored objects save");
            let mut again = factory();
            again
                .restore_config(0, &saved, BOOTSTRAP)
                .expect("a saved configuration restores");
            assert_eq!(again.saved_config().ok(), Some(saved));
        }
        Err(_) => assert_eq!(
            e.saved_config().ok(),
            Some(before),
            "a refusal changed nothing"
        ),
    }
});

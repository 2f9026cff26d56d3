//! The configuration a bootstrap provisioned, kept across resets (`Engine::saved_config`,
//! `Engine::restore_config`): restored whole or not at all, whatever the bytes read back.

use coap_lite::CoapOption;
use lwm2m_client::objects::security::{
    Account, CertificateUsage, Credentials, Inconsistency, MatchingType, SecurityMode,
};
use lwm2m_client::objects::{Device, Security, Server};
use lwm2m_client::{Engine, RestoreError};

use crate::common::*;

const BOOTSTRAP: &str = "coap://127.0.0.1:5783";
const MANAGEMENT: &str = "coaps://127.0.0.1:5684";

/// A factory-fresh device: its bootstrap account only, no Server instance.
fn factory() -> Engine<u8> {
    let mut server = Server::new(300);
    server.present = false;
    engine_with(vec![
        Box::new(Security::bootstrap(BOOTSTRAP)),
        Box::new(server),
        Box::new(Device::new(device_info())),
    ])
}

/// What a bootstrap server leaves: its account, a PSK account for the management server
/// with `key` and two cipher suites to offer, lifetime 120 s and a Communication Retry Count
/// of 3.
fn provisioned(key: &[u8]) -> Engine<u8> {
    let mut security = Security::bootstrap(BOOTSTRAP);
    security.accounts.push(Account {
        id: 1,
        server_uri: MANAGEMENT.into(),
        bootstrap: false,
        mode: SecurityMode::Psk,
        identity: b"dev-identity".to_vec(),
        server_key: Vec::new(),
        key: key.to_vec(),
        short_server_id: 123,
        hold_off_s: 0,
        matching_type: MatchingType::Exact,
        sni: String::new(),
        usage: CertificateUsage::DomainIssuedCertificate,
        cipher_suites: SUITES.to_vec(),
        kept: Vec::new(),
    });
    let mut server = Server::new(120);
    server.short_server_id = 123;
    server.retry.count = 3;
    engine_with(vec![
        Box::new(security),
        Box::new(server),
        Box::new(Device::new(device_info())),
    ])
}

const KEY: &[u8] = b"0123456789abcdef";
/// TLS_PSK_WITH_AES_128_CCM and TLS_PSK_WITH_AES_128_CCM_8: a multiple resource (/0/1/16).
const SUITES: [u16; 2] = [0xC0A4, 0xC0A8];

#[test]
fn a_saved_configuration_comes_back_whole_and_the_device_registers_with_it() {
    let saved = provisioned(KEY).saved_config().unwrap();
    let mut e = factory();
    let account = e.restore_config(0, &saved, BOOTSTRAP).unwrap();
    let mut credentials = Credentials::new(
        SecurityMode::Psk,
        b"dev-identity".to_vec(),
        Vec::new(),
        KEY.to_vec(),
    );
    credentials.cipher_suites = SUITES.to_vec();
    assert_eq!(account, (MANAGEMENT.to_string(), credentials));
    assert_eq!(e.saved_config().unwrap(), saved, "byte for byte");
    // The same bootstrap server spelt in another case and with a path is the same one.
    let mut other = factory();
    assert!(other
        .restore_config(0, &saved, "COAP://127.0.0.1:5783/")
        .is_ok());
    let mut other = factory();
    assert!(other.restore_config(0, &saved, "coap://127.0.0.1").is_err());
    e.start(0);
    let reg = one(&mut e);
    assert!(queries(&reg).contains(&"lt=120".to_string()), "{reg:?}");
    assert_eq!(
        option_values(&reg, CoapOption::UriPath),
        vec![b"rd".to_vec()]
    );
}

#[test]
fn a_configuration_of_another_bootstrap_server_or_unusable_is_not_taken() {
    let saved = provisioned(KEY).saved_config().unwrap();
    let mut e = factory();
    let before = e.saved_config().unwrap();
    assert_eq!(
        e.restore_config(0, &saved, "coap://127.0.0.1:9999"),
        Err(RestoreError::OtherBootstrapServer(BOOTSTRAP.into()))
    );
    assert_eq!(e.saved_config().unwrap(), before);
    // A PSK account without its key cannot reach the server.
    let keyless = provisioned(b"").saved_config().unwrap();
    assert_eq!(
        e.restore_config(0, &keyless, BOOTSTRAP),
        Err(RestoreError::Unusable(Inconsistency::EmptyPsk))
    );
    assert_eq!(e.saved_config().unwrap(), before);
}

/// Bytes read back from a store are untrusted: every truncation and every one-byte change is
/// refused without a panic and leaves the objects as they were, or is taken whole.
#[test]
fn damaged_saved_configurations_change_nothing() {
    let saved = provisioned(KEY).saved_config().unwrap();
    let mut e = factory();
    let before = e.saved_config().unwrap();
    for len in 0..saved.len() {
        assert_eq!(
            e.restore_config(0, &saved[..len], BOOTSTRAP),
            Err(RestoreError::Format),
            "{len} bytes"
        );
        assert_eq!(e.saved_config().unwrap(), before);
    }
    let mut longer = saved.clone();
    longer.push(0);
    assert_eq!(
        e.restore_config(0, &longer, BOOTSTRAP),
        Err(RestoreError::Format)
    );
    let mut taken = 0;
    for i in 0..saved.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut damaged = saved.clone();
            damaged[i] ^= flip;
            let mut e = factory();
            match e.restore_config(0, &damaged, BOOTSTRAP) {
                Ok(_) => taken += 1,
                Err(_) => assert_eq!(e.saved_config().unwrap(), before, "byte {i} ^ {flip:#x}"),
            }
        }
    }
    // Changed key or identity bytes still make a usable configuration.
    assert!(taken > 0);
}

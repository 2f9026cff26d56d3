//! Encrypted firmware end to end over LwM2M (draft-ietf-suit-firmware-encryption-24): the
//! shim hosts a signed package whose image is encrypted for the device, the simulated device
//! pulls it through /5/0/1 over real UDP on loopback, decrypts it with the keys of its key
//! store (`--decryption-key`, `--kek`) as it streams into the candidate slot, installs and
//! boots the new version. A device without the right key, or a ciphertext changed on the
//! way, ends with Update Result 5 (integrity check failure, OMA LwM2M core TS 1.1 E.6) and
//! keeps running its old image.

use std::path::PathBuf;
use std::time::Duration;

use lwm2m_client::sim::InThreadDevice;
use object5::author::{self, ContentEncryption, Delivery, Encryption, Recipient};
use tests::e2e::{Harness, PackageKind};

const T: Duration = Duration::from_secs(60);

/// Keys a device can hold, written as the files its command line takes.
struct DeviceKeys {
    /// PKCS#8 PEM private key (`--decryption-key`).
    private_pem: PathBuf,
    /// Its public key, SEC1, as the author's `--encrypt-for` recipient.
    public_sec1: Vec<u8>,
    /// 16-byte A128KW key-encryption key (`--kek`).
    kek_file: PathBuf,
    kek: [u8; 16],
}

impl DeviceKeys {
    fn new(h: &Harness, tag: &str, kek: [u8; 16]) -> Self {
        let (private, public) = author::generate_key_pem().expect("device key");
        let private_pem = h.dir.join(format!("{tag}-device.pem"));
        std::fs::write(&private_pem, private).expect("write key");
        let kek_file = h.dir.join(format!("{tag}.kek"));
        std::fs::write(&kek_file, kek).expect("write kek");
        Self {
            private_pem,
            public_sec1: author::public_sec1_from_pem(&public).expect("public key"),
            kek_file,
            kek,
        }
    }
}

/// A device named `ep` holding `keys` in its key store, registered with the shim.
fn registered(h: &Harness, ep: &str, keys: &DeviceKeys) -> InThreadDevice {
    let mut opts = h.device_options(ep);
    opts.decryption_keys = vec![keys.private_pem.clone()];
    opts.keks = vec![keys.kek_file.clone()];
    let dev = InThreadDevice::start(opts);
    h.wait_until(&format!("{ep} to register"), T, || h.registered(ep));
    dev
}

fn encrypted(
    version: &str,
    seq: u64,
    recipient: Recipient,
    content: ContentEncryption,
) -> PackageKind {
    let mut kind = PackageKind::good(version, seq, 30_000);
    kind.encryption = Some(Encryption { recipient, content });
    kind
}

#[test]
fn ecdh_es_a128gcm_package_pulled_decrypted_and_installed() {
    let h = Harness::start("enc-gcm");
    let keys = DeviceKeys::new(&h, "gcm", [0x31; 16]);
    let dev = registered(&h, "enc-gcm", &keys);
    let kind = encrypted(
        "2.0.0",
        2,
        Recipient::EcdhP256(keys.public_sec1.clone()),
        ContentEncryption::A128Gcm,
    );
    let uri = h.package("fw-2.0.0.suit", &kind);
    h.pull_and_install("enc-gcm", &uri, "2.0.0");
    dev.stop().unwrap();
}

#[test]
fn a128kw_a128ctr_two_stage_package_pulled_decrypted_and_installed() {
    let h = Harness::start("enc-ctr");
    let keys = DeviceKeys::new(&h, "ctr", [0x42; 16]);
    let dev = registered(&h, "enc-ctr", &keys);
    let mut kind = encrypted(
        "3.0.0",
        3,
        Recipient::Aes128Kw(keys.kek),
        ContentEncryption::A128Ctr,
    );
    // The manifest names the ciphertext on the package host: the image is fetched and
    // decrypted in a second pull.
    kind.delivery = Delivery::Uri(h.package_uri("image-3.0.0.enc"));
    let uri = h.package("manifest-3.0.0.suit", &kind);
    h.pull_and_install("enc-ctr", &uri, "3.0.0");
    dev.stop().unwrap();
}

#[test]
fn a128kw_a128ctr_integrated_package_installed() {
    let h = Harness::start("enc-ctr-int");
    let keys = DeviceKeys::new(&h, "ctri", [0x24; 16]);
    let dev = registered(&h, "enc-ctr-int", &keys);
    let kind = encrypted(
        "2.1.0",
        2,
        Recipient::Aes128Kw(keys.kek),
        ContentEncryption::A128Ctr,
    );
    let uri = h.package("fw-2.1.0.suit", &kind);
    h.pull_and_install("enc-ctr-int", &uri, "2.1.0");
    dev.stop().unwrap();
}

#[test]
fn wrong_key_or_changed_ciphertext_gives_result_5_and_keeps_the_old_image() {
    let h = Harness::start("enc-wrong");
    let keys = DeviceKeys::new(&h, "mine", [0x55; 16]);
    let other = DeviceKeys::new(&h, "other", [0x66; 16]);
    let dev = registered(&h, "enc-wrong", &keys);
    // Encrypted for another device: neither content key opens with this device's keys.
    for (name, recipient, content) in [
        (
            "ecdh-gcm.suit",
            Recipient::EcdhP256(other.public_sec1.clone()),
            ContentEncryption::A128Gcm,
        ),
        (
            "kw-ctr.suit",
            Recipient::Aes128Kw(other.kek),
            ContentEncryption::A128Ctr,
        ),
    ] {
        let uri = h.package(name, &encrypted("2.0.0", 2, recipient, content));
        h.pull_refused("enc-wrong", &uri);
    }
    // The right key, but one ciphertext bit changed on the package host: the GCM tag (or,
    // for CTR, the ciphertext digest in the signed manifest) no longer matches.
    for (name, recipient, content) in [
        (
            "gcm",
            Recipient::EcdhP256(keys.public_sec1.clone()),
            ContentEncryption::A128Gcm,
        ),
        (
            "ctr",
            Recipient::Aes128Kw(keys.kek),
            ContentEncryption::A128Ctr,
        ),
    ] {
        let mut kind = encrypted("2.0.0", 2, recipient, content);
        let image = format!("image-{name}.enc");
        kind.delivery = Delivery::Uri(h.package_uri(&image));
        let uri = h.package(&format!("manifest-{name}.suit"), &kind);
        let path = h.dir.join("packages").join(&image);
        let mut ciphertext = std::fs::read(&path).unwrap();
        ciphertext[10_000] ^= 0x01;
        h.put_package(&image, &ciphertext);
        h.pull_refused("enc-wrong", &uri);
    }
    // The same device still takes a package it can decrypt.
    let kind = encrypted(
        "2.0.0",
        2,
        Recipient::EcdhP256(keys.public_sec1.clone()),
        ContentEncryption::A128Gcm,
    );
    let uri = h.package("good.suit", &kind);
    h.pull_and_install("enc-wrong", &uri, "2.0.0");
    dev.stop().unwrap();
}

/// A reset in the middle of an encrypted pull (ECDH-ES + A128GCM, integrated): the device
/// resumes from its journaled sector, opening the content key again from the stored head,
/// and installs; it does not pull the package again from its start, and does not end with
/// Update Result 5 as it did when resumed bytes reached the slot undecrypted.
#[test]
fn a_reset_in_the_middle_of_an_encrypted_pull_resumes_it() {
    let h = Harness::start("enc-resume");
    let keys = DeviceKeys::new(&h, "resume", [0x17; 16]);
    let ep = "enc-resume";
    let mut opts = h.device_options(ep);
    opts.decryption_keys = vec![keys.private_pem.clone()];
    opts.slot_kib = 160;
    opts.pull_block_size = 512;
    let _dev = InThreadDevice::start(opts);
    h.wait_until(&format!("{ep} to register"), T, || h.registered(ep));
    let len = 140 * 1024;
    let mut kind = PackageKind::good("2.5.0", 2, len);
    kind.encryption = Some(Encryption {
        recipient: Recipient::EcdhP256(keys.public_sec1.clone()),
        content: ContentEncryption::A128Gcm,
    });
    h.package("big.suit", &kind);
    h.pull_resumes_and_installs(ep, "big.suit", len.div_ceil(512) as u64, "2.5.0");
}

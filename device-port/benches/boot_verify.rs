//! Benchmark: what verifying the active image costs each boot (issue 12 item 3). The
//! simulated bootloader authenticates the slot's stored manifest (ECDSA P-256 over the
//! wrapper, SHA-256 of the manifest) and hashes the image before it runs it, like MCUboot's
//! validate-primary-slot. Rows: a whole reboot of a device with a 64 KiB image, the
//! verification alone, and its two parts, with the portable software backend next to OpenSSL
//! (a P-256 accelerator's stand-in) in the same run.
//!
//! `cargo bench -p device-port --bench boot_verify`

use std::hint::black_box;
use std::time::{Duration, Instant};

use device_port::auth::p256_anchors;
use device_port::image::ImageBuilder;
use device_port::{FactoryImage, SimConfig, SimDevice};
use object5::author::{self, Delivery, PackageSpec, SignAlg};
use object5::manifest::host_crypto::HostCrypto;
use object5::manifest::{CryptoBackend, Sha256Hasher};
use object5::slots::{Authenticate, Strategy, SuitAuthenticator};

const IMAGE: usize = 64 * 1024;
const ROUNDS: usize = 40;

/// Median of `ROUNDS` runs of `f`.
fn median(mut f: impl FnMut()) -> Duration {
    f();
    let mut t: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    t[ROUNDS / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let (pem, public) = author::generate_key_pem().expect("key");
    let key = author::signing_key_from_pem(&pem).expect("key");
    let anchor = author::public_sec1_from_pem(&public).expect("anchor");
    let image = ImageBuilder::new("bench", "1.0.0").total_len(IMAGE).build();
    let spec = PackageSpec {
        vendor_id: [1; 16],
        class_id: [2; 16],
        sequence_number: 1,
        version: "1.0.0".into(),
        name: "bench".into(),
        image: &image,
        delivery: Delivery::Uri("coap://127.0.0.1/fw".into()),
        alg: SignAlg::Esp256,
    };
    let envelope = author::build_envelope(&spec, &key).expect("sign");
    let mut rows = Vec::new();
    for crypto in [HostCrypto::Software, HostCrypto::OpenSsl] {
        let factory = FactoryImage {
            envelope: envelope.clone(),
            image: image.clone(),
            second: None,
        };
        let mut config = SimConfig::new(vec![anchor.clone()], factory);
        config.strategy = Strategy::Swap;
        config.image_capacity = IMAGE as u32;
        config.crypto = crypto;
        let mut device = SimDevice::in_memory(config).expect("device");
        let boot = median(|| {
            black_box(device.reboot().expect("boot"));
        });
        let keys = [anchor.clone()];
        let anchors = p256_anchors(&keys);
        let mut auth = SuitAuthenticator::new(&anchors, crypto);
        let verify = median(|| {
            let mut slots = device.slots().expect("slots");
            black_box(
                slots
                    .verify_installed(0, &mut auth)
                    .expect("flash")
                    .expect("ok"),
            );
        });
        let authenticate = median(|| {
            black_box(auth.authenticate_installed(&envelope).expect("ok"));
        });
        let hash = median(|| {
            let mut h = crypto.sha256();
            h.update(black_box(&image));
            black_box(h.finish());
        });
        println!(
            "boot_verify: {crypto:?}: reboot {:.2} ms, of which verification {:.2} ms \
             (authenticate manifest {:.2} ms, SHA-256 of 64 KiB {:.2} ms)",
            ms(boot),
            ms(verify),
            ms(authenticate),
            ms(hash)
        );
        rows.push((boot, verify));
    }
    let (sw, ossl) = (rows[0], rows[1]);
    println!(
        "boot_verify: software / OpenSSL: reboot {:.2}x, verification {:.2}x; \
         verification is {:.0}% of a software reboot",
        sw.0.as_secs_f64() / ossl.0.as_secs_f64(),
        sw.1.as_secs_f64() / ossl.1.as_secs_f64(),
        100.0 * sw.1.as_secs_f64() / sw.0.as_secs_f64()
    );
}

//! Links object5 into a `#![no_std]` artifact with no allocator (see Cargo.toml).
#![no_std]

use core::panic::PanicInfo;
use object5::manifest::{
    authenticate, DeviceIdentity, SuitError, Finished, Freshness, Interpreter, Params, PayloadSink,
    Platform, Policy, Software, StreamVerifier, TrustAnchor,
};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// The device's trust anchors: its P-256 key, and an Ed25519 key when that kind is built in
/// (so the Ed25519 verifier is linked and measured, not optimised away).
fn anchors<'k>(key: &'k [u8; 65], ed25519: &'k [u8; 32]) -> [TrustAnchor<'k>; 2] {
    #[cfg(feature = "ed25519")]
    let second = TrustAnchor::Ed25519(ed25519);
    #[cfg(not(feature = "ed25519"))]
    let second = {
        let _ = ed25519;
        TrustAnchor::P256(key)
    };
    [TrustAnchor::P256(key), second]
}

/// Keeps object5's code reachable so the linker cannot drop it.
#[no_mangle]
pub extern "C" fn object5_nostd_check() -> usize {
    core::mem::size_of::<usize>()
}

/// Where a device's payload bytes would go; here only counted.
struct Count(u64);

impl PayloadSink for Count {
    fn begin(&mut self, _: usize, _: Option<u64>) -> Result<(), SuitError> {
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), SuitError> {
        self.0 += bytes.len() as u64;
        Ok(())
    }
}

/// The SUIT verifier as a device links it: whole-envelope authentication, then streaming
/// authentication, policy and image check with a 2 KiB wrapper+manifest buffer. Returns the
/// Update Result code (1 = valid), so the size measurement covers the whole verifier.
#[no_mangle]
pub fn object5_suit_verify(
    envelope: &[u8],
    key: &[u8; 65],
    ed25519: &[u8; 32],
    vendor: &[u8; 16],
    class: &[u8; 16],
    installed: u64,
) -> u8 {
    let anchors = anchors(key, ed25519);
    if let Err(code) = check_whole(envelope, &anchors) {
        return code;
    }
    stream(envelope, &anchors, vendor, class, installed)
}

/// Whole-envelope authentication (the envelope is already in memory).
#[inline(never)]
fn check_whole(envelope: &[u8], anchors: &[TrustAnchor<'_>]) -> Result<(), u8> {
    authenticate(envelope, anchors, &Software)
        .map(|_| ())
        .map_err(|e| e.update_result().code())
}

/// The download path: the envelope arrives in 512-byte blocks.
#[inline(never)]
fn stream(
    envelope: &[u8],
    anchors: &[TrustAnchor<'_>],
    vendor: &[u8; 16],
    class: &[u8; 16],
    installed: u64,
) -> u8 {
    let policy = Policy {
        anchors,
        identity: DeviceIdentity {
            vendor_id: vendor,
            class_id: class,
            device_id: None,
        },
        freshness: Freshness::NewerThanInstalled(installed),
    };
    let mut buf = [0u8; 2048];
    #[allow(unused_mut)] // mutated only with encryption
    let mut v = StreamVerifier::new(&mut buf, policy, Software);
    // With encryption: the device's decryption keys (an A128KW KEK and its ECDH P-256 key).
    #[cfg(feature = "encryption")]
    let keys = [
        object5::manifest::DecryptionKey::Aes128Kw { kid: None, kek: &[0x4b; 16] },
        object5::manifest::DecryptionKey::EcdhP256 { kid: None, private: &[0x11; 32] },
    ];
    #[cfg(feature = "encryption")]
    v.set_decryption_keys(&keys);
    let mut sink = Count(0);
    for block in envelope.chunks(512) {
        if let Err(e) = v.feed(block, &mut sink) {
            return e.update_result().code();
        }
    }
    match v.finish() {
        Ok(Finished::Complete(_)) => 1,
        Ok(Finished::FetchRequired { .. }) => 0,
        Err(e) => e.update_result().code(),
    }
}

/// A bootloader's view of storage: one installed image in (memory-mapped) flash.
struct Flash<'a>(&'a [u8]);

impl Platform for Flash<'_> {
    fn fetch(&mut self, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Err(SuitError::Unsupported)
    }
    fn write(&mut self, _: usize, _: &[u8], _: &Params<'_>) -> Result<(), SuitError> {
        Err(SuitError::Unsupported)
    }
    fn copy(&mut self, _: usize, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Err(SuitError::Unsupported)
    }
    fn swap(&mut self, _: usize, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Err(SuitError::Unsupported)
    }
    fn invoke(&mut self, _: usize, _: &Params<'_>) -> Result<(), SuitError> {
        Ok(())
    }
    fn slot_matches(&mut self, _: usize, slot: u64) -> bool {
        slot == 0
    }
    fn read_image(
        &mut self,
        _: usize,
        p: &Params<'_>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, SuitError> {
        let len = p
            .image_size
            .map_or(self.0.len(), |s| (s as usize).min(self.0.len()));
        for chunk in self.0[..len].chunks(256) {
            sink(chunk);
        }
        Ok(len as u64)
    }
}

/// The bootloader path: authenticate the stored envelope, then run its shared, validate and
/// invoke sequences with the command interpreter against the installed image.
#[no_mangle]
pub fn object5_suit_boot(
    envelope: &[u8],
    image: &[u8],
    key: &[u8; 65],
    ed25519: &[u8; 32],
    vendor: &[u8; 16],
    class: &[u8; 16],
) -> u8 {
    let anchors = anchors(key, ed25519);
    let auth = match authenticate(envelope, &anchors, &Software) {
        Ok(a) => a,
        Err(e) => return e.update_result().code(),
    };
    let identity = DeviceIdentity {
        vendor_id: vendor,
        class_id: class,
        device_id: None,
    };
    let mut vm = match Interpreter::new(auth.manifest.component_count, identity, Software) {
        Ok(vm) => vm,
        Err(e) => return e.update_result().code(),
    };
    let mut flash = Flash(image);
    let m = auth.manifest;
    for seq in [m.shared_sequence, m.validate, m.invoke]
        .into_iter()
        .flatten()
    {
        if let Err(e) = vm.run(seq, &mut flash) {
            return e.update_result().code();
        }
    }
    1
}

//! Host-side check of a package with the device's own streaming verifier, so `package verify`
//! accepts exactly what a device would.

use crate::manifest::{
    authenticate, DecryptionKey, DeviceIdentity, Finished, Freshness, PayloadSink, Policy,
    Software, StreamVerifier, SuitError, TrustAnchor,
};
use std::vec;

/// What to check besides the signature.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions<'a> {
    /// Device vendor and class ids; when `None` the ids are not constrained.
    pub identity: Option<([u8; 16], [u8; 16])>,
    /// Installed sequence number; the package must be newer.
    pub installed_sequence: Option<u64>,
    /// The image to check a URI package against (integrated images are checked anyway); for
    /// an encrypted package, the encrypted image the device fetches.
    pub image: Option<&'a [u8]>,
    /// The second image of a package whose component 1 is fetched from a URI.
    pub second_image: Option<&'a [u8]>,
    /// The device's payload decryption keys.
    pub decryption_keys: &'a [DecryptionKey<'a>],
}

/// The result of a successful check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Sequence number.
    pub sequence_number: u64,
    /// Index of the anchor that verified.
    pub anchor: usize,
    /// Whether every image was checked against its digest and size (a fetched one only when
    /// it was given).
    pub image_checked: bool,
    /// The URI the device would fetch, for URI packages.
    pub uri: Option<std::string::String>,
}

struct Discard;

impl PayloadSink for Discard {
    fn begin(&mut self, _: usize, _: Option<u64>) -> Result<(), SuitError> {
        Ok(())
    }
    fn write(&mut self, _: &[u8]) -> Result<(), SuitError> {
        Ok(())
    }
}

/// Verifies `envelope` as a device with `anchors` and `opts` would, feeding it in 512-byte
/// blocks through [`StreamVerifier`].
pub fn verify_package(
    envelope: &[u8],
    anchors: &[TrustAnchor<'_>],
    opts: &VerifyOptions<'_>,
) -> Result<VerifyReport, SuitError> {
    // Without a device identity the package's own ids are used, i.e. not constrained.
    let ids = match opts.identity {
        Some(ids) => ids,
        None => {
            let a = authenticate(envelope, anchors, &Software)?;
            let v = a.image.vendor_id.ok_or(SuitError::VendorMismatch)?;
            let c = a.image.class_id.ok_or(SuitError::ClassMismatch)?;
            (
                v.try_into().map_err(|_| SuitError::VendorMismatch)?,
                c.try_into().map_err(|_| SuitError::ClassMismatch)?,
            )
        }
    };
    let policy = Policy {
        anchors,
        identity: DeviceIdentity {
            vendor_id: &ids.0,
            class_id: &ids.1,
            device_id: None,
        },
        freshness: match opts.installed_sequence {
            Some(s) => Freshness::NewerThanInstalled(s),
            None => Freshness::AtLeastInstalled(0),
        },
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut v =
        StreamVerifier::new(&mut buf, policy, Software).with_decryption_keys(opts.decryption_keys);
    for block in envelope.chunks(512) {
        v.feed(block, &mut Discard)?;
    }
    let seq = v.sequence_number().unwrap_or(0);
    let (anchor, checked, uri) = match v.finish()? {
        Finished::Complete(done) => (done.anchor, true, None),
        Finished::FetchRequired { uri } => {
            let uri = std::string::String::from_utf8_lossy(uri).into_owned();
            let anchor = authenticate(envelope, anchors, &Software)?.anchor;
            match opts.image {
                Some(image) => {
                    // The fetched images in the order the device fetches them (component 0,
                    // then component 1 when it is fetched too).
                    let mut given = [Some(image), opts.second_image].into_iter();
                    let all = loop {
                        let Some(Some(bytes)) = given.next() else {
                            break false;
                        };
                        v.begin_fetched(&mut Discard)?;
                        for block in bytes.chunks(512) {
                            v.feed_fetched(block, &mut Discard)?;
                        }
                        if matches!(v.finish_fetched()?, Finished::Complete(_)) {
                            break true;
                        }
                    };
                    (anchor, all, Some(uri))
                }
                None => (anchor, false, Some(uri)),
            }
        }
    };
    Ok(VerifyReport {
        sequence_number: seq,
        anchor,
        image_checked: checked,
        uri,
    })
}

//! The shim's CoAP discovery resources: `GET /.well-known/core` lists what the shim serves
//! (RFC 6690 §4, link format), and `GET /` says what it is, as Californium's root resource does
//! for a Leshan server.
//!
//! Both are served like packages, with Block2 or, on the Q-Block2 face, Q-Block2: libcoap's
//! clients probe a server's RFC 9177 support (§4.1) with a Q-Block2 GET of `/` (4.3.4) or of
//! `/.well-known/core` (4.3.5 and later) and use plain Block2 with that server for good unless
//! the answer carries a Q-Block2 option. A 4.04 there would cost every libcoap pull its bursts.

use std::sync::OnceLock;

use coap_lite::ContentFormat;

use crate::packages::coap::PACKAGE_PATH;
use crate::packages::host::Snapshot;

/// A document in memory and its content format.
pub struct Document {
    /// The bytes, with the ETag and size a package of them would have.
    pub snapshot: Snapshot,
    /// Its Content-Format.
    pub format: ContentFormat,
}

/// `/.well-known/core`: the registration interface and the package host (RFC 6690 link format).
fn well_known_core() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| Document {
        snapshot: Snapshot::from_bytes(
            ".well-known/core",
            format!(
                "</rd>;title=\"LwM2M registration interface\",\
                 </{PACKAGE_PATH}>;title=\"firmware packages\""
            )
            .as_bytes(),
        ),
        format: ContentFormat::ApplicationLinkFormat,
    })
}

/// `/`: one line on what answers here.
fn root() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| Document {
        snapshot: Snapshot::from_bytes(
            "",
            format!(
                "lwm2m-server-shim: LwM2M server (registrations at /rd) and firmware package \
                 host (/{PACKAGE_PATH}/<name>); resources at /.well-known/core\n"
            )
            .as_bytes(),
        ),
        format: ContentFormat::TextPlain,
    })
}

/// The discovery document at Uri-Path `path`, if it is one.
pub fn document(path: &[String]) -> Option<&'static Document> {
    match path {
        [] => Some(root()),
        [a, b] if a == ".well-known" && b == "core" => Some(well_known_core()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_root_and_well_known_core_are_documents_and_nothing_else_is() {
        let core = document(&path(&[".well-known", "core"])).expect("core");
        assert_eq!(core.format, ContentFormat::ApplicationLinkFormat);
        let links = String::from_utf8(core.snapshot.read(0, 4096).expect("read")).expect("utf8");
        assert!(links.starts_with("</rd>;"), "{links}");
        assert!(links.contains(",</fw>;"), "{links}");
        let root = document(&[]).expect("root");
        assert_eq!(root.format, ContentFormat::TextPlain);
        // Longer than one 16-byte block: a Q-Block2 probe for block 0 gets M set.
        assert!(root.snapshot.info.size > 16);
        for other in [&["rd"][..], &[".well-known"], &["", ""], &["fw", "core"]] {
            assert!(document(&path(other)).is_none(), "{other:?}");
        }
    }
}

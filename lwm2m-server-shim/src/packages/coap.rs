//! The package host's CoAP face: `GET /fw/<name>` answered block-wise (RFC 7959 Block2) with
//! ETag, Size2 and 20-bit block numbers, so devices can pull packages of any size.

use coap_lite::{
    CoapOption, ContentFormat as LiteFormat, MessageClass, Packet, RequestType, ResponseType,
};
use lwm2m_client::codec::block::uint_option;
use lwm2m_client::codec::BlockOpt;

use crate::coap::message::response;
use crate::packages::host::{PackageHost, PackageHostError, Snapshot};

/// First Uri-Path segment of package URIs (`coap://host:port/fw/<name>`).
pub const PACKAGE_PATH: &str = "fw";

/// Answers a request under `/fw`. `max_szx` caps the block size the host uses (6 = 1024 bytes);
/// a client asking for smaller blocks gets them.
pub fn handle(host: &PackageHost, request: &Packet, path: &[String], max_szx: u8) -> Packet {
    if request.header.code != MessageClass::Request(RequestType::Get) {
        return response(ResponseType::MethodNotAllowed);
    }
    let [_, name] = path else {
        return response(ResponseType::NotFound);
    };
    // Size, ETag and bytes of one version of the package.
    match host.snapshot(name) {
        Ok(snapshot) => block2_answer(
            &snapshot,
            request,
            max_szx,
            LiteFormat::ApplicationOctetStream,
        ),
        Err(e) => error_response(&e),
    }
}

/// The Block2 answer to a GET of one version of a representation (a package or a discovery
/// document) in `format`: the block asked for, or the first one, with ETag and Size2.
pub(crate) fn block2_answer(
    snapshot: &Snapshot,
    request: &Packet,
    max_szx: u8,
    format: LiteFormat,
) -> Packet {
    let info = &snapshot.info;
    let requested = match request
        .get_first_option(CoapOption::Block2)
        .map(|v| BlockOpt::decode(v))
    {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => return response(ResponseType::BadOption),
    };
    let szx = requested.map_or(max_szx, |b| b.szx.min(max_szx));
    let size = 1u64 << (szx + 4);
    // A request for a larger block than the host serves maps to the smaller block at that offset.
    let offset = requested.map_or(0, |b| b.offset());
    if offset > 0 && offset >= info.size {
        return response(ResponseType::BadOption);
    }
    let Ok(num) = u32::try_from(offset / size) else {
        return response(ResponseType::BadOption);
    };
    let more = offset.saturating_add(size) < info.size;
    let Ok(opt) = BlockOpt::new(num, more, szx) else {
        // Beyond 2^20 blocks at this size: the client must ask for larger blocks.
        return response(ResponseType::RequestEntityTooLarge);
    };
    let data = match snapshot.read(offset, 1usize << (szx + 4)) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "package host");
            return response(ResponseType::InternalServerError);
        }
    };
    let mut resp = response(ResponseType::Content);
    resp.set_content_format(format);
    resp.add_option(CoapOption::ETag, info.etag.to_vec());
    if requested.is_some() || more {
        resp.add_option(CoapOption::Block2, opt.encode());
    }
    resp.add_option(
        CoapOption::Size2,
        uint_option(u32::try_from(info.size).unwrap_or(u32::MAX)),
    );
    resp.payload = data;
    resp
}

/// The answer to a package that cannot be served: 4.04 for a missing or unusable name, 5.00
/// (logged) when the store failed.
pub(crate) fn error_response(e: &PackageHostError) -> Packet {
    match e {
        PackageHostError::NotFound
        | PackageHostError::BadName
        | PackageHostError::NameTooLong(_) => response(ResponseType::NotFound),
        e => {
            tracing::warn!(error = %e, "package host");
            response(ResponseType::InternalServerError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(name: &str, block2: Option<BlockOpt>) -> (Packet, Vec<String>) {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        if let Some(b) = block2 {
            p.add_option(CoapOption::Block2, b.encode());
        }
        (p, vec!["fw".into(), name.into()])
    }

    fn block2(p: &Packet) -> BlockOpt {
        BlockOpt::decode(p.get_first_option(CoapOption::Block2).expect("block2")).expect("valid")
    }

    #[test]
    fn serves_blocks_with_etag_and_size2() {
        let dir = std::env::temp_dir().join(format!("shim-pkgcoap-{}", std::process::id()));
        let host = PackageHost::new(&dir).expect("dir");
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let info = host.store("a.bin", &data).expect("store");
        let (req, path) = get("a.bin", None);
        let r0 = handle(&host, &req, &path, 6);
        assert_eq!(
            r0.header.code,
            MessageClass::Response(ResponseType::Content)
        );
        assert_eq!(
            block2(&r0),
            BlockOpt {
                num: 0,
                more: true,
                szx: 6
            }
        );
        assert_eq!(r0.payload, data[..1024].to_vec());
        assert_eq!(
            r0.get_first_option(CoapOption::ETag),
            Some(&info.etag.to_vec())
        );
        assert_eq!(
            r0.get_first_option(CoapOption::Size2),
            Some(&uint_option(2500))
        );
        // Smaller blocks on request; the last block has M=0.
        let (req, path) = get(
            "a.bin",
            Some(BlockOpt {
                num: 39,
                more: false,
                szx: 2,
            }),
        );
        let r = handle(&host, &req, &path, 6);
        assert_eq!(
            block2(&r),
            BlockOpt {
                num: 39,
                more: false,
                szx: 2
            }
        );
        assert_eq!(r.payload, data[39 * 64..].to_vec());
        // A larger block than allowed is served at the host's size, same offset.
        let (req, path) = get(
            "a.bin",
            Some(BlockOpt {
                num: 1,
                more: false,
                szx: 6,
            }),
        );
        let r = handle(&host, &req, &path, 4);
        assert_eq!(
            block2(&r),
            BlockOpt {
                num: 4,
                more: true,
                szx: 4
            }
        );
        let (req, path) = get(
            "a.bin",
            Some(BlockOpt {
                num: 3,
                more: false,
                szx: 6,
            }),
        );
        assert_eq!(
            handle(&host, &req, &path, 6).header.code,
            MessageClass::Response(ResponseType::BadOption)
        );
        let (req, path) = get("missing.bin", None);
        assert_eq!(
            handle(&host, &req, &path, 6).header.code,
            MessageClass::Response(ResponseType::NotFound)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn random_packets_never_panic_the_handler() {
        let dir = std::env::temp_dir().join(format!("shim-pkgfuzz-{}", std::process::id()));
        let host = PackageHost::new(&dir).expect("dir");
        host.store("p.bin", &[7u8; 3000]).expect("store");
        let words: [&[u8]; 4] = [b"fw", b"p.bin", b"\xff\xfe", b""];
        for (i, p) in crate::coap::message::random_packets(20_000, &words)
            .iter()
            .enumerate()
        {
            let _ = handle(&host, p, &crate::coap::message::uri_path(p), (i % 7) as u8);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

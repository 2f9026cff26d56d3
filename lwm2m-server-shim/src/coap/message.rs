//! Small helpers over CoAP messages (RFC 7252) that every resource handler needs: reading the
//! Uri-Path, Uri-Query and Content-Format options of a request, and building responses.

use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};

/// The Uri-Path segments of a request (RFC 7252 section 5.10.1).
pub fn uri_path(p: &Packet) -> Vec<String> {
    p.get_option(CoapOption::UriPath)
        .map(|l| {
            l.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The Uri-Query options of a request as (name, optional value) pairs.
pub fn uri_query(p: &Packet) -> Vec<(String, Option<String>)> {
    p.get_option(CoapOption::UriQuery)
        .map(|l| {
            l.iter()
                .map(|q| {
                    let q = String::from_utf8_lossy(q);
                    match q.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (q.into_owned(), None),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The first Content-Format option, if any.
pub fn content_format(p: &Packet) -> Option<usize> {
    let raw = p.get_first_option(CoapOption::ContentFormat)?;
    Some(
        raw.iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
    )
}

/// Every value of option `o`, raw.
pub fn option_values(p: &Packet, o: CoapOption) -> Vec<Vec<u8>> {
    p.get_option(o)
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default()
}

/// A response packet with this code and no payload.
pub fn response(code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Response(code);
    p
}

/// A response with a diagnostic payload (RFC 7252 section 5.5.2).
pub fn with_reason(code: ResponseType, reason: &str) -> Packet {
    let mut p = response(code);
    p.payload = reason.as_bytes().to_vec();
    p
}

/// Random requests for the handlers' never-panic tests: any code, a few options drawn from
/// those the handlers read, values either random bytes or `words`, a link-format-ish payload.
#[cfg(test)]
pub(crate) fn random_packets(count: usize, words: &[&[u8]]) -> Vec<Packet> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let opts = [
        CoapOption::UriPath,
        CoapOption::UriQuery,
        CoapOption::ContentFormat,
        CoapOption::Block2,
        CoapOption::Accept,
    ];
    (0..count)
        .map(|_| {
            let mut p = Packet::new();
            p.header.code = MessageClass::from((next() % 8) as u8);
            for _ in 0..next() % 5 {
                let o = opts[(next() % opts.len() as u64) as usize];
                let v = if next() % 3 == 0 || words.is_empty() {
                    (0..next() % 5).map(|_| next() as u8).collect()
                } else {
                    words[(next() % words.len() as u64) as usize].to_vec()
                };
                p.add_option(o, v);
            }
            p.payload = (0..next() % 40)
                .map(|_| b"<>/;,=\"30 "[(next() % 10) as usize])
                .collect();
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_in_order_and_queries_split_at_the_first_equals() {
        let mut p = Packet::new();
        for s in ["rd", "a b"] {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        for q in ["ep=x=y", "Q"] {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.add_option(CoapOption::ContentFormat, vec![0x2d, 0x16]);
        assert_eq!(uri_path(&p), ["rd", "a b"]);
        assert_eq!(
            uri_query(&p),
            [("ep".into(), Some("x=y".into())), ("Q".into(), None)]
        );
        assert_eq!(content_format(&p), Some(11542));
        assert_eq!(content_format(&Packet::new()), None);
        let r = with_reason(ResponseType::BadRequest, "why");
        assert_eq!(
            (r.header.code, r.payload.as_slice()),
            (
                MessageClass::Response(ResponseType::BadRequest),
                &b"why"[..]
            )
        );
    }
}

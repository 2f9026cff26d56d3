//! Readable dumps of envelopes: a summary of the facts a device acts on, and CBOR diagnostic
//! notation with bstr-wrapped CBOR (wrapper, manifest, sequences) opened up. Unauthenticated:
//! for people, not for decisions.

use crate::manifest::cbor::{
    Reader, MAJOR_ARRAY, MAJOR_BSTR, MAJOR_MAP, MAJOR_NINT, MAJOR_SIMPLE, MAJOR_TAG, MAJOR_TSTR,
    MAJOR_UINT,
};
use crate::manifest::{static_params, text_info, Envelope, Manifest, SuitError};
use std::fmt::Write as _;
use std::format;
use std::string::String;
use std::vec::Vec;

/// A multi-line summary: sequence number, ids, image digest/size/uri, version and name.
pub fn summary(envelope: &[u8]) -> Result<String, SuitError> {
    let env = Envelope::parse(envelope)?;
    let m = Manifest::parse(env.manifest)?;
    let install = match m.install {
        crate::manifest::Member::Present(b) => Some(b),
        _ => None,
    };
    let p = static_params(&[m.shared_sequence, install], 0, m.component_count)?;
    let mut s = String::new();
    let _ = writeln!(s, "sequence-number: {}", m.sequence_number);
    let _ = writeln!(s, "components:      {}", m.component_count);
    if let Some(v) = p.vendor_id {
        let _ = writeln!(s, "vendor-id:       {}", super::format_uuid(v));
    }
    if let Some(c) = p.class_id {
        let _ = writeln!(s, "class-id:        {}", super::format_uuid(c));
    }
    if let Some(d) = p.image_digest {
        let _ = writeln!(s, "image-digest:    sha-256:{}", hex(&d));
    }
    if let Some(n) = p.image_size {
        let _ = writeln!(s, "image-size:      {n}");
    }
    if let Some(u) = p.uri {
        let _ = writeln!(s, "uri:             {}", String::from_utf8_lossy(u));
    }
    if let crate::manifest::Member::Present(t) = m.text {
        let t = text_info(t, m.component_id(0))?;
        if let Some(v) = t.version {
            let _ = writeln!(s, "version:         {}", String::from_utf8_lossy(v));
        }
        if let Some(n) = t.name {
            let _ = writeln!(s, "name:            {}", String::from_utf8_lossy(n));
        }
    }
    for p in env.payloads() {
        let _ = writeln!(
            s,
            "payload:         {} ({} bytes)",
            String::from_utf8_lossy(p.key),
            p.bytes.len()
        );
    }
    Ok(s)
}

/// One line per block of the authentication wrapper (section 8.3): its COSE structure and
/// algorithm, or that the wrapper holds the digest only (unsigned).
pub fn authentication_blocks(envelope: &[u8]) -> Result<Vec<String>, SuitError> {
    let env = Envelope::parse(envelope)?;
    let mut r = Reader::new(env.auth);
    let n = r.array()?;
    r.skip()?; // the digest
    let mut out = Vec::new();
    for _ in 1..n {
        let mut b = Reader::new(r.bytes()?);
        let kind = match (b.peek_major()?, b.tag().ok()) {
            (MAJOR_TAG, Some(18)) => "COSE_Sign1",
            (MAJOR_TAG, Some(17)) => "COSE_Mac0",
            (MAJOR_TAG, Some(98)) => "COSE_Sign",
            (MAJOR_TAG, Some(97)) => "COSE_Mac",
            _ => "unknown COSE structure",
        };
        let alg = b
            .array()
            .and_then(|_| b.bytes())
            .ok()
            .and_then(protected_alg);
        out.push(match alg {
            Some(a) => format!("{kind} {} ({a})", alg_name(a)),
            None => kind.into(),
        });
    }
    if out.is_empty() {
        out.push("none: the wrapper holds only the digest (unsigned)".into());
    }
    Ok(out)
}

/// The `alg` (1) of a protected header bucket, if it has one.
fn protected_alg(protected: &[u8]) -> Option<i64> {
    let mut r = Reader::new(protected);
    for _ in 0..r.map().ok()? {
        if r.int().ok()? == 1 {
            return r.int().ok();
        }
        r.skip().ok()?;
    }
    None
}

/// IANA COSE algorithm names of the algorithms SUIT profiles use.
fn alg_name(alg: i64) -> &'static str {
    match alg {
        -7 => "ES256",
        -9 => "ESP256",
        -8 => "EdDSA",
        -19 => "Ed25519",
        5 => "HMAC 256/256",
        _ => "algorithm",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// CBOR diagnostic notation of `bytes`, indented, with nested CBOR shown as `<< ... >>`.
pub fn diagnostic(bytes: &[u8]) -> Result<String, SuitError> {
    let mut out = String::new();
    let mut r = Reader::new(bytes);
    item(&mut r, &mut out, 0)?;
    Ok(out)
}

fn item(r: &mut Reader<'_>, out: &mut String, depth: usize) -> Result<(), SuitError> {
    if depth > 32 {
        return Err(SuitError::TooDeep);
    }
    let pad = "  ".repeat(depth + 1);
    match r.peek_major()? {
        MAJOR_UINT | MAJOR_NINT => {
            let _ = write!(out, "{}", r.int()?);
        }
        MAJOR_BSTR => {
            let b = r.bytes()?;
            let mut inner = Reader::new(b);
            let nested = b.len() > 1
                && matches!(inner.peek_major(), Ok(MAJOR_ARRAY | MAJOR_MAP | MAJOR_TAG))
                && inner.skip().is_ok()
                && inner.is_empty();
            if nested {
                out.push_str("<< ");
                item(&mut Reader::new(b), out, depth)?;
                out.push_str(" >>");
            } else if b.len() > 64 {
                let _ = write!(
                    out,
                    "h'{}...' ({} bytes)",
                    hex(b.get(..32).unwrap_or(b)),
                    b.len()
                );
            } else {
                let _ = write!(out, "h'{}'", hex(b));
            }
        }
        MAJOR_TSTR => {
            let _ = write!(out, "{:?}", String::from_utf8_lossy(r.text()?));
        }
        MAJOR_ARRAY => {
            let n = r.array()?;
            out.push('[');
            for i in 0..n {
                let _ = write!(out, "\n{pad}");
                item(r, out, depth + 1)?;
                if i + 1 < n {
                    out.push(',');
                }
            }
            let _ = write!(out, "\n{}]", "  ".repeat(depth));
        }
        MAJOR_MAP => {
            let n = r.map()?;
            out.push('{');
            for i in 0..n {
                let _ = write!(out, "\n{pad}");
                item(r, out, depth + 1)?;
                out.push_str(": ");
                item(r, out, depth + 1)?;
                if i + 1 < n {
                    out.push(',');
                }
            }
            let _ = write!(out, "\n{}}}", "  ".repeat(depth));
        }
        MAJOR_TAG => {
            let t = r.tag()?;
            let _ = write!(out, "{t}(");
            item(r, out, depth)?;
            out.push(')');
        }
        MAJOR_SIMPLE => {
            let (_, v) = r.head()?;
            out.push_str(match v {
                20 => "false",
                21 => "true",
                22 => "null",
                _ => "simple",
            });
        }
        _ => return Err(SuitError::Malformed),
    }
    Ok(())
}

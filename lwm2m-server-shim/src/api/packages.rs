//! The package host's HTTP face: download with `Range` (206 / 416), listing and upload.

use hyper::header::{HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, ETAG, RANGE};
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;

use crate::api::http_server::{full, json, text, Body};
use crate::packages::host::{parse_range, PackageHost, PackageHostError, PackageInfo};

fn error_response(e: &PackageHostError) -> Response<Body> {
    match e {
        PackageHostError::BadName | PackageHostError::NameTooLong(_) => {
            text(StatusCode::BAD_REQUEST, e.to_string())
        }
        PackageHostError::NotFound => text(StatusCode::NOT_FOUND, e.to_string()),
        PackageHostError::OutOfRange => text(StatusCode::RANGE_NOT_SATISFIABLE, e.to_string()),
        PackageHostError::Io(_) | PackageHostError::Dir(..) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// JSON description of a package.
pub fn info_json(i: &PackageInfo) -> serde_json::Value {
    json!({"name": i.name, "size": i.size, "etag": i.etag_hex()})
}

/// `GET`/`HEAD` of a package, honouring a single byte range.
pub fn download(
    host: &PackageHost,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let info = match host.info(name) {
        Ok(i) => i,
        Err(e) => return error_response(&e),
    };
    let range = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(h) => match parse_range(h, info.size) {
            Ok(r) => r,
            Err(e) => {
                let mut r = error_response(&e);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
                    r.headers_mut().insert(CONTENT_RANGE, v);
                }
                return r;
            }
        },
    };
    let (status, start, len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start + 1),
        None => (StatusCode::OK, 0, info.size),
    };
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        match host.read_range(name, start, usize::try_from(len).unwrap_or(usize::MAX)) {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        }
    };
    let mut resp = full(status, "application/octet-stream", body);
    let h = resp.headers_mut();
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", info.etag_hex())) {
        h.insert(ETAG, v);
    }
    if method == Method::HEAD {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{}",
            start,
            start + len - 1,
            info.size
        )) {
            h.insert(CONTENT_RANGE, v);
        }
    }
    resp
}

/// `PUT`/`POST /api/packages/{name}`: stores the body as a package (201 with its description).
pub fn upload(host: &PackageHost, name: &str, body: &[u8]) -> Response<Body> {
    match host.store(name, body) {
        Ok(i) => json(StatusCode::CREATED, &info_json(&i)),
        Err(e) => error_response(&e),
    }
}

/// `GET /api/packages`: every package.
pub fn list(host: &PackageHost) -> Response<Body> {
    match host.list() {
        Ok(l) => json(
            StatusCode::OK,
            &json!(l.iter().map(info_json).collect::<Vec<_>>()),
        ),
        Err(e) => error_response(&e),
    }
}

/// `DELETE /api/packages/{name}`.
pub fn remove(host: &PackageHost, name: &str) -> Response<Body> {
    match host.remove(name) {
        Ok(()) => full(StatusCode::NO_CONTENT, "text/plain", ""),
        Err(e) => error_response(&e),
    }
}

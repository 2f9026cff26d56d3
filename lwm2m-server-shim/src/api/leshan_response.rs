//! Leshan's answer shapes: `{"status":"CONTENT(205)","valid":..,"success":..,"content":..}` for
//! device answers, and the status mapping: 200 + JSON whenever the device answered (whatever its
//! CoAP code), 504 when it did not answer in time, 400 for an unknown client or an invalid
//! request, 500 for an undecodable device answer or an internal failure.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::coap::endpoint::ExchangeError;
use crate::server::requests::{DmError, DmResponse};

/// Why a client call produced no device answer to relay.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// Invalid path, parameter or body (400).
    BadRequest(String),
    /// The device did not answer in time (504 "Request timeout").
    Timeout,
    /// The device answered something undecodable, or the shim failed (500).
    Internal(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadRequest(m) | Self::Internal(m) => f.write_str(m),
            Self::Timeout => f.write_str("Request timeout"),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Leshan's `ResponseCode` name for a CoAP code, e.g. `CONTENT(205)`.
pub fn leshan_status(raw_code: u8) -> String {
    let (class, detail) = (raw_code >> 5, raw_code & 0x1f);
    let name = match (class, detail) {
        (2, 1) => "CREATED",
        (2, 2) => "DELETED",
        (2, 3) => "VALID",
        (2, 4) => "CHANGED",
        (2, 5) => "CONTENT",
        (2, 31) => "CONTINUE",
        (4, 0) => "BAD_REQUEST",
        (4, 1) => "UNAUTHORIZED",
        (4, 2) => "BAD_OPTION",
        (4, 3) => "FORBIDDEN",
        (4, 4) => "NOT_FOUND",
        (4, 5) => "METHOD_NOT_ALLOWED",
        (4, 6) => "NOT_ACCEPTABLE",
        (4, 8) => "REQUEST_ENTITY_INCOMPLETE",
        (4, 9) => "CONFLICT",
        (4, 12) => "PRECONDITION_FAILED",
        (4, 13) => "REQUEST_ENTITY_TOO_LARGE",
        (4, 15) => "UNSUPPORTED_CONTENT_FORMAT",
        (4, 22) => "UNPROCESSABLE_ENTITY",
        (4, 29) => "TOO_MANY_REQUESTS",
        (5, 0) => "INTERNAL_SERVER_ERROR",
        (5, 1) => "NOT_IMPLEMENTED",
        (5, 2) => "BAD_GATEWAY",
        (5, 3) => "SERVICE_UNAVAILABLE",
        (5, 4) => "GATEWAY_TIMEOUT",
        (5, 5) => "PROXYING_NOT_SUPPORTED",
        _ => "UNKNOWN",
    };
    format!("{name}({}{:02})", class, detail)
}

/// The JSON body Leshan returns for a device answer; `extra` adds `content`, `objectLinks` or
/// `location`.
pub fn response_json(r: &DmResponse, extra: Option<(&str, Value)>) -> Value {
    let success = r.is_success();
    let mut v = json!({
        "status": leshan_status(r.raw_code),
        "valid": true,
        "success": success,
        "failure": !success,
    });
    if let Some(obj) = v.as_object_mut() {
        if let (Some((k, val)), true) = (extra, success) {
            obj.insert(k.into(), val);
        }
        if !success && !r.payload.is_empty() {
            obj.insert(
                "errormessage".into(),
                Value::String(String::from_utf8_lossy(&r.payload).into_owned()),
            );
        }
    }
    v
}

pub(crate) fn dm_failure(e: &DmError) -> ApiError {
    match e {
        DmError::Exchange(ExchangeError::Timeout) => ApiError::Timeout,
        other => ApiError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_follow_leshan() {
        assert_eq!(leshan_status(0x45), "CONTENT(205)");
        assert_eq!(leshan_status(0x44), "CHANGED(204)");
        assert_eq!(leshan_status(0x85), "METHOD_NOT_ALLOWED(405)");
        assert_eq!(leshan_status(0x8D), "REQUEST_ENTITY_TOO_LARGE(413)");
    }
}

//! Leshan server-demo compatible REST API (reference section 3): routing and the client
//! handlers. Status mapping: 200 + JSON whenever the device answered (whatever its CoAP code),
//! 504 when it did not answer in time, 400 for an unknown client or an invalid request, 404 for
//! an unknown route, 500 for an undecodable device answer or an internal failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use lwm2m_client::codec::{ContentFormat, Node, Path, Resource, ResourceType, ResourceValue};
use serde_json::{json, Value};

use crate::coap_endpoint::ExchangeError;
use crate::content::{self, format_by_name};
use crate::dm::{DmError, DmResponse};
use crate::http_server::{
    self, json, percent_decode, query_pairs, read_body, text, Body, HttpService,
};
use crate::node_json::{node_json, parse_node};
use crate::object_links::ObjectLinks;
use crate::object_model;
use crate::registration_json::registration_json;
use crate::server::Shim;
use crate::store::Registration;
use crate::{event_stream, package_http};

/// Largest request body accepted (a hex-encoded firmware push doubles the image size).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Query parameter carrying the per-exchange request timeout in seconds (Leshan's name); when
/// absent, [`crate::server::ShimConfig::default_timeout`] applies.
const TIMEOUT_PARAM: &str = "timeout";

/// The HTTP service answering the REST API, the event stream and HTTP package downloads.
pub struct RestApi {
    shim: Arc<Shim>,
}

impl RestApi {
    /// The API over a running shim.
    pub fn new(shim: Arc<Shim>) -> Self {
        Self { shim }
    }
}

impl HttpService for RestApi {
    fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(async move { route(&self.shim, req).await })
    }
}

fn path_segments(path: &str) -> Option<Vec<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        // '+' is literal in a path; only %XX escapes are decoded.
        .map(|s| percent_decode(&s.replace('+', "%2B")))
        .collect()
}

async fn route(shim: &Arc<Shim>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let Some(segs) = path_segments(req.uri().path()) else {
        return text(StatusCode::BAD_REQUEST, "undecodable path");
    };
    let query = query_pairs(req.uri().query());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["api", "clients"]) => {
            let all: Vec<Value> = shim.store.all().iter().map(registration_json).collect();
            json(StatusCode::OK, &Value::Array(all))
        }
        (&Method::GET, ["api", "clients", ep]) => match shim.store.get_by_endpoint(ep) {
            Some(r) => json(StatusCode::OK, &registration_json(&r)),
            None => unknown_client(ep),
        },
        (_, ["api", "clients", ep, rest @ ..]) => {
            let Some(reg) = shim.store.get_by_endpoint(ep) else {
                return unknown_client(ep);
            };
            let ctype = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let body = match read_body(req.into_body(), MAX_BODY).await {
                Ok(b) => b,
                Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
            };
            let call = ClientCall {
                shim,
                reg: &reg,
                method: &method,
                query: &query,
                content_type: &ctype,
                body: &body,
            };
            match call.run(&rest).await {
                Ok(r) => r,
                Err(e) => text(e.status(), e.to_string()),
            }
        }
        (&Method::GET, ["api", "event"]) => {
            let ep = query
                .iter()
                .find(|(k, _)| k == "ep")
                .map(|(_, v)| v.clone());
            event_stream::open(&shim.events, ep)
        }
        (&Method::GET, ["api", "packages"]) => package_http::list(&shim.packages),
        (&Method::GET | &Method::HEAD, ["api", "packages", name] | ["fw", name]) => {
            package_http::download(&shim.packages, name, &method, req.headers())
        }
        (&Method::PUT | &Method::POST, ["api", "packages", name]) => {
            let name = name.to_string();
            match read_body(req.into_body(), MAX_BODY).await {
                Ok(b) => package_http::upload(&shim.packages, &name, &b),
                Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (&Method::DELETE, ["api", "packages", name]) => package_http::remove(&shim.packages, name),
        _ => text(StatusCode::NOT_FOUND, "no such resource"),
    }
}

fn unknown_client(ep: &str) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        format!("no registered client with id '{ep}'"),
    )
}

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

fn bad(msg: impl Into<String>) -> ApiError {
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

fn dm_failure(e: &DmError) -> ApiError {
    match e {
        DmError::Exchange(ExchangeError::Timeout) => ApiError::Timeout,
        other => ApiError::Internal(other.to_string()),
    }
}

/// One REST call on `/api/clients/{ep}/...`.
struct ClientCall<'a> {
    shim: &'a Arc<Shim>,
    reg: &'a Registration,
    method: &'a Method,
    query: &'a [(String, String)],
    content_type: &'a str,
    body: &'a [u8],
}

type CallResult = Result<Response<Body>, ApiError>;

impl ClientCall<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn timeout(&self) -> Result<Duration, ApiError> {
        match self.param(TIMEOUT_PARAM) {
            None => Ok(self.shim.config.default_timeout),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|t| *t > 0 && *t <= 24 * 3600)
                .map(Duration::from_secs)
                .ok_or_else(|| bad("timeout must be a positive number of seconds")),
        }
    }

    fn format(&self) -> Result<Option<ContentFormat>, ApiError> {
        match self.param("format") {
            None => Ok(None),
            Some(f) => format_by_name(f)
                .map(Some)
                .ok_or_else(|| bad(format!("unknown format {f:?}"))),
        }
    }

    /// Format for payloads the shim sends when the caller named none: TLV for LwM2M 1.0
    /// clients, SenML CBOR for later versions (Leshan's defaults).
    fn default_format(&self) -> ContentFormat {
        if self.reg.lwm2m_version == "1.0" {
            ContentFormat::Tlv
        } else {
            ContentFormat::SenmlCbor
        }
    }

    async fn run(&self, rest: &[String]) -> CallResult {
        let (suffix, ids) = match rest.split_last() {
            Some((last, before))
                if matches!(last.as_str(), "discover" | "observe" | "attributes") =>
            {
                (Some(last.as_str()), before)
            }
            _ => (None, rest),
        };
        if ids.first().map(String::as_str) == Some("composite") {
            return Err(bad("composite operations are not supported by this shim"));
        }
        let path = Path::from_segments(ids.iter().map(String::as_str))
            .map_err(|_| bad(format!("invalid LwM2M path /{}", ids.join("/"))))?;
        if path.depth() == 0 {
            return Err(bad("the root path is not addressable"));
        }
        let timeout = self.timeout()?;
        let device = self
            .shim
            .device(self.reg, timeout)
            .ok_or_else(|| ApiError::Internal("CoAP endpoint not running".into()))?;
        match (self.method, suffix) {
            (&Method::GET, None) => {
                let r = device
                    .read(&path, self.format()?)
                    .await
                    .map_err(|e| dm_failure(&e))?;
                self.with_content(&path, r)
            }
            (&Method::GET, Some("discover")) => {
                let r = device.discover(&path).await.map_err(|e| dm_failure(&e))?;
                let links = std::str::from_utf8(&r.payload)
                    .ok()
                    .and_then(|s| ObjectLinks::try_parse(s).ok());
                match (r.is_success(), links) {
                    (true, None) => Err(ApiError::Internal(
                        "invalid link-format in Discover answer".into(),
                    )),
                    (_, l) => Ok(json(
                        StatusCode::OK,
                        &response_json(&r, l.map(|l| ("objectLinks", l.to_json()))),
                    )),
                }
            }
            (&Method::PUT, None) => self.write(&device, &path).await,
            (&Method::PUT, Some("attributes")) => {
                let attrs: Vec<(String, String)> = self
                    .query
                    .iter()
                    .filter(|(k, _)| k != TIMEOUT_PARAM)
                    .cloned()
                    .collect();
                let r = device
                    .write_attributes(&path, &attrs)
                    .await
                    .map_err(|e| dm_failure(&e))?;
                Ok(json(StatusCode::OK, &response_json(&r, None)))
            }
            (&Method::POST, None) if path.depth() == 3 => {
                let r = device
                    .execute(&path, self.body)
                    .await
                    .map_err(|e| dm_failure(&e))?;
                Ok(json(StatusCode::OK, &response_json(&r, None)))
            }
            (&Method::POST, None) if path.depth() <= 2 => self.create(&device, &path).await,
            (&Method::POST, Some("observe")) => {
                let accept = self.format()?;
                let (r, stream) = device
                    .observe(&path, accept)
                    .await
                    .map_err(|e| dm_failure(&e))?;
                if let Some(s) = stream {
                    self.shim
                        .track_observation(&self.reg.endpoint, path, s, device, accept);
                }
                self.with_content(&path, r)
            }
            (&Method::DELETE, Some("observe")) => {
                self.shim.cancel_observation(&self.reg.endpoint, &path);
                Ok(http_server::full(StatusCode::OK, "text/plain", ""))
            }
            (&Method::DELETE, None) if path.depth() == 2 => {
                let r = device.delete(&path).await.map_err(|e| dm_failure(&e))?;
                Ok(json(StatusCode::OK, &response_json(&r, None)))
            }
            _ => Err(bad("operation not allowed on this path")),
        }
    }

    fn with_content(&self, path: &Path, r: DmResponse) -> CallResult {
        if !r.is_success() {
            return Ok(json(StatusCode::OK, &response_json(&r, None)));
        }
        let cf = r.content_format.unwrap_or(ContentFormat::Text);
        let node = content::decode(cf, path, &r.payload)
            .map_err(|e| ApiError::Internal(format!("invalid response from device: {e}")))?;
        Ok(json(
            StatusCode::OK,
            &response_json(&r, Some(("content", node_json(&node)))),
        ))
    }

    fn body_node(&self, path: &Path) -> Result<Node, ApiError> {
        if self.content_type.starts_with("text/plain") {
            let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) else {
                return Err(bad("a text/plain body writes one resource"));
            };
            let ty = object_model::resource_type(o, r).unwrap_or(ResourceType::String);
            let value = lwm2m_client::codec::text::decode(self.body, ty)
                .map_err(|e| bad(format!("invalid text value: {e}")))?;
            return Ok(match path.resource_instance_id() {
                Some(id) => Node::ResourceInstance { id, value },
                None => Node::Resource(Resource {
                    id: r,
                    value: ResourceValue::Single(value),
                }),
            });
        }
        let v: Value = serde_json::from_slice(self.body)
            .map_err(|e| bad(format!("invalid JSON body: {e}")))?;
        parse_node(&v, path.instance_id()).map_err(|e| bad(format!("invalid node: {e}")))
    }

    async fn write(&self, device: &crate::dm::Device, path: &Path) -> CallResult {
        if path.depth() < 2 {
            return Err(bad("Write needs at least /object/instance"));
        }
        let node = self.body_node(path)?;
        let matches = match (&node, path.depth()) {
            (Node::Instance(i), 2) => Some(i.id) == path.instance_id(),
            (Node::Resource(r), 3) => Some(r.id) == path.resource_id(),
            (Node::ResourceInstance { id, .. }, 4) => Some(*id) == path.resource_instance_id(),
            _ => false,
        };
        if !matches {
            return Err(bad("node kind or id does not match the path"));
        }
        let replace = match self.param("replace") {
            None => true,
            Some(v) => v
                .parse::<bool>()
                .map_err(|_| bad("replace must be true or false"))?,
        };
        let cf = self.format()?.unwrap_or_else(|| self.default_format());
        let payload =
            content::encode(cf, path, &node).map_err(|e| bad(format!("cannot encode: {e}")))?;
        let r = device
            .write(path, replace, cf, &payload)
            .await
            .map_err(|e| dm_failure(&e))?;
        Ok(json(StatusCode::OK, &response_json(&r, None)))
    }

    async fn create(&self, device: &crate::dm::Device, path: &Path) -> CallResult {
        let object = path
            .object_id()
            .ok_or_else(|| bad("Create needs an object"))?;
        let v: Value = serde_json::from_slice(self.body)
            .map_err(|e| bad(format!("invalid JSON body: {e}")))?;
        // The instance id comes from the path, the body, or defaults to 0 for the encoder.
        let node = parse_node(&v, Some(path.instance_id().unwrap_or(0)))
            .map_err(|e| bad(format!("invalid node: {e}")))?;
        let Node::Instance(inst) = node else {
            return Err(bad("Create takes an instance node"));
        };
        let target = Path::object(object);
        let body = Node::Object {
            id: object,
            instances: vec![inst],
        };
        let cf = self.format()?.unwrap_or_else(|| self.default_format());
        let payload =
            content::encode(cf, &target, &body).map_err(|e| bad(format!("cannot encode: {e}")))?;
        let r = device
            .create(&target, cf, &payload)
            .await
            .map_err(|e| dm_failure(&e))?;
        let location =
            (!r.location.is_empty()).then(|| Value::String(format!("/{}", r.location.join("/"))));
        Ok(json(
            StatusCode::OK,
            &response_json(&r, location.map(|l| ("location", l))),
        ))
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

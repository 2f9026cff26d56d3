//! The client operations of the REST API (`/api/clients/{ep}/...`): Read, Write, Execute,
//! Create, Delete, Discover, Write-Attributes, Observe and cancel, each turned into a
//! device-management request and its answer into Leshan's JSON; and the list of clients
//! (`GET /api/clients`), streamed from the store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use lwm2m_client::codec::{ContentFormat, Node, Path, Resource, ResourceType, ResourceValue};
use serde_json::Value;

use crate::api::composite;
use crate::api::http_server::{self, json, Body};
use crate::api::leshan_response::{bad, dm_failure, response_json, ApiError};
use crate::api::registration_json::registration_json_with;
use crate::content::models;
use crate::content::node_json::{node_json, parse_node_at};
use crate::content::{self, format_by_name};
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::Registration;
use crate::server::requests::{DeviceHandle, DmResponse};
use crate::server::shim::Shim;

/// Query parameter carrying the per-exchange request timeout in seconds (Leshan's name); when
/// absent, [`crate::server::shim::ServerSettings::default_timeout`] applies.
const TIMEOUT_PARAM: &str = "timeout";

/// Query parameter of `DELETE .../observe` asking for an active cancel (Leshan 2.0's name).
const ACTIVE_CANCEL: &str = "active";

/// Longest per-exchange timeout a REST call may ask for: 24 h.
const MAX_TIMEOUT_S: u64 = 24 * 3600;

/// Registrations per chunk of the `GET /api/clients` body (about 30 KB of JSON).
const LIST_PAGE: usize = 64;

/// Chunks of one listing produced ahead of the HTTP connection: with the chunk being written,
/// a listing holds about 100 KB however many clients are registered.
const LIST_AHEAD: usize = 2;

/// `GET /api/clients`: every registration in Leshan's JSON, ordered by endpoint name, sent as
/// a chunked body page by page from the store. Building the whole array first cost about
/// 117 MB per call at 20 000 registrations (an 8.7 MB response). Registrations added or
/// removed while the listing runs may or may not appear; none appears twice.
pub fn list(shim: Arc<Shim>) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(LIST_AHEAD);
    tokio::spawn(async move {
        let store = &shim.store;
        let mut after: Option<String> = None;
        let mut chunk = b"[".to_vec();
        loop {
            let page = store.page(after.as_deref(), LIST_PAGE);
            for r in &page {
                if after.is_some() || chunk.len() > 1 {
                    chunk.push(b',');
                }
                // Writing JSON into a Vec cannot fail.
                let _ =
                    serde_json::to_writer(&mut chunk, &registration_json_with(r, &shim.presence));
            }
            let done = page.len() < LIST_PAGE;
            if let Some(last) = page.last() {
                after = Some(last.endpoint.clone());
            }
            if done {
                chunk.push(b']');
            }
            if tx
                .send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .is_err()
                || done
            {
                return;
            }
        }
    });
    let mut r = Response::new(Body::Stream(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// One REST call on `/api/clients/{ep}/...`.
pub struct ClientCall<'a> {
    /// The running shim.
    pub shim: &'a Arc<Shim>,
    /// Registration of the addressed client.
    pub reg: &'a Registration,
    /// HTTP method.
    pub method: &'a Method,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Lower-cased Content-Type of the body.
    pub content_type: &'a str,
    /// Request body.
    pub body: &'a [u8],
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
            None => Ok(self.shim.settings.default_timeout),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|t| (1..=MAX_TIMEOUT_S).contains(t))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    bad(format!(
                        "timeout must be 1 to {MAX_TIMEOUT_S} seconds (24 h), not {s:?}"
                    ))
                }),
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

    /// The format a Read or Observe asks for in its Accept option (`format`, else the
    /// client's default), refused before anything is sent when the shim could not decode
    /// the answer.
    fn read_format(&self) -> Result<ContentFormat, ApiError> {
        let cf = self.format()?.unwrap_or_else(|| self.default_format());
        if content::decodable(cf) {
            Ok(cf)
        } else {
            Err(bad(format!(
                "format {} cannot be read into a node",
                self.param("format").unwrap_or_default()
            )))
        }
    }

    /// The format of this client when the caller named none: what it announced at
    /// registration, else its version's mandatory one ([`content::default_format`]).
    fn default_format(&self) -> ContentFormat {
        let announced = ObjectLinks::parse(&self.reg.object_links).content_formats();
        content::default_format(&self.reg.lwm2m_version, &announced)
    }

    /// Runs the operation named by the path segments after `{ep}`.
    pub async fn run(&self, rest: &[String]) -> CallResult {
        let (suffix, ids) = match rest.split_last() {
            Some((last, before))
                if matches!(last.as_str(), "discover" | "observe" | "attributes") =>
            {
                (Some(last.as_str()), before)
            }
            _ => (None, rest),
        };
        if ids.first().map(String::as_str) == Some("composite") {
            if ids.len() != 1 || !matches!(suffix, None | Some("observe")) {
                return Err(bad("operation not allowed on this path"));
            }
            let device = self
                .shim
                .device(self.reg, self.timeout()?)
                .ok_or_else(|| ApiError::Internal("CoAP endpoint not running".into()))?;
            let call = composite::CompositeCall {
                shim: self.shim,
                reg: self.reg,
                method: self.method,
                query: self.query,
                body: self.body,
            };
            return composite::run(&call, &device, suffix.is_some()).await;
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
                    .read(&path, Some(self.read_format()?))
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
                let accept = Some(self.read_format()?);
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
            (&Method::DELETE, Some("observe")) if self.param(ACTIVE_CANCEL).is_some() => {
                self.cancel_actively(&device, &path).await
            }
            (&Method::DELETE, Some("observe")) => {
                self.shim.cancel_observation(&self.reg.endpoint, &path);
                Ok(http_server::full(StatusCode::OK, "text/plain", ""))
            }
            // Any depth: the device decides (object instances in LwM2M 1.1, resource instances
            // from 1.2 on, whole objects from a bootstrap server); an unsupported one gets its
            // 4.05 relayed.
            (&Method::DELETE, None) => {
                let r = device.delete(&path).await.map_err(|e| dm_failure(&e))?;
                Ok(json(StatusCode::OK, &response_json(&r, None)))
            }
            _ => Err(bad("operation not allowed on this path")),
        }
    }

    /// `DELETE .../observe?active` (Leshan 2.0): tells the device to stop notifying with a GET
    /// carrying Observe = 1 and the observation's token, and forgets the observation once the
    /// device accepted; 404 when `path` is not observed. Without `active` the observation is
    /// only forgotten here (passive cancel: the device learns it from the Reset its next
    /// notification gets, RFC 7641 section 3.6).
    async fn cancel_actively(&self, device: &DeviceHandle, path: &Path) -> CallResult {
        let ep = &self.reg.endpoint;
        let Some(token) = self.shim.observation_token(ep, path) else {
            return Ok(http_server::text(
                StatusCode::NOT_FOUND,
                format!("no observation for path {path} for  client '{ep}'"),
            ));
        };
        let accept = self.format()?;
        let r = device
            .cancel_observe(path, &token, accept)
            .await
            .map_err(|e| dm_failure(&e))?;
        if r.is_success() {
            self.shim.cancel_observation(ep, path);
        }
        self.with_content(path, r)
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
            &response_json(&r, Some(("content", node_json(&node, path)))),
        ))
    }

    fn body_node(&self, path: &Path) -> Result<Node, ApiError> {
        if self.content_type.starts_with("text/plain") {
            let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) else {
                return Err(bad("a text/plain body writes one resource"));
            };
            let ty = models::resource_type(o, r).unwrap_or(ResourceType::String);
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
        parse_node_at(&v, path, path.instance_id()).map_err(|e| bad(format!("invalid node: {e}")))
    }

    async fn write(&self, device: &DeviceHandle, path: &Path) -> CallResult {
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

    async fn create(&self, device: &DeviceHandle, path: &Path) -> CallResult {
        let object = path
            .object_id()
            .ok_or_else(|| bad("Create needs an object"))?;
        let v: Value = serde_json::from_slice(self.body)
            .map_err(|e| bad(format!("invalid JSON body: {e}")))?;
        // The instance id comes from the path, the body, or defaults to 0 for the encoder.
        let node = parse_node_at(&v, path, Some(path.instance_id().unwrap_or(0)))
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
        // Leshan shows the Location-Path options joined by '/' without a leading one ("1/0"),
        // as Californium's `getLocationPathString` gives them.
        let location = (!r.location.is_empty()).then(|| Value::String(r.location.join("/")));
        Ok(json(
            StatusCode::OK,
            &response_json(&r, location.map(|l| ("location", l))),
        ))
    }
}

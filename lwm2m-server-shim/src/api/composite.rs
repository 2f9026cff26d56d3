//! Composite operations of Leshan 2.0's REST API (LwM2M 1.1, OMA TS Core 1.1 sections 6.3.8,
//! 6.3.9 and 6.4.3) on `/api/clients/{ep}/composite`:
//!
//! | call | device request |
//! |---|---|
//! | `GET .../composite?paths=/3/0/9,/5/0/3` | Read-Composite: FETCH `/` naming the paths |
//! | `PUT .../composite` with `{"/3/0/14": node, ...}` | Write-Composite: iPATCH `/` |
//! | `POST .../composite/observe?paths=...` | Observe-Composite: FETCH with Observe = 0 |
//! | `DELETE .../composite/observe?paths=...[&active]` | forget it, or FETCH with Observe = 1 |
//!
//! `pathformat` (the encoding of the path list) and `nodeformat` (of the values) are SENML_CBOR
//! unless given, SENML_JSON otherwise; the answer's `content` maps each requested path to its
//! node, `null` where the device had no value.

use hyper::{Method, StatusCode};
use lwm2m_client::codec::{ContentFormat, Path};
use serde_json::Value;

use std::sync::Arc;

use crate::api::http_server::{self, json, Body};
use crate::api::leshan_response::{bad, dm_failure, response_json, ApiError};
use crate::content::node_json::{composite_json, parse_node};
use crate::content::{self, format_by_name};
use crate::server::registration::store::Registration;
use crate::server::requests::{CompositePaths, DeviceHandle, DmResponse};
use crate::server::shim::Shim;

type CallResult = Result<hyper::Response<Body>, ApiError>;

/// One composite call: the client and what the HTTP request carried.
pub(crate) struct CompositeCall<'a> {
    /// The running shim.
    pub(crate) shim: &'a Arc<Shim>,
    /// Registration of the addressed client.
    pub(crate) reg: &'a Registration,
    /// HTTP method.
    pub(crate) method: &'a Method,
    /// Decoded query parameters.
    pub(crate) query: &'a [(String, String)],
    /// Request body.
    pub(crate) body: &'a [u8],
}

impl CompositeCall<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs a composite call; `observe` when the path ends in `/observe`.
pub(crate) async fn run(
    call: &CompositeCall<'_>,
    device: &DeviceHandle,
    observe: bool,
) -> CallResult {
    match (call.method, observe) {
        (&Method::GET, false) => {
            let (paths, accept) = (paths(call)?, node_format(call)?);
            let r = device
                .read_composite(&paths, accept)
                .await
                .map_err(|e| dm_failure(&e))?;
            with_content(&paths, r)
        }
        (&Method::PUT, false) => write(call, device).await,
        (&Method::POST, true) => {
            let (paths, accept) = (paths(call)?, node_format(call)?);
            let (r, stream) = device
                .observe_composite(&paths, accept)
                .await
                .map_err(|e| dm_failure(&e))?;
            let answer = with_content(&paths, r);
            if let Some(s) = stream {
                call.shim.track_composite_observation(
                    &call.reg.endpoint,
                    paths,
                    s,
                    device.clone(),
                    accept,
                );
            }
            answer
        }
        (&Method::DELETE, true) => cancel(call, device).await,
        _ => Err(bad("operation not allowed on this path")),
    }
}

/// A SenML format named by query parameter `name`, SenML CBOR when absent.
fn senml_param(call: &CompositeCall<'_>, name: &str) -> Result<ContentFormat, ApiError> {
    let Some(f) = call.param(name) else {
        return Ok(ContentFormat::SenmlCbor);
    };
    format_by_name(f)
        .filter(|cf| content::composite_format(*cf))
        .ok_or_else(|| {
            bad(format!(
                "{name} must be SENML_JSON or SENML_CBOR, not {f:?}"
            ))
        })
}

fn node_format(call: &CompositeCall<'_>) -> Result<ContentFormat, ApiError> {
    senml_param(call, "nodeformat")
}

/// The `paths` parameter (comma-separated LwM2M paths) encoded in `pathformat`.
fn paths(call: &CompositeCall<'_>) -> Result<CompositePaths, ApiError> {
    let list = call
        .param("paths")
        .ok_or_else(|| bad("composite operations need paths=/o/i/r,..."))?;
    let paths = list
        .split(',')
        .map(|p| {
            let p = p.trim();
            Path::parse(p).map_err(|_| bad(format!("invalid LwM2M path {p:?} in paths")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let format = senml_param(call, "pathformat")?;
    CompositePaths::new(paths, format).ok_or_else(|| bad("paths cannot be encoded"))
}

fn with_content(paths: &CompositePaths, r: DmResponse) -> CallResult {
    if !r.is_success() {
        return Ok(json(StatusCode::OK, &response_json(&r, None)));
    }
    let cf = r.content_format.unwrap_or(ContentFormat::SenmlCbor);
    let nodes = content::decode_composite(cf, &paths.paths, &r.payload)
        .map_err(|e| ApiError::Internal(format!("invalid response from device: {e}")))?;
    Ok(json(
        StatusCode::OK,
        &response_json(&r, Some(("content", composite_json(&nodes)))),
    ))
}

/// Write-Composite: the body maps paths to Leshan nodes.
async fn write(call: &CompositeCall<'_>, device: &DeviceHandle) -> CallResult {
    let body: Value =
        serde_json::from_slice(call.body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let Value::Object(entries) = body else {
        return Err(bad("Write-Composite takes a JSON object of path: node"));
    };
    let mut nodes = Vec::with_capacity(entries.len());
    for (p, v) in &entries {
        let path =
            Path::parse(p).map_err(|_| bad(format!("invalid LwM2M path {p:?} in the body")))?;
        let node = parse_node(v, path.instance_id())
            .map_err(|e| bad(format!("invalid node at {p}: {e}")))?;
        nodes.push((path, node));
    }
    let cf = node_format(call)?;
    let payload =
        content::encode_composite(cf, &nodes).map_err(|e| bad(format!("cannot encode: {e}")))?;
    let r = device
        .write_composite(cf, &payload)
        .await
        .map_err(|e| dm_failure(&e))?;
    Ok(json(StatusCode::OK, &response_json(&r, None)))
}

/// Cancel of a composite observation, passive unless `active` is given (see the single-path
/// cancel in [`crate::api::clients`]).
async fn cancel(call: &CompositeCall<'_>, device: &DeviceHandle) -> CallResult {
    let paths = paths(call)?;
    let ep = &call.reg.endpoint;
    if call.param("active").is_none() {
        call.shim.cancel_composite_observation(ep, &paths);
        return Ok(http_server::full(StatusCode::OK, "text/plain", ""));
    }
    let Some(token) = call.shim.composite_observation_token(ep, &paths) else {
        let list: Vec<String> = paths.paths.iter().map(Path::to_string).collect();
        return Ok(http_server::text(
            StatusCode::NOT_FOUND,
            format!(
                "no composite observation for paths [{}] for  client '{ep}'",
                list.join(", ")
            ),
        ));
    };
    let accept = node_format(call)?;
    let r = device
        .cancel_observe_composite(&paths, &token, accept)
        .await
        .map_err(|e| dm_failure(&e))?;
    if r.is_success() {
        call.shim.cancel_composite_observation(ep, &paths);
    }
    with_content(&paths, r)
}

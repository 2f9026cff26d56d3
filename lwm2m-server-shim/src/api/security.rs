//! Leshan's security REST resource: `GET /api/security/clients` lists SecurityInfo,
//! `PUT /api/security/clients` adds or replaces one (`{"endpoint":..,"psk":{"identity":..,
//! "key":"hex"}}`), `DELETE /api/security/clients/{ep}` removes one.

use hyper::StatusCode;
use serde_json::Value;

use crate::api::http_server::{json, text, Body};
use crate::server::security::store::{SecurityInfo, SecurityStore};
use crate::server::shim::Shim;

/// `GET /api/security/clients`.
pub fn list(store: &dyn SecurityStore) -> hyper::Response<Body> {
    let all: Vec<Value> = store.all().iter().map(SecurityInfo::to_json).collect();
    json(StatusCode::OK, &Value::Array(all))
}

/// `PUT /api/security/clients` with a SecurityInfo body; sessions under a replaced key end.
pub fn put(shim: &Shim, body: &[u8]) -> hyper::Response<Body> {
    let info = serde_json::from_slice::<Value>(body)
        .map_err(|e| e.to_string())
        .and_then(|v| SecurityInfo::from_json(&v).map_err(|e| e.to_string()));
    match info {
        Ok(info) => {
            let endpoint = info.endpoint.clone();
            match shim.security.put(info.clone()) {
                Ok(old) => {
                    if let Some(old) = old.filter(|o| o.psk != info.psk) {
                        shim.revoke_identity(&old.psk.identity);
                    }
                    tracing::info!(%endpoint, "security info stored");
                    text(StatusCode::OK, "")
                }
                Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

/// `DELETE /api/security/clients/{ep}`; the endpoint's sessions end with it.
pub fn remove(shim: &Shim, endpoint: &str) -> hyper::Response<Body> {
    match shim.security.remove(endpoint) {
        Some(old) => {
            shim.revoke_identity(&old.psk.identity);
            text(StatusCode::OK, "")
        }
        None => text(
            StatusCode::NOT_FOUND,
            format!("no security info for endpoint '{endpoint}'"),
        ),
    }
}

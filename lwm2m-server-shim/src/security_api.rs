//! Leshan's security REST resource: `GET /api/security/clients` lists SecurityInfo,
//! `PUT /api/security/clients` adds or replaces one (`{"endpoint":..,"psk":{"identity":..,
//! "key":"hex"}}`), `DELETE /api/security/clients/{ep}` removes one.

use hyper::StatusCode;
use serde_json::Value;

use crate::http_server::{json, text, Body};
use crate::security_store::{SecurityInfo, SecurityStore};

/// `GET /api/security/clients`.
pub fn list(store: &dyn SecurityStore) -> hyper::Response<Body> {
    let all: Vec<Value> = store.all().iter().map(SecurityInfo::to_json).collect();
    json(StatusCode::OK, &Value::Array(all))
}

/// `PUT /api/security/clients` with a SecurityInfo body.
pub fn put(store: &dyn SecurityStore, body: &[u8]) -> hyper::Response<Body> {
    let info = serde_json::from_slice::<Value>(body)
        .map_err(|e| e.to_string())
        .and_then(|v| SecurityInfo::from_json(&v).map_err(|e| e.to_string()));
    match info {
        Ok(info) => {
            let endpoint = info.endpoint.clone();
            match store.put(info) {
                Ok(_) => {
                    tracing::info!(%endpoint, "security info stored");
                    text(StatusCode::OK, "")
                }
                Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

/// `DELETE /api/security/clients/{ep}`.
pub fn remove(store: &dyn SecurityStore, endpoint: &str) -> hyper::Response<Body> {
    match store.remove(endpoint) {
        Some(_) => text(StatusCode::OK, ""),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no security info for endpoint '{endpoint}'"),
        ),
    }
}

//! The firmware part of the REST API, beyond Leshan (which has no firmware support):
//! `POST /api/clients/{ep}/firmware` starts an update job (202 + job JSON), `GET /api/jobs` and
//! `GET /api/jobs/{id}` report jobs. Progress also streams as FIRMWARE events on `/api/event`.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use object5::status::{State, UpdateResult};
use serde_json::{json, Value};

use crate::api::http_server::{json, text, Body};
use crate::firmware::campaign::{self, CampaignConfig, PhaseTimeouts, UpdatePlan};
use crate::firmware::jobs::{JobRegistry, JobStatus, Method};
use crate::packages::host::PackageHostError;
use crate::server::shim::Shim;

/// Why a firmware request body was refused (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not a JSON object.
    NotJson(String),
    /// A field is missing or has the wrong type or value.
    Field(&'static str, &'static str),
    /// A field the request does not define (a typo, or an option this shim does not have).
    Unknown(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "body must be a JSON object: {e}"),
            Self::Field(name, why) => write!(f, "field {name:?} {why}"),
            Self::Unknown(name) => {
                write!(f, "unknown field {name:?} (fields: {})", FIELDS.join(", "))
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Schemes a device may pull from: the protocols Object 5 resource 8 (Firmware Update Protocol
/// Support) can announce, CoAP, CoAPS, HTTP 1.1, HTTPS 1.1, CoAP over TCP and over TLS
/// (RFC 8323 section 8). Anything else (`file://`) no device can fetch.
const PULL_SCHEMES: [&str; 6] = [
    "coap://",
    "coaps://",
    "http://",
    "https://",
    "coap+tcp://",
    "coaps+tcp://",
];

/// The fields of a firmware request.
const FIELDS: [&str; 3] = ["package", "method", "uri"];

/// Parses `{"package": NAME, "method": "pull"|"push", "uri"?: URI}` (method defaults to pull).
/// Any other field is refused rather than ignored: a job must not run other than asked.
pub fn parse_request(body: &[u8]) -> Result<UpdatePlan, RequestError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| RequestError::NotJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| RequestError::NotJson("not an object".into()))?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(RequestError::Unknown(unknown.clone()));
    }
    let package = match obj.get("package") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(RequestError::Field("package", "must be a non-empty string")),
        None => return Err(RequestError::Field("package", "is required")),
    };
    let method = match obj.get("method") {
        None => Method::Pull,
        Some(Value::String(s)) => Method::parse(s).ok_or(RequestError::Field(
            "method",
            "must be \"pull\" or \"push\"",
        ))?,
        Some(_) => return Err(RequestError::Field("method", "must be a string")),
    };
    let uri = match obj.get("uri") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if method == Method::Pull => {
            if !PULL_SCHEMES.iter().any(|scheme| s.starts_with(scheme)) {
                return Err(RequestError::Field(
                    "uri",
                    "must be a coap://, coaps://, http:// or https:// URI",
                ));
            }
            Some(s.clone())
        }
        Some(Value::String(_)) => return Err(RequestError::Field("uri", "applies to pull only")),
        Some(_) => return Err(RequestError::Field("uri", "must be a string")),
    };
    Ok(UpdatePlan {
        package,
        method,
        uri,
    })
}

/// Campaign settings for jobs started over REST: the shim's request timeout, default phases.
pub fn rest_config(shim: &Shim) -> CampaignConfig {
    CampaignConfig {
        timeouts: PhaseTimeouts {
            request: shim.settings.default_timeout,
            ..PhaseTimeouts::default()
        },
        ..CampaignConfig::default()
    }
}

/// The job resource's JSON (`GET /api/jobs/{id}`, FIRMWARE events): State and Update Result
/// as their Object 5 codes.
pub fn job_json(j: &JobStatus) -> Value {
    json!({
        "id": j.id,
        "ep": j.ep,
        "package": j.package,
        "method": j.method.as_str(),
        "phase": j.phase.as_str(),
        "state": j.state.map(State::code),
        "result": j.result.map(UpdateResult::code),
        "error": j.error,
        "firmwareVersion": j.firmware_version,
        "pkgVersion": j.pkg_version,
        "waitingForWakeUp": j.waiting_for_wake_up,
    })
}

/// `POST /api/clients/{ep}/firmware`: 400 for an unknown client or a malformed body, 404 for
/// an unknown package, 409 with the running job while the device has an unfinished one, else
/// 202 with the queued job.
pub fn start(shim: &Arc<Shim>, jobs: &Arc<JobRegistry>, ep: &str, body: &[u8]) -> Response<Body> {
    if shim.store.get_by_endpoint(ep).is_none() {
        return text(
            StatusCode::BAD_REQUEST,
            format!("no registered client with id '{ep}'"),
        );
    }
    let plan = match parse_request(body) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // A pull from an explicit URI may name a package hosted elsewhere.
    if plan.uri.is_none() {
        match shim.packages.info(&plan.package) {
            Ok(_) => {}
            Err(
                PackageHostError::NotFound
                | PackageHostError::BadName
                | PackageHostError::NameTooLong(_),
            ) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("no package named {:?}", plan.package),
                )
            }
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    match jobs.create_exclusive(ep, &plan.package, plan.method) {
        Ok(job) => {
            let body = job_json(&job);
            campaign::spawn_job(shim, jobs, job, plan, rest_config(shim));
            json(StatusCode::ACCEPTED, &body)
        }
        Err(running) => json(StatusCode::CONFLICT, &job_json(&running)),
    }
}

/// `GET /api/jobs`: every kept job, oldest first.
pub fn list(jobs: &JobRegistry) -> Response<Body> {
    let all: Vec<Value> = jobs.all().iter().map(job_json).collect();
    json(StatusCode::OK, &json!(all))
}

/// `GET /api/jobs/{id}`: one job, 404 if unknown.
pub fn get(jobs: &JobRegistry, id: &str) -> Response<Body> {
    match id.parse::<u64>().ok().and_then(|id| jobs.get(id)) {
        Some(j) => json(StatusCode::OK, &job_json(&j)),
        None => text(StatusCode::NOT_FOUND, format!("no job {id:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let e = parse_request(br#"{"package":"x","url":"file:///etc/passwd"}"#).unwrap_err();
        assert_eq!(e, RequestError::Unknown("url".into()));
        assert_eq!(
            e.to_string(),
            "unknown field \"url\" (fields: package, method, uri)"
        );
    }

    #[test]
    fn job_json_has_the_codes_and_names() {
        let mut j = JobStatus::new(7, "ep", "p", Method::Push);
        j.phase = crate::firmware::jobs::JobPhase::Failed;
        j.result = Some(UpdateResult::IntegrityFailure);
        let v = job_json(&j);
        assert_eq!(v["phase"], "FAILED");
        assert_eq!(v["result"], 5);
        assert_eq!(v["state"], Value::Null);
        assert_eq!(v["method"], "push");
    }

    #[test]
    fn request_bodies() {
        let p = parse_request(br#"{"package":"a.suit","method":"push"}"#).unwrap();
        assert_eq!(
            (p.package.as_str(), p.method, p.uri),
            ("a.suit", Method::Push, None)
        );
        let p = parse_request(br#"{"package":"a","uri":"http://x/y"}"#).unwrap();
        assert_eq!(
            (p.method, p.uri.as_deref()),
            (Method::Pull, Some("http://x/y"))
        );
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"method\":\"pull\"}",
            b"{\"package\":3}",
            b"{\"package\":\"\"}",
            b"{\"package\":\"a\",\"method\":\"fax\"}",
            b"{\"package\":\"a\",\"method\":1}",
            b"{\"package\":\"a\",\"method\":\"push\",\"uri\":\"coap://x\"}",
            b"{\"package\":\"a\",\"uri\":7}",
            b"{\"package\":\"a\",\"methd\":\"push\"}",
            b"{\"package\":\"x\",\"uri\":\"file:///etc/passwd\"}",
        ] {
            assert!(
                parse_request(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

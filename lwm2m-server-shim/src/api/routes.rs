//! Leshan server-demo compatible REST API (its servlets under `/api`): the HTTP routes. Client
//! operations live in [`crate::api::clients`], the response shapes and status mapping in
//! [`crate::api::leshan_response`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::api::clients::{self as client_api, ClientCall};
use crate::api::http_server::{
    json, percent_decode, query_pairs, read_body, text, Body, HttpService,
};
use crate::api::object_specs;
use crate::api::queue::{RequestQueue, WaitingCall};
use crate::api::registration_json::registration_json_with;
use crate::api::server_info::ServerInfo;
use crate::api::{
    event_stream, firmware as firmware_api, packages as package_http, security as security_api,
};
use crate::content::models::ObjectModels;
use crate::firmware::jobs::JobRegistry;
use crate::server::shim::Shim;

/// Largest request body accepted (a hex-encoded firmware push doubles the image size).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Largest body of the small JSON endpoints (`POST /api/clients/{ep}/firmware`,
/// `PUT /api/security/clients`): one small object each; more is refused with 413.
pub const SMALL_JSON_BODY: usize = 64 * 1024;

/// The HTTP service answering the REST API, the event stream and HTTP package downloads.
pub struct RestApi {
    shim: Arc<Shim>,
    jobs: Arc<JobRegistry>,
    server: ServerInfo,
    models: Arc<ObjectModels>,
    queue: Arc<RequestQueue>,
}

impl RestApi {
    /// The API over a running server core, its firmware jobs, what the server resource
    /// reports about the listeners and the object models it shows.
    pub fn new(
        shim: Arc<Shim>,
        jobs: Arc<JobRegistry>,
        server: ServerInfo,
        models: Arc<ObjectModels>,
    ) -> Self {
        Self {
            shim,
            jobs,
            server,
            models,
            queue: Arc::new(RequestQueue::default()),
        }
    }

    /// The calls waiting for sleeping queue-mode clients; its [`RequestQueue::run`] task sends
    /// them when their clients wake up.
    pub fn queue(&self) -> Arc<RequestQueue> {
        self.queue.clone()
    }
}

impl HttpService for RestApi {
    fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(async move { route(&self, req).await })
    }
}

fn path_segments(path: &str) -> Option<Vec<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        // '+' is literal in a path; only %XX escapes are decoded.
        .map(|s| percent_decode(&s.replace('+', "%2B")))
        .collect()
}

async fn route(api: &RestApi, req: Request<Incoming>) -> Response<Body> {
    let (shim, jobs) = (&api.shim, &api.jobs);
    let method = req.method().clone();
    let Some(segs) = path_segments(req.uri().path()) else {
        return text(StatusCode::BAD_REQUEST, "undecodable path");
    };
    let query = query_pairs(req.uri().query());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["api", "clients"]) => client_api::list(shim.clone()),
        (&Method::GET, ["api", "clients", ep]) => match shim.store.get_by_endpoint(ep) {
            Some(r) => json(StatusCode::OK, &registration_json_with(&r, &shim.presence)),
            None => unknown_client(ep),
        },
        (&Method::POST, ["api", "clients", ep, "firmware"]) => {
            let ep = ep.to_string();
            match read_body(req.into_body(), SMALL_JSON_BODY).await {
                Ok(b) => firmware_api::start(shim, jobs, &ep, &b),
                Err(e) => text(e.status(), e.to_string()),
            }
        }
        (&Method::GET, ["api", "server", "stats"]) => json(StatusCode::OK, &server_stats(shim)),
        (&Method::GET, ["api", "objectspecs", ep]) => match shim.store.get_by_endpoint(ep) {
            Some(r) => object_specs::for_client(&api.models, &r),
            None => unknown_client(ep),
        },
        (&Method::GET, ["api", "server", "security"]) => api.server.security(),
        (&Method::GET, ["api", "server", "endpoint"]) => api.server.endpoint(),
        (&Method::GET, ["api", "jobs"]) => firmware_api::list(jobs),
        (&Method::GET, ["api", "jobs", id]) => firmware_api::get(jobs, id),
        (_, ["api", "clients", ep, rest @ ..]) => {
            let Some(reg) = shim.store.get_by_endpoint(ep) else {
                return unknown_client_operation(&method, ep);
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
                Err(e) => return text(e.status(), e.to_string()),
            };
            let waiting = WaitingCall {
                rest,
                method,
                query,
                content_type: ctype,
                body,
            };
            if RequestQueue::must_wait(shim, &reg.endpoint, &waiting) {
                return api.queue.keep(&reg.endpoint, waiting);
            }
            let call = ClientCall {
                shim,
                reg: &reg,
                method: &waiting.method,
                query: &waiting.query,
                content_type: &waiting.content_type,
                body: &waiting.body,
            };
            match call.run(&waiting.rest).await {
                Ok(r) => r,
                Err(e) => text(e.status(), e.to_string()),
            }
        }
        (&Method::GET, ["api", "event"]) => {
            let ep = query
                .iter()
                .find(|(k, _)| k == "ep")
                .map(|(_, v)| v.clone());
            event_stream::open(&shim.events, jobs, &api.queue.events, ep)
        }
        (&Method::GET, ["api", "packages"]) => package_http::list(&shim.packages),
        (&Method::GET | &Method::HEAD, ["api", "packages", name] | ["fw", name]) => {
            package_http::download(&shim.packages, name, &method, req.headers())
        }
        (&Method::PUT | &Method::POST, ["api", "packages", name]) => {
            let name = name.to_string();
            match read_body(req.into_body(), MAX_BODY).await {
                Ok(b) => package_http::upload(&shim.packages, &name, &b),
                Err(e) => text(e.status(), e.to_string()),
            }
        }
        (&Method::DELETE, ["api", "packages", name]) => package_http::remove(&shim.packages, name),
        (&Method::GET, ["api", "security", "clients"]) => {
            security_api::list(shim.security.as_ref())
        }
        (&Method::PUT, ["api", "security", "clients"]) => {
            match read_body(req.into_body(), SMALL_JSON_BODY).await {
                Ok(b) => security_api::put(shim, &b),
                Err(e) => text(e.status(), e.to_string()),
            }
        }
        (&Method::DELETE, ["api", "security", "clients", ep]) => security_api::remove(shim, ep),
        _ => text(StatusCode::NOT_FOUND, "no such resource"),
    }
}

/// `GET /api/server/stats`: registrations and the coaps listener's sessions, handshakes in
/// progress and refused handshakes (`dtls` is null without a coaps listener), for operators
/// watching for devices with wrong keys.
fn server_stats(shim: &Shim) -> Value {
    let dtls = shim
        .coaps()
        .and_then(|c| c.transport().dtls_stats())
        .map(|s| {
            serde_json::json!({
                "sessions": s.sessions,
                "handshakes": s.handshakes,
                "refusedHandshakes": s.refused,
            })
        });
    serde_json::json!({
        "registrations": shim.store.all().len(),
        "dtls": dtls,
    })
}

fn unknown_client(ep: &str) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        format!("no registered client with id '{ep}'"),
    )
}

/// An operation on a client that is not registered. Leshan's ClientServlet words it "No
/// registered client ..." for a Read, Discover, Write or Write-Attributes and "no registered
/// client ..." for the others; scripts that match the text see the same here.
fn unknown_client_operation(method: &Method, ep: &str) -> Response<Body> {
    if matches!(*method, Method::GET | Method::PUT) {
        text(
            StatusCode::BAD_REQUEST,
            format!("No registered client with id '{ep}'"),
        )
    } else {
        unknown_client(ep)
    }
}

//! `GET /api/event[?ep=<endpoint>]`: server-sent events in Leshan's EventServlet format. The
//! server's events (REGISTRATION, UPDATED, DEREGISTRATION, NOTIFICATION, single or
//! composite) and the firmware
//! jobs' (FIRMWARE) and the answers to calls that waited for a sleeping client
//! (REQUEST_RESPONSE) are framed here, in the JSON shapes Leshan's REST API uses.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::api::firmware::job_json;
use crate::api::http_server::Body;
use crate::api::queue::DelayedResponse;
use crate::api::registration_json::{registration_json, update_json};
use crate::content::node_json::{composite_json, node_json};
use crate::firmware::jobs::{JobRegistry, JobStatus};
use crate::server::events::{EventBus, ServerEvent};

/// The SSE `data` JSON of a server event, shaped as Leshan's EventServlet sends it.
pub fn server_event_data(e: &ServerEvent) -> Value {
    match e {
        ServerEvent::Registration(r) | ServerEvent::Deregistration(r) => registration_json(r),
        ServerEvent::Awake(ep) | ServerEvent::Sleeping(ep) => json!({ "ep": ep }),
        ServerEvent::Updated {
            registration,
            update,
        } => json!({
            "registration": registration_json(registration),
            "update": update_json(registration, update),
        }),
        ServerEvent::Notification {
            endpoint,
            path,
            node,
            ..
        } => json!({
            "ep": endpoint,
            "kind": "single",
            "res": path.to_string(),
            "val": node_json(node, path),
        }),
        ServerEvent::CompositeNotification {
            endpoint,
            paths,
            content,
            ..
        } => json!({
            "ep": endpoint,
            "kind": "composite",
            "val": composite_json(content),
            "paths": paths.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
    }
}

/// One `text/event-stream` record (W3C Server-Sent Events, "event" and "data" fields).
pub fn sse_record(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The record of a server event.
fn server_record(e: &ServerEvent) -> String {
    sse_record(e.name(), &server_event_data(e))
}

/// The FIRMWARE record of a job change.
fn firmware_record(j: &JobStatus) -> String {
    sse_record("FIRMWARE", &job_json(j))
}

/// What a subscriber loop does with one received item.
enum Next {
    Send(String),
    Skip,
    End,
}

fn next<T>(
    r: Result<Arc<T>, broadcast::error::RecvError>,
    endpoint: Option<&str>,
    ep_of: impl Fn(&T) -> &str,
    frame: impl Fn(&T) -> String,
) -> Next {
    match r {
        Ok(e) if endpoint.is_some_and(|ep| ep != ep_of(&e)) => Next::Skip,
        Ok(e) => Next::Send(frame(&e)),
        Err(broadcast::error::RecvError::Lagged(n)) => {
            tracing::warn!(lost = n, "event stream subscriber too slow");
            Next::Skip
        }
        Err(broadcast::error::RecvError::Closed) => Next::End,
    }
}

/// Opens an event stream; events for other endpoints are filtered out when `endpoint` is set.
/// The stream lives until the HTTP client goes away.
pub fn open(
    bus: &EventBus<ServerEvent>,
    jobs: &JobRegistry,
    delayed: &EventBus<DelayedResponse>,
    endpoint: Option<String>,
) -> Response<Body> {
    let mut events = bus.subscribe();
    let mut job_events = jobs.subscribe();
    let mut delayed_events = delayed.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        // A comment line first, so clients see the stream is live before any event.
        if tx
            .send(Bytes::from_static(b": connected\n\n"))
            .await
            .is_err()
        {
            return;
        }
        let ep = endpoint.as_deref();
        loop {
            // Biased, server events first: a REQUEST_RESPONSE (or a job's FIRMWARE change) that
            // follows a server event (AWAKE, a notification) is published after it, so when both
            // are ready the server event is the earlier one. Unbiased, select! picked at random
            // and a loaded machine streamed a kept call's answer before the AWAKE that sent it.
            let step = tokio::select! {
                biased;
                ev = events.recv() => next(ev, ep, ServerEvent::endpoint, server_record),
                ev = job_events.recv() => next(ev, ep, |j: &JobStatus| &j.ep, firmware_record),
                ev = delayed_events.recv() => next(
                    ev,
                    ep,
                    |d: &DelayedResponse| &d.endpoint,
                    |d| sse_record("REQUEST_RESPONSE", &d.data),
                ),
                () = tx.closed() => Next::End,
            };
            match step {
                Next::Send(record) => {
                    if tx.send(Bytes::from(record)).await.is_err() {
                        return;
                    }
                }
                Next::Skip => {}
                Next::End => return,
            }
        }
    });
    let mut r = Response::new(Body::Stream(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

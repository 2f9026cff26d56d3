//! `GET /api/event[?ep=<endpoint>]`: server-sent events in Leshan's EventServlet format.

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use tokio::sync::{broadcast, mpsc};

use crate::api::http_server::Body;
use crate::server::events::EventBus;

/// Opens an event stream; events for other endpoints are filtered out when `endpoint` is set.
/// The stream lives until the HTTP client goes away.
pub fn open(bus: &EventBus, endpoint: Option<String>) -> Response<Body> {
    let mut events = bus.subscribe();
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
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(e) => {
                        if endpoint.as_deref().is_some_and(|ep| ep != e.endpoint()) {
                            continue;
                        }
                        if tx.send(Bytes::from(e.to_sse())).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "event stream subscriber too slow");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tx.closed() => return,
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

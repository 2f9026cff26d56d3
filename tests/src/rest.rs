//! A small client for a Leshan-style REST API and its server-sent event stream, shared by the
//! tests that drive our shim and the ones that drive Eclipse Leshan's demo server: the same
//! calls against either server.

use std::io::BufRead;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// HTTP calls against one REST base URL (`http://127.0.0.1:PORT`).
pub struct Rest {
    /// `http://host:port` without a trailing slash.
    pub base: String,
    agent: ureq::Agent,
}

impl Rest {
    /// A client for `base`; every call gives up after `timeout`.
    pub fn new(base: String, timeout: Duration) -> Self {
        Self {
            base,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .build()
                .into(),
        }
    }

    fn call(req: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        match Self::try_call(req) {
            Ok(r) => r,
            Err(e) => panic!("HTTP exchange failed: {e}"),
        }
    }

    fn try_call(
        req: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Value), ureq::Error> {
        let mut resp = req?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()?;
        // A body that is not JSON (an error text) comes back as a JSON string, for messages.
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok((status, value))
    }

    /// GET `path`; the status and the JSON body (a string when the body is not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        Self::call(self.agent.get(format!("{}{path}", self.base)).call())
    }

    /// GET `path`, or the transport error (for readiness probes of a starting server).
    pub fn try_get(&self, path: &str) -> Result<(u16, Value), ureq::Error> {
        Self::try_call(self.agent.get(format!("{}{path}", self.base)).call())
    }

    /// PUT a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::call(
            self.agent
                .put(format!("{}{path}", self.base))
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes()),
        )
    }

    /// PUT without a body (Write-Attributes).
    pub fn put_empty(&self, path: &str) -> (u16, Value) {
        Self::call(
            self.agent
                .put(format!("{}{path}", self.base))
                .send(&b""[..]),
        )
    }

    /// PUT raw bytes as `content_type` (package uploads).
    pub fn put_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        Self::call(
            self.agent
                .put(format!("{}{path}", self.base))
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// POST raw bytes (Execute, Observe).
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, Value) {
        Self::call(self.agent.post(format!("{}{path}", self.base)).send(body))
    }

    /// POST a JSON body (Create).
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::call(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes()),
        )
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        Self::call(self.agent.delete(format!("{}{path}", self.base)).call())
    }

    /// Server-sent events of `/api/event?ep=EP` (every endpoint's when `ep` is empty) as
    /// (event, data) pairs, read on a thread; returns once the stream is open (or after 10 s).
    pub fn events(&self, ep: &str) -> Events {
        let (tx, rx) = mpsc::channel();
        let url = match ep {
            "" => format!("{}/api/event", self.base),
            ep => format!("{}/api/event?ep={ep}", self.base),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let Ok(resp) = agent.get(&url).header("Accept", "text/event-stream").call() else {
                return;
            };
            let _ = ready_tx.send(());
            let reader = std::io::BufReader::new(resp.into_body().into_reader());
            let mut event = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    let v = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                    if tx.send((event.clone(), v)).is_err() {
                        return;
                    }
                }
            }
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        Events { rx }
    }
}

/// An open event stream (see [`Rest::events`]).
pub struct Events {
    /// (event name, JSON data) in arrival order.
    pub rx: Receiver<(String, Value)>,
}

impl Events {
    /// Waits up to `limit` for an event named one of `names` whose data satisfies `pred`; the
    /// events before it are skipped. Panics with the events seen when none arrives.
    pub fn wait_for(
        &self,
        names: &[&str],
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((event, data)) => {
                    if names.contains(&event.as_str()) && pred(&data) {
                        return data;
                    }
                    if event != "COAPLOG" {
                        seen.push(format!("{event} {data}"));
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no {names:?} event within {limit:?}; other events seen: {seen:#?}")
                }
            }
        }
    }
}

//! `update --server URL`: the campaign through a shim that is already running, over its REST
//! API: the package is uploaded (`PUT /api/packages/{name}`), one firmware job is started per
//! device (`POST /api/clients/{ep}/firmware`) and followed (`GET /api/jobs/{id}`) to its end.
//! The running shim's settings apply (its request timeout, `--max-active-jobs`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lwm2m_server_shim::firmware::campaign;
use lwm2m_server_shim::firmware::jobs::{JobPhase, JobStatus, Method};
use serde_json::{json, Value};

use crate::cli::campaign_view;

/// How often jobs and registrations are polled.
const POLL: Duration = Duration::from_millis(500);

/// What to update, as the command line gave it.
pub struct Campaign<'a> {
    /// The named endpoints (empty with `all`).
    pub endpoints: &'a [String],
    /// Update every registered device once `min_devices` are registered.
    pub all: bool,
    /// Devices to wait for with `all`.
    pub min_devices: usize,
    /// How long to wait for registrations.
    pub wait: Duration,
    /// Package name (the file name) and bytes.
    pub package: (&'a str, &'a [u8]),
    /// Pull or push.
    pub method: Method,
    /// Package URI to write instead of the shim's own (pull only).
    pub uri: Option<&'a str>,
}

/// The REST API of a running shim.
struct Api {
    base: String,
    agent: ureq::Agent,
}

/// A path segment with everything but unreserved characters percent-encoded (RFC 3986 2.3).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Api {
    fn new(url: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into(),
        }
    }

    /// One exchange: (status, body text), or why the shim could not be reached.
    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: ureq::Error| format!("cannot reach the shim at {}: {e}", self.base);
        let resp = match (method, body) {
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("content-type", "application/octet-stream")
                .send(b),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b),
            _ => self.agent.get(&url).call(),
        };
        let mut resp = resp.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(unreachable)?;
        Ok((status, text))
    }

    fn json(&self, path: &str) -> Result<(u16, Value), String> {
        let (status, text) = self.call("GET", path, None)?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// Waits for the devices to register; returns the endpoints to update.
fn wait_for_devices(api: &Api, c: &Campaign) -> Result<Vec<String>, String> {
    let until = Instant::now() + c.wait;
    loop {
        let ready = if c.all {
            let (_, all) = api.json("/api/clients")?;
            let names: Vec<String> = all
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["endpoint"].as_str().map(str::to_owned))
                .collect();
            (names.len() >= c.min_devices.max(1)).then_some(names)
        } else {
            let mut missing = Vec::new();
            for ep in c.endpoints {
                if api
                    .call("GET", &format!("/api/clients/{}", segment(ep)), None)?
                    .0
                    != 200
                {
                    missing.push(ep.as_str());
                }
            }
            if missing.is_empty() {
                Some(c.endpoints.to_vec())
            } else if Instant::now() >= until {
                return Err(format!(
                    "not registered within {} s: {}",
                    c.wait.as_secs(),
                    missing.join(", ")
                ));
            } else {
                None
            }
        };
        if let Some(r) = ready {
            return Ok(r);
        }
        if Instant::now() >= until {
            return Err(format!(
                "fewer than {} devices registered within {} s",
                c.min_devices.max(1),
                c.wait.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// A job as `GET /api/jobs/{id}` shows it, for the final table; `phase` is the JSON's.
fn job_status(v: &Value, method: Method) -> JobStatus {
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    let mut j = JobStatus::new(
        v["id"].as_u64().unwrap_or(0),
        v["ep"].as_str().unwrap_or_default(),
        v["package"].as_str().unwrap_or_default(),
        method,
    );
    j.phase = if v["phase"] == JobPhase::Succeeded.as_str() {
        JobPhase::Succeeded
    } else {
        JobPhase::Failed
    };
    j.state = v["state"].as_i64().and_then(campaign::state_of);
    j.result = v["result"].as_i64().and_then(campaign::result_of);
    j.error = text("error");
    j.firmware_version = text("firmwareVersion");
    j.pkg_version = text("pkgVersion");
    j
}

/// Runs the campaign against the shim at `url`.
pub fn run(url: &str, c: &Campaign) -> ExitCode {
    match drive(&Api::new(url), c) {
        Ok(jobs) => {
            campaign_view::print_table(&jobs);
            if jobs.iter().all(|j| j.phase == JobPhase::Succeeded) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => crate::fail(e),
    }
}

fn drive(api: &Api, c: &Campaign) -> Result<Vec<JobStatus>, String> {
    let (name, bytes) = c.package;
    let (status, body) = api.call(
        "PUT",
        &format!("/api/packages/{}", segment(name)),
        Some(bytes),
    )?;
    if status != 201 {
        return Err(format!(
            "the shim at {} refused the package: {status} {body}",
            api.base
        ));
    }
    eprintln!(
        "update drives the shim at {} (package {name} uploaded); waiting for devices...",
        api.base
    );
    let endpoints = wait_for_devices(api, c)?;
    let mut request = json!({"package": name, "method": c.method.as_str()});
    if let Some(uri) = c.uri {
        request["uri"] = json!(uri);
    }
    let request = request.to_string();
    // (endpoint, job id, last phase seen, final JSON).
    let mut jobs: Vec<(String, Option<u64>, String, Value)> = Vec::new();
    for ep in &endpoints {
        let path = format!("/api/clients/{}/firmware", segment(ep));
        let (status, body) = api.call("POST", &path, Some(request.as_bytes()))?;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match (status, v["id"].as_u64()) {
            (202, Some(id)) => jobs.push((ep.clone(), Some(id), String::new(), v)),
            _ => {
                let error = format!("job refused: {status} {body}");
                let v = json!({"ep": ep, "package": name, "phase": "FAILED", "error": error});
                jobs.push((ep.clone(), None, "FAILED".into(), v));
            }
        }
    }
    loop {
        let mut running = 0;
        for (ep, id, seen, last) in &mut jobs {
            let Some(id) = *id else { continue };
            if seen == "SUCCEEDED" || seen == "FAILED" {
                continue;
            }
            let (_, v) = api.json(&format!("/api/jobs/{id}"))?;
            let phase = v["phase"].as_str().unwrap_or_default().to_string();
            if phase != *seen {
                eprintln!("{ep:>16}  {phase}");
                *seen = phase;
            }
            *last = v;
            running += usize::from(seen != "SUCCEEDED" && seen != "FAILED");
        }
        if running == 0 {
            break;
        }
        std::thread::sleep(POLL);
    }
    Ok(jobs
        .iter()
        .map(|(_, _, _, v)| job_status(v, c.method))
        .collect())
}

//! What every case works with: the device-management handle of the device under test (looked
//! up again for every request, so a device that rebooted onto another port is still reached),
//! requests whose failures become [`Abort`]s, decoding, and the event bus.

use std::sync::Arc;
use std::time::Duration;

use lwm2m_client::codec::{ContentFormat, Node, Path, Value};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::hosts::Hosts;
use super::packages::Packages;
use super::readings::{FirmwareReading, Formats};
use super::verdict::{Abort, Step};
use super::ConformanceConfig;
use crate::coap::endpoint::{ExchangeError, ObservationStream};
use crate::content;
use crate::firmware::campaign::single_value;
use crate::firmware::jobs::JobRegistry;
use crate::server::events::ServerEvent;
use crate::server::registration::store::Registration;
use crate::server::requests::{DeviceHandle, DmError, DmResponse};
use crate::server::shim::Shim;

/// The run's shared state.
pub(crate) struct Ctx<'a> {
    pub shim: &'a Arc<Shim>,
    /// Where the update cases' firmware jobs are recorded (and published).
    pub jobs: &'a JobRegistry,
    pub ep: &'a str,
    pub cfg: &'a ConformanceConfig,
    pub formats: Formats,
    /// The firmware object's capabilities, when the device announces Object 5 and a firmware
    /// case runs.
    pub firmware: Option<FirmwareReading>,
    pub packages: Packages,
    pub hosts: Hosts,
}

/// Decodes a successful answer for `path`: without a Content-Format a single resource is
/// plain text, anything larger TLV (LwM2M 1.0's defaults).
pub(crate) fn decode(path: &Path, r: &DmResponse) -> Result<Node, String> {
    let fallback = if path.resource_id().is_some() {
        ContentFormat::Text
    } else {
        ContentFormat::Tlv
    };
    let cf = r.content_format.unwrap_or(fallback);
    content::decode(cf, path, &r.payload)
        .map_err(|e| format!("{path} as content format {}: {e}", cf.number()))
}

/// The single value of a decoded resource.
pub(crate) fn value_of(node: &Node) -> Option<Value> {
    single_value(node).cloned()
}

/// A value for the evidence: strings quoted, numbers bare.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) | Value::Time(i) => i.to_string(),
        Value::Unsigned(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// A numeric value as f64 (for gt/lt/st).
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) | Value::Time(i) => Some(*i as f64),
        Value::Unsigned(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Ctx<'_> {
    /// Per-exchange timeout.
    pub fn timeout(&self) -> Duration {
        self.cfg.campaign.timeouts.request
    }

    /// The device's current registration.
    pub fn registration(&self) -> Step<Registration> {
        self.shim
            .store
            .get_by_endpoint(self.ep)
            .ok_or_else(|| Abort::Silent(format!("{} is no longer registered", self.ep)))
    }

    /// A device-management handle at its current address.
    pub fn device(&self) -> Step<DeviceHandle> {
        let reg = self.registration()?;
        self.shim
            .device(&reg, self.timeout())
            .ok_or_else(|| Abort::Runner("no CoAP endpoint for the device's transport".into()))
    }

    /// Whether the device is a queue-mode client that sleeps now (LwM2M core TS 1.1 §6.5).
    pub fn sleeping(&self) -> bool {
        self.shim.presence.is_sleeping(self.ep)
    }

    /// Returns once the device may be sent a request: at once unless it is a queue-mode
    /// client that sleeps, else when it wakes up (any message from it: an Update, a
    /// notification). It owes an Update before its registration runs out, so the wait ends
    /// there, a tolerance later, or after [`ConformanceConfig::wake_within`] if sooner: a
    /// device still asleep then is silent.
    pub async fn until_awake(&self) -> Step<()> {
        let mut rx = self.events();
        if !self.sleeping() {
            return Ok(());
        }
        let reg = self.registration()?;
        let expiry = reg.last_update + Duration::from_secs(u64::from(reg.lifetime_s));
        let lifetime_left = expiry
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            + self.cfg.tolerance;
        let capped = lifetime_left > self.cfg.wake_within;
        let left = lifetime_left.min(self.cfg.wake_within);
        tracing::info!(ep = %self.ep, ?left, "conformance waits for the queue-mode device to wake up");
        let until = Instant::now() + left;
        while self.sleeping() {
            let within = until.saturating_duration_since(Instant::now());
            let woke = self
                .wait_event(&mut rx, within, |e| {
                    matches!(
                        e,
                        ServerEvent::Awake(_)
                            | ServerEvent::Registration(_)
                            | ServerEvent::Deregistration(_)
                    )
                })
                .await;
            if self.registration().is_err() || (woke.is_none() && self.sleeping()) {
                return Err(Abort::Silent(if capped && self.registration().is_ok() {
                    format!(
                        "the queue-mode device did not wake up within {} s (the wake-up wait; \
                         its lifetime is {} s)",
                        self.cfg.wake_within.as_secs(),
                        reg.lifetime_s
                    )
                } else {
                    format!(
                        "the queue-mode device slept through its lifetime ({} s) without an \
                         Update",
                        reg.lifetime_s
                    )
                }));
            }
        }
        Ok(())
    }

    /// Sends one request through `send`, to a device that is awake: a queue-mode client that
    /// sleeps is waited for, and one that leaves the request unanswered because it fell
    /// asleep sooner than the server assumed (the shim then takes it for asleep) is asked
    /// again once it wakes up, as a server holds requests for a sleeping client.
    async fn request<T, F, Fut>(&self, op: &str, send: F) -> Step<T>
    where
        F: Fn(DeviceHandle) -> Fut,
        Fut: std::future::Future<Output = Result<T, DmError>>,
    {
        self.until_awake().await?;
        let answer = match send(self.device()?).await {
            Err(e @ DmError::Exchange(ExchangeError::Timeout)) if self.sleeping() => {
                match (
                    Abort::from_dm(op, self.timeout(), e),
                    self.until_awake().await,
                ) {
                    (Abort::Silent(unanswered), Err(Abort::Silent(slept))) => {
                        return Err(Abort::Silent(format!("{unanswered}; then {slept}")))
                    }
                    (_, Err(other)) => return Err(other),
                    (_, Ok(())) => send(self.device()?).await,
                }
            }
            other => other,
        };
        answer.map_err(|e| Abort::from_dm(op, self.timeout(), e))
    }

    /// Read.
    pub async fn read(&self, path: &Path, accept: Option<ContentFormat>) -> Step<DmResponse> {
        let op = match accept {
            Some(cf) => format!("Read {path} (format {})", cf.number()),
            None => format!("Read {path}"),
        };
        self.request(&op, |d| async move { d.read(path, accept).await })
            .await
    }

    /// Read and decode; the node is `Err` with the reason when the answer is no success or
    /// does not decode.
    pub async fn read_node(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Step<(DmResponse, Result<Node, String>)> {
        let r = self.read(path, accept).await?;
        let node = if r.is_success() {
            decode(path, &r)
        } else {
            Err(format!("Read {path} -> {}", r.code_string()))
        };
        Ok((r, node))
    }

    /// Reads a single resource's value in plain text (`None` when refused or undecodable).
    pub async fn read_value(&self, path: &Path) -> Step<Option<Value>> {
        let (_, node) = self.read_node(path, Some(ContentFormat::Text)).await?;
        Ok(node.ok().as_ref().and_then(value_of))
    }

    /// Write (replace or partial update).
    pub async fn write(
        &self,
        path: &Path,
        replace: bool,
        cf: ContentFormat,
        payload: &[u8],
    ) -> Step<DmResponse> {
        self.request(&format!("Write {path}"), |d| async move {
            d.write(path, replace, cf, payload).await
        })
        .await
    }

    /// Writes one resource's value in plain text.
    pub async fn write_text(&self, path: &Path, value: &str) -> Step<DmResponse> {
        self.write(path, true, ContentFormat::Text, value.as_bytes())
            .await
    }

    /// Execute.
    pub async fn execute(&self, path: &Path) -> Step<DmResponse> {
        self.request(&format!("Execute {path}"), |d| async move {
            d.execute(path, b"").await
        })
        .await
    }

    /// Write-Attributes (`("pmin", "2")`; an empty value removes the attribute).
    pub async fn write_attributes(&self, path: &Path, attrs: &[(&str, &str)]) -> Step<DmResponse> {
        let attrs: Vec<(String, String)> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let attrs = &attrs;
        self.request(&format!("Write-Attributes {path}"), |d| async move {
            d.write_attributes(path, attrs).await
        })
        .await
    }

    /// Discover.
    pub async fn discover(&self, path: &Path) -> Step<DmResponse> {
        self.request(&format!("Discover {path}"), |d| async move {
            d.discover(path).await
        })
        .await
    }

    /// Create.
    pub async fn create(&self, path: &Path, cf: ContentFormat, payload: &[u8]) -> Step<DmResponse> {
        self.request(&format!("Create {path}"), |d| async move {
            d.create(path, cf, payload).await
        })
        .await
    }

    /// Delete.
    pub async fn delete(&self, path: &Path) -> Step<DmResponse> {
        self.request(&format!("Delete {path}"), |d| async move {
            d.delete(path).await
        })
        .await
    }

    /// Observe: the first answer and, when the device accepted, the observation.
    pub async fn observe(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Step<(DeviceHandle, DmResponse, Option<ObservationStream>)> {
        self.request(&format!("Observe {path}"), |d| async move {
            let (first, stream) = d.observe(path, accept).await?;
            Ok((d, first, stream))
        })
        .await
    }

    /// The shim's events from now on.
    pub fn events(&self) -> broadcast::Receiver<Arc<ServerEvent>> {
        self.shim.events.subscribe()
    }

    /// Waits up to `within` for an event of this device that `pred` accepts.
    pub async fn wait_event(
        &self,
        rx: &mut broadcast::Receiver<Arc<ServerEvent>>,
        within: Duration,
        mut pred: impl FnMut(&ServerEvent) -> bool,
    ) -> Option<Arc<ServerEvent>> {
        let until = Instant::now() + within;
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = tokio::time::sleep_until(until) => return None,
            };
            match ev {
                Ok(ev) if ev.endpoint() == self.ep && pred(&ev) => return Some(ev),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

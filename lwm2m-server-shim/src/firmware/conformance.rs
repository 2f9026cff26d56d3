//! OMA ETS firmware-update test cases (reference section 4.1, 1.0-int-751..780) driven from the
//! server side against any registered client: each case resets Object 5, performs the ETS
//! steps through device-management requests or a campaign run, and records a verdict with the
//! evidence (codes, State, Update Result, versions) that decided it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lwm2m_client::codec::{ContentFormat, Node, Path, ResourceValue, Value};
use object5::status::{State, UpdateResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::content;
use crate::firmware::campaign::{self, resource, CampaignConfig, UpdatePlan};
use crate::firmware::jobs::{JobRegistry, Method, Phase};
use crate::packages::test_packages::{fresh_sequence, Kind, Signer};
use crate::server::events::ServerEvent;
use crate::server::requests::{Device, DmResponse};
use crate::server::shim::Shim;

/// A case's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The device behaved as the ETS expects.
    Pass,
    /// It did not.
    Fail,
}

impl Verdict {
    /// `PASS` / `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// ETS id, e.g. `1.0-int-770`.
    pub id: &'static str,
    /// ETS title.
    pub title: &'static str,
    /// Pass or fail.
    pub verdict: Verdict,
    /// What was observed.
    pub evidence: String,
}

/// Cases this runner drives, in ETS order.
pub const CASES: [(&str, &str); 15] = [
    ("1.0-int-751", "Querying the readable resources"),
    ("1.0-int-755", "Setting the writable resource Package"),
    ("1.0-int-756", "Setting the writable resource Package URI"),
    ("1.0-int-760", "Basic observation on the firmware object"),
    ("1.0-int-770", "Successful firmware update (CoAP push)"),
    ("1.0-int-771", "Successful firmware update (pull)"),
    (
        "1.0-int-772",
        "Error 1: install without a downloaded package",
    ),
    ("1.0-int-773", "Error 2: shortage of storage"),
    ("1.0-int-774", "Error 3: out of RAM"),
    ("1.0-int-775", "Error 4: connection lost during download"),
    ("1.0-int-776", "Error 5: integrity check failure"),
    ("1.0-int-777", "Error 6: unsupported package type"),
    ("1.0-int-778", "Error 7: invalid URI"),
    ("1.0-int-779", "Error 8: unsuccessful update"),
    ("1.0-int-780", "Error 9: unsupported protocol"),
];

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct ConformanceConfig {
    /// Signs the packages; the device must trust its public key.
    pub signer: Signer,
    /// Campaign timeouts for the update cases.
    pub campaign: CampaignConfig,
    /// How long to wait for a notification (760).
    pub notify_within: Duration,
}

/// Why a step could not be performed (turned into a FAIL with this text).
type Step<T> = Result<T, String>;

struct Runner<'a> {
    shim: &'a Arc<Shim>,
    jobs: &'a JobRegistry,
    ep: &'a str,
    cfg: &'a ConformanceConfig,
    names: Names,
}

/// Package names in the shim's host.
struct Names {
    good_push: String,
    good_pull: String,
    good_version_push: String,
    good_version_pull: String,
    self_test: String,
    too_large: String,
    corrupted: String,
    wrong_class: String,
    not_suit: String,
    /// Valid and newer than anything installed, served cut off in 775.
    cut: String,
}

/// What an Update Result code read from the device means (it may be one Object 5 does not
/// define: the evidence shows the raw code).
fn meaning(code: i64) -> &'static str {
    campaign::result_of(code).map_or("undefined result", UpdateResult::meaning)
}

fn show(r: &DmResponse) -> String {
    r.code_string()
}

impl Runner<'_> {
    fn device(&self) -> Step<Device> {
        let reg = self
            .shim
            .store
            .get_by_endpoint(self.ep)
            .ok_or("device is not registered")?;
        self.shim
            .device(&reg, self.cfg.campaign.timeouts.request)
            .ok_or_else(|| "no CoAP endpoint".to_string())
    }

    async fn state_result(&self) -> Step<(i64, i64)> {
        let d = self.device()?;
        let s = campaign::read_int(&d, &resource(5, 3))
            .await
            .map_err(|e| format!("read /5/0/3: {e}"))?
            .ok_or("/5/0/3 unreadable")?;
        let r = campaign::read_int(&d, &resource(5, 5))
            .await
            .map_err(|e| format!("read /5/0/5: {e}"))?
            .ok_or("/5/0/5 unreadable")?;
        Ok((s, r))
    }

    async fn firmware_version(&self) -> Option<String> {
        let d = self.device().ok()?;
        campaign::read_string(&d, &resource(3, 3))
            .await
            .ok()
            .flatten()
    }

    /// Empty Package URI: back to Idle, Result 0.
    async fn reset(&self) -> Step<DmResponse> {
        let d = self.device()?;
        d.write(&resource(5, 1), true, ContentFormat::Text, b"")
            .await
            .map_err(|e| format!("reset: {e}"))
    }

    /// Polls until the device leaves Downloading (State 1) or `within` passes.
    async fn settle(&self, within: Duration) -> Step<(i64, i64)> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let sr = self.state_result().await?;
            if sr.0 != i64::from(State::Downloading.code()) || tokio::time::Instant::now() >= until
            {
                return Ok(sr);
            }
            tokio::time::sleep(self.cfg.campaign.poll_interval).await;
        }
    }

    async fn push(&self, name: &str) -> Step<DmResponse> {
        let info = self.shim.packages.info(name).map_err(|e| e.to_string())?;
        let len = usize::try_from(info.size).map_err(|e| e.to_string())?;
        let bytes = self
            .shim
            .packages
            .read_range(name, 0, len)
            .map_err(|e| e.to_string())?;
        self.device()?
            .write(&resource(5, 0), true, ContentFormat::Opaque, &bytes)
            .await
            .map_err(|e| format!("push: {e}"))
    }

    async fn write_uri(&self, uri: &str) -> Step<DmResponse> {
        self.device()?
            .write(&resource(5, 1), true, ContentFormat::Text, uri.as_bytes())
            .await
            .map_err(|e| format!("write URI: {e}"))
    }

    fn uri_of(&self, name: &str) -> Step<String> {
        let addr = self
            .shim
            .coap()
            .and_then(|c| c.local_addr().ok())
            .ok_or("no plain CoAP package host")?;
        Ok(campaign::package_uri(addr, name))
    }

    async fn case_751(&self) -> Step<(bool, String)> {
        self.reset().await?;
        let d = self.device()?;
        let path = Path::from_ids(&[5, 0]).map_err(|e| e.to_string())?;
        let r = d
            .read(&path, Some(ContentFormat::Tlv))
            .await
            .map_err(|e| format!("read /5/0: {e}"))?;
        if !r.is_success() {
            return Ok((false, format!("Read /5/0 (TLV) -> {}", show(&r))));
        }
        let cf = r.content_format.unwrap_or(ContentFormat::Tlv);
        let node = content::decode(cf, &path, &r.payload).map_err(|e| e.to_string())?;
        let Node::Instance(inst) = node else {
            return Ok((false, "Read /5/0 did not return an instance".into()));
        };
        let single = |id: u16| {
            inst.resources
                .iter()
                .find(|r| r.id == id)
                .and_then(|r| match &r.value {
                    ResourceValue::Single(Value::Integer(i)) => Some(*i),
                    _ => None,
                })
        };
        let protocols = inst
            .resources
            .iter()
            .find(|r| r.id == 8)
            .map(|r| match &r.value {
                ResourceValue::Multiple(v) => format!(
                    "{:?}",
                    v.iter()
                        .filter_map(|(_, v)| match v {
                            Value::Integer(i) => Some(*i),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                ),
                ResourceValue::Single(v) => format!("{v:?}"),
            });
        let (state, result, delivery) = (single(3), single(5), single(9));
        let ok = state == Some(0) && result == Some(0);
        Ok((
            ok,
            format!(
                "Read /5/0 (TLV) -> {}; State {state:?}, Result {result:?}, protocols /5/0/8 {}, delivery /5/0/9 {delivery:?}",
                show(&r),
                protocols.unwrap_or_else(|| "absent".into())
            ),
        ))
    }

    async fn case_755(&self) -> Step<(bool, String)> {
        let d = self.device()?;
        let w = d
            .write(&resource(5, 0), true, ContentFormat::Opaque, &[0])
            .await
            .map_err(|e| format!("write \\0: {e}"))?;
        let idle = self.state_result().await?;
        let p = self.push(&self.names.good_push).await?;
        let after = self.settle(self.cfg.campaign.timeouts.download).await?;
        let ok = w.is_success() && idle == (0, 0) && p.is_success() && after == (2, 0);
        Ok((
            ok,
            format!(
                "write \\0 -> {}, then State/Result {idle:?}; push -> {}, then {after:?}",
                show(&w),
                show(&p)
            ),
        ))
    }

    async fn case_756(&self) -> Step<(bool, String)> {
        let w = self.reset().await?;
        let idle = self.state_result().await?;
        let uri = self.uri_of(&self.names.good_push)?;
        let u = self.write_uri(&uri).await?;
        let after = self.settle(self.cfg.campaign.timeouts.download).await?;
        let ok = w.is_success() && idle == (0, 0) && u.is_success() && after == (2, 0);
        Ok((
            ok,
            format!(
                "write \"\" -> {}, then {idle:?}; write {uri} -> {}, then {after:?}",
                show(&w),
                show(&u)
            ),
        ))
    }

    async fn case_760(&self) -> Step<(bool, String)> {
        self.reset().await?;
        let d = self.device()?;
        let obj = Path::from_ids(&[5, 0]).map_err(|e| e.to_string())?;
        let attrs = [
            ("pmin".to_string(), "2".to_string()),
            ("pmax".into(), "10".into()),
        ];
        let wa = d
            .write_attributes(&obj, &attrs)
            .await
            .map_err(|e| format!("write-attributes: {e}"))?;
        let mut events = self.shim.events.subscribe();
        let state = resource(5, 3);
        let (first, stream) = d
            .observe(&state, None)
            .await
            .map_err(|e| format!("observe: {e}"))?;
        let initial = campaign::decode_single(&state, &first);
        let Some(stream) = stream else {
            return Ok((
                false,
                format!("Observe /5/0/3 -> {} without Observe", show(&first)),
            ));
        };
        self.shim
            .track_observation(self.ep, state, stream, d.clone(), None);
        let p = self.push(&self.names.good_push).await?;
        let until = tokio::time::Instant::now() + self.cfg.notify_within;
        let mut notified = Vec::new();
        let mut downloaded = false;
        while !downloaded {
            let ev = tokio::select! {
                e = events.recv() => e,
                _ = tokio::time::sleep_until(until) => break,
            };
            if let Ok(ev) = ev {
                if let ServerEvent::Notification {
                    endpoint,
                    path,
                    node,
                    ..
                } = &*ev
                {
                    if endpoint == self.ep && *path == state {
                        let v = campaign::single_value(node).and_then(campaign::as_int);
                        downloaded = v == Some(2);
                        notified.push(v.map_or("?".to_string(), |v| v.to_string()));
                    }
                }
            }
        }
        self.shim.cancel_observation(self.ep, &state);
        let ok = wa.is_success()
            && matches!(initial, Some(Value::Integer(0)))
            && p.is_success()
            && downloaded;
        Ok((
            ok,
            format!(
                "write-attributes pmin=2 pmax=10 -> {}; initial State {initial:?}; push -> {}; notified States {notified:?}",
                show(&wa),
                show(&p)
            ),
        ))
    }

    /// A whole update through the campaign engine; `expect` is the final (State, Result).
    async fn update(
        &self,
        package: &str,
        method: Method,
        uri: Option<String>,
        expect: (i64, i64),
        version_after: Option<&str>,
    ) -> Step<(bool, String)> {
        let before = self.firmware_version().await;
        let plan = UpdatePlan {
            package: package.to_string(),
            method,
            uri,
        };
        let job = self.jobs.create(self.ep, package, method);
        let end =
            campaign::run_update(self.shim, self.jobs, job, &plan, self.cfg.campaign, &|_| {})
                .await;
        let (state, result) = match (end.state, end.result) {
            (Some(s), Some(r)) => (i64::from(s.code()), i64::from(r.code())),
            _ => self.state_result().await?,
        };
        let after = self.firmware_version().await;
        let version_ok = match version_after {
            Some(v) => after.as_deref() == Some(v),
            None => after == before,
        };
        let ok = (state, result) == expect && version_ok;
        Ok((
            ok,
            format!(
                "{} {package}: phase {}, State {state}, Result {result} ({}); /3/0/3 {} -> {}{}",
                method.as_str(),
                end.phase,
                meaning(result),
                before.as_deref().unwrap_or("?"),
                after.as_deref().unwrap_or("?"),
                match (&end.error, end.phase) {
                    (Some(e), Phase::Failed) if (state, result) != expect => format!("; {e}"),
                    _ => String::new(),
                }
            ),
        ))
    }

    /// A download that must end in Idle with `result`.
    async fn failed_download(&self, uri: String, result: i64) -> Step<(bool, String)> {
        self.reset().await?;
        let w = self.write_uri(&uri).await?;
        let after = self.settle(self.cfg.campaign.timeouts.download).await?;
        let ok = after == (0, result);
        Ok((
            ok,
            format!(
                "write {uri} -> {}, then State {}, Result {} ({})",
                show(&w),
                after.0,
                after.1,
                meaning(after.1)
            ),
        ))
    }

    async fn case_772(&self) -> Step<(bool, String)> {
        self.reset().await?;
        let before = self.state_result().await?;
        let r = self
            .device()?
            .execute(&resource(5, 2), b"")
            .await
            .map_err(|e| format!("execute: {e}"))?;
        let after = self.state_result().await?;
        let ok = r.code_string() == "4.05" && before == after;
        Ok((
            ok,
            format!(
                "State/Result {before:?}; Execute /5/0/2 -> {}; then {after:?}",
                show(&r)
            ),
        ))
    }

    async fn case_775(&self) -> Step<(bool, String)> {
        // An HTTP host that sends the first half of a valid package, then drops the
        // connection: what the device sees is a lost connection, not a bad package.
        let name = &self.names.cut;
        let info = self.shim.packages.info(name).map_err(|e| e.to_string())?;
        let half = usize::try_from(info.size / 2).map_err(|e| e.to_string())?;
        let head = self
            .shim
            .packages
            .read_range(name, 0, half)
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let total = info.size;
        let cutter = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
                );
                let _ = s.write_all(header.as_bytes()).await;
                let _ = s.write_all(&head).await;
                let _ = s.flush().await;
                // Dropping the stream cuts the download.
            }
        });
        let out = self
            .failed_download(format!("http://{addr}/fw/cut.suit"), 4)
            .await;
        cutter.abort();
        out
    }

    async fn run_case(&self, id: &str) -> Step<(bool, String)> {
        let n = &self.names;
        match id {
            "1.0-int-751" => self.case_751().await,
            "1.0-int-755" => self.case_755().await,
            "1.0-int-756" => self.case_756().await,
            "1.0-int-760" => self.case_760().await,
            "1.0-int-770" => {
                let v = n.good_version_push.clone();
                self.update(&n.good_push, Method::Push, None, (0, 1), Some(&v))
                    .await
            }
            "1.0-int-771" => {
                let v = n.good_version_pull.clone();
                self.update(&n.good_pull, Method::Pull, None, (0, 1), Some(&v))
                    .await
            }
            "1.0-int-772" => self.case_772().await,
            "1.0-int-773" => self.failed_download(self.uri_of(&n.too_large)?, 2).await,
            "1.0-int-774" => Err("out of RAM cannot be provoked from the server side".into()),
            "1.0-int-775" => self.case_775().await,
            "1.0-int-776" => self.failed_download(self.uri_of(&n.corrupted)?, 5).await,
            "1.0-int-777" => {
                // Signed for another device class, and no SUIT envelope at all.
                let (a, ea) = self
                    .failed_download(self.uri_of(&n.wrong_class)?, 6)
                    .await?;
                let (b, eb) = self.failed_download(self.uri_of(&n.not_suit)?, 6).await?;
                Ok((a && b, format!("other class: {ea}; not SUIT: {eb}")))
            }
            "1.0-int-778" => {
                let missing = self.uri_of("no-such-package.suit")?;
                self.failed_download(missing, 7).await
            }
            "1.0-int-779" => {
                self.update(&n.self_test, Method::Pull, None, (2, 8), None)
                    .await
            }
            "1.0-int-780" => {
                self.failed_download("gopher://127.0.0.1/fw.suit".into(), 9)
                    .await
            }
            _ => Err(format!("unknown case {id}")),
        }
    }
}

/// Why a run could not start.
#[derive(Debug)]
pub enum ConformanceError {
    /// A package could not be built or hosted.
    Package(String),
}

impl std::fmt::Display for ConformanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Package(e) => write!(f, "conformance packages: {e}"),
        }
    }
}

impl std::error::Error for ConformanceError {}

/// Builds and hosts the packages, then runs `cases` (ids from [`CASES`]; all when empty)
/// against `ep`. Case 774 (out of RAM) cannot be provoked from the server and is reported
/// FAIL with that reason only when asked for explicitly.
pub async fn run(
    shim: &Arc<Shim>,
    jobs: &JobRegistry,
    ep: &str,
    cfg: &ConformanceConfig,
    cases: &[String],
) -> Result<Vec<CaseReport>, ConformanceError> {
    let seq = fresh_sequence();
    let tag = seq.to_string();
    let v_push = format!("9.{}.1", seq % 100_000);
    let v_pull = format!("9.{}.2", seq % 100_000);
    // (suffix, kind, version); sequence numbers increase in this order, all newer than
    // anything the device ran before.
    let kinds: [(&str, Kind, &str); 8] = [
        ("push", Kind::Good, &v_push),
        ("pull", Kind::Good, &v_pull),
        ("selftest", Kind::FailsSelfTest, "9.9.9"),
        ("large", Kind::TooLarge, "9.9.8"),
        ("corrupt", Kind::Corrupted, "9.9.7"),
        ("class", Kind::WrongClass, "9.9.6"),
        ("notsuit", Kind::NotSuit, "9.9.5"),
        // Never installed, so a cut-off download of it fails for the cut alone (775).
        ("cut", Kind::Good, "9.9.4"),
    ];
    let builds: Vec<(String, Kind, &str, u64)> = kinds
        .iter()
        .zip(1u64..)
        .map(|((suffix, kind, version), i)| {
            (
                format!("conf-{tag}-{suffix}.suit"),
                *kind,
                *version,
                seq + i,
            )
        })
        .collect();
    for (name, kind, version, s) in &builds {
        let bytes = cfg
            .signer
            .build(*kind, version, *s)
            .map_err(|e| ConformanceError::Package(e.to_string()))?;
        shim.packages
            .store(name, &bytes)
            .map_err(|e| ConformanceError::Package(e.to_string()))?;
    }
    let name = |i: usize| builds.get(i).map(|b| b.0.clone()).unwrap_or_default();
    let runner = Runner {
        shim,
        jobs,
        ep,
        cfg,
        names: Names {
            good_push: name(0),
            good_pull: name(1),
            good_version_push: v_push.clone(),
            good_version_pull: v_pull.clone(),
            self_test: name(2),
            too_large: name(3),
            corrupted: name(4),
            wrong_class: name(5),
            not_suit: name(6),
            cut: name(7),
        },
    };
    let mut out = Vec::new();
    for (id, title) in CASES {
        let asked = cases
            .iter()
            .any(|c| c == id || id.ends_with(&format!("-{c}")));
        if !cases.is_empty() && !asked {
            continue;
        }
        if cases.is_empty() && id == "1.0-int-774" {
            continue;
        }
        let (verdict, evidence) = match runner.run_case(id).await {
            Ok((true, e)) => (Verdict::Pass, e),
            Ok((false, e)) => (Verdict::Fail, e),
            Err(e) => (Verdict::Fail, e),
        };
        tracing::info!(case = id, verdict = verdict.as_str(), %evidence, "conformance");
        out.push(CaseReport {
            id,
            title,
            verdict,
            evidence,
        });
        // Leave Idle for the next case (a device in Updating refuses; that shows in the next case).
        let _ = runner.reset().await;
    }
    Ok(out)
}

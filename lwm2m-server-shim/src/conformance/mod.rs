//! A conformance runner for any LwM2M client, driven from the server side: the OMA ETS
//! firmware-update cases (1.0-int-751..780) and the core client cases a server can drive
//! (registration, device management on objects 1 and 3, information reporting), each named by
//! its ETS id where the ETS has one.
//!
//! The runner first reads what the device announced (registration, content formats, /5/0/8
//! protocols, /5/0/9 delivery) and runs each case only as far as the device claims to support
//! it: a case that does not apply is N/A with the reason, one whose device stopped answering is
//! INCONCLUSIVE with the timeout named, and only a device that did something wrong gets a
//! FAIL. Packages are SUIT packages built for our simulated device, or the device's own files
//! ([`PackageSource::Native`], from flags or a [`profile::Profile`]). [`report`] writes the
//! results as a console table, JUnit XML and JSON.

mod catalogue;
mod context;
mod firmware;
mod hosts;
mod management;
mod packages;
pub mod profile;
mod readings;
mod registering;
pub mod report;
mod reporting;
mod verdict;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lwm2m_client::codec::Path;

pub use catalogue::{find, CaseDef, Group, Selection, UnknownCase, CASES};
pub use packages::PackageSource;
pub use readings::FirmwareReading;
pub use verdict::{CaseReport, Verdict};

use crate::firmware::campaign::{CampaignConfig, PhaseTimeouts};
use crate::firmware::jobs::JobRegistry;
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::Registration;
use crate::server::shim::Shim;
use context::Ctx;
use hosts::Hosts;
use packages::Packages;
use profile::Expectations;
use readings::Formats;
use verdict::{Abort, Decision};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct ConformanceConfig {
    /// Where the packages come from.
    pub packages: PackageSource,
    /// What the device is expected to do (from a profile); its timeouts override the
    /// campaign's.
    pub expect: Expectations,
    /// Campaign timeouts for the update cases; `timeouts.request` bounds every exchange.
    pub campaign: CampaignConfig,
    /// How long to wait for a notification or a registration Update the device owes.
    pub notify_within: Duration,
    /// How long to watch for a notification that must not come (gt/lt/st, after a cancel).
    pub quiet: Duration,
    /// Slack on timing checks (pmax, Disable Timeout).
    pub tolerance: Duration,
    /// The short lifetime (and Disable Timeout) written for 1.1-int-107 and 1.1-int-103.
    pub short_lifetime: Duration,
    /// The shim's HTTP address, whose `/fw/{name}` serves http:// pulls; `None`: no http.
    pub http_host: Option<SocketAddr>,
    /// The shim's coap+tcp package host (RFC 8323); `None`: no coap+tcp pulls.
    pub coap_tcp_host: Option<SocketAddr>,
    /// The shim's coaps+tcp package host, given only when the device trusts its certificate;
    /// `None`: no coaps+tcp pulls.
    pub coaps_tcp_host: Option<SocketAddr>,
    /// How long to wait for the device to register before the cases run.
    pub register_within: Duration,
    /// Longest wait for a sleeping queue-mode device to wake up before a request (its
    /// remaining lifetime bounds it too).
    pub wake_within: Duration,
}

impl ConformanceConfig {
    /// Defaults for loopback runs with `packages`.
    pub fn new(packages: PackageSource) -> Self {
        Self {
            packages,
            expect: Expectations::default(),
            // Loopback and lab devices: State is polled often, a request that got no answer is
            // sent once more.
            campaign: CampaignConfig {
                poll_interval: Duration::from_millis(200),
                retries: 1,
                ..CampaignConfig::default()
            },
            notify_within: Duration::from_secs(15),
            quiet: Duration::from_secs(2),
            tolerance: Duration::from_secs(1),
            short_lifetime: Duration::from_secs(10),
            http_host: None,
            coap_tcp_host: None,
            coaps_tcp_host: None,
            register_within: Duration::ZERO,
            wake_within: Duration::from_secs(300),
        }
    }

    /// Sets the per-exchange, download and update timeouts (the update one also bounds the
    /// wait for the final State / Update Result after a reboot).
    pub fn with_timeouts(
        mut self,
        request: Duration,
        download: Duration,
        update: Duration,
    ) -> Self {
        self.campaign.timeouts = PhaseTimeouts {
            request,
            download,
            update,
            verify: update,
        };
        self
    }

    /// The campaign settings with the profile's timeouts applied.
    fn effective(&self) -> Self {
        let mut c = self.clone();
        if let Some(d) = self.expect.download_timeout {
            c.campaign.timeouts.download = d;
        }
        if let Some(u) = self.expect.update_timeout {
            c.campaign.timeouts.update = u;
            c.campaign.timeouts.verify = u;
        }
        c
    }
}

/// Why a run could not start.
#[derive(Debug)]
pub enum ConformanceError {
    /// A package could not be read or hosted.
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

/// A whole run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Endpoint of the device under test.
    pub endpoint: String,
    /// When the run started.
    pub started: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// The device's registration when the run started.
    pub registration: Option<Registration>,
    /// Its firmware object's readings (/5/0), when read.
    pub firmware: Option<FirmwareReading>,
    /// The content formats it announced, described.
    pub formats: String,
    /// One report per case (and variant), in run order.
    pub cases: Vec<CaseReport>,
}

impl RunReport {
    /// How many cases got `label` (`PASS`, `FAIL`, `N/A`, `INCONCLUSIVE`).
    pub fn count(&self, label: &str) -> usize {
        self.cases
            .iter()
            .filter(|c| c.verdict.label() == label)
            .count()
    }

    /// Whether any case failed (the run's exit status).
    pub fn failed(&self) -> bool {
        self.count("FAIL") > 0
    }
}

/// Whether the device answers at all: a Read of /3/0 (mandatory) within the request timeout.
/// Any answer counts; only silence is an error, naming the timeout.
async fn probe(ctx: &Ctx<'_>) -> Result<(), String> {
    match ctx.read(&Path::instance(3, 0), None).await {
        Ok(_) => Ok(()),
        Err(Abort::Silent(why) | Abort::Runner(why)) => Err(why),
        Err(Abort::Broken(_)) => Ok(()),
    }
}

async fn run_case(ctx: &Ctx<'_>, def: &CaseDef, variant: Option<&str>) -> verdict::Step<Decision> {
    match def.group {
        Group::Firmware => firmware::run(ctx, def.id, variant).await,
        Group::Registration => registering::run(ctx, def.id).await,
        Group::DeviceManagement => management::run(ctx, def.id).await,
        Group::Reporting | Group::Send => reporting::run(ctx, def.id).await,
    }
}

/// Hosts the packages, waits up to [`ConformanceConfig::register_within`] for `ep` to
/// register, reads what the device announces and runs the selected cases. Never hangs on a silent device: every exchange is bounded,
/// and once the device stops answering the remaining cases are INCONCLUSIVE.
pub async fn run(
    shim: &Arc<Shim>,
    jobs: &JobRegistry,
    ep: &str,
    cfg: &ConformanceConfig,
    selection: &Selection,
) -> Result<RunReport, ConformanceError> {
    let cfg = cfg.effective();
    let started = SystemTime::now();
    let t0 = Instant::now();
    let packages = Packages::prepare(shim, cfg.packages.clone())?;
    let registered_by = tokio::time::Instant::now() + cfg.register_within;
    let mut reg = shim.store.get_by_endpoint(ep);
    while reg.is_none() && tokio::time::Instant::now() < registered_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reg = shim.store.get_by_endpoint(ep);
    }
    let hosts = Hosts {
        coap: shim.coap().and_then(|c| c.local_addr().ok()),
        coaps: shim
            .coaps()
            .filter(|_| reg.as_ref().is_some_and(|r| r.secure))
            .and_then(|c| c.local_addr().ok()),
        coaps_listener: shim.coaps().is_some(),
        http: cfg.http_host,
        coap_tcp: cfg.coap_tcp_host,
        coaps_tcp: cfg.coaps_tcp_host,
    };
    let formats = Formats::of(&ObjectLinks::parse(
        reg.as_ref().map_or("", |r| r.object_links.as_str()),
    ));
    let mut ctx = Ctx {
        shim,
        jobs,
        ep,
        cfg: &cfg,
        formats,
        firmware: None,
        packages,
        hosts,
    };
    let mut gone = match &reg {
        None => Some(format!(
            "{ep} did not register within {} s",
            cfg.register_within.as_secs()
        )),
        Some(_) => probe(&ctx).await.err(),
    };
    if gone.is_none()
        && selection.any_in(Group::Firmware)
        && reg.as_ref().is_some_and(|r| readings::announces(r, 5))
    {
        match ctx.read(&Path::instance(5, 0), None).await {
            Ok(r) => ctx.firmware = Some(FirmwareReading::from_response(&r)),
            Err(Abort::Silent(why)) => gone = Some(why),
            Err(_) => {}
        }
    }
    let mut cases = Vec::new();
    for def in selection.cases() {
        let variants = if def.group == Group::Firmware {
            firmware::variants(&ctx, def.id)
        } else {
            vec![None]
        };
        for variant in variants {
            let at = SystemTime::now();
            let t = Instant::now();
            let decision = match &gone {
                Some(why) => Decision::inconclusive(format!("device not reachable: {why}")),
                None => match run_case(&ctx, def, variant.as_deref()).await {
                    Ok(d) => d,
                    Err(a) => {
                        let silent = matches!(a, Abort::Silent(_));
                        let d = a.decision();
                        if silent {
                            gone = probe(&ctx).await.err();
                        }
                        d
                    }
                },
            };
            if def.group == Group::Firmware && gone.is_none() && ctx.firmware.is_some() {
                // Leave Idle for the next case (a device in Updating refuses; that shows in
                // the next case).
                let _ = firmware::reset(&ctx).await;
            }
            tracing::info!(case = def.id, ?variant, verdict = %decision.verdict, evidence = %decision.evidence, "conformance");
            cases.push(CaseReport {
                id: def.id,
                variant,
                title: def.title,
                group: def.group.name(),
                verdict: decision.verdict,
                evidence: decision.evidence,
                started: at,
                duration: t.elapsed(),
            });
        }
    }
    Ok(RunReport {
        endpoint: ep.to_string(),
        started,
        duration: t0.elapsed(),
        registration: reg,
        firmware: ctx.firmware,
        formats: ctx.formats.describe(),
        cases,
    })
}

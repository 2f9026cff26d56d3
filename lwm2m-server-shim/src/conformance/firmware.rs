//! The firmware cases (OMA-ETS-LightweightM2M-V1_0_1 section 6.1.6.6, 1.0-int-751..780), driven with the
//! device's capabilities in mind: pulls only over protocols its /5/0/8 lists and the shim can
//! host, pushes only when /5/0/9 allows them, the device's own packages when given, and N/A
//! with the reason wherever the device or the run lacks what a case needs.

use lwm2m_client::codec::{ContentFormat, Path, Value};
use object5::machine::Protocol;
use tokio::time::Instant;

use super::context::{show, value_of, Ctx};
use super::hosts::Cutter;
use super::packages::Hosted;
use super::profile::PackageRole;
use super::readings::FirmwareReading;
use super::verdict::{Abort, Decision, Step};
use super::watch::{Observed, Watch};
use crate::firmware::campaign::{self, resource, UpdatePlan};
use crate::firmware::jobs::{JobPhase, Method};
use crate::server::requests::DmResponse;
use object5::status::UpdateResult;

/// How a package reaches the device in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Write its URI over this protocol (/5/0/1).
    Pull(Protocol),
    /// Write it to /5/0/0 (Block1).
    Push,
}

impl Route {
    fn describe(self) -> String {
        match self {
            Self::Pull(p) => format!("pull over {}", p.scheme()),
            Self::Push => "push".into(),
        }
    }
}

/// The device's firmware reading, or N/A when it has no Object 5.
fn reading<'c>(ctx: &'c Ctx<'_>) -> Result<&'c FirmwareReading, Decision> {
    ctx.firmware.as_ref().ok_or_else(|| {
        Decision::not_applicable(
            "device announces no Object 5 (Firmware Update) in its registration",
        )
    })
}

fn delivery_text(fw: &FirmwareReading) -> String {
    match fw.delivery {
        Some(0) => "0: pull only".into(),
        Some(1) => "1: push only".into(),
        Some(2) => "2: pull and push".into(),
        Some(d) => format!("{d}: unknown"),
        None => "absent".into(),
    }
}

/// N/A unless /5/0/9 allows a push.
fn push_route(fw: &FirmwareReading) -> Result<Route, String> {
    if fw.push_allowed() {
        Ok(Route::Push)
    } else {
        Err(format!(
            "device lists no push in /5/0/9 (Delivery Method {})",
            delivery_text(fw)
        ))
    }
}

/// Whether the device takes a pull over `p`, and whether the shim can serve it.
fn pull_over(ctx: &Ctx<'_>, fw: &FirmwareReading, p: Protocol) -> Result<Route, String> {
    if !fw.pull_allowed() {
        return Err(format!(
            "device lists no pull in /5/0/9 (Delivery Method {})",
            delivery_text(fw)
        ));
    }
    if !fw.listed().contains(&Ok(p)) {
        return Err(format!("device lists no {} in /5/0/8", p.scheme()));
    }
    ctx.hosts
        .uri(p, "probe")
        .map(|_| Route::Pull(p))
        .map_err(|why| format!("device lists {} in /5/0/8, but {why}", p.scheme()))
}

/// The first protocol of /5/0/8 the shim can serve.
fn pull_route(ctx: &Ctx<'_>, fw: &FirmwareReading) -> Result<Route, String> {
    let listed: Vec<Protocol> = fw.listed().into_iter().filter_map(Result::ok).collect();
    if fw.pull_allowed() && listed.is_empty() {
        return Err(format!(
            "device lists no pull protocol in /5/0/8 ({:?})",
            fw.protocols
        ));
    }
    let mut why = Vec::new();
    for p in listed {
        match pull_over(ctx, fw, p) {
            Ok(r) => return Ok(r),
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
}

/// A pull when the device takes one the shim can serve, else a push.
fn any_route(ctx: &Ctx<'_>, fw: &FirmwareReading) -> Result<Route, String> {
    pull_route(ctx, fw).or_else(|pull| push_route(fw).map_err(|push| format!("{pull}; {push}")))
}

/// N/A unless the profile lets the device report Update Result `code`.
fn uses(ctx: &Ctx<'_>, code: i64) -> Result<(), Decision> {
    if ctx.cfg.expect.uses_result(code) {
        Ok(())
    } else {
        Err(Decision::not_applicable(format!(
            "the profile says the device does not report Update Result {code} ({})",
            result_meaning(code)
        )))
    }
}

/// What an Update Result code read from the device means; the evidence shows the raw code,
/// which may be one Object 5 does not define.
fn result_meaning(code: i64) -> &'static str {
    campaign::result_of(code).map_or("unknown result", UpdateResult::meaning)
}

async fn state_result(ctx: &Ctx<'_>) -> Step<(Option<i64>, Option<i64>)> {
    let int = |v: Option<Value>| match v {
        Some(Value::Integer(i)) => Some(i),
        Some(Value::Unsigned(u)) => i64::try_from(u).ok(),
        _ => None,
    };
    let s = int(ctx.read_value(&resource(5, 3)).await?);
    let r = int(ctx.read_value(&resource(5, 5)).await?);
    Ok((s, r))
}

fn sr(v: (Option<i64>, Option<i64>)) -> String {
    let o = |x: Option<i64>| x.map_or("?".to_string(), |v| v.to_string());
    format!("State {}, Result {}", o(v.0), o(v.1))
}

/// Empty Package URI (core TS 1.1 Appendix E.6.1) or, for a device that refuses it, a one-byte Package:
/// back to Idle, Result 0.
pub(crate) async fn reset(ctx: &Ctx<'_>) -> Step<DmResponse> {
    let r = ctx.write_text(&resource(5, 1), "").await?;
    if r.is_success() {
        return Ok(r);
    }
    ctx.write(&resource(5, 0), true, ContentFormat::Opaque, &[0])
        .await
}

/// Polls until the download ended (Downloaded, Updating, or Idle with a result) or the
/// download timeout passed; the last reading.
async fn settle(ctx: &Ctx<'_>) -> Step<(Option<i64>, Option<i64>)> {
    let until = Instant::now() + ctx.cfg.campaign.timeouts.download;
    loop {
        let now = state_result(ctx).await?;
        let done = match now {
            (Some(2 | 3), _) => true,
            (Some(0), Some(r)) => r != 0,
            _ => false,
        };
        if done || Instant::now() >= until {
            return Ok(now);
        }
        tokio::time::sleep(ctx.cfg.campaign.poll_interval).await;
    }
}

/// Starts a download of `pkg` along `route`; the device's answer and what was sent.
async fn deliver(ctx: &Ctx<'_>, route: Route, pkg: &Hosted) -> Step<(DmResponse, String)> {
    match route {
        Route::Pull(p) => {
            let uri = ctx.hosts.uri(p, &pkg.name).map_err(Abort::Runner)?;
            let r = ctx.write_text(&resource(5, 1), &uri).await?;
            Ok((r, format!("write /5/0/1 {uri}")))
        }
        Route::Push => {
            let bytes = ctx.packages.bytes(pkg)?;
            let r = ctx
                .write(&resource(5, 0), true, ContentFormat::Opaque, &bytes)
                .await?;
            Ok((
                r,
                format!("push {} ({} bytes) to /5/0/0", pkg.label, bytes.len()),
            ))
        }
    }
}

/// A download of `pkg` that must end in Idle with `result`; a 4.13 to a push counts for
/// Result 2 (773).
async fn failed_download(ctx: &Ctx<'_>, route: Route, pkg: &Hosted, result: i64) -> Step<Decision> {
    reset(ctx).await?;
    let (w, sent) = deliver(ctx, route, pkg).await?;
    if route == Route::Push && result == 2 && w.code_string() == "4.13" {
        return Ok(Decision::judge(
            true,
            format!("{sent} -> 4.13 (Request Entity Too Large)"),
        ));
    }
    let after = settle(ctx).await?;
    Ok(Decision::judge(
        after == (Some(0), Some(result)),
        format!(
            "{sent} -> {}, then {} ({}); expected State 0, Result {result}",
            w.code_string(),
            sr(after),
            after.1.map_or("unreadable", result_meaning)
        ),
    ))
}

/// The packages for a failing `role`, or N/A.
fn packages_for(ctx: &Ctx<'_>, role: PackageRole) -> Result<Step<Vec<Hosted>>, Decision> {
    match ctx.packages.for_role(role) {
        Ok(v) if v.is_empty() => Err(Decision::not_applicable(ctx.packages.missing(role))),
        other => Ok(other),
    }
}

/// Runs `failed_download` for each package of `role`; PASS only if all pass.
async fn each_fails(ctx: &Ctx<'_>, role: PackageRole, result: i64) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    if let Err(d) = uses(ctx, result) {
        return Ok(d);
    }
    let route = match any_route(ctx, fw) {
        Ok(r) => r,
        Err(why) => return Ok(Decision::not_applicable(why)),
    };
    let pkgs = match packages_for(ctx, role) {
        Ok(p) => p?,
        Err(d) => return Ok(d),
    };
    let mut ok = true;
    let mut evidence = Vec::new();
    for p in &pkgs {
        let d = failed_download(ctx, route, p, result).await?;
        ok &= d.verdict == super::Verdict::Pass;
        evidence.push(format!(
            "{} ({}): {}",
            p.label,
            route.describe(),
            d.evidence
        ));
    }
    Ok(Decision::judge(ok, evidence.join("; ")))
}

/// A whole update through the campaign engine; `expect` is the final (State, Result).
async fn update(ctx: &Ctx<'_>, pkg: &Hosted, route: Route, expect: (i64, i64)) -> Step<Decision> {
    let before_version = ctx.read_value(&resource(3, 3)).await?;
    let before_reg = ctx.registration()?.registration_date;
    let (method, uri) = match route {
        Route::Push => (Method::Push, None),
        Route::Pull(p) => (
            Method::Pull,
            Some(ctx.hosts.uri(p, &pkg.name).map_err(Abort::Runner)?),
        ),
    };
    let plan = UpdatePlan {
        package: pkg.name.clone(),
        method,
        uri,
    };
    let job = ctx.jobs.create(ctx.ep, &pkg.name, method);
    let end = campaign::run_update(ctx.shim, ctx.jobs, job, &plan, ctx.cfg.campaign, &|_| {}).await;
    let (state, result) = match (end.state, end.result) {
        (Some(s), Some(r)) => (Some(i64::from(s.code())), Some(i64::from(r.code()))),
        _ => state_result(ctx).await?,
    };
    let after_version = ctx.read_value(&resource(3, 3)).await?;
    let rebooted = ctx.registration()?.registration_date > before_reg;
    let mut problems = Vec::new();
    if (state, result) != (Some(expect.0), Some(expect.1)) {
        problems.push(format!("expected State {}, Result {}", expect.0, expect.1));
    }
    let success = expect == (0, 1);
    match (&pkg.version, success) {
        (Some(v), true) if after_version != Some(Value::String(v.clone())) => {
            problems.push(format!("/3/0/3 should show {v:?}"))
        }
        (_, false) if after_version != before_version => {
            problems.push("/3/0/3 changed although the update failed".into())
        }
        _ => {}
    }
    if let Some(want) = ctx.cfg.expect.reboots_on_update {
        if success && want != rebooted {
            problems.push(format!(
                "the profile says the device {} on an update",
                if want { "reboots" } else { "does not reboot" }
            ));
        }
    }
    let shown = |v: &Option<Value>| v.as_ref().map_or("?".into(), show);
    let mut evidence = format!(
        "{} {}: phase {}, {} ({}); /3/0/3 {} -> {}; re-registered: {}",
        route.describe(),
        pkg.label,
        end.phase,
        sr((state, result)),
        result.map_or("unreadable", result_meaning),
        shown(&before_version),
        shown(&after_version),
        if rebooted { "yes" } else { "no" }
    );
    if let (Some(e), JobPhase::Failed) = (&end.error, end.phase) {
        if !problems.is_empty() {
            evidence.push_str(&format!("; {e}"));
        }
    }
    if !problems.is_empty() {
        evidence.push_str(&format!("; {}", problems.join("; ")));
    }
    Ok(Decision::judge(problems.is_empty(), evidence))
}

async fn case_751(ctx: &Ctx<'_>) -> Step<Decision> {
    if let Err(d) = reading(ctx) {
        return Ok(d);
    }
    reset(ctx).await?;
    let cf = if ctx.formats.supports(ContentFormat::Tlv) {
        Some(ContentFormat::Tlv)
    } else {
        ctx.formats.preferred()
    };
    let path = Path::instance(5, 0);
    let r = ctx.read(&path, cf).await?;
    let now = FirmwareReading::from_response(&r);
    let format = cf.map_or("default format".into(), |c| {
        format!("format {}", c.number())
    });
    Ok(Decision::judge(
        r.is_success() && now.state == Some(0) && now.result == Some(0),
        format!(
            "Read /5/0 ({format}) -> {}; {}; protocols /5/0/8 {:?}, delivery /5/0/9 {:?}",
            r.code_string(),
            sr((now.state, now.result)),
            now.protocols,
            now.delivery
        ),
    ))
}

async fn case_755(ctx: &Ctx<'_>) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    if let Err(why) = push_route(fw) {
        return Ok(Decision::not_applicable(why));
    }
    let Some(pkg) = ctx.packages.good_to_download()? else {
        return Ok(Decision::not_applicable(
            ctx.packages.missing(PackageRole::Good),
        ));
    };
    let w = ctx
        .write(&resource(5, 0), true, ContentFormat::Opaque, &[0])
        .await?;
    let idle = state_result(ctx).await?;
    let (p, sent) = deliver(ctx, Route::Push, &pkg).await?;
    let after = settle(ctx).await?;
    Ok(Decision::judge(
        w.is_success()
            && idle == (Some(0), Some(0))
            && p.is_success()
            && after == (Some(2), Some(0)),
        format!(
            "write \\0 to /5/0/0 -> {}, then {}; {sent} -> {}, then {}",
            w.code_string(),
            sr(idle),
            p.code_string(),
            sr(after)
        ),
    ))
}

async fn case_756(ctx: &Ctx<'_>) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    let route = match pull_route(ctx, fw) {
        Ok(r) => r,
        Err(why) => return Ok(Decision::not_applicable(why)),
    };
    let Some(pkg) = ctx.packages.good_to_download()? else {
        return Ok(Decision::not_applicable(
            ctx.packages.missing(PackageRole::Good),
        ));
    };
    let w = ctx.write_text(&resource(5, 1), "").await?;
    let idle = state_result(ctx).await?;
    let (u, sent) = deliver(ctx, route, &pkg).await?;
    let after = settle(ctx).await?;
    Ok(Decision::judge(
        w.is_success()
            && idle == (Some(0), Some(0))
            && u.is_success()
            && after == (Some(2), Some(0)),
        format!(
            "write \"\" to /5/0/1 -> {}, then {}; {sent} -> {}, then {}",
            w.code_string(),
            sr(idle),
            u.code_string(),
            sr(after)
        ),
    ))
}

async fn case_760(ctx: &Ctx<'_>) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    // The ETS pushes; a pull-only device is observed through a pull.
    let route = match push_route(fw)
        .or_else(|push| pull_route(ctx, fw).map_err(|pull| format!("{push}; {pull}")))
    {
        Ok(r) => r,
        Err(why) => return Ok(Decision::not_applicable(why)),
    };
    let Some(pkg) = ctx.packages.good_to_download()? else {
        return Ok(Decision::not_applicable(
            ctx.packages.missing(PackageRole::Good),
        ));
    };
    reset(ctx).await?;
    let wa = ctx
        .write_attributes(&Path::instance(5, 0), &[("pmin", "2"), ("pmax", "10")])
        .await?;
    let mut watch = match Watch::start(ctx, resource(5, 3), None).await? {
        Observed::Established(first, w) => {
            let initial = first
                .is_success()
                .then(|| super::context::decode(&resource(5, 3), &first).ok())
                .flatten();
            (w, initial.as_ref().and_then(value_of))
        }
        Observed::Refused(r) => {
            return Ok(Decision::fail(format!(
                "write-attributes pmin=2 pmax=10 -> {}; Observe /5/0/3 -> {} without Observe",
                wa.code_string(),
                r.code_string()
            )))
        }
    };
    let (p, sent) = deliver(ctx, route, &pkg).await?;
    let until = Instant::now()
        + ctx
            .cfg
            .notify_within
            .max(ctx.cfg.campaign.timeouts.download);
    let mut notified = Vec::new();
    let mut downloaded = false;
    while !downloaded {
        let left = until.saturating_duration_since(Instant::now());
        let Some(n) = watch.0.next(left).await else {
            break;
        };
        let v = n.node.ok().as_ref().and_then(value_of);
        downloaded = matches!(v, Some(Value::Integer(2)));
        notified.push(v.as_ref().map_or("?".into(), show));
    }
    drop(watch.0);
    let initial = watch.1;
    Ok(Decision::judge(
        wa.is_success() && matches!(initial, Some(Value::Integer(0))) && p.is_success() && downloaded,
        format!(
            "write-attributes /5/0 pmin=2 pmax=10 -> {}; Observe /5/0/3: initial State {}; {sent} -> {}; notified States {notified:?}",
            wa.code_string(),
            initial.as_ref().map_or("?".into(), show),
            p.code_string()
        ),
    ))
}

async fn case_772(ctx: &Ctx<'_>) -> Step<Decision> {
    if let Err(d) = reading(ctx) {
        return Ok(d);
    }
    reset(ctx).await?;
    let before = state_result(ctx).await?;
    let r = ctx.execute(&resource(5, 2)).await?;
    let after = state_result(ctx).await?;
    Ok(Decision::judge(
        r.code_string() == "4.05" && before == after,
        format!(
            "{}; Execute /5/0/2 -> {} (expected 4.05); then {}",
            sr(before),
            r.code_string(),
            sr(after)
        ),
    ))
}

/// 770 (push) and 771 (pull over `protocol`): a good package installs.
async fn successful_update(ctx: &Ctx<'_>, route: Result<Route, String>) -> Step<Decision> {
    if let Err(d) = uses(ctx, 1) {
        return Ok(d);
    }
    let route = match route {
        Ok(r) => r,
        Err(why) => return Ok(Decision::not_applicable(why)),
    };
    let Some(pkg) = ctx.packages.good()? else {
        return Ok(Decision::not_applicable(
            ctx.packages.missing(PackageRole::Good),
        ));
    };
    update(ctx, &pkg, route, (0, 1)).await
}

async fn case_775(ctx: &Ctx<'_>) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    if let Err(d) = uses(ctx, 4) {
        return Ok(d);
    }
    if !fw.pull_allowed() {
        return Ok(Decision::not_applicable(format!(
            "device lists no pull in /5/0/9 (Delivery Method {})",
            delivery_text(fw)
        )));
    }
    // A protocol the device supports whose transfer the runner can cut.
    let protocol = [Protocol::Http, Protocol::Coap]
        .into_iter()
        .find(|p| fw.listed().contains(&Ok(*p)));
    let Some(protocol) = protocol else {
        return Ok(Decision::not_applicable(format!(
            "the runner cuts http and coap transfers; the device lists neither in /5/0/8 ({:?})",
            fw.protocols
        )));
    };
    let Some(pkg) = ctx.packages.cut()? else {
        return Ok(Decision::not_applicable(
            ctx.packages.missing(PackageRole::Good),
        ));
    };
    let bytes = ctx.packages.bytes(&pkg)?;
    let total = bytes.len();
    let cutter = match protocol {
        Protocol::Http => Cutter::http(bytes, &pkg.name).await,
        _ => Cutter::coap(bytes, &pkg.name).await,
    }
    .map_err(|e| Abort::Runner(format!("cutting host: {e}")))?;
    reset(ctx).await?;
    let w = ctx.write_text(&resource(5, 1), &cutter.uri).await?;
    let after = settle(ctx).await?;
    Ok(Decision::judge(
        after == (Some(0), Some(4)),
        format!(
            "write /5/0/1 {} -> {}; the host sent {} of {total} bytes and cut the {} transfer; then {} ({}); expected State 0, Result 4",
            cutter.uri,
            w.code_string(),
            cutter.sent(),
            protocol.scheme(),
            sr(after),
            after.1.map_or("unreadable", result_meaning)
        ),
    ))
}

async fn case_778(ctx: &Ctx<'_>) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    if let Err(d) = uses(ctx, 7) {
        return Ok(d);
    }
    let Route::Pull(p) = (match pull_route(ctx, fw) {
        Ok(r) => r,
        Err(why) => return Ok(Decision::not_applicable(why)),
    }) else {
        return Ok(Decision::not_applicable("no pull route"));
    };
    let missing = Hosted {
        name: "no-such-package.bin".into(),
        label: "a package the host does not have".into(),
        version: None,
    };
    failed_download(ctx, Route::Pull(p), &missing, 7).await
}

async fn case_780(ctx: &Ctx<'_>) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    if let Err(d) = uses(ctx, 9) {
        return Ok(d);
    }
    if !fw.pull_allowed() {
        return Ok(Decision::not_applicable(format!(
            "device lists no pull in /5/0/9 (Delivery Method {})",
            delivery_text(fw)
        )));
    }
    let listed = fw.listed();
    let Some(p) = Protocol::ALL
        .iter()
        .rev()
        .find(|p| !listed.contains(&Ok(**p)))
    else {
        return Ok(Decision::not_applicable(
            "device lists every LwM2M pull protocol in /5/0/8",
        ));
    };
    reset(ctx).await?;
    let uri = format!("{}://127.0.0.1:9/fw/unsupported.bin", p.scheme());
    let w = ctx.write_text(&resource(5, 1), &uri).await?;
    let after = settle(ctx).await?;
    Ok(Decision::judge(
        after == (Some(0), Some(9)),
        format!(
            "{} is not in /5/0/8 {:?}; write /5/0/1 {uri} -> {}, then {} ({}); expected State 0, Result 9",
            p.scheme(),
            fw.protocols,
            w.code_string(),
            sr(after),
            after.1.map_or("unreadable", result_meaning)
        ),
    ))
}

async fn case_779(ctx: &Ctx<'_>) -> Step<Decision> {
    let fw = match reading(ctx) {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    if let Err(d) = uses(ctx, 8) {
        return Ok(d);
    }
    let route = match any_route(ctx, fw) {
        Ok(r) => r,
        Err(why) => return Ok(Decision::not_applicable(why)),
    };
    let pkgs = match packages_for(ctx, PackageRole::Failing) {
        Ok(p) => p?,
        Err(d) => return Ok(d),
    };
    let Some(pkg) = pkgs.first() else {
        return Ok(Decision::not_applicable(
            ctx.packages.missing(PackageRole::Failing),
        ));
    };
    update(ctx, pkg, route, (2, 8)).await
}

/// The variants of a firmware case: 771 runs once per protocol in /5/0/8.
pub(crate) fn variants(ctx: &Ctx<'_>, id: &str) -> Vec<Option<String>> {
    match (id, &ctx.firmware) {
        ("1.0-int-771", Some(fw)) if !fw.protocols.is_empty() => fw
            .listed()
            .into_iter()
            .map(|p| {
                Some(match p {
                    Ok(p) => p.scheme().to_string(),
                    Err(v) => format!("protocol-{v}"),
                })
            })
            .collect(),
        _ => vec![None],
    }
}

/// Runs firmware case `id` (`variant`: the protocol of a 771).
pub(crate) async fn run(ctx: &Ctx<'_>, id: &str, variant: Option<&str>) -> Step<Decision> {
    match id {
        "1.0-int-751" => case_751(ctx).await,
        "1.0-int-755" => case_755(ctx).await,
        "1.0-int-756" => case_756(ctx).await,
        "1.0-int-760" => case_760(ctx).await,
        "1.0-int-770" => {
            let route = reading(ctx).map_err(|d| d.evidence).and_then(push_route);
            successful_update(ctx, route).await
        }
        "1.0-int-771" => {
            let route = match (reading(ctx), variant) {
                (Err(d), _) => Err(d.evidence),
                (Ok(fw), Some(v)) => match Protocol::from_scheme(v) {
                    Some(p) => pull_over(ctx, fw, p),
                    None => Err(format!(
                        "device lists {v} in /5/0/8, which names no protocol"
                    )),
                },
                (Ok(fw), None) => pull_route(ctx, fw),
            };
            successful_update(ctx, route).await
        }
        "1.0-int-772" => case_772(ctx).await,
        "1.0-int-773" => each_fails(ctx, PackageRole::TooLarge, 2).await,
        "1.0-int-774" => Ok(Decision::inconclusive(
            "out of RAM (Update Result 3) cannot be provoked from the server side",
        )),
        "1.0-int-775" => case_775(ctx).await,
        "1.0-int-776" => each_fails(ctx, PackageRole::Corrupt, 5).await,
        "1.0-int-777" => each_fails(ctx, PackageRole::WrongType, 6).await,
        "1.0-int-778" => case_778(ctx).await,
        "1.0-int-779" => case_779(ctx).await,
        "1.0-int-780" => case_780(ctx).await,
        other => Err(Abort::Runner(format!("no firmware case {other}"))),
    }
}

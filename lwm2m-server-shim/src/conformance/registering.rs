//! Registration interface cases (core TS 1.1 section 6.2; ETS 1.1-int-101..107): the
//! registration the device made, Updates it sends when its Server object changes or the server
//! triggers one, keeping a short lifetime alive, and De-register through Disable (/1/0/4).

use std::time::Duration;

use lwm2m_client::codec::{Path, Value};

use super::context::{number, show, Ctx};
use super::verdict::{Abort, Decision, Step};
use crate::coap::endpoint::ExchangeError;
use crate::server::events::ServerEvent;
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::Registration;
use crate::server::requests::DmError;

const LIFETIME: Path = Path::resource(1, 0, 1);
const DISABLE: Path = Path::resource(1, 0, 4);
const DISABLE_TIMEOUT: Path = Path::resource(1, 0, 5);
const BINDING: Path = Path::resource(1, 0, 7);
const TRIGGER: Path = Path::resource(1, 0, 8);
const SUPPORTED_BINDING: Path = Path::resource(3, 0, 16);

fn describe(reg: &Registration) -> String {
    format!(
        "ep={} lt={} lwm2m={} b={}{} links={}",
        reg.endpoint,
        reg.lifetime_s,
        reg.lwm2m_version,
        reg.binding,
        if reg.queue_mode { " Q" } else { "" },
        reg.object_links
    )
}

/// What is wrong with a registration (core TS 1.1 section 6.2.1), if anything.
pub(crate) fn registration_problems(reg: &Registration) -> Vec<String> {
    let mut p = Vec::new();
    if !["1.0", "1.1", "1.2"].contains(&reg.lwm2m_version.as_str()) {
        p.push(format!("unknown LwM2M version {:?}", reg.lwm2m_version));
    }
    let letters: &[char] = if reg.lwm2m_version == "1.0" {
        &['U', 'S', 'Q']
    } else {
        &['U', 'S', 'T', 'N']
    };
    if reg.binding.is_empty() || !reg.binding.chars().all(|c| letters.contains(&c)) {
        p.push(format!(
            "binding {:?} is not made of {letters:?} (LwM2M {})",
            reg.binding, reg.lwm2m_version
        ));
    }
    match ObjectLinks::try_parse(&reg.object_links) {
        Err(e) => p.push(format!("object links do not parse: {e}")),
        Ok(links) => {
            let inst = links.available_instances();
            if inst.get(&1).is_none_or(|i| i.is_empty()) {
                p.push("no LwM2M Server instance (</1/x>) announced".into());
            }
            if !inst.get(&3).is_some_and(|i| i.contains(&0)) {
                p.push("no Device instance </3/0> announced".into());
            }
            if inst.contains_key(&0) {
                p.push("the Security object (0) must not be announced".into());
            }
        }
    }
    p
}

async fn case_101(ctx: &Ctx<'_>) -> Step<Decision> {
    let reg = ctx.registration()?;
    let problems = registration_problems(&reg);
    Ok(Decision::judge(
        problems.is_empty(),
        format!("{}{}", describe(&reg), suffix(&problems)),
    ))
}

fn suffix(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!("; {}", problems.join("; "))
    }
}

async fn case_params(ctx: &Ctx<'_>) -> Step<Decision> {
    let reg = ctx.registration()?;
    let mut problems = Vec::new();
    let binding = ctx.read_value(&BINDING).await?;
    let supported = ctx.read_value(&SUPPORTED_BINDING).await?;
    let lifetime = ctx.read_value(&LIFETIME).await?;
    let mode: String = reg.binding.chars().filter(|c| *c != 'Q').collect();
    match &binding {
        Some(Value::String(b)) if b.chars().filter(|c| *c != 'Q').collect::<String>() == mode => {}
        other => problems.push(format!(
            "/1/0/7 Binding {} differs from b={}",
            other.as_ref().map_or("unreadable".into(), show),
            reg.binding
        )),
    }
    match &supported {
        Some(Value::String(s)) if mode.chars().all(|c| s.contains(c)) => {}
        other => problems.push(format!(
            "/3/0/16 Supported Binding {} does not cover b={}",
            other.as_ref().map_or("unreadable".into(), show),
            reg.binding
        )),
    }
    if lifetime.as_ref().and_then(number) != Some(f64::from(reg.lifetime_s)) {
        problems.push(format!(
            "/1/0/1 Lifetime {} differs from lt={}",
            lifetime.as_ref().map_or("unreadable".into(), show),
            reg.lifetime_s
        ));
    }
    if reg.lwm2m_version != "1.0" && reg.binding.contains('Q') {
        problems.push("LwM2M 1.1+ announces queue mode with the Q parameter, not in b".into());
    }
    Ok(Decision::judge(
        problems.is_empty(),
        format!(
            "lwm2m={} b={} Q={}; /1/0/7 {}; /3/0/16 {}; /1/0/1 {}{}",
            reg.lwm2m_version,
            reg.binding,
            reg.queue_mode,
            binding.as_ref().map_or("?".into(), show),
            supported.as_ref().map_or("?".into(), show),
            lifetime.as_ref().map_or("?".into(), show),
            suffix(&problems)
        ),
    ))
}

/// Writes the lifetime and waits for the Update that announces it; the write's code and
/// whether the Update came.
async fn set_lifetime(ctx: &Ctx<'_>, lt: u32) -> Step<(String, bool)> {
    let mut rx = ctx.events();
    let w = ctx.write_text(&LIFETIME, &lt.to_string()).await?;
    if !w.is_success() {
        return Ok((w.code_string(), false));
    }
    let seen = ctx
        .wait_event(
            &mut rx,
            ctx.cfg.notify_within,
            |e| matches!(e, ServerEvent::Updated { update, .. } if update.lifetime_s == Some(lt)),
        )
        .await;
    Ok((w.code_string(), seen.is_some()))
}

/// Writes the short lifetime ([`super::ConformanceConfig::short_lifetime`]) and waits for the
/// Update announcing it: the lifetime and the write's code, or the FAIL when no Update came
/// (the old lifetime written back).
async fn shorten_lifetime(
    ctx: &Ctx<'_>,
    before: &Registration,
) -> Step<Result<(u32, String), Decision>> {
    let short = u32::try_from(ctx.cfg.short_lifetime.as_secs().max(1)).unwrap_or(u32::MAX);
    let (code, announced) = set_lifetime(ctx, short).await?;
    if announced {
        return Ok(Ok((short, code)));
    }
    let _ = set_lifetime(ctx, before.lifetime_s).await;
    Ok(Err(Decision::fail(format!(
        "write /1/0/1 = {short} -> {code}; no Update with lt={short} within {:?}",
        ctx.cfg.notify_within
    ))))
}

async fn case_102(ctx: &Ctx<'_>) -> Step<Decision> {
    let before = ctx.registration()?;
    let lt = before.lifetime_s.saturating_add(10);
    let (code, updated) = set_lifetime(ctx, lt).await?;
    let after = ctx.registration()?;
    let ok = updated && after.lifetime_s == lt && after.last_update > before.last_update;
    let restored = set_lifetime(ctx, before.lifetime_s).await?;
    Ok(Decision::judge(
        ok,
        format!(
            "write /1/0/1 = {lt} -> {code}; Update with lt={lt} within {:?}: {}; registration lt {} (was {}); restored lt={}: {}",
            ctx.cfg.notify_within,
            if updated { "yes" } else { "no" },
            after.lifetime_s,
            before.lifetime_s,
            before.lifetime_s,
            if restored.1 { "yes" } else { "no" }
        ),
    ))
}

async fn case_104(ctx: &Ctx<'_>) -> Step<Decision> {
    let mut rx = ctx.events();
    let e = ctx.execute(&TRIGGER).await?;
    let update = if e.is_success() {
        ctx.wait_event(&mut rx, ctx.cfg.notify_within, |e| {
            matches!(e, ServerEvent::Updated { .. })
        })
        .await
    } else {
        None
    };
    let links = match update.as_deref() {
        Some(ServerEvent::Updated { update, .. }) => {
            if update.object_links.is_some() {
                "an Update with object links"
            } else {
                "an Update without object links"
            }
        }
        _ => "no Update",
    };
    Ok(Decision::judge(
        e.is_success() && update.is_some(),
        format!(
            "Execute /1/0/8 -> {}; then {links} within {:?}",
            e.code_string(),
            ctx.cfg.notify_within
        ),
    ))
}

async fn case_107(ctx: &Ctx<'_>) -> Step<Decision> {
    let before = ctx.registration()?;
    let mut rx = ctx.events();
    let (short, code) = match shorten_lifetime(ctx, &before).await? {
        Ok(written) => written,
        Err(fail) => return Ok(fail),
    };
    // Twice the lifetime: the registration must stay alive through Updates sent in time.
    let window = Duration::from_secs(u64::from(short) * 2);
    let until = tokio::time::Instant::now() + window;
    let mut updates = 0;
    let mut expired = false;
    while let Some(ev) = ctx
        .wait_event(
            &mut rx,
            until.saturating_duration_since(tokio::time::Instant::now()),
            |e| {
                matches!(
                    e,
                    ServerEvent::Updated { .. } | ServerEvent::Deregistration(_)
                )
            },
        )
        .await
    {
        match &*ev {
            ServerEvent::Deregistration(_) => {
                expired = true;
                break;
            }
            _ => updates += 1,
        }
    }
    let alive = ctx.registration().is_ok();
    let restored = set_lifetime(ctx, before.lifetime_s).await?;
    Ok(Decision::judge(
        !expired && alive && updates >= 1,
        format!(
            "write /1/0/1 = {short} -> {code}; over {window:?}: {updates} periodic Update(s){}; restored lt={}: {}",
            if expired { ", and the registration expired" } else { "" },
            before.lifetime_s,
            if restored.1 { "yes" } else { "no" }
        ),
    ))
}

/// Queue Mode (core TS 1.1 §6.5): a queue-mode client may sleep, and the server keeps its
/// requests until the client sends something, typically the Update it owes before its lifetime
/// runs out (§6.2.2); the client stays reachable a while after it sent (transport TS 1.1
/// §5.2.2), so a request sent on its Update must be answered. The case shortens the lifetime
/// (as 1.1-int-107 does), waits for the periodic Update after the one announcing it, sends the
/// kept Read of /3/0 at once and judges the answer; then restores the lifetime.
async fn case_queue_mode(ctx: &Ctx<'_>) -> Step<Decision> {
    let before = ctx.registration()?;
    if !before.queue_mode {
        return Ok(Decision::not_applicable(format!(
            "the device registered without Queue Mode (lwm2m={} b={}, no Q)",
            before.lwm2m_version, before.binding
        )));
    }
    let (short, code) = match shorten_lifetime(ctx, &before).await? {
        Ok(written) => written,
        Err(fail) => return Ok(fail),
    };
    // From after the Update that announced the lifetime: the next message is the device's own.
    let mut rx = ctx.events();
    let since = tokio::time::Instant::now();
    let within = Duration::from_secs(u64::from(short)) + ctx.cfg.tolerance;
    let woke = ctx
        .wait_event(&mut rx, within, |e| {
            matches!(
                e,
                ServerEvent::Updated { .. }
                    | ServerEvent::Registration(_)
                    | ServerEvent::Deregistration(_)
            )
        })
        .await;
    let after = since.elapsed();
    let message = match woke.as_deref() {
        Some(ServerEvent::Updated { .. }) => "an Update",
        Some(ServerEvent::Registration(_)) => "a new Register",
        Some(_) => {
            return Ok(Decision::fail(format!(
                "write /1/0/1 = {short} -> {code}; then the registration ended (expired or \
                 de-registered) after {after:.1?} without an Update (lifetime {short} s)"
            )))
        }
        None => {
            return Ok(Decision::fail(format!(
                "write /1/0/1 = {short} -> {code}; no Update within the lifetime of {short} s \
                 (+{:?}): the registration ran out",
                ctx.cfg.tolerance
            )))
        }
    };
    // Sent at once, past the runner's own wait for a sleeping device: this request is the
    // one a server kept for the wake-up.
    let sent = tokio::time::Instant::now();
    let answer = ctx.device()?.read(&Path::instance(3, 0), None).await;
    let took = sent.elapsed();
    let restored = set_lifetime(ctx, before.lifetime_s).await;
    let restored = match restored {
        Ok((_, true)) => "yes",
        _ => "no",
    };
    let lead = format!(
        "write /1/0/1 = {short} -> {code}; {message} after {after:.1?} (lifetime {short} s)"
    );
    match answer {
        Ok(r) => Ok(Decision::judge(
            true,
            format!(
                "{lead}; the Read /3/0 kept for it -> {} in {took:.1?}; restored lt={}: {restored}",
                r.code_string(),
                before.lifetime_s
            ),
        )),
        Err(DmError::Exchange(ExchangeError::Timeout)) => Ok(Decision::fail(format!(
            "{lead}; the Read /3/0 sent on it got no answer within {:?}: the device went \
             offline right after it sent",
            ctx.timeout()
        ))),
        Err(e) => Err(Abort::from_dm("Read /3/0", ctx.timeout(), e)),
    }
}

async fn case_103(ctx: &Ctx<'_>) -> Step<Decision> {
    let disable_s = ctx.cfg.short_lifetime.as_secs().max(1);
    let old = ctx.read_value(&DISABLE_TIMEOUT).await?;
    let w = ctx
        .write_text(&DISABLE_TIMEOUT, &disable_s.to_string())
        .await?;
    if !w.is_success() {
        return Ok(Decision::not_applicable(format!(
            "device refuses Write /1/0/5 Disable Timeout ({}): executing Disable could take it \
             offline for its default period",
            w.code_string()
        )));
    }
    let mut rx = ctx.events();
    let e = ctx.execute(&DISABLE).await?;
    if matches!(e.code_string().as_str(), "4.04" | "4.05") {
        return Ok(Decision::not_applicable(format!(
            "device does not implement Disable /1/0/4 (Execute -> {}): a server cannot make it \
             de-register",
            e.code_string()
        )));
    }
    let gone = ctx
        .wait_event(&mut rx, ctx.cfg.notify_within, |e| {
            matches!(e, ServerEvent::Deregistration(_))
        })
        .await;
    let since = tokio::time::Instant::now();
    let back = ctx
        .wait_event(
            &mut rx,
            Duration::from_secs(disable_s) + ctx.cfg.notify_within,
            |e| matches!(e, ServerEvent::Registration(_)),
        )
        .await;
    let away = since.elapsed();
    if let Some(v) = old.as_ref().and_then(number) {
        let _ = ctx.write_text(&DISABLE_TIMEOUT, &format!("{v}")).await;
    }
    let early = back.is_some() && away + ctx.cfg.tolerance < Duration::from_secs(disable_s);
    Ok(Decision::judge(
        e.is_success() && gone.is_some() && back.is_some() && !early,
        format!(
            "write /1/0/5 = {disable_s} -> {}; Execute /1/0/4 -> {}; De-register within {:?}: {}; registered again {}",
            w.code_string(),
            e.code_string(),
            ctx.cfg.notify_within,
            if gone.is_some() { "yes" } else { "no" },
            match back {
                Some(_) => format!("after {away:.1?}{}", if early { " (before the Disable Timeout)" } else { "" }),
                None => "not within the Disable Timeout".into(),
            }
        ),
    ))
}

/// Runs registration case `id`.
pub(crate) async fn run(ctx: &Ctx<'_>, id: &str) -> Step<Decision> {
    match id {
        "1.1-int-101" => case_101(ctx).await,
        "core-reg-params" => case_params(ctx).await,
        "1.1-int-102" => case_102(ctx).await,
        "1.1-int-104" => case_104(ctx).await,
        "1.1-int-107" => case_107(ctx).await,
        "core-reg-queue-mode" => case_queue_mode(ctx).await,
        "1.1-int-103" => case_103(ctx).await,
        other => Err(Abort::Runner(format!("no registration case {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn reg(version: &str, binding: &str, links: &str) -> Registration {
        Registration {
            id: "x".into(),
            endpoint: "ep".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            lifetime_s: 60,
            lwm2m_version: version.into(),
            binding: binding.into(),
            sms_number: None,
            queue_mode: false,
            object_links: links.into(),
            additional_attributes: Default::default(),
            registration_date: SystemTime::UNIX_EPOCH,
            last_update: SystemTime::UNIX_EPOCH,
            secure: false,
        }
    }

    #[test]
    fn registration_rules() {
        assert!(registration_problems(&reg("1.1", "U", "</>;ct=\"110\",</1/0>,</3/0>")).is_empty());
        assert!(registration_problems(&reg("1.0", "UQ", "</1/0>,</3/0>")).is_empty());
        let p = registration_problems(&reg("1.1", "UQ", "</0/0>,</3/0>"));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(!registration_problems(&reg("2.7", "U", "</1/0>,</3/0>")).is_empty());
    }
}

//! Information reporting cases (core TS 1.1 section 6.4, notification attributes section
//! 5.1.2; ETS 1.1-int-301, 303): Observe at resource, instance and object level on a /1/0
//! resource the runner changes, an active cancel, and pmin/pmax/gt/lt/st judged on the
//! arrival times and values of the notifications, within the configured tolerance.

use std::time::Duration;

use lwm2m_client::codec::{Node, Path};
use tokio::time::Instant;

use super::context::{number, value_of, Ctx};
use super::management::tweakable;
use super::verdict::{Decision, Step};
use super::watch::{Notified, Observed, Watch};

/// The value of /1/0/`id` in a notification of `observed` (a resource, /1/0 or /1).
fn value_in(node: &Node, id: u16) -> Option<f64> {
    let inst = match node {
        Node::Resource(_) | Node::ResourceInstance { .. } => {
            return value_of(node).as_ref().and_then(number)
        }
        Node::Instance(i) => i,
        Node::Object { instances, .. } => instances.iter().find(|i| i.id == 0)?,
    };
    inst.resources
        .iter()
        .find(|r| r.id == id)
        .and_then(|r| match &r.value {
            lwm2m_client::codec::ResourceValue::Single(v) => number(v),
            _ => None,
        })
}

fn notified_values(ns: &[Notified], id: u16) -> Vec<String> {
    ns.iter()
        .map(|n| match &n.node {
            Ok(node) => value_in(node, id).map_or("?".into(), |v| v.to_string()),
            Err(e) => format!("undecodable ({e})"),
        })
        .collect()
}

/// The resource the cases change and its original value, or N/A.
async fn subject(ctx: &Ctx<'_>) -> Step<Result<(u16, i64), Decision>> {
    Ok(tweakable(ctx).await?.map(|found| found[0]))
}

async fn set(ctx: &Ctx<'_>, id: u16, v: i64) -> Step<String> {
    Ok(ctx
        .write_text(&Path::resource(1, 0, id), &v.to_string())
        .await?
        .code_string())
}

/// Observes `path` and fails the case when the device refuses.
async fn observe(ctx: &Ctx<'_>, path: Path) -> Step<Result<(Watch, String), Decision>> {
    Ok(match Watch::start(ctx, path, None).await? {
        Observed::Established(first, w) => Ok((w, first.code_string())),
        Observed::Refused(r) => Err(Decision::fail(format!(
            "Observe {path} -> {} without the Observe option",
            r.code_string()
        ))),
    })
}

/// Waits for a notification carrying `want` for /1/0/`id`; the values seen on the way.
async fn until_value(
    watch: &mut Watch,
    id: u16,
    want: i64,
    within: Duration,
) -> (bool, Vec<String>) {
    let until = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(n) = watch
        .next(until.saturating_duration_since(Instant::now()))
        .await
    {
        let v = n.node.as_ref().ok().and_then(|node| value_in(node, id));
        seen.push(v.map_or("?".into(), |v| v.to_string()));
        if v == Some(want as f64) {
            return (true, seen);
        }
    }
    (false, seen)
}

/// 301 and the instance and object variants: a change is notified.
async fn case_notify(ctx: &Ctx<'_>, level: usize) -> Step<Decision> {
    let (id, old) = match subject(ctx).await? {
        Ok(s) => s,
        Err(d) => return Ok(d),
    };
    let path = match level {
        1 => Path::object(1),
        2 => Path::instance(1, 0),
        _ => Path::resource(1, 0, id),
    };
    let (mut watch, code) = match observe(ctx, path).await? {
        Ok(w) => w,
        Err(d) => return Ok(d),
    };
    let new = old + 5;
    let w = set(ctx, id, new).await?;
    let (ok, seen) = until_value(&mut watch, id, new, ctx.cfg.notify_within).await;
    drop(watch);
    let r = set(ctx, id, old).await?;
    Ok(Decision::judge(
        ok,
        format!(
            "Observe {path} -> {code}; Write /1/0/{id} = {new} -> {w}; notified /1/0/{id} values {seen:?} within {:?}; restored -> {r}",
            ctx.cfg.notify_within
        ),
    ))
}

/// 303: after a GET with Observe = 1 the device notifies no more.
async fn case_303(ctx: &Ctx<'_>) -> Step<Decision> {
    let (id, old) = match subject(ctx).await? {
        Ok(s) => s,
        Err(d) => return Ok(d),
    };
    let path = Path::resource(1, 0, id);
    let (mut watch, code) = match observe(ctx, path).await? {
        Ok(w) => w,
        Err(d) => return Ok(d),
    };
    let w1 = set(ctx, id, old + 3).await?;
    let (first, _) = until_value(&mut watch, id, old + 3, ctx.cfg.notify_within).await;
    let cancel = watch.cancel(ctx).await?;
    let w2 = set(ctx, id, old + 4).await?;
    let after = watch.collect(ctx.cfg.quiet).await;
    drop(watch);
    let r = set(ctx, id, old).await?;
    Ok(Decision::judge(
        first && cancel.success && !cancel.still_observed && after.is_empty(),
        format!(
            "Observe {path} -> {code}; Write {} -> {w1}, notified: {}; cancel (GET Observe=1, same token) -> {}{}; Write {} -> {w2}; notifications in the next {:?}: {:?}; restored -> {r}",
            old + 3,
            if first { "yes" } else { "no" },
            cancel.code,
            if cancel.still_observed { " with Observe (still observed)" } else { "" },
            old + 4,
            ctx.cfg.quiet,
            notified_values(&after, id)
        ),
    ))
}

/// pmin=1, pmax=3: notifications without a change at most pmax apart; changes right after a
/// notification wait for pmin.
async fn case_pmin_pmax(ctx: &Ctx<'_>) -> Step<Decision> {
    let (id, old) = match subject(ctx).await? {
        Ok(s) => s,
        Err(d) => return Ok(d),
    };
    let (pmin, pmax) = (Duration::from_secs(1), Duration::from_secs(3));
    let tol = ctx.cfg.tolerance;
    let path = Path::resource(1, 0, id);
    let wa = ctx
        .write_attributes(&path, &[("pmin", "1"), ("pmax", "3")])
        .await?;
    let (mut watch, code) = match observe(ctx, path).await? {
        Ok(w) => w,
        Err(d) => return Ok(d),
    };
    let mut problems = Vec::new();
    // Unchanged value: pmax notifications.
    let quiet = watch.collect(pmax * 2 + tol).await;
    let mut last = watch.since;
    let mut gaps = Vec::new();
    for n in &quiet {
        gaps.push(n.at - last);
        last = n.at;
    }
    gaps.push(Instant::now() - last);
    if quiet.len() < 2 {
        problems.push(format!(
            "{} notification(s) in {:?} without a change (pmax {pmax:?})",
            quiet.len(),
            pmax * 2 + tol
        ));
    }
    if let Some(g) = gaps.iter().find(|g| **g > pmax + tol) {
        problems.push(format!("a gap of {g:.1?} exceeds pmax {pmax:?} + {tol:?}"));
    }
    // Two changes in a row: the second notification waits for pmin after the first.
    let w1 = set(ctx, id, old + 1).await?;
    let (got1, _) = until_value(&mut watch, id, old + 1, pmax + tol).await;
    let t1 = Instant::now();
    let w2 = set(ctx, id, old + 2).await?;
    let (got2, _) = until_value(&mut watch, id, old + 2, pmax + tol).await;
    let spacing = t1.elapsed();
    if !got1 || !got2 {
        problems.push(format!("changes notified: {got1}, {got2}"));
    } else if spacing + Duration::from_millis(200) < pmin {
        problems.push(format!(
            "second change notified {spacing:.2?} after the first (pmin {pmin:?})"
        ));
    }
    drop(watch);
    let _ = ctx
        .write_attributes(&path, &[("pmin", ""), ("pmax", "")])
        .await;
    let r = set(ctx, id, old).await?;
    Ok(Decision::judge(
        wa.is_success() && problems.is_empty(),
        format!(
            "Write-Attributes {path} pmin=1 pmax=3 -> {}; Observe -> {code}; unchanged: notifications after {:?}; Write -> {w1}, {w2}: second notified {spacing:.2?} after the first; restored -> {r}{}",
            wa.code_string(),
            gaps.iter().map(|g| format!("{g:.1?}")).collect::<Vec<_>>(),
            if problems.is_empty() { String::new() } else { format!("; {}", problems.join("; ")) }
        ),
    ))
}

/// A sequence of writes, each expected to be notified or not, under `attrs`.
async fn thresholds(
    ctx: &Ctx<'_>,
    attrs: &[(&str, &str)],
    start: i64,
    steps: &[(i64, bool)],
) -> Step<Decision> {
    let (id, old) = match subject(ctx).await? {
        Ok(s) => s,
        Err(d) => return Ok(d),
    };
    let path = Path::resource(1, 0, id);
    let w0 = set(ctx, id, start).await?;
    let wa = ctx.write_attributes(&path, attrs).await?;
    let (mut watch, code) = match observe(ctx, path).await? {
        Ok(w) => w,
        Err(d) => return Ok(d),
    };
    let mut ok = wa.is_success() && w0 == "2.04";
    let mut log = Vec::new();
    for (v, expect) in steps {
        let w = set(ctx, id, *v).await?;
        let (notified, seen) = if *expect {
            until_value(&mut watch, id, *v, ctx.cfg.notify_within).await
        } else {
            let ns = watch.collect(ctx.cfg.quiet).await;
            (!ns.is_empty(), notified_values(&ns, id))
        };
        ok &= notified == *expect && w == "2.04";
        log.push(format!(
            "{v} -> {w}: {} (expected {}){}",
            if notified { "notified" } else { "not notified" },
            if *expect { "notified" } else { "none" },
            if seen.is_empty() {
                String::new()
            } else {
                format!(" {seen:?}")
            }
        ));
    }
    drop(watch);
    let clear: Vec<(&str, &str)> = attrs.iter().map(|(k, _)| (*k, "")).collect();
    let _ = ctx.write_attributes(&path, &clear).await;
    let r = set(ctx, id, old).await?;
    let attrs_text: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(Decision::judge(
        ok,
        format!(
            "/1/0/{id} = {start} -> {w0}; Write-Attributes {} -> {}; Observe -> {code}; writes: {}; restored -> {r}",
            attrs_text.join(" "),
            wa.code_string(),
            log.join(", ")
        ),
    ))
}

/// Runs information reporting case `id`.
pub(crate) async fn run(ctx: &Ctx<'_>, id: &str) -> Step<Decision> {
    match id {
        "1.1-int-301" => case_notify(ctx, 3).await,
        "core-ir-instance" => case_notify(ctx, 2).await,
        "core-ir-object" => case_notify(ctx, 1).await,
        "1.1-int-303" => case_303(ctx).await,
        "core-ir-pmin-pmax" => case_pmin_pmax(ctx).await,
        // gt/lt: a change across a threshold is notified, one that stays on a side is not.
        "core-ir-gt-lt" => {
            thresholds(
                ctx,
                &[("pmin", "0"), ("pmax", "300"), ("gt", "100"), ("lt", "20")],
                50,
                &[(60, false), (120, true), (110, false), (10, true)],
            )
            .await
        }
        // st: only a change of at least st since the last notified value is notified.
        "core-ir-st" => {
            thresholds(
                ctx,
                &[("pmin", "0"), ("pmax", "300"), ("st", "10")],
                50,
                &[(55, false), (66, true), (70, false)],
            )
            .await
        }
        "1.1-int-306" => Ok(Decision::inconclusive(
            "Send is initiated by the client (core TS 1.1 section 6.4.7): a server cannot \
             provoke it",
        )),
        other => Err(super::verdict::Abort::Runner(format!(
            "no information reporting case {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_client::codec::{Instance, Resource, ResourceValue, Value};

    #[test]
    fn values_at_every_level() {
        let inst = Instance {
            id: 0,
            resources: vec![Resource {
                id: 3,
                value: ResourceValue::Single(Value::Integer(9)),
            }],
        };
        assert_eq!(value_in(&Node::Instance(inst.clone()), 3), Some(9.0));
        assert_eq!(
            value_in(
                &Node::Object {
                    id: 1,
                    instances: vec![inst.clone()]
                },
                3
            ),
            Some(9.0)
        );
        assert_eq!(
            value_in(&Node::Resource(inst.resources[0].clone()), 3),
            Some(9.0)
        );
        assert_eq!(value_in(&Node::Instance(inst), 2), None);
    }
}

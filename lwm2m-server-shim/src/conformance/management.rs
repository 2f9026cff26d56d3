//! Device management cases on objects 1 (LwM2M Server) and 3 (Device) (core TS 1.1 section
//! 6.3; ETS 1.1-int-201..260): reads at every level in each format the device announces,
//! writes (replace, partial update, refused), Security off limits, Discover with attributes,
//! Create/Delete where the device has an object that allows it, and Reboot.

use lwm2m_client::codec::link;
use lwm2m_client::codec::{ContentFormat, Instance, Node, Path, Resource, ResourceValue, Value};

use super::context::{number, show, value_of, Ctx};
use super::verdict::{Abort, Decision, Step};
use crate::content::{self, ContentError};
use crate::server::events::ServerEvent;

/// Writable integers of the LwM2M Server object the cases change (and put back), in order of
/// preference: Default Maximum Period and Default Minimum Period (optional, no side effects),
/// else Lifetime (mandatory; a change makes the client send an Update).
const TWEAKABLE: [u16; 3] = [3, 2, 1];

/// A resource of an instance node.
fn resource_of(node: &Node, id: u16) -> Option<&ResourceValue> {
    let inst = match node {
        Node::Instance(i) => i,
        Node::Object { instances, .. } => instances.first()?,
        _ => return None,
    };
    inst.resources.iter().find(|r| r.id == id).map(|r| &r.value)
}

fn single(node: &Node, id: u16) -> Option<Value> {
    match resource_of(node, id)? {
        ResourceValue::Single(v) => Some(v.clone()),
        ResourceValue::Multiple(_) => None,
    }
}

fn format_name(cf: ContentFormat) -> String {
    let name = match cf {
        ContentFormat::Text => "plain text",
        ContentFormat::Tlv => "TLV",
        ContentFormat::LwM2mJson => "LwM2M JSON",
        ContentFormat::Cbor => "CBOR",
        ContentFormat::SenmlJson => "SenML JSON",
        ContentFormat::SenmlCbor => "SenML CBOR",
        ContentFormat::LwM2mCbor => "LwM2M CBOR",
        _ => "other",
    };
    format!("{} ({name})", cf.number())
}

/// Whether the shim's content layer decodes `cf`.
fn decodable(cf: ContentFormat) -> bool {
    !matches!(
        content::decode(cf, &Path::resource(3, 0, 0), &[]),
        Err(ContentError::Unsupported(_))
    )
}

/// The preferred multi-value format, or N/A.
fn preferred(ctx: &Ctx<'_>) -> Result<ContentFormat, Decision> {
    ctx.formats.preferred().ok_or_else(|| {
        Decision::not_applicable(format!(
            "device announces no format the runner reads instances in (TLV, SenML): {}",
            ctx.formats.describe()
        ))
    })
}

/// Reads `path` in `cf` and checks the answer's code and Content-Format; the node or the
/// problem.
async fn read_in(ctx: &Ctx<'_>, path: &Path, cf: ContentFormat) -> Step<Result<Node, String>> {
    let (r, node) = ctx.read_node(path, Some(cf)).await?;
    if r.is_success() && r.content_format.is_some_and(|got| got != cf) {
        return Ok(Err(format!(
            "Read {path} asked for {} got {}",
            format_name(cf),
            r.content_format.map_or("none".into(), format_name)
        )));
    }
    Ok(node)
}

/// 201: single resources in plain text.
async fn case_201(ctx: &Ctx<'_>) -> Step<Decision> {
    let reg = ctx.registration()?;
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    for (path, mandatory) in [
        (Path::resource(3, 0, 16), true),
        (Path::resource(1, 0, 1), true),
        (Path::resource(3, 0, 0), false),
        (Path::resource(3, 0, 1), false),
        (Path::resource(3, 0, 2), false),
    ] {
        let (r, node) = ctx.read_node(&path, Some(ContentFormat::Text)).await?;
        if !mandatory && r.code_string() == "4.04" {
            seen.push(format!("{path} absent"));
            continue;
        }
        match node.as_ref().ok().and_then(value_of) {
            Some(v) if r.content_format.is_none_or(|c| c == ContentFormat::Text) => {
                seen.push(format!("{path}={}", show(&v)));
                if path == Path::resource(1, 0, 1) && number(&v) != Some(f64::from(reg.lifetime_s))
                {
                    problems.push(format!(
                        "/1/0/1 is not the registered lt={}",
                        reg.lifetime_s
                    ));
                }
            }
            Some(_) => problems.push(format!(
                "Read {path} (text) -> {} in format {}, not plain text",
                r.code_string(),
                r.content_format.map_or("none".into(), format_name)
            )),
            None => problems.push(format!(
                "Read {path} (text) -> {}: {}",
                r.code_string(),
                node.err().unwrap_or_else(|| "no single value".into())
            )),
        }
    }
    Ok(Decision::judge(
        problems.is_empty(),
        with_problems(seen.join(", "), &problems),
    ))
}

fn with_problems(evidence: String, problems: &[String]) -> String {
    if problems.is_empty() {
        evidence
    } else {
        format!("{evidence}; {}", problems.join("; "))
    }
}

/// 203, 204, 211, 231, 232: basic information in one content format.
///
/// An LwM2M 1.1 client announces one preferred format in `ct` (core TS 1.1 section 6.2.1) and
/// may take others, so a format it did not announce is tried: 4.06 Not Acceptable to it makes
/// the case N/A; a format it announced must be served.
async fn case_format(ctx: &Ctx<'_>, cf: ContentFormat) -> Step<Decision> {
    if !decodable(cf) {
        return Ok(Decision::not_applicable(format!(
            "the shim has no decoder for content format {}",
            format_name(cf)
        )));
    }
    let reg = ctx.registration()?;
    if let Some(since) = cf.since_lwm2m().filter(|v| *v > reg.lwm2m_version.as_str()) {
        return Ok(Decision::not_applicable(format!(
            "content format {} is LwM2M {since}; the device registered as {}",
            format_name(cf),
            reg.lwm2m_version
        )));
    }
    // CBOR (60) carries single values only.
    let (device, server) = if cf == ContentFormat::Cbor {
        (Path::resource(3, 0, 16), Path::resource(1, 0, 1))
    } else {
        (Path::instance(3, 0), Path::instance(1, 0))
    };
    if !ctx.formats.supports(cf) {
        let (r, _) = ctx.read_node(&device, Some(cf)).await?;
        if r.code_string() == "4.06" {
            return Ok(Decision::not_applicable(format!(
                "device does not announce content format {} ({}) and answers 4.06 to it",
                format_name(cf),
                ctx.formats.describe()
            )));
        }
    }
    let d = read_in(ctx, &device, cf).await?;
    let s = read_in(ctx, &server, cf).await?;
    let binding = d
        .as_ref()
        .ok()
        .and_then(|n| value_of(n).or_else(|| single(n, 16)));
    let lifetime = s
        .as_ref()
        .ok()
        .and_then(|n| value_of(n).or_else(|| single(n, 1)));
    let mut problems = Vec::new();
    if let Err(e) = &d {
        problems.push(e.clone());
    } else if !matches!(binding, Some(Value::String(_))) {
        problems.push("no Supported Binding (/3/0/16) string".into());
    }
    if let Err(e) = &s {
        problems.push(e.clone());
    } else if lifetime.as_ref().and_then(number) != Some(f64::from(reg.lifetime_s)) {
        problems.push(format!(
            "Lifetime (/1/0/1) is not the registered lt={}",
            reg.lifetime_s
        ));
    }
    Ok(Decision::judge(
        problems.is_empty(),
        with_problems(
            format!(
                "Read {device} and {server} in {}: /3/0/16 {}, /1/0/1 {}",
                format_name(cf),
                binding.as_ref().map_or("?".into(), show),
                lifetime.as_ref().map_or("?".into(), show)
            ),
            &problems,
        ),
    ))
}

/// 222, 223, 224: reads at object, instance and resource level in the preferred format.
async fn case_levels(ctx: &Ctx<'_>, depth: usize) -> Step<Decision> {
    let cf = match preferred(ctx) {
        Ok(cf) => cf,
        Err(d) => return Ok(d),
    };
    let reg = ctx.registration()?;
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (object, res, want) in [(1u16, 1u16, Some(f64::from(reg.lifetime_s))), (3, 16, None)] {
        let path = match depth {
            1 => Path::object(object),
            2 => Path::instance(object, 0),
            _ => Path::resource(object, 0, res),
        };
        let node = read_in(ctx, &path, cf).await?;
        let shape_ok = matches!(
            (&node, depth),
            (Ok(Node::Object { .. }), 1) | (Ok(Node::Instance(_)), 2) | (Ok(Node::Resource(_)), 3)
        );
        let v = node
            .as_ref()
            .ok()
            .and_then(|n| value_of(n).or_else(|| single(n, res)));
        seen.push(format!(
            "{path}: {} /{object}/0/{res}={}",
            match &node {
                Ok(Node::Object { instances, .. }) =>
                    format!("object, {} instance(s)", instances.len()),
                Ok(Node::Instance(_)) => "instance".into(),
                Ok(Node::Resource(_)) => "resource".into(),
                Ok(_) => "other node".into(),
                Err(e) => e.clone(),
            },
            v.as_ref().map_or("?".into(), show)
        ));
        if !shape_ok || v.is_none() {
            problems.push(format!(
                "{path} did not read as a {} level node with /{object}/0/{res}",
                ["", "object", "instance", "resource"][depth.min(3)]
            ));
        } else if want.is_some() && v.as_ref().and_then(number) != want {
            problems.push(format!(
                "/1/0/1 is not the registered lt={}",
                reg.lifetime_s
            ));
        }
    }
    Ok(Decision::judge(
        problems.is_empty(),
        with_problems(
            format!("{} — {}", format_name(cf), seen.join("; ")),
            &problems,
        ),
    ))
}

/// 225: a resource instance of /3/0 (Error Code /3/0/11/0 when it has one), LwM2M 1.1: its
/// value must be the one the instance read shows.
async fn case_225(ctx: &Ctx<'_>) -> Step<Decision> {
    let reg = ctx.registration()?;
    if reg.lwm2m_version == "1.0" {
        return Ok(Decision::not_applicable(
            "Read on a resource instance is LwM2M 1.1; the device registered as 1.0",
        ));
    }
    let cf = match preferred(ctx) {
        Ok(cf) => cf,
        Err(d) => return Ok(d),
    };
    let device = match read_in(ctx, &Path::instance(3, 0), cf).await? {
        Ok(Node::Instance(i)) => i,
        Ok(other) => return Ok(Decision::fail(format!("Read /3/0 gave {other:?}"))),
        Err(e) => return Ok(Decision::fail(e)),
    };
    // Error Code first (the ETS reads /3/0/11/0), else any multiple resource with an instance.
    let mut multiple: Vec<(u16, u16, Value)> = device
        .resources
        .iter()
        .filter_map(|r| match &r.value {
            ResourceValue::Multiple(items) => items.first().map(|(ri, v)| (r.id, *ri, v.clone())),
            ResourceValue::Single(_) => None,
        })
        .collect();
    multiple.sort_by_key(|(id, _, _)| *id != 11);
    let Some((rid, ri, expected)) = multiple.into_iter().next() else {
        return Ok(Decision::not_applicable(
            "no multiple-instance resource of the device's /3/0 has an instance to read \
             (its Error Code /3/0/11 has none)",
        ));
    };
    let path = Path::resource_instance(3, 0, rid, ri);
    let (r, node) = ctx.read_node(&path, Some(cf)).await?;
    let v = node.as_ref().ok().and_then(value_of);
    Ok(Decision::judge(
        v.as_ref() == Some(&expected),
        format!(
            "Read {path} ({}) -> {}: {} (the instance read shows {})",
            format_name(cf),
            r.code_string(),
            match (&v, node) {
                (Some(v), _) => show(v),
                (None, Err(e)) => e,
                (None, Ok(n)) => format!("not a resource instance: {n:?}"),
            },
            show(&expected)
        ),
    ))
}

/// The /1/0 resources the cases may change ([`TWEAKABLE`] present in the device's /1/0) with
/// their values.
pub(crate) async fn tweakable(ctx: &Ctx<'_>) -> Step<Result<Vec<(u16, i64)>, Decision>> {
    let (r, node) = ctx
        .read_node(&Path::instance(1, 0), ctx.formats.preferred())
        .await?;
    let Ok(node) = node else {
        return Ok(Err(Decision::fail(format!(
            "Read /1/0 -> {}: {}",
            r.code_string(),
            node.err().unwrap_or_default()
        ))));
    };
    let found: Vec<(u16, i64)> = TWEAKABLE
        .into_iter()
        .filter_map(|id| {
            let v = single(&node, id)?;
            Some((id, number(&v)? as i64))
        })
        .collect();
    if found.is_empty() {
        return Ok(Err(Decision::fail(format!(
            "the device's /1/0 has no integer Lifetime (/1/0/1, mandatory): {node:?}"
        ))));
    }
    Ok(Ok(found))
}

/// Writes `value` to /1/0/`id` in plain text, then reads it back.
async fn write_read_text(ctx: &Ctx<'_>, id: u16, value: i64) -> Step<(String, Option<Value>)> {
    let path = Path::resource(1, 0, id);
    let w = ctx.write_text(&path, &value.to_string()).await?;
    let back = ctx.read_value(&path).await?;
    Ok((w.code_string(), back))
}

fn int_node(id: u16, v: i64) -> Resource {
    Resource {
        id,
        value: ResourceValue::Single(Value::Integer(v)),
    }
}

/// 205 (text) and 227 (the preferred format, replace on a resource).
async fn case_write_resource(ctx: &Ctx<'_>, text: bool) -> Step<Decision> {
    let found = match tweakable(ctx).await? {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    let (id, old) = found[0];
    let new = old + 17;
    let path = Path::resource(1, 0, id);
    let (code, back, how) = if text {
        let (c, b) = write_read_text(ctx, id, new).await?;
        (c, b, "plain text".to_string())
    } else {
        let cf = match preferred(ctx) {
            Ok(cf) => cf,
            Err(d) => return Ok(d),
        };
        let payload = content::encode(cf, &path, &Node::Resource(int_node(id, new)))
            .map_err(|e| Abort::Runner(format!("encoding {path}: {e}")))?;
        let w = ctx.write(&path, true, cf, &payload).await?;
        (
            w.code_string(),
            ctx.read_value(&path).await?,
            format_name(cf),
        )
    };
    let restored = write_read_text(ctx, id, old).await?;
    let ok = code == "2.04" && back.as_ref().and_then(number) == Some(new as f64);
    Ok(Decision::judge(
        ok,
        format!(
            "Write {path} = {new} ({how}) -> {code}; read back {}; restored {old}: {}",
            back.as_ref().map_or("?".into(), show),
            restored.0
        ),
    ))
}

/// 226: partial update (POST) of /1/0 with the tweakable resources.
async fn case_226(ctx: &Ctx<'_>) -> Step<Decision> {
    let mut found = match tweakable(ctx).await? {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    if found.len() > 1 {
        // Lifetime only when nothing else is writable: its change sends an Update.
        found.retain(|(id, _)| *id != 1);
    }
    let cf = match preferred(ctx) {
        Ok(cf) => cf,
        Err(d) => return Ok(d),
    };
    // A resource the update leaves out must not change.
    let untouched = Path::resource(1, 0, 7);
    let binding = ctx.read_value(&untouched).await?;
    let path = Path::instance(1, 0);
    let node = |delta: i64| {
        Node::Instance(Instance {
            id: 0,
            resources: found
                .iter()
                .map(|(id, v)| int_node(*id, v + delta))
                .collect(),
        })
    };
    let payload = content::encode(cf, &path, &node(23))
        .map_err(|e| Abort::Runner(format!("encoding {path}: {e}")))?;
    let w = ctx.write(&path, false, cf, &payload).await?;
    let mut backs = Vec::new();
    let mut ok = w.code_string() == "2.04";
    for (id, old) in &found {
        let v = ctx.read_value(&Path::resource(1, 0, *id)).await?;
        ok &= v.as_ref().and_then(number) == Some((old + 23) as f64);
        backs.push(format!("/1/0/{id} {}", v.as_ref().map_or("?".into(), show)));
    }
    let binding_after = ctx.read_value(&untouched).await?;
    ok &= binding_after == binding;
    let restore = content::encode(cf, &path, &node(0))
        .map_err(|e| Abort::Runner(format!("encoding {path}: {e}")))?;
    let r = ctx.write(&path, false, cf, &restore).await?;
    Ok(Decision::judge(
        ok,
        format!(
            "partial update of {path} ({}) with {} -> {}; read back {}; {untouched} {} -> {} (must not change); restored -> {}",
            format_name(cf),
            found.iter().map(|(id, v)| format!("/1/0/{id}={}", v + 23)).collect::<Vec<_>>().join(", "),
            w.code_string(),
            backs.join(", "),
            binding.as_ref().map_or("?".into(), show),
            binding_after.as_ref().map_or("?".into(), show),
            r.code_string()
        ),
    ))
}

/// 256: Short Server ID (/1/0/0) is read-only: 4.05 and unchanged.
async fn case_256(ctx: &Ctx<'_>) -> Step<Decision> {
    let path = Path::resource(1, 0, 0);
    let before = ctx.read_value(&path).await?;
    let other = before
        .as_ref()
        .and_then(number)
        .map_or(77, |v| (v as i64 % 60000) + 1);
    let w = ctx.write_text(&path, &other.to_string()).await?;
    let after = ctx.read_value(&path).await?;
    Ok(Decision::judge(
        w.code_string() == "4.05" && after == before && before.is_some(),
        format!(
            "/1/0/0 {}; Write {other} -> {} (expected 4.05); then {}",
            before.as_ref().map_or("unreadable".into(), show),
            w.code_string(),
            after.as_ref().map_or("unreadable".into(), show)
        ),
    ))
}

/// 221: the Security object "MUST NOT be accessible by any other LwM2M Server" than a
/// bootstrap server (object definition): every operation refused, with 4.01 as the ETS expects
/// or 4.04 (a client that hides the object).
async fn case_221(ctx: &Ctx<'_>) -> Step<Decision> {
    let r = ctx.read(&Path::instance(0, 0), None).await?;
    let w = ctx
        .write_text(&Path::resource(0, 0, 0), "coap://127.0.0.1:1")
        .await?;
    let a = ctx
        .write_attributes(&Path::object(0), &[("pmin", "10")])
        .await?;
    let codes = [r.code_string(), w.code_string(), a.code_string()];
    Ok(Decision::judge(
        codes.iter().all(|c| c == "4.01" || c == "4.04"),
        format!(
            "Read /0/0 -> {}, Write /0/0/0 -> {}, Write-Attributes /0 pmin=10 -> {} (4.01, or 4.04, expected)",
            codes[0], codes[1], codes[2]
        ),
    ))
}

/// The attributes of the link to `target` in a link-format body.
fn link_attrs(body: &[u8], target: &str) -> Option<Vec<(String, Option<String>)>> {
    let text = std::str::from_utf8(body).ok()?;
    let links = link::parse(text).ok()?;
    links
        .into_iter()
        .find(|l| l.target == target)
        .map(|l| l.attrs)
}

/// 260: Discover /3, then attributes written on a /1/0 resource show in Discover /1/0.
async fn case_260(ctx: &Ctx<'_>) -> Step<Decision> {
    let found = match tweakable(ctx).await? {
        Ok(f) => f,
        Err(d) => return Ok(d),
    };
    let id = found[0].0;
    let d3 = ctx.discover(&Path::object(3)).await?;
    let d3_links: Vec<String> = std::str::from_utf8(&d3.payload)
        .ok()
        .and_then(|t| link::parse(t).ok())
        .map(|l| l.into_iter().map(|l| l.target).collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    if !d3.is_success()
        || d3
            .content_format
            .is_some_and(|c| c != ContentFormat::LinkFormat)
    {
        problems.push(format!(
            "Discover /3 -> {} (format {:?})",
            d3.code_string(),
            d3.content_format.map(|c| c.number())
        ));
    }
    for want in ["/3/0", "/3/0/16"] {
        if !d3_links.iter().any(|t| t == want) {
            problems.push(format!("Discover /3 lists no <{want}>"));
        }
    }
    let target = Path::resource(1, 0, id);
    let wa = ctx
        .write_attributes(&target, &[("pmin", "7"), ("pmax", "77")])
        .await?;
    let d1 = ctx.discover(&Path::instance(1, 0)).await?;
    let attrs = link_attrs(&d1.payload, &target.to_string()).unwrap_or_default();
    let has = |k: &str, v: &str| {
        attrs.iter().any(|(n, val)| {
            n == k && val.as_deref().and_then(|x| x.parse::<f64>().ok()) == v.parse::<f64>().ok()
        })
    };
    if !wa.is_success() {
        problems.push(format!(
            "Write-Attributes {target} pmin=7 pmax=77 -> {}",
            wa.code_string()
        ));
    } else if !(has("pmin", "7") && has("pmax", "77")) {
        problems.push(format!(
            "Discover /1/0 shows {target} with {attrs:?}, not pmin=7 pmax=77"
        ));
    }
    let _ = ctx
        .write_attributes(&target, &[("pmin", ""), ("pmax", "")])
        .await;
    Ok(Decision::judge(
        problems.is_empty(),
        with_problems(
            format!(
                "Discover /3 -> {}: {} links; Write-Attributes {target} pmin=7 pmax=77 -> {}; Discover /1/0 -> {}: {target} {attrs:?}",
                d3.code_string(),
                d3_links.len(),
                wa.code_string(),
                d1.code_string()
            ),
            &problems,
        ),
    ))
}

/// Objects a management server may create instances in (no access control needed): Portfolio.
const CREATABLE: [u16; 1] = [16];

/// Create an instance, see the Update with object links, read it, delete it.
async fn case_create_delete(ctx: &Ctx<'_>) -> Step<Decision> {
    let reg = ctx.registration()?;
    let Some(object) = CREATABLE
        .into_iter()
        .find(|o| super::readings::announces(&reg, *o))
    else {
        return Ok(Decision::not_applicable(format!(
            "device announces no object a server may create instances in ({CREATABLE:?}: Portfolio)"
        )));
    };
    let cf = match preferred(ctx) {
        Ok(cf) => cf,
        Err(d) => return Ok(d),
    };
    let iid = 77;
    let node = Node::Instance(Instance {
        id: iid,
        resources: vec![Resource {
            id: 0,
            value: ResourceValue::Multiple(vec![(0, Value::String("conformance".into()))]),
        }],
    });
    let obj = Path::object(object);
    let payload = content::encode(cf, &obj, &node)
        .map_err(|e| Abort::Runner(format!("encoding {obj}: {e}")))?;
    let mut rx = ctx.events();
    let c = ctx.create(&obj, cf, &payload).await?;
    let inst = Path::instance(object, iid);
    let announced = format!("</{object}/{iid}>");
    let update = ctx
        .wait_event(&mut rx, ctx.cfg.notify_within, |e| {
            matches!(e, ServerEvent::Updated { update, .. }
                if update.object_links.as_deref().is_some_and(|l| l.contains(&announced)))
        })
        .await;
    let (r, _) = ctx.read_node(&inst, Some(cf)).await?;
    let d = ctx.delete(&inst).await?;
    let (gone, _) = ctx.read_node(&inst, Some(cf)).await?;
    let ok = c.code_string() == "2.01"
        && update.is_some()
        && r.is_success()
        && d.code_string() == "2.02"
        && gone.code_string() == "4.04";
    Ok(Decision::judge(
        ok,
        format!(
            "Create {obj} instance {iid} -> {}; Update with object links listing {announced}: {}; Read {inst} -> {}; Delete -> {}; Read again -> {} (4.04 expected)",
            c.code_string(),
            if update.is_some() { "yes" } else { "no" },
            r.code_string(),
            d.code_string(),
            gone.code_string()
        ),
    ))
}

/// 241: Reboot: 2.04, then the device registers again.
async fn case_241(ctx: &Ctx<'_>) -> Step<Decision> {
    let before = ctx.registration()?.registration_date;
    let mut rx = ctx.events();
    let e = ctx.execute(&Path::resource(3, 0, 4)).await?;
    let within = ctx.cfg.campaign.timeouts.update;
    let back = if e.is_success() {
        ctx.wait_event(
            &mut rx,
            within,
            |ev| matches!(ev, ServerEvent::Registration(r) if r.registration_date > before),
        )
        .await
    } else {
        None
    };
    Ok(Decision::judge(
        e.is_success() && back.is_some(),
        format!(
            "Execute /3/0/4 -> {}; registered again within {within:?}: {}",
            e.code_string(),
            if back.is_some() { "yes" } else { "no" }
        ),
    ))
}

/// Runs device management case `id`.
pub(crate) async fn run(ctx: &Ctx<'_>, id: &str) -> Step<Decision> {
    match id {
        "1.1-int-201" => case_201(ctx).await,
        "1.1-int-203" => case_format(ctx, ContentFormat::Tlv).await,
        "1.1-int-204" => case_format(ctx, ContentFormat::LwM2mJson).await,
        "1.1-int-211" => case_format(ctx, ContentFormat::Cbor).await,
        "1.1-int-231" => case_format(ctx, ContentFormat::SenmlJson).await,
        "1.1-int-232" => case_format(ctx, ContentFormat::SenmlCbor).await,
        "1.1-int-222" => case_levels(ctx, 1).await,
        "1.1-int-223" => case_levels(ctx, 2).await,
        "1.1-int-224" => case_levels(ctx, 3).await,
        "1.1-int-225" => case_225(ctx).await,
        "1.1-int-205" => case_write_resource(ctx, true).await,
        "1.1-int-227" => case_write_resource(ctx, false).await,
        "1.1-int-226" => case_226(ctx).await,
        "1.1-int-256" => case_256(ctx).await,
        "1.1-int-221" => case_221(ctx).await,
        "1.1-int-260" => case_260(ctx).await,
        "core-dm-create-delete" => case_create_delete(ctx).await,
        "1.1-int-241" => case_241(ctx).await,
        other => Err(Abort::Runner(format!("no device management case {other}"))),
    }
}

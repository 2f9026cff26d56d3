//! REST differential (issue 14, part 3): one scripted sequence of the REST calls Leshan users make
//! runs against Eclipse Leshan's demo server (2.0.0-M4, the newest one Maven Central serves) and
//! against our shim, each managing its own fresh `lwm2m-client` process registered under the same
//! endpoint name. Each answer pair is compared field by field (HTTP status and JSON body, or the
//! text of an error) after masking the values that must differ: registration ids, ports, times
//! and the devices' clocks. A pair that still differs must be explained by an entry of
//! [`DOCUMENTED`], each also listed in README.md ("Intentional differences from Leshan's REST
//! API"); any other difference fails the test. Every call also checks Leshan's own answer, so a
//! run where both servers fail alike cannot pass.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use lwm2m_server_shim::conformance::report::iso8601;
use serde_json::{json, Value};
use tests::e2e::Harness;
use tests::leshan::{wait_registered, LeshanServer};
use tests::process::{lwm2m_client, LoggedChild};
use tests::rest::{Events, Rest};

/// The endpoint name of both devices (each server has its own).
const EP: &str = "rest-diff";
const REGISTER: Duration = Duration::from_secs(60);
const EVENT: Duration = Duration::from_secs(30);

/// HTTP method of a call.
#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
}

/// What a call does, for the documented differences that apply to a kind of call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Registration,
    Read,
    Write,
    Execute,
    Observe,
    /// Not an HTTP call: the NOTIFICATION event an observed change produces on the SSE stream.
    Notification,
    Cancel,
    Discover,
    Attributes,
    Create,
    Delete,
    UnknownClient,
    Invalid,
    Timeout,
}

/// What Leshan (the reference) must answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// HTTP 200 carrying the device's answer with this Leshan status name.
    Device(&'static str),
    /// This HTTP status.
    Http(u16),
}

struct Call {
    op: Op,
    method: Method,
    /// Full REST path with query.
    path: String,
    body: Option<Value>,
    expect: Expect,
}

impl Call {
    /// A call on `/api/clients/{EP}{rest}`.
    fn dev(op: Op, method: Method, rest: &str, expect: Expect) -> Self {
        Self::api(op, method, &format!("/api/clients/{EP}{rest}"), expect)
    }

    fn api(op: Op, method: Method, path: &str, expect: Expect) -> Self {
        Self {
            op,
            method,
            path: path.into(),
            body: None,
            expect,
        }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn label(&self) -> String {
        let path = self
            .path
            .strip_prefix(&format!("/api/clients/{EP}"))
            .map_or(self.path.clone(), |p| format!("{{ep}}{p}"));
        match self.op {
            Op::Notification => format!("NOTIFICATION event for {path}"),
            _ => format!("{} {path}", format!("{:?}", self.method).to_uppercase()),
        }
    }

    /// The LwM2M path the call addresses (`/3/0`), empty when it names none.
    fn lwm2m_path(&self) -> &str {
        let p = self
            .path
            .strip_prefix(&format!("/api/clients/{EP}"))
            .unwrap_or("");
        let p = p.split('?').next().unwrap_or("");
        ["/observe", "/discover", "/attributes"]
            .iter()
            .fold(p, |p, s| p.strip_suffix(s).unwrap_or(p))
    }
}

/// One server's answer.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    status: u16,
    /// The JSON body, or the text of a non-JSON body as a JSON string.
    body: Value,
}

fn send(rest: &Rest, c: &Call) -> Answer {
    let (status, body) = match (c.method, &c.body) {
        (Method::Get, _) => rest.get(&c.path),
        (Method::Put, Some(b)) => rest.put(&c.path, b),
        (Method::Put, None) => rest.put_empty(&c.path),
        (Method::Post, Some(b)) => rest.post_json(&c.path, b),
        (Method::Post, None) => rest.post(&c.path, b""),
        (Method::Delete, _) => rest.delete(&c.path),
    };
    Answer { status, body }
}

// ---------------------------------------------------------------------------------------------
// Masks: values that must differ between two servers and two devices.

/// Registration ids, ports and registration times; a time keeps its JSON form in the mask
/// (`<time: ISO 8601>` for text, `<time: epoch ms>` for a number), so a format difference stays
/// visible.
fn mask_registration_fields(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(mask_registration_fields),
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                match (k.as_str(), &val) {
                    ("registrationId", Value::String(_)) => *val = json!("<registration id>"),
                    ("registrationDate" | "lastUpdate", Value::String(s)) => {
                        *val = json!(if is_iso8601(s) {
                            "<time: ISO 8601>"
                        } else {
                            "<time: text>"
                        })
                    }
                    ("registrationDate" | "lastUpdate", Value::Number(_)) => {
                        *val = json!("<time: epoch ms>")
                    }
                    ("address", Value::String(a)) => {
                        if let Some((host, _port)) = a.rsplit_once(':') {
                            *val = json!(format!("{host}:<port>"));
                        }
                    }
                    _ => mask_registration_fields(val),
                }
            }
        }
        _ => {}
    }
}

/// `2026-01-02T03:04:05Z`.
fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z'
}

/// The Current Time (/3/0/13) of each device is its own clock.
fn mask_device_time(node: &mut Value, path: &str) {
    let ids: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if ids.first() != Some(&"3") {
        return;
    }
    let in_instance = |inst: &mut Value| {
        if let Some(rs) = inst["resources"].as_array_mut() {
            for r in rs.iter_mut().filter(|r| r["id"] == 13) {
                r["value"] = json!("<device time>");
            }
        }
    };
    if let Some(is) = node["instances"].as_array_mut() {
        is.iter_mut().for_each(in_instance);
    } else if node.get("resources").is_some() {
        in_instance(node);
    } else if ids.get(2) == Some(&"13") && node.get("value").is_some() {
        node["value"] = json!("<device time>");
    }
}

fn mask(c: &Call, a: &mut Answer) {
    mask_registration_fields(&mut a.body);
    for key in ["content", "val"] {
        if let Some(node) = a.body.get_mut(key) {
            mask_device_time(node, c.lwm2m_path());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Documented differences.

/// An intentional difference: where it shows, why, and how it is taken out of the comparison
/// (`normalize(leshan, shim)`), narrowly enough that any other difference still shows.
struct Documented {
    /// Its name, also the entry's title in README.md.
    title: &'static str,
    calls: &'static str,
    field: &'static str,
    reason: &'static str,
    applies: fn(&Call) -> bool,
    normalize: fn(&mut Answer, &mut Answer),
}

const DOCUMENTED: &[Documented] = &[
    Documented {
        title: "Node JSON dialect",
        calls: "reads, observes, NOTIFICATION events",
        field: "content, val",
        reason:
            "Leshan 2.0.0-M4 writes LwM2M nodes in its older Gson form ({\"id\":3,\"value\":0}: \
                 no kind or type, numbers as JSON numbers, Time as ISO 8601 text); the shim writes \
                 the form of Leshan 2.0's Jackson serializer (kind and type, integers and floats \
                 as strings, Time as epoch milliseconds), which the shim's users and tests read. \
                 The values are compared after converting the shim's form to M4's.",
        applies: |c| matches!(c.op, Op::Read | Op::Observe | Op::Notification),
        normalize: |_, shim| {
            for key in ["content", "val"] {
                if let Some(node) = shim.body.get_mut(key) {
                    to_m4_node(node);
                }
            }
        },
    },
    Documented {
        title: "Resource order",
        calls: "reads and observes of instances and objects",
        field: "content.resources",
        reason: "M4 lists an instance's resources in the iteration order of a Java HashMap \
                 (resource 16 after 0); the shim lists them by id, in the order the device \
                 sends them.",
        applies: |c| matches!(c.op, Op::Read | Op::Observe),
        normalize: |leshan, shim| {
            sort_nodes(&mut leshan.body["content"]);
            sort_nodes(&mut shim.body["content"]);
        },
    },
    Documented {
        title: "Unsigned integers",
        calls: "reads of /5/0/13 (in /5 and /5/0)",
        field: "content value of an Unsigned Integer resource",
        reason: "M4 writes an Unsigned Integer as {\"value\":N} (Gson reflecting Leshan's ULong \
                 class, an M4 defect); the shim writes it like any other integer.",
        applies: |c| c.op == Op::Read,
        normalize: |leshan, _| unwrap_ulong(&mut leshan.body["content"]),
    },
    Documented {
        title: "Registration times",
        calls: "GET /api/clients, GET /api/clients/{ep}",
        field: "registrationDate, lastUpdate",
        reason: "M4 writes ISO 8601 text; the shim writes epoch milliseconds, as Leshan 2.0's \
                 Jackson serializer writes a java.util.Date.",
        applies: |c| c.op == Op::Registration,
        normalize: |_, shim| {
            replace_strings(&mut shim.body, "<time: epoch ms>", "<time: ISO 8601>")
        },
    },
    Documented {
        title: "availableInstances",
        calls: "GET /api/clients, GET /api/clients/{ep}",
        field: "availableInstances",
        reason: "Leshan 2.0 added it (object id to instance ids, from the registered links); M4 \
                 has no such field. The shim follows Leshan 2.0.",
        applies: |c| c.op == Op::Registration,
        normalize: |_, shim| {
            for_each_registration(&mut shim.body, |r| {
                r.remove("availableInstances");
            })
        },
    },
    Documented {
        title: "NOTIFICATION kind",
        calls: "NOTIFICATION events",
        field: "kind",
        reason: "Leshan 2.0 marks a notification \"kind\":\"single\" to tell it from a composite \
                 one; M4 has no composite observe. The shim follows Leshan 2.0.",
        applies: |c| c.op == Op::Notification,
        normalize: |_, shim| {
            if let Some(o) = shim.body.as_object_mut() {
                o.remove("kind");
            }
        },
    },
    Documented {
        title: "Unknown format names",
        calls: "GET {ep}/3/0?format=BOGUS",
        field: "HTTP status, body",
        reason: "M4 ignores a format name it does not know and reads in its default format; the \
                 shim answers 400 \"unknown format\", so that a typo does not silently change the \
                 format.",
        applies: |c| c.op == Op::Invalid,
        normalize: |leshan, shim| {
            if leshan.status == 200 && answers(shim, 400, "unknown format") {
                same(leshan, shim, "unknown format name");
            }
        },
    },
    Documented {
        title: "Malformed paths",
        calls: "GET {ep}/3/x",
        field: "HTTP status, body",
        reason: "M4 answers 500 \"Unexpected exception:Invalid elements in path\"; the shim \
                 answers 400 \"invalid LwM2M path\": a malformed path is the caller's error.",
        applies: |c| c.op == Op::Invalid,
        normalize: |leshan, shim| {
            if answers(leshan, 500, "Invalid elements in path")
                && answers(shim, 400, "invalid LwM2M path")
            {
                same(leshan, shim, "malformed path");
            }
        },
    },
    Documented {
        title: "Write-Attributes passed through",
        calls: "PUT {ep}/5/0/3/attributes?foo=1, PUT {ep}/5/0/3/attributes",
        field: "HTTP status, body",
        reason: "M4 checks attribute names and values itself (500 for a name it does not know, \
                 400 when there is none); the shim sends the query to the device and relays its \
                 answer (200 with BAD_REQUEST(400)), so tests can probe a device's own checks.",
        applies: |c| c.op == Op::Attributes,
        normalize: |leshan, shim| {
            let refused_here = answers(leshan, 500, "Unsupported attribute")
                || answers(leshan, 400, "attributes are mandatory");
            if refused_here && shim.status == 200 && shim.body["status"] == "BAD_REQUEST(400)" {
                same(leshan, shim, "attributes checked by the device");
            }
        },
    },
    Documented {
        title: "DELETE of a resource path",
        calls: "DELETE {ep}/1/0/1",
        field: "HTTP status and body",
        reason: "M4 refuses a Delete of anything but an object instance (400 \"Only object \
                 instances can be delete\"). The shim forwards a Delete on any path to the \
                 device (LwM2M 1.1 core 6.3.8 leaves the check to the client) and relays its \
                 answer in a 200, as Leshan 2.0 does.",
        applies: |c| c.op == Op::Delete,
        normalize: |leshan, shim| {
            let shim_ok = shim.status == 200 && shim.body["status"].is_string();
            if answers(leshan, 400, "Only object instances") && shim_ok {
                same(leshan, shim, "delete of a resource path");
            }
        },
    },
];

/// Whether `a` is an error text with this status that contains `words`.
fn answers(a: &Answer, status: u16, words: &str) -> bool {
    a.status == status && a.body.as_str().is_some_and(|t| t.contains(words))
}

/// Marks a pair as explained by one documented difference.
fn same(leshan: &mut Answer, shim: &mut Answer, what: &str) {
    let explained = Answer {
        status: 0,
        body: json!(format!("documented: {what}")),
    };
    *leshan = explained.clone();
    *shim = explained;
}

fn replace_strings(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s == from => *s = to.into(),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}

fn for_each_registration(body: &mut Value, f: impl Fn(&mut serde_json::Map<String, Value>)) {
    match body {
        Value::Array(a) => a.iter_mut().filter_map(Value::as_object_mut).for_each(f),
        Value::Object(o) => f(o),
        _ => {}
    }
}

/// A Leshan 2.0 node (`{"id":3,"kind":"singleResource","type":"integer","value":"0"}`) in
/// Leshan 2.0.0-M4's form (`{"id":3,"value":0}`).
fn to_m4_node(node: &mut Value) {
    let Some(o) = node.as_object_mut() else {
        return;
    };
    o.remove("kind");
    let ty = o
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_owned))
        .unwrap_or_default();
    if let Some(v) = o.get_mut("value") {
        to_m4_value(&ty, v);
    }
    if let Some(Value::Object(values)) = o.get_mut("values") {
        values.values_mut().for_each(|v| to_m4_value(&ty, v));
    }
    for key in ["resources", "instances"] {
        if let Some(Value::Array(children)) = o.get_mut(key) {
            children.iter_mut().for_each(to_m4_node);
        }
    }
}

fn to_m4_value(ty: &str, v: &mut Value) {
    match (ty, &*v) {
        ("integer" | "unsigned_integer", Value::String(s)) => {
            if let Ok(i) = s.parse::<i64>() {
                *v = json!(i);
            }
        }
        ("float", Value::String(s)) => {
            if let Ok(f) = s.parse::<f64>() {
                *v = json!(f);
            }
        }
        ("time", Value::Number(ms)) => {
            if let Some(ms) = ms.as_i64() {
                let t = UNIX_EPOCH + Duration::from_millis(ms.max(0).unsigned_abs());
                *v = json!(iso8601(t));
            }
        }
        _ => {}
    }
}

/// Sorts the `resources` and `instances` of a node by id.
fn sort_nodes(node: &mut Value) {
    for key in ["resources", "instances"] {
        if let Some(children) = node.get_mut(key).and_then(Value::as_array_mut) {
            children.sort_by_key(|c| c["id"].as_u64());
            children.iter_mut().for_each(sort_nodes);
        }
    }
}

/// `{"value":N}` in place of a resource value (M4's ULong) becomes `N`.
fn unwrap_ulong(node: &mut Value) {
    let Some(o) = node.as_object_mut() else {
        return;
    };
    if let Some(v) = o.get_mut("value") {
        let inner = v
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.get("value"))
            .cloned();
        if let Some(inner) = inner {
            *v = inner;
        }
    }
    for key in ["resources", "instances"] {
        if let Some(Value::Array(children)) = o.get_mut(key) {
            children.iter_mut().for_each(unwrap_ulong);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// How one call compared.
enum Verdict {
    Identical,
    /// Explained by these documented differences.
    Documented(Vec<&'static str>),
    /// Not explained: the two answers after masking and every documented normalization.
    Undocumented(Answer, Answer),
}

fn judge(c: &Call, mut leshan: Answer, mut shim: Answer) -> Verdict {
    mask(c, &mut leshan);
    mask(c, &mut shim);
    if leshan == shim {
        return Verdict::Identical;
    }
    let mut used = Vec::new();
    for d in DOCUMENTED.iter().filter(|d| (d.applies)(c)) {
        let before = (leshan.clone(), shim.clone());
        (d.normalize)(&mut leshan, &mut shim);
        if (leshan.clone(), shim.clone()) != before {
            used.push(d.title);
        }
    }
    if leshan == shim {
        Verdict::Documented(used)
    } else {
        Verdict::Undocumented(leshan, shim)
    }
}

/// One server with its device and event stream.
struct Side {
    rest: Rest,
    device: LoggedChild,
    events: Events,
}

impl Side {
    fn start(rest: Rest, dir: &Path, server_uri: &str) -> Self {
        let state = dir.join("device-state").display().to_string();
        let device = lwm2m_client(
            dir,
            "device",
            &[
                "--server",
                server_uri,
                "--endpoint",
                EP,
                "--state-dir",
                &state,
                "--lifetime",
                "60",
            ],
        );
        wait_registered(&rest, EP, REGISTER);
        let events = rest.events(EP);
        Self {
            rest,
            device,
            events,
        }
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the device process: a silent device.
    fn signal_device(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.device.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.device.pid());
    }

    fn notification(&self, res: &str) -> Answer {
        let data = self
            .events
            .wait_for(&["NOTIFICATION"], EVENT, |d| d["res"] == res);
        Answer {
            status: 200,
            body: data,
        }
    }
}

struct Differential {
    leshan: Side,
    shim: Side,
    /// (call label, verdict) in order.
    results: Vec<(String, Verdict)>,
}

impl Differential {
    fn check_expectation(c: &Call, leshan: &Answer) {
        let ok = match c.expect {
            Expect::Device(status) => leshan.status == 200 && leshan.body["status"] == status,
            Expect::Http(status) => leshan.status == status,
        };
        assert!(
            ok,
            "{}: Leshan answered {} {}, the script expects {:?}",
            c.label(),
            leshan.status,
            leshan.body,
            c.expect
        );
    }

    fn record(&mut self, c: &Call, leshan: Answer, shim: Answer) {
        Self::check_expectation(c, &leshan);
        self.results.push((c.label(), judge(c, leshan, shim)));
    }

    /// Sends `c` to both servers and compares the answers.
    fn run(&mut self, c: Call) {
        let leshan = send(&self.leshan.rest, &c);
        let shim = send(&self.shim.rest, &c);
        self.record(&c, leshan, shim);
    }

    /// Compares the NOTIFICATION both streams carry for `res`.
    fn notification(&mut self, res: &str) {
        let c = Call::dev(Op::Notification, Method::Get, res, Expect::Http(200));
        let leshan = self.leshan.notification(res);
        let shim = self.shim.notification(res);
        self.record(&c, leshan, shim);
    }

    fn signal_devices(&self, signal: &str) {
        self.leshan.signal_device(signal);
        self.shim.signal_device(signal);
    }

    /// GET `{ep}{rest}`.
    fn get(&mut self, op: Op, rest: &str, expect: Expect) {
        self.run(Call::dev(op, Method::Get, rest, expect));
    }

    /// PUT `body` on `{ep}{rest}`.
    fn put(&mut self, op: Op, rest: &str, body: Value, expect: Expect) {
        self.run(Call::dev(op, Method::Put, rest, expect).body(body));
    }

    /// POST `{ep}{rest}`, with a JSON body if any.
    fn post(&mut self, op: Op, rest: &str, body: Option<Value>, expect: Expect) {
        let c = Call::dev(op, Method::Post, rest, expect);
        self.run(match body {
            Some(b) => c.body(b),
            None => c,
        });
    }

    /// DELETE `{ep}{rest}`.
    fn delete(&mut self, op: Op, rest: &str, expect: Expect) {
        self.run(Call::dev(op, Method::Delete, rest, expect));
    }
}

/// A single Integer resource node in Leshan 2.0's form.
fn int(id: u16, value: i64) -> Value {
    json!({"id": id, "kind": "singleResource", "type": "integer", "value": value})
}

/// The script: what Leshan users do, in the order they do it.
fn script(d: &mut Differential) {
    use Expect::{Device, Http};
    let content = Device("CONTENT(205)");
    let changed = Device("CHANGED(204)");
    let not_allowed = Device("METHOD_NOT_ALLOWED(405)");

    d.run(Call::api(
        Op::Registration,
        Method::Get,
        "/api/clients",
        Http(200),
    ));
    d.get(Op::Registration, "", Http(200));

    // Reads: a single resource, an instance and an object in each format that applies.
    for format in ["TLV", "SENML_JSON", "SENML_CBOR", "JSON", "CBOR", "TEXT"] {
        d.get(Op::Read, &format!("/3/0/0?format={format}"), content);
        d.get(Op::Read, &format!("/5/0/3?format={format}"), content);
    }
    for format in ["TLV", "SENML_JSON", "SENML_CBOR", "JSON"] {
        d.get(Op::Read, &format!("/3/0?format={format}"), content);
        d.get(Op::Read, &format!("/5?format={format}"), content);
    }
    d.get(Op::Read, "/3/0", content);
    d.get(Op::Read, "/3/0/11?format=TLV", content);
    d.get(Op::Read, "/3/0?format=TEXT", Device("NOT_ACCEPTABLE(406)"));
    d.get(Op::Read, "/3/0/99", Device("NOT_FOUND(404)"));
    d.get(Op::Read, "/4/0", Device("NOT_FOUND(404)"));

    // Writes of single resources: Leshan 2.0's node form, and M4's form without kind and type.
    d.put(Op::Write, "/1/0/2?format=TLV", int(2, 0), changed);
    d.put(Op::Write, "/1/0/3?format=TEXT", int(3, 300), changed);
    d.put(Op::Write, "/1/0/3", json!({"id": 3, "value": 400}), changed);
    let manufacturer = json!({"id": 0, "kind": "singleResource", "type": "string", "value": "x"});
    d.put(Op::Write, "/3/0/0", manufacturer, not_allowed);
    // Writes of an instance, partial (replace=false) and whole (replace=true).
    let partial = json!({"id": 0, "kind": "instance", "resources": [int(2, 0), int(3, 500)]});
    d.put(Op::Write, "/1/0?format=TLV&replace=false", partial, changed);
    let m4_partial = json!({"id": 0, "resources": [{"id": 3, "value": 600}]});
    d.put(
        Op::Write,
        "/1/0?format=SENML_JSON&replace=false",
        m4_partial,
        changed,
    );
    let whole = json!({"id": 0, "kind": "instance", "resources": [
        int(1, 60), int(2, 0), int(3, 700),
        {"id": 6, "kind": "singleResource", "type": "boolean", "value": false},
        {"id": 7, "kind": "singleResource", "type": "string", "value": "U"},
    ]});
    d.put(
        Op::Write,
        "/1/0?format=SENML_CBOR&replace=true",
        whole,
        changed,
    );
    d.get(Op::Read, "/1/0?format=TLV", content);

    // Execute.
    d.post(Op::Execute, "/1/0/8", None, changed);
    d.post(Op::Execute, "/3/0/0", None, not_allowed);

    // Observe, a change that the device notifies, and cancel.
    d.post(Op::Observe, "/1/0/3/observe?format=TLV", None, content);
    d.put(Op::Write, "/1/0/3", int(3, 800), changed);
    d.notification("/1/0/3");
    d.delete(Op::Cancel, "/1/0/3/observe", Http(200));
    d.delete(Op::Cancel, "/3/0/observe", Http(200));

    // Discover and Write-Attributes.
    d.get(Op::Discover, "/3/0/discover", content);
    d.get(Op::Discover, "/5/discover", content);
    d.run(Call::dev(
        Op::Attributes,
        Method::Put,
        "/5/0/3/attributes?pmin=1&pmax=60",
        changed,
    ));
    d.get(Op::Discover, "/5/0/3/discover", content);
    d.run(Call::dev(
        Op::Attributes,
        Method::Put,
        "/5/0/3/attributes?foo=1",
        Http(500),
    ));
    d.run(Call::dev(
        Op::Attributes,
        Method::Put,
        "/5/0/3/attributes",
        Http(400),
    ));

    // Delete and Create, where the device allows them: its Server object instance.
    d.delete(Op::Delete, "/1/0", Device("DELETED(202)"));
    d.get(Op::Read, "/1?format=TLV", content);
    let server = json!({"id": 0, "kind": "instance", "resources": [
        int(0, 1), int(1, 60),
        {"id": 7, "kind": "singleResource", "type": "string", "value": "U"},
    ]});
    d.post(
        Op::Create,
        "/1?format=TLV",
        Some(server),
        Device("CREATED(201)"),
    );
    let again = json!({"id": 0, "resources": [{"id": 0, "value": 1}]});
    d.post(
        Op::Create,
        "/1?format=TLV",
        Some(again),
        Device("BAD_REQUEST(400)"),
    );
    d.get(Op::Read, "/1/0?format=TLV", content);
    d.delete(Op::Delete, "/1/0/1", Http(400));

    // An unknown endpoint, invalid requests.
    let unknown = |method, rest: &str| {
        let path = format!("/api/clients/no-such-client{rest}");
        Call::api(Op::UnknownClient, method, &path, Http(400))
    };
    d.run(unknown(Method::Get, ""));
    d.run(unknown(Method::Get, "/3/0"));
    d.run(unknown(Method::Get, "/3/0/discover"));
    d.run(unknown(Method::Put, "/3/0/1").body(json!({"id": 1, "value": "x"})));
    d.run(unknown(Method::Put, "/3/0/attributes?pmin=1"));
    d.run(unknown(Method::Post, "/3/0/4"));
    d.run(unknown(Method::Post, "/3/0/observe"));
    d.run(unknown(Method::Delete, "/1/0"));
    d.get(Op::Invalid, "/3/x", Http(500));
    d.get(Op::Invalid, "/3/0?format=BOGUS", Http(200));

    // A short timeout against a silent device.
    d.signal_devices("-STOP");
    d.get(Op::Timeout, "/3/0?timeout=1", Http(504));
    d.put(Op::Timeout, "/1/0/3?timeout=1", int(3, 900), Http(504));
    d.post(Op::Timeout, "/1/0/8?timeout=1", None, Http(504));
    d.signal_devices("-CONT");
}

/// The README section that lists the intentional differences.
fn readme_differences() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let heading = "## Intentional differences from Leshan's REST API";
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?} section"));
    let body = &text[start + heading.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    body[..end].to_owned()
}

#[test]
fn leshan_and_the_shim_answer_the_same_rest_calls_alike() {
    let leshan_server = std::thread::spawn(|| LeshanServer::start("rest-diff-leshan"));
    let shim_server = Harness::start("rest-diff-shim");
    let shim_rest = Rest::new(shim_server.base.clone(), Duration::from_secs(120));
    let shim_uri = format!("coap://{}", shim_server.coap);
    let shim = Side::start(shim_rest, &shim_server.dir, &shim_uri);
    let leshan_server = leshan_server.join().expect("Leshan started");
    let leshan_rest = Rest::new(leshan_server.rest.base.clone(), Duration::from_secs(120));
    let leshan = Side::start(leshan_rest, leshan_server.dir(), &leshan_server.coap_uri());

    let mut d = Differential {
        leshan,
        shim,
        results: Vec::new(),
    };
    script(&mut d);

    let (mut identical, mut documented, mut undocumented) = (0, 0, Vec::new());
    let mut used: Vec<&str> = Vec::new();
    for (label, verdict) in &d.results {
        match verdict {
            Verdict::Identical => {
                identical += 1;
                println!("  =  {label}");
            }
            Verdict::Documented(titles) => {
                documented += 1;
                used.extend(titles);
                println!("  ~  {label}  [{}]", titles.join("; "));
            }
            Verdict::Undocumented(l, s) => {
                println!("  !  {label}  UNDOCUMENTED");
                undocumented.push(format!(
                    "{label}:\n    Leshan: {} {}\n    shim:   {} {}",
                    l.status, l.body, s.status, s.body
                ));
            }
        }
    }
    println!("documented differences (call | field | reason):");
    for doc in DOCUMENTED {
        println!(
            "  {}: {} | {} | {}",
            doc.title, doc.calls, doc.field, doc.reason
        );
    }
    let calls = d.results.len();
    println!("rest differential: {calls} calls, {identical} identical, {documented} documented differences");
    assert!(
        undocumented.is_empty(),
        "differences neither fixed nor documented:\n{}",
        undocumented.join("\n")
    );
    assert_eq!(calls, identical + documented);

    let stale: Vec<&str> = DOCUMENTED
        .iter()
        .map(|doc| doc.title)
        .filter(|t| !used.contains(t))
        .collect();
    assert!(
        stale.is_empty(),
        "documented differences that no call shows any more (remove them here and in README.md): {stale:?}"
    );
    let readme = readme_differences();
    for doc in DOCUMENTED {
        assert!(
            readme.contains(doc.title),
            "README.md's intentional differences do not list {:?}",
            doc.title
        );
    }
    drop(d);
    drop(leshan_server);
    drop(shim_server);
}

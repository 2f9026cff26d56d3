//! The shim's answers to Leshan's server and model routes against Eclipse Leshan's own demo
//! server (issue 14, part 4): the same client registers with both (libcoap's coap-client), and
//! `GET /api/server/endpoint`, `GET /api/server/security` and `GET /api/objectspecs/{ep}` must
//! have Leshan's shape, and the object models the shim builds in must say what Leshan's bundled
//! OMA models say (ids, operations, multiplicity, mandatory, types).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::e2e::temp_dir;
use tests::leshan::{wait_registered, LeshanServer};
use tests::pki::Pki;
use tests::rest::Rest;
use tests::serve::ShimServe;

const REGISTER: Duration = Duration::from_secs(60);

/// The object links both servers get from two clients: Server, Device and Object 5 in version
/// 1.0 (the built-in models against Leshan's bundled ones), and Object 5 in version 1.1 (the
/// model both take from `tests/leshan/models`).
const CLIENTS: [(&str, &str); 2] = [
    ("shapes-v10", "</1/0>,</3/0>,</5/0>"),
    ("shapes-v11", "</1/0>,</3/0>,</5>;ver=1.1,</5/0>"),
];

fn models_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("leshan/models")
}

/// `lwm2m-server-shim serve` with a server certificate (so `/api/server/security` has one to
/// show, as Leshan's demo always has) and the Leshan tests' model directory.
fn start_shim(dir: &Path) -> ShimServe {
    let pki = Pki::new(&dir.join("pki"), "shapes-ca");
    let server = pki.issue("server", "127.0.0.1", &["IP:127.0.0.1"]);
    let (pem, key, ca, models) = (server.cert_pem, server.key_pem, pki.ca_pem(), models_dir());
    let args: [&OsStr; 8] = [
        OsStr::new("--cert"),
        pem.as_os_str(),
        OsStr::new("--key"),
        key.as_os_str(),
        OsStr::new("--ca"),
        ca.as_os_str(),
        OsStr::new("--models"),
        models.as_os_str(),
    ];
    ShimServe::start(dir, &args)
}

/// Registers `ep` with LwM2M 1.1 and `links` through libcoap's client.
fn register(coap: &str, ep: &str, links: &str) {
    let url = format!("coap://{coap}/rd?ep={ep}&lt=300&lwm2m=1.1&b=U");
    let ok = Command::new("timeout")
        .args([
            "30",
            "coap-client-openssl",
            "-m",
            "post",
            "-t",
            "40",
            "-e",
            links,
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("coap-client-openssl is installed")
        .success();
    assert!(ok, "register {ep} at {coap}");
}

/// The shape of a JSON value: objects by their keys (recursively), arrays by their first
/// element, scalars by their JSON type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

/// What two object models must agree on, resource by resource.
fn essentials(model: &Value) -> Vec<Value> {
    let mut out = vec![serde_json::json!([
        model["id"],
        model["instancetype"],
        model["mandatory"],
        model["version"]
    ])];
    for r in model["resourcedefs"].as_array().into_iter().flatten() {
        out.push(serde_json::json!([
            r["id"],
            r["operations"],
            r["instancetype"],
            r["mandatory"],
            r["type"]
        ]));
    }
    out
}

#[test]
fn server_and_model_routes_answer_as_leshan_does() {
    let dir = temp_dir("leshan-shapes");
    let shim = start_shim(&dir);
    let (shim_rest, shim_coap) = (&shim.rest, shim.coap);
    let leshan = LeshanServer::start("leshan-shapes");
    for (ep, links) in CLIENTS {
        register(&format!("127.0.0.1:{shim_coap}"), ep, links);
        register(&leshan.coap.to_string(), ep, links);
        wait_registered(shim_rest, ep, REGISTER);
        leshan.wait_registered(ep, REGISTER);
    }

    for route in ["/api/server/endpoint", "/api/server/security"] {
        let (ls, lv) = leshan.rest.get(route);
        let (ss, sv) = shim_rest.get(route);
        assert_eq!(
            (ss, shape(&sv)),
            (ls, shape(&lv)),
            "{route}: shim {sv} Leshan {lv}"
        );
    }
    let (_, lv) = leshan.rest.get("/api/server/security");
    let (_, sv) = shim_rest.get("/api/server/security");
    assert_eq!(
        sv["certificate"]["pubkey"]["params"], lv["certificate"]["pubkey"]["params"],
        "the curve named as Java names it"
    );
    let (_, endpoint) = leshan.rest.get("/api/server/endpoint");
    assert_eq!(
        endpoint["unsecuredEndpointPort"],
        leshan.coap.port().to_string(),
        "{endpoint}"
    );

    for (ep, _) in CLIENTS {
        compare_specs(shim_rest, &leshan.rest, ep);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /api/objectspecs/{ep}` of both servers: the same objects, each model of the same shape
/// and the same essentials.
fn compare_specs(shim: &Rest, leshan: &Rest, ep: &str) {
    let path = format!("/api/objectspecs/{ep}");
    let (ls, leshan_specs) = leshan.get(&path);
    let (ss, shim_specs) = shim.get(&path);
    assert_eq!(
        (ss, ls),
        (200, 200),
        "shim {shim_specs} Leshan {leshan_specs}"
    );
    let by_id = |specs: &Value| -> Vec<(u64, Value)> {
        let mut v: Vec<(u64, Value)> = specs
            .as_array()
            .expect("an array of models")
            .iter()
            .map(|m| (m["id"].as_u64().expect("id"), m.clone()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    };
    let (shim_models, leshan_models) = (by_id(&shim_specs), by_id(&leshan_specs));
    let ids = |m: &[(u64, Value)]| m.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(ids(&shim_models), ids(&leshan_models));
    assert_eq!(ids(&shim_models), [1, 3, 5]);
    for ((id, shim_model), (_, leshan_model)) in shim_models.iter().zip(&leshan_models) {
        assert_eq!(
            shape(shim_model),
            shape(leshan_model),
            "{ep}: object {id} model shape"
        );
        assert_eq!(
            essentials(shim_model),
            essentials(leshan_model),
            "{ep}: object {id}: [id, operations, instancetype, mandatory, type] per resource"
        );
    }
}

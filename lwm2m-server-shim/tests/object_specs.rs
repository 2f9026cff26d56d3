//! `GET /api/objectspecs/{ep}`: the models of a registered client's objects in the versions it
//! announced, from the built-in objects and from OMA DDF files loaded with `serve --models DIR`
//! (the Object 5 1.1 file the Leshan tests give Leshan, and a vendor object); a bad file stops
//! `serve` with one error line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{coap_client, temp_dir, wait_event, Harness};
use serde_json::Value;

const SHIM: &str = env!("CARGO_BIN_EXE_lwm2m-server-shim");

/// The model directory the Leshan interop tests hand Leshan's demo (`-m`).
fn leshan_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/leshan/models")
}

/// A vendor object as a user would write it: one object, two resources.
const VENDOR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Object ObjectType="MODefinition">
    <Name>Valve</Name>
    <Description1><![CDATA[A water valve.]]></Description1>
    <ObjectID>10250</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:10250</ObjectURN>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="0">
        <Name>Opening</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Mandatory</Mandatory><Type>Float</Type><RangeEnumeration>0..100</RangeEnumeration>
        <Units>%</Units><Description><![CDATA[How far the valve is open.]]></Description>
      </Item>
      <Item ID="1">
        <Name>Close</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Optional</Mandatory><Type></Type><RangeEnumeration></RangeEnumeration>
        <Units></Units><Description><![CDATA[Closes the valve.]]></Description>
      </Item>
    </Resources>
  </Object>
</LWM2M>
"#;

/// Registers `ep` with these object links through libcoap's client.
fn register(h: &Harness, ep: &str, links: &str) {
    let events = h.events(&format!("?ep={ep}"));
    let rd = format!("coap://{}/rd?ep={ep}&lt=60&lwm2m=1.1", h.coap);
    assert!(coap_client(&["-m", "post", &rd, "-t", "40", "-e", links]).0);
    wait_event(&events, Duration::from_secs(10), |n, _| n == "REGISTRATION");
}

fn ids_and_versions(specs: &Value) -> Vec<(u64, String)> {
    specs
        .as_array()
        .expect("an array of models")
        .iter()
        .map(|m| {
            let v = m["version"].as_str().expect("version").to_string();
            (m["id"].as_u64().expect("id"), v)
        })
        .collect()
}

const LINKS: &str = "</1/0>,</3/0>,</5>;ver=1.1,</5/0>,</10250/0>,</42/0>";

#[test]
fn built_in_models_follow_the_announced_versions() {
    let h = Harness::start("specs-built-in", |_| {});
    register(&h, "plain", LINKS);
    let (s, specs) = h.get_json("/api/objectspecs/plain");
    assert_eq!(s, 200, "{specs}");
    // No model of the vendor object 10250 or of object 42: left out, as Leshan does.
    assert_eq!(
        ids_and_versions(&specs),
        [(1, "1.0".into()), (3, "1.0".into()), (5, "1.1".into())]
    );
    let device = &specs[1];
    assert_eq!(
        (device["name"].as_str(), device["instancetype"].as_str()),
        (Some("Device"), Some("single"))
    );
    let fw_version = &device["resourcedefs"][3];
    assert_eq!(
        (
            fw_version["id"].as_u64(),
            fw_version["name"].as_str(),
            fw_version["operations"].as_str(),
            fw_version["type"].as_str()
        ),
        (Some(3), Some("Firmware Version"), Some("R"), Some("string"))
    );
    let defer = specs[2]["resourcedefs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == 13))
        .expect("Object 5 1.1 has resource 13");
    assert_eq!(defer["type"], "unsigned_integer");
    assert_eq!(defer["units"], "s");
    let (s, body) = h.get_json("/api/objectspecs/nobody");
    assert_eq!(
        (s, body.as_str()),
        (400, Some("no registered client with id 'nobody'"))
    );
}

#[test]
fn models_from_a_directory_add_and_replace() {
    let dir = temp_dir("specs-models");
    std::fs::copy(leshan_models().join("5-1_1.xml"), dir.join("5-1_1.xml")).expect("copy");
    std::fs::write(dir.join("valve.xml"), VENDOR).expect("write");
    std::fs::write(dir.join("notes.txt"), "not a model").expect("write");
    let models = dir.clone();
    let h = Harness::start("specs-loaded", move |c| c.models_dir = Some(models));
    register(&h, "loaded", LINKS);
    let (s, specs) = h.get_json("/api/objectspecs/loaded");
    assert_eq!(s, 200, "{specs}");
    assert_eq!(
        ids_and_versions(&specs),
        [
            (1, "1.0".into()),
            (3, "1.0".into()),
            (5, "1.1".into()),
            (10250, "1.0".into())
        ]
    );
    let valve = &specs[3];
    assert_eq!(valve["name"], "Valve");
    assert_eq!(valve["instancetype"], "multiple");
    assert_eq!(valve["urn"], "urn:oma:lwm2m:x:10250");
    assert_eq!(
        valve["resourcedefs"][0],
        serde_json::json!({
            "id": 0, "name": "Opening", "operations": "RW", "instancetype": "single",
            "mandatory": true, "type": "float", "range": "0..100", "units": "%",
            "description": "How far the valve is open."
        })
    );
    assert_eq!(valve["resourcedefs"][1]["type"], "none");
    // The loaded Object 5 1.1 replaced the built-in one: its own wording.
    assert_eq!(
        specs[2]["resourcedefs"][0]["description"],
        "Firmware package (push, CoAP Block1)."
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve --models DIR`: the exit status and standard error.
fn serve_with_models(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(SHIM)
        .args(["serve", "--coaps", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--packages")
        .arg(dir.join("packages"))
        .arg("--models")
        .arg(dir.join("models"))
        .stdin(Stdio::null())
        .output()
        .expect("serve runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_model_file_stops_serve_with_one_line() {
    let dir = temp_dir("specs-cli");
    let models = dir.join("models");
    let (code, err) = serve_with_models(&dir);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: object models: {}: No such file or directory (os error 2)",
            models.display()
        )
    );
    std::fs::create_dir_all(&models).expect("dir");
    std::fs::write(
        models.join("broken.xml"),
        VENDOR.replace("<Type>Float</Type>", "<Type>Decimal</Type>"),
    )
    .expect("write");
    let (code, err) = serve_with_models(&dir);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: object models: {}: line 13: Type \"Decimal\" is not valid",
            models.join("broken.xml").display()
        )
    );
    std::fs::write(models.join("broken.xml"), "<LWM2M><Object>").expect("write");
    let (code, err) = serve_with_models(&dir);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("broken.xml: not well-formed XML"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The shim driving this project's own LwM2M client engine (in-process, real loopback UDP):
//! registration, reads in every content format through the REST API, observe + notification,
//! and a Block1 firmware push, all as a Leshan script would do them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwm2m_client::codec::hex;
use lwm2m_client::host::runtime::{self, Control};
use lwm2m_client::objects::{
    Device, DeviceInfo, Finished, FirmwareBackend, FirmwareUpdate, Security, Server,
};
use lwm2m_client::{Config, Engine, ObjectHandler};
use object5::UpdateResult;
use serde_json::json;
use tests::e2e::Harness;

#[derive(Clone, Default)]
struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl FirmwareBackend for MemorySink {
    fn begin(&mut self, _etag: Option<&[u8]>) -> Result<(), UpdateResult> {
        self.0.lock().map_err(|_| UpdateResult::OutOfRam)?.clear();
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), UpdateResult> {
        self.0
            .lock()
            .map_err(|_| UpdateResult::OutOfRam)?
            .extend_from_slice(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<Finished, UpdateResult> {
        Ok(Finished::Downloaded {
            name: "pkg".into(),
            version: "2.0.0".into(),
        })
    }
    fn discard(&mut self, _: UpdateResult) {
        if let Ok(mut v) = self.0.lock() {
            v.clear();
        }
    }
}

/// Runs the client engine on its own thread until `stop` is dropped.
fn start_client(h: &Harness, endpoint: &str, sink: MemorySink) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = h.coap;
    let endpoint = endpoint.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let uri = format!("coap://{server}");
            let objects: Vec<Box<dyn ObjectHandler>> = vec![
                Box::new(Security::no_sec(&uri)),
                Box::new(Server::new(300)),
                Box::new(Device::new(DeviceInfo {
                    manufacturer: "shim-test".into(),
                    model: "m1".into(),
                    serial: endpoint.clone(),
                    firmware_version: "1.0.0".into(),
                })),
                Box::new(FirmwareUpdate::new(sink)),
            ];
            let mut engine = Engine::new(Config::new(&endpoint), server, objects);
            let socket = runtime::bind_for(&server).await.expect("client socket");
            let shutdown = async {
                let _ = stopped.await;
            };
            let _ = runtime::run(
                &mut engine,
                &socket,
                shutdown,
                Duration::from_secs(2),
                |_, _, _| Control::Continue,
            )
            .await;
        });
    });
    stop
}

#[test]
fn own_client_is_managed_through_the_rest_api() {
    let h = Harness::start("own");
    let events = h.events("own-1");
    let sink = MemorySink::default();
    let stop = start_client(&h, "own-1", sink.clone());
    let reg = events.wait_for(&["REGISTRATION"], Duration::from_secs(10), |d| {
        d["endpoint"] == "own-1"
    });
    assert_eq!(reg["lwM2mVersion"], "1.1");
    assert!(reg["availableInstances"]["5"].as_array().is_some(), "{reg}");

    for format in ["TLV", "SENML_JSON", "SENML_CBOR"] {
        let (s, r) = h.get(&format!("/api/clients/own-1/3/0?format={format}"));
        assert_eq!(s, 200, "{format}: {r}");
        assert_eq!(r["status"], "CONTENT(205)", "{format}: {r}");
        let res = r["content"]["resources"].as_array().expect("resources");
        let manufacturer = res.iter().find(|x| x["id"] == 0).expect("resource 0");
        assert_eq!(
            *manufacturer,
            json!({"kind":"singleResource","id":0,"type":"string","value":"shim-test"}),
            "{format}"
        );
    }
    let (s, r) = h.get("/api/clients/own-1/3/0/3?format=TEXT");
    assert_eq!(
        (s, r["content"]["value"].as_str()),
        (200, Some("1.0.0")),
        "{r}"
    );
    let (s, r) = h.get("/api/clients/own-1/5/0/3");
    assert_eq!((s, r["content"]["value"].as_str()), (200, Some("0")), "{r}");
    let (s, r) = h.get("/api/clients/own-1/5/0/discover");
    assert_eq!(s, 200, "{r}");
    assert!(
        r["objectLinks"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["url"] == "/5/0/3")),
        "{r}"
    );

    // Observe State, push a package block-wise, see State 2 (Downloaded) notified.
    let (s, r) = h.post("/api/clients/own-1/5/0/3/observe", b"");
    assert_eq!((s, r["content"]["value"].as_str()), (200, Some("0")), "{r}");
    let image: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let node = json!({"id":0,"kind":"singleResource","type":"opaque","value": hex::encode(&image)});
    let (s, r) = h.put("/api/clients/own-1/5/0/0?format=OPAQUE&timeout=10", &node);
    assert_eq!((s, r["success"].as_bool()), (200, Some(true)), "{r}");
    assert_eq!(*sink.0.lock().expect("sink"), image);
    events.wait_for(&["NOTIFICATION"], Duration::from_secs(10), |d| {
        d["res"] == "/5/0/3" && d["val"]["value"] == "2"
    });
    let (s, r) = h.get("/api/clients/own-1/5/0?format=SENML_CBOR");
    assert_eq!(s, 200, "{r}");
    let pkg_version = r["content"]["resources"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["id"] == 7).cloned());
    assert_eq!(
        pkg_version.map(|v| v["value"].clone()),
        Some(json!("2.0.0")),
        "{r}"
    );
    // Execute outside the allowed state is the device's 4.05, relayed as 200.
    let (s, r) = h.post("/api/clients/own-1/3/0/0", b"");
    assert_eq!((s, r["success"].as_bool()), (200, Some(false)), "{r}");

    drop(stop);
    events.wait_for(&["DEREGISTRATION"], Duration::from_secs(10), |d| {
        d["endpoint"] == "own-1"
    });
}

#[test]
fn composite_read_and_write_reach_our_client() {
    let h = Harness::start("own-composite");
    let events = h.events("own-c");
    let stop = start_client(&h, "own-c", MemorySink::default());
    events.wait_for(&["REGISTRATION"], Duration::from_secs(10), |_| true);
    for (pathformat, nodeformat) in [
        ("SENML_CBOR", "SENML_CBOR"),
        ("SENML_JSON", "SENML_JSON"),
        ("SENML_JSON", "SENML_CBOR"),
    ] {
        let (s, r) = h.get(&format!(
            "/api/clients/own-c/composite?paths=/3/0/0,/5/0/3,/3/0/99\
             &pathformat={pathformat}&nodeformat={nodeformat}"
        ));
        assert_eq!(
            (s, r["status"].as_str()),
            (200, Some("CONTENT(205)")),
            "{r}"
        );
        assert_eq!(
            r["content"],
            json!({
                "/3/0/0": {"kind":"singleResource","id":0,"type":"string","value":"shim-test"},
                "/5/0/3": {"kind":"singleResource","id":3,"type":"integer","value":"0"},
                "/3/0/99": null,
            }),
            "{pathformat}/{nodeformat}"
        );
    }
    // Write-Composite: Current Time (a Time, in Leshan's milliseconds).
    let body = json!({
        "/3/0/13": {"kind":"singleResource","id":13,"type":"time","value": 1_700_000_000_000u64},
    });
    let (s, r) = h.put("/api/clients/own-c/composite?nodeformat=SENML_JSON", &body);
    assert_eq!(
        (s, r["status"].as_str()),
        (200, Some("CHANGED(204)")),
        "{r}"
    );
    let (s, r) = h.get("/api/clients/own-c/3/0/13");
    assert_eq!(s, 200, "{r}");
    let now = r["content"]["value"].as_u64().expect("time in ms");
    assert!(
        (1_700_000_000_000..1_700_000_010_000).contains(&now),
        "the written time, still running: {r}"
    );
    // The device refuses a read-only resource in a Write-Composite: its 4.05 is relayed.
    let ro = json!({"/3/0/0": {"kind":"singleResource","id":0,"type":"string","value":"x"}});
    let (s, r) = h.put("/api/clients/own-c/composite", &ro);
    assert_eq!(
        (s, r["status"].as_str()),
        (200, Some("METHOD_NOT_ALLOWED(405)")),
        "{r}"
    );
    for bad in [
        "/api/clients/own-c/composite",
        "/api/clients/own-c/composite?paths=/3/x",
        "/api/clients/own-c/composite?paths=/3/0/0&nodeformat=TLV",
    ] {
        let (s, r) = h.get(bad);
        assert_eq!(s, 400, "{bad}: {r}");
    }
    drop(stop);
}

//! The shim's coaps listener against real DTLS peers on loopback: libcoap's
//! `coap-client-openssl` (PSK) and our own `lwm2m_client::host::dtls` session acting as a device.
//! Covers the package host over DTLS (Block2), registration with the identity bound to one
//! endpoint (4.03 otherwise), refused keys and identities, the security REST API, device
//! management back to a coaps-registered client, and that plain CoAP gets nowhere by default.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{bytes, hex, openssl, temp_dir, wait_event, Harness};
use lwm2m_client::host::dtls::{DtlsContext, DtlsSession, Psk};
use lwm2m_server_shim::firmware::campaign;
use serde_json::{json, Value};

const KEY_A: &str = "secret-key-a-123";

/// A shim with coaps only (the secure default) and one client allowed in: `dev-a`/`id-a`.
fn secure_shim(tag: &str) -> Harness {
    let h = Harness::start(tag, |c| {
        c.coap_addr = None;
        c.coaps_addr = Some("127.0.0.1:0".parse().expect("addr"));
    });
    let info =
        json!({"endpoint": "dev-a", "psk": {"identity": "id-a", "key": hex(KEY_A.as_bytes())}});
    let (s, _) = h.put(
        "/api/security/clients",
        "application/json",
        info.to_string().as_bytes(),
    );
    assert_eq!(s, 200);
    h
}

/// Runs `coap-client-openssl` with PSK credentials; returns (exit success, stdout, stderr).
fn libcoap_psk(identity: &str, key: &str, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new("timeout")
        .args([
            "30",
            "coap-client-openssl",
            "-B",
            "8",
            "-u",
            identity,
            "-k",
            key,
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("coap-client-openssl is installed (apt libcoap3-bin)");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Our DTLS session on a blocking UDP socket, standing in for a device.
struct DtlsPeer {
    socket: UdpSocket,
    server: SocketAddr,
    session: DtlsSession,
    next_mid: u16,
}

impl DtlsPeer {
    /// Handshakes with `server`; `Err` when the shim refuses within `limit`.
    fn connect(
        server: SocketAddr,
        identity: &str,
        key: &[u8],
        limit: Duration,
    ) -> Result<Self, String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        Self::connect_on(socket, server, identity, key, limit)
    }

    /// Like [`DtlsPeer::connect`] from a socket the caller bound (and knows the address of).
    fn connect_on(
        socket: UdpSocket,
        server: SocketAddr,
        identity: &str,
        key: &[u8],
        limit: Duration,
    ) -> Result<Self, String> {
        let ctx = DtlsContext::psk_client(Psk {
            identity: identity.as_bytes().to_vec(),
            key: key.to_vec(),
        })
        .map_err(|e| e.to_string())?;
        let mut peer = Self {
            socket,
            server,
            session: DtlsSession::client(&ctx, None).map_err(|e| e.to_string())?,
            next_mid: 1,
        };
        let deadline = Instant::now() + limit;
        while !peer.session.is_established() {
            if Instant::now() > deadline {
                return Err("handshake timed out".into());
            }
            peer.flush();
            peer.receive(Duration::from_millis(50))?;
        }
        peer.flush();
        Ok(peer)
    }

    fn flush(&mut self) {
        while let Some(d) = self.session.poll_transmit() {
            self.socket.send_to(&d, self.server).expect("send");
        }
    }

    /// Waits up to `wait` for one datagram; returns the plaintexts it carried.
    fn receive(&mut self, wait: Duration) -> Result<Vec<Vec<u8>>, String> {
        self.socket
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2048];
        let got = match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => self
                .session
                .handle_datagram(buf.get(..n).unwrap_or_default())
                .map_err(|e| e.to_string())?,
            Err(_) => {
                if self.session.timeout().is_some_and(|t| t.is_zero()) {
                    self.session.handle_timeout().map_err(|e| e.to_string())?;
                }
                Vec::new()
            }
        };
        self.flush();
        Ok(got)
    }

    /// Sends a confirmable request and waits for its piggybacked response.
    fn request(&mut self, p: Packet) -> Packet {
        self.try_request(p, Duration::from_secs(10))
            .expect("no response over DTLS")
    }

    /// Like [`DtlsPeer::request`]; `None` when nothing answers within `limit`.
    fn try_request(&mut self, mut p: Packet, limit: Duration) -> Option<Packet> {
        p.header.set_type(MessageType::Confirmable);
        p.header.message_id = self.next_mid;
        self.next_mid += 1;
        p.set_token(vec![7, self.next_mid as u8]);
        self.session
            .send(&p.to_bytes().expect("encode"))
            .expect("send");
        self.flush();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            for d in self.receive(Duration::from_millis(100)).ok()? {
                if let Ok(r) = Packet::from_bytes(&d) {
                    if r.header.message_id == p.header.message_id {
                        return Some(r);
                    }
                }
            }
        }
        None
    }

    /// Answers server requests (GET of a resource) with `value` until `until` says stop.
    fn serve(&mut self, value: &str, deadline: Instant, mut until: impl FnMut() -> bool) {
        while Instant::now() < deadline && !until() {
            for d in self.receive(Duration::from_millis(50)).expect("session") {
                let Ok(req) = Packet::from_bytes(&d) else {
                    continue;
                };
                if req.header.code != MessageClass::Request(RequestType::Get) {
                    continue;
                }
                let mut resp = Packet::new();
                resp.header.set_type(MessageType::Acknowledgement);
                resp.header.message_id = req.header.message_id;
                resp.header.code = MessageClass::Response(ResponseType::Content);
                resp.set_token(req.get_token().to_vec());
                resp.add_option(CoapOption::ContentFormat, vec![0]);
                resp.payload = value.as_bytes().to_vec();
                self.session
                    .send(&resp.to_bytes().expect("encode"))
                    .expect("send");
                self.flush();
            }
        }
    }
}

fn register_request(ep: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Post);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    p.add_option(CoapOption::UriQuery, format!("ep={ep}").into_bytes());
    p.add_option(CoapOption::UriQuery, b"lt=60".to_vec());
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.payload = b"</3/0>".to_vec();
    p
}

#[test]
fn libcoap_fetches_a_package_over_coaps_and_registers_with_its_psk() {
    let h = secure_shim("dtls-libcoap");
    let image = bytes(70_000, 11);
    let (s, _) = h.put("/api/packages/fw.bin", "application/octet-stream", &image);
    assert_eq!(s, 201, "upload");
    let out = temp_dir("dtls-libcoap-out").join("fw.bin");
    let url = format!("coaps://{}/fw/fw.bin", h.coap);
    let out_s = out.to_string_lossy().into_owned();
    let (ok, _, err) = libcoap_psk("id-a", KEY_A, &["-b", "1024", "-o", &out_s, &url]);
    assert!(ok, "coap-client over DTLS: {err}");
    assert_eq!(
        std::fs::read(&out).expect("downloaded"),
        image,
        "Block2 over DTLS"
    );

    let events = h.events("");
    let rd = format!("coaps://{}/rd?ep=dev-a&lt=60", h.coap);
    let (ok, _, err) = libcoap_psk(
        "id-a",
        KEY_A,
        &["-m", "post", &rd, "-t", "40", "-e", "</3/0>"],
    );
    assert!(ok, "register over DTLS: {err}");
    wait_event(&events, Duration::from_secs(10), |n, d| {
        n == "REGISTRATION" && d["endpoint"] == "dev-a"
    });
}

#[test]
fn wrong_key_unknown_identity_and_foreign_endpoint_are_refused() {
    let h = secure_shim("dtls-refuse");
    let (s, _) = h.put(
        "/api/packages/p.bin",
        "application/octet-stream",
        b"payload",
    );
    assert_eq!(s, 201);
    let url = format!("coaps://{}/fw/p.bin", h.coap);
    let rd_b = format!("coaps://{}/rd?ep=dev-b&lt=60", h.coap);
    for (id, key) in [("id-a", "not-the-right-key"), ("intruder", KEY_A)] {
        let (_, body, _) = libcoap_psk(id, key, &[&url]);
        // libcoap logs its errors to stdout, so look for the payload itself.
        assert!(
            !body.windows(7).any(|w| w == b"payload"),
            "{id}: package leaked: {}",
            String::from_utf8_lossy(&body)
        );
        libcoap_psk(id, key, &["-m", "post", &rd_b, "-t", "40", "-e", "</3/0>"]);
        assert!(
            DtlsPeer::connect(h.coap, id, key.as_bytes(), Duration::from_secs(3)).is_err(),
            "{id}: our client got a session"
        );
    }
    // A good identity may still only be its own endpoint.
    let mut a = DtlsPeer::connect(h.coap, "id-a", KEY_A.as_bytes(), Duration::from_secs(10))
        .expect("id-a handshake");
    let r = a.request(register_request("dev-b"));
    assert_eq!(
        r.header.code,
        MessageClass::Response(ResponseType::Forbidden)
    );
    let (_, stderr_b) = {
        let (ok, _, err) = libcoap_psk(
            "id-a",
            KEY_A,
            &["-m", "post", &rd_b, "-t", "40", "-e", "</3/0>"],
        );
        (ok, err)
    };
    assert!(stderr_b.contains("4.03"), "libcoap sees 4.03: {stderr_b}");
    assert_eq!(h.get_json("/api/clients").1, json!([]), "nobody registered");
}

#[test]
fn device_management_reaches_a_client_registered_over_coaps() {
    let h = secure_shim("dtls-dm");
    let mut dev = DtlsPeer::connect(h.coap, "id-a", KEY_A.as_bytes(), Duration::from_secs(10))
        .expect("handshake");
    let r = dev.request(register_request("dev-a"));
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Created));
    let (s, one) = h.get_json("/api/clients/dev-a");
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["secure"], true, "{one}");
    // Its package downloads go over coaps too.
    assert_eq!(
        campaign::shim_package_uri(&h.running().shim, "dev-a", "p.suit"),
        Some(format!("coaps://{}/fw/p.suit", h.coap))
    );
    // The REST read goes out encrypted over the same session; the device answers it.
    let base = h.base.clone();
    let reader = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .get(format!("{base}/api/clients/dev-a/3/0/0?timeout=10"))
            .call()
            .expect("http");
        resp.body_mut().read_to_string().expect("body")
    });
    dev.serve("ACME", Instant::now() + Duration::from_secs(15), || {
        reader.is_finished()
    });
    let body: Value = serde_json::from_str(&reader.join().expect("reader")).expect("json");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["content"]["value"], "ACME", "{body}");
}

#[test]
fn plain_coap_is_closed_by_default_and_cannot_claim_a_secured_endpoint() {
    let h = secure_shim("dtls-plain");
    // A plain registration sent to the coaps port is not DTLS: no answer, no registration.
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut p = register_request("dev-a");
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = 9;
    s.send_to(&p.to_bytes().expect("encode"), h.coap)
        .expect("send");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    assert!(
        s.recv_from(&mut buf).is_err(),
        "coaps port answered plain CoAP"
    );
    assert_eq!(h.get_json("/api/clients").1, json!([]));
    assert!(
        lwm2m_server_shim::app::ShimConfig::default()
            .coap_addr
            .is_none(),
        "plain CoAP must be opt-in"
    );

    // With plain CoAP opened explicitly, an endpoint that has security info still needs DTLS.
    let both = Harness::start("dtls-plain-both", |c| {
        c.coaps_addr = Some("127.0.0.1:0".parse().expect("addr"));
    });
    let info =
        json!({"endpoint": "dev-a", "psk": {"identity": "id-a", "key": hex(KEY_A.as_bytes())}});
    both.put(
        "/api/security/clients",
        "application/json",
        info.to_string().as_bytes(),
    );
    let plain = both.running().coap_addr.expect("plain enabled");
    let rd = |ep: &str| format!("coap://{plain}/rd?ep={ep}&lt=60");
    let out = Command::new("timeout")
        .args([
            "30",
            "coap-client-openssl",
            "-m",
            "post",
            &rd("dev-a"),
            "-t",
            "40",
            "-e",
            "</3/0>",
        ])
        .output()
        .expect("coap-client");
    assert!(String::from_utf8_lossy(&out.stderr).contains("4.03"));
    assert!(common::coap_client(&["-m", "post", &rd("open-dev"), "-t", "40", "-e", "</3/0>"]).0);
    let (_, list) = both.get_json("/api/clients");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["endpoint"], "open-dev");
    assert_eq!(list[0]["secure"], false);
}

#[test]
fn security_rest_api_lists_puts_and_deletes_like_leshan() {
    let h = secure_shim("dtls-rest");
    let (s, all) = h.get_json("/api/security/clients");
    assert_eq!(s, 200);
    assert_eq!(
        all,
        json!([{"endpoint": "dev-a", "psk": {"identity": "id-a", "key": hex(KEY_A.as_bytes())}}])
    );
    // One identity, one endpoint.
    let clash = json!({"endpoint": "dev-b", "psk": {"identity": "id-a", "key": "00"}});
    assert_eq!(
        h.put(
            "/api/security/clients",
            "application/json",
            clash.to_string().as_bytes()
        )
        .0,
        400
    );
    assert_eq!(
        h.put(
            "/api/security/clients",
            "application/json",
            b"{\"endpoint\":1}"
        )
        .0,
        400
    );
    // Added keys work at once, removed ones no longer do.
    let b = json!({"endpoint": "dev-b", "psk": {"identity": "id-b", "key": hex(b"key-b")}});
    assert_eq!(
        h.put(
            "/api/security/clients",
            "application/json",
            b.to_string().as_bytes()
        )
        .0,
        200
    );
    let mut dev_b =
        DtlsPeer::connect(h.coap, "id-b", b"key-b", Duration::from_secs(10)).expect("id-b");
    let r = dev_b.request(register_request("dev-b"));
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Created));
    assert_eq!(h.delete("/api/security/clients/dev-b").0, 200);
    // Its live session ends with it: the old key gets no more answers.
    let mut fetch = Packet::new();
    fetch.header.code = MessageClass::Request(RequestType::Get);
    fetch.add_option(CoapOption::UriPath, b"fw".to_vec());
    fetch.add_option(CoapOption::UriPath, b"none".to_vec());
    assert!(dev_b.try_request(fetch, Duration::from_secs(1)).is_none());
    assert_eq!(h.delete("/api/security/clients/dev-b").0, 404);
    assert!(DtlsPeer::connect(h.coap, "id-b", b"key-b", Duration::from_secs(3)).is_err());
    let (_, all) = h.get_json("/api/security/clients");
    assert_eq!(all.as_array().map(Vec::len), Some(1));
}

/// A CA plus P-256 certificates it signs: `server` (CN 127.0.0.1) and `dev` (CN `dev_cn`), and
/// a `rogue` certificate with the same CN from a CA nobody trusts.
fn pki(dir: &std::path::Path, dev_cn: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "rogue-ca"] {
        let subj = format!("/CN={ca}");
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        openssl(dir, &args);
    }
    for (name, cn, ca) in [
        ("server", "127.0.0.1", "ca"),
        ("dev", dev_cn, "ca"),
        ("rogue", dev_cn, "rogue-ca"),
    ] {
        let subj = format!("/CN={cn}");
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &args);
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
            ],
        );
    }
}

#[test]
fn certificate_clients_register_as_their_common_name_only() {
    let dir = temp_dir("dtls-pki");
    pki(&dir, "urn:dev:cert-1");
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pem");
    let cert = lwm2m_server_shim::coap::dtls_socket::ServerCertificate(
        lwm2m_client::host::dtls::CertIdentity {
            cert_pem: read("server.pem"),
            key_pem: read("server.key"),
            ca_pem: read("ca.pem"),
        },
    );
    let h = Harness::start("dtls-cert", |c| {
        c.coap_addr = None;
        c.coaps_addr = Some("127.0.0.1:0".parse().expect("addr"));
        c.dtls_certificate = Some(cert);
    });
    let events = h.events("");
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let register = |who: &str, ep: &str| {
        let rd = format!("coaps://{}/rd?ep={ep}&lt=60", h.coap);
        let out = Command::new("timeout")
            .args(["30", "coap-client-openssl", "-B", "8"])
            .args([
                "-c",
                &path(&format!("{who}.pem")),
                "-j",
                &path(&format!("{who}.key")),
            ])
            .args([
                "-C",
                &path("ca.pem"),
                "-m",
                "post",
                &rd,
                "-t",
                "40",
                "-e",
                "</3/0>",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("coap-client-openssl");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let other = register("dev", "someone-else");
    assert!(other.contains("4.03"), "CN bound to its endpoint: {other}");
    register("rogue", "urn:dev:cert-1");
    assert_eq!(
        h.get_json("/api/clients").1,
        json!([]),
        "untrusted CA or wrong CN got in"
    );
    register("dev", "urn:dev:cert-1");
    wait_event(&events, Duration::from_secs(10), |n, d| {
        n == "REGISTRATION" && d["endpoint"] == "urn:dev:cert-1"
    });
    // PSK clients keep working on the same port.
    let info =
        json!({"endpoint": "dev-a", "psk": {"identity": "id-a", "key": hex(KEY_A.as_bytes())}});
    h.put(
        "/api/security/clients",
        "application/json",
        info.to_string().as_bytes(),
    );
    let mut a = DtlsPeer::connect(h.coap, "id-a", KEY_A.as_bytes(), Duration::from_secs(10))
        .expect("PSK beside certificates");
    let r = a.request(register_request("dev-a"));
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Created));
}

/// `text` without ANSI colour escapes (tracing's formatter writes them to a pipe too).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A free TCP port on loopback (bound then released).
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A child process stopped (by its pid) when dropped, also when the test fails.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stats(base: &str) -> Option<Value> {
    let mut r = ureq::get(format!("{base}/api/server/stats")).call().ok()?;
    serde_json::from_slice(&r.body_mut().read_to_vec().ok()?).ok()
}

/// The `serve` command at its default log level: a handshake with a wrong key and one with
/// an unknown identity each give one warning naming the peer and the identity, and the
/// refusals are counted in GET /api/server/stats.
#[test]
fn refused_handshakes_are_logged_at_the_default_level_and_counted() {
    let dir = temp_dir("dtls-refusal-log");
    let coaps: SocketAddr = format!("127.0.0.1:{}", common::free_udp_port())
        .parse()
        .expect("addr");
    let base = format!("http://127.0.0.1:{}", free_tcp_port());
    let psk = format!("dev-a:id-a:{}", hex(KEY_A.as_bytes()));
    let mut child = Command::new(common::SHIM)
        .args(["serve", "--coaps", &coaps.to_string(), "--http"])
        .arg(base.trim_start_matches("http://"))
        .arg("--packages")
        .arg(dir.join("packages"))
        .args(["--psk", &psk])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shim binary");
    // Read stderr as it comes, so a full pipe never blocks the shim.
    let stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text);
        text
    });
    let child = Stopped(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let initial = loop {
        if let Some(v) = stats(&base) {
            break v;
        }
        assert!(Instant::now() < deadline, "shim did not come up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(initial["dtls"]["refusedHandshakes"], 0, "{initial}");
    // A wrong key, from an address we know.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let wrong_key_from = socket.local_addr().expect("addr");
    assert!(DtlsPeer::connect_on(
        socket,
        coaps,
        "id-a",
        b"not-the-right-key",
        Duration::from_secs(3)
    )
    .is_err());
    // An identity the shim does not know, from libcoap.
    let url = format!("coaps://{coaps}/fw/none");
    libcoap_psk("intruder-x", KEY_A, &[&url]);
    // And a good one, which is not a refusal.
    let mut good = DtlsPeer::connect(coaps, "id-a", KEY_A.as_bytes(), Duration::from_secs(10))
        .expect("id-a handshake");
    let r = good.request(register_request("dev-a"));
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Created));
    let now = stats(&base).expect("stats");
    assert_eq!(now["dtls"]["refusedHandshakes"], 2, "{now}");
    assert_eq!(now["dtls"]["sessions"], 1, "{now}");
    assert_eq!(now["registrations"], 1, "{now}");
    drop(child);
    let log = strip_ansi(&reader.join().expect("stderr reader"));
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("DTLS handshake refused"))
        .collect();
    assert_eq!(refusals.len(), 2, "one line per refusal:\n{log}");
    assert!(refusals.iter().all(|l| l.contains("WARN")), "{refusals:?}");
    assert!(
        refusals
            .iter()
            .any(|l| l.contains(&wrong_key_from.to_string()) && l.contains("id-a")),
        "wrong key: peer and identity named: {refusals:?}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("intruder-x")),
        "unknown identity named: {refusals:?}"
    );
}

/// A ClientHello longer than the client's path MTU comes in fragments (RFC 6347 §4.2.3). The
/// peer is OpenSSL's command-line client with `-mtu 256` offering every suite it has (a
/// ClientHello of about 400 bytes): the handshake completes with the shim and a package comes
/// back over the session. (OpenSSL's `DTLSv1_listen`, which the listener answers first
/// ClientHellos with, takes only whole ones: before the reassembly the client got nothing.)
#[test]
fn a_client_hello_in_fragments_gets_through_and_the_session_works() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    let h = secure_shim("dtls-frag-hello");
    let content = b"a package fetched after a fragmented ClientHello";
    let (s, _) = h.put(
        "/api/packages/small.bin",
        "application/octet-stream",
        content,
    );
    assert_eq!(s, 201, "upload");
    let mut child = Command::new("openssl")
        .args(["s_client", "-dtls1_2", "-mtu", "256", "-cipher", "ALL"])
        .args(["-connect", &h.coap.to_string(), "-psk_identity", "id-a"])
        .args([
            "-psk",
            &hex(KEY_A.as_bytes()),
            "-msg",
            "-nocommands",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is installed");
    let output = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = output.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("output").extend_from_slice(&buf[..n]);
        }
    });
    // CON GET /fw/small.bin (message id 0x1234, no token): s_client sends what it reads
    // from stdin as application data once the handshake is done.
    let mut get = vec![0x40, 0x01, 0x12, 0x34, 0xb2, b'f', b'w', 0x09];
    get.extend_from_slice(b"small.bin");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&get).expect("request");
    stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let seen = output.lock().expect("output").clone();
        let done = seen.windows(content.len()).any(|w| w == content);
        if done || Instant::now() > deadline {
            break String::from_utf8_lossy(&seen).into_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    // `-msg` prints each handshake message's length: the first one sent is the ClientHello.
    let hello_len = text
        .lines()
        .find(|l| l.starts_with(">>>") && l.contains("content_type=22"))
        .and_then(|l| l.rsplit("[length ").next())
        .and_then(|l| usize::from_str_radix(l.trim_end_matches(']'), 16).ok());
    assert!(
        hello_len.is_some_and(|n| n > 256),
        "a ClientHello longer than the MTU (so sent in fragments): {hello_len:?}\n{text}"
    );
    assert!(
        text.contains("Cipher is PSK-AES128-CCM8"),
        "handshake completed:\n{text}"
    );
    assert!(
        text.contains(std::str::from_utf8(content).expect("text")),
        "the package came back over the session:\n{text}"
    );
}

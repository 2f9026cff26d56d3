//! Our DTLS layer against a real peer: libcoap 4.3 built with OpenSSL (Debian libcoap3-bin).
//!
//! Both directions are exercised with PSK and the LwM2M-mandated suite
//! (TLS_PSK_WITH_AES_128_CCM_8, which our contexts offer and prefer first, and which this
//! libcoap's OpenSSL 3.0 offers), over real UDP on loopback; our client also in certificate
//! mode against libcoap's PKI. Against OpenSSL 3.5's defaults, which lack CCM_8, see
//! qblock_libcoap.rs.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_client::host::dtls::{DtlsContext, DtlsSession, Psk};
use tests::e2e::temp_dir;
use tests::pki::Pki;
use tests::process::wait_udp_bound;

const IDENTITY: &str = "lwm2m-dev-1";
const KEY: &str = "secret-psk-0001";

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Kills the peer when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends everything the session has queued.
fn flush(session: &mut DtlsSession, socket: &UdpSocket, to: SocketAddr) {
    while let Some(d) = session.poll_transmit() {
        socket.send_to(&d, to).expect("send");
    }
}

/// Drives a session on a blocking socket until `done` or the deadline, feeding timeouts; the
/// DTLS error that ends the session, if one does.
fn drive(
    session: &mut DtlsSession,
    socket: &UdpSocket,
    peer: &mut Option<SocketAddr>,
    deadline: Instant,
    mut on_data: impl FnMut(&mut DtlsSession, Vec<u8>) -> bool,
) -> Result<bool, String> {
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Some(to) = *peer {
            flush(session, socket, to);
        }
        let wait = session
            .timeout()
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).unwrap();
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                peer.get_or_insert(from);
                let datagrams = session.handle_datagram(&buf[..n]);
                for data in datagrams.map_err(|e| e.to_string())? {
                    if on_data(session, data) {
                        if let Some(to) = *peer {
                            flush(session, socket, to);
                        }
                        return Ok(true);
                    }
                }
            }
            Err(_) => {
                if session.timeout() == Some(Duration::ZERO) || session.timeout().is_none() {
                    let _ = session.handle_timeout();
                }
            }
        }
    }
    Ok(false)
}

/// A port whose number and number+1 are both free (libcoap puts DTLS on port+1).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65535 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair on loopback");
}

/// libcoap's `coap-server-openssl` on loopback with `options` (its PSK or PKI ones); its
/// DTLS address, once bound.
fn libcoap_server(options: &[&str]) -> (Peer, SocketAddr) {
    if !have("coap-server-openssl") {
        panic!("coap-server-openssl missing: scripts/test installs libcoap3-bin");
    }
    let port = free_port_pair();
    let server = Peer(
        Command::new("coap-server-openssl")
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-v", "0"])
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start coap-server-openssl"),
    );
    // Ready once it has bound its DTLS port (port + 1).
    wait_udp_bound(port + 1, Duration::from_secs(10));
    (server, SocketAddr::from(([127, 0, 0, 1], port + 1)))
}

/// A DTLS session under `ctx` with `server`, then GET /.well-known/core through it: the
/// answer, or why there is none (the DTLS error that ended the handshake).
fn get_core(ctx: &DtlsContext, server: SocketAddr) -> Result<Packet, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut session = DtlsSession::client(ctx, None).map_err(|e| e.to_string())?;
    let mut peer = Some(server);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !session.is_established() && Instant::now() < deadline {
        let step = Instant::now() + Duration::from_millis(200);
        drive(&mut session, &socket, &mut peer, step, |_, _| true)?;
    }
    if !session.is_established() {
        return Err("no DTLS handshake with libcoap".into());
    }
    let mut req = Packet::new();
    req.header.set_type(MessageType::Confirmable);
    req.header.code = MessageClass::Request(RequestType::Get);
    req.header.message_id = 0x1234;
    req.set_token(vec![7, 7]);
    req.add_option(coap_lite::CoapOption::UriPath, b".well-known".to_vec());
    req.add_option(coap_lite::CoapOption::UriPath, b"core".to_vec());
    session.send(&req.to_bytes().unwrap()).unwrap();
    let mut answer = None;
    drive(&mut session, &socket, &mut peer, deadline, |_, data| {
        answer = Packet::from_bytes(&data).ok();
        answer.is_some()
    })?;
    answer.ok_or_else(|| "no CoAP answer through DTLS".into())
}

/// libcoap's link-format answer to GET /.well-known/core.
fn assert_core(answer: &Packet) {
    assert_eq!(
        answer.header.code,
        MessageClass::Response(ResponseType::Content)
    );
    assert_eq!(answer.get_token(), &[7, 7]);
    assert!(String::from_utf8_lossy(&answer.payload).contains("</"));
}

#[test]
fn our_dtls_client_talks_coaps_to_libcoap_server() {
    let (_server, addr) = libcoap_server(&["-k", KEY]);
    let ctx = DtlsContext::psk_client(Psk {
        identity: IDENTITY.as_bytes().to_vec(),
        key: KEY.as_bytes().to_vec(),
    })
    .unwrap();
    assert_core(&get_core(&ctx, addr).unwrap());
}

/// Certificate mode against libcoap (PKI, its certificate and ours from one CA, which it
/// checks ours against): a libcoap certificate naming 127.0.0.1 is taken, one naming another
/// address is refused by our client before any request (RFC 6125 §6).
#[test]
fn our_dtls_client_checks_the_name_in_libcoaps_certificate() {
    let dir = temp_dir("dtls-libcoap-pki");
    let pki = Pki::new(&dir, "libcoap-test-ca");
    let device = pki.issue("device", "urn:dev:pki-1", &[]);
    let ctx = DtlsContext::cert_client(&pki.identity(&device))
        .unwrap()
        .with_peer_name("127.0.0.1");
    for (file, name, taken) in [
        ("right", "IP:127.0.0.1", true),
        ("wrong", "IP:127.0.0.2", false),
    ] {
        let options = pki.libcoap_options(&pki.issue(file, "libcoap", &[name]));
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let (_server, addr) = libcoap_server(&options);
        match get_core(&ctx, addr) {
            Ok(answer) if taken => assert_core(&answer),
            Err(e) if !taken => assert!(e.contains("IP address mismatch"), "{e}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn libcoap_client_talks_coaps_to_our_dtls_server_and_wrong_key_is_refused() {
    if !have("coap-client-openssl") {
        panic!("coap-client-openssl missing: scripts/test installs libcoap3-bin");
    }
    let ctx = DtlsContext::psk_server(Arc::new(|id: &[u8]| {
        (id == IDENTITY.as_bytes()).then(|| KEY.as_bytes().to_vec())
    }))
    .unwrap();

    for (key, expect_ok) in [(KEY, true), ("not-the-key-000", false)] {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let client = Command::new("coap-client-openssl")
            .args(["-u", IDENTITY, "-k", key, "-B", "6", "-m", "get"])
            .arg(format!("coaps://127.0.0.1:{}/fw/info", addr.port()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start coap-client-openssl");
        let mut session: Option<DtlsSession> = None;
        let mut peer = None;
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut buf = [0u8; 2048];
        let mut served = false;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while Instant::now() < deadline && !served {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            peer = Some(from);
            let s = session.get_or_insert_with(|| DtlsSession::server(&ctx, from).unwrap());
            let Ok(datagrams) = s.handle_datagram(&buf[..n]) else {
                break;
            };
            for data in datagrams {
                let Ok(req) = Packet::from_bytes(&data) else {
                    continue;
                };
                let mut resp = Packet::new();
                resp.header.set_type(MessageType::Acknowledgement);
                resp.header.message_id = req.header.message_id;
                resp.header.code = MessageClass::Response(ResponseType::Content);
                resp.set_token(req.get_token().to_vec());
                resp.payload = b"served over DTLS".to_vec();
                s.send(&resp.to_bytes().unwrap()).unwrap();
                served = true;
            }
            flush(s, &socket, from);
        }
        let out = client.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if expect_ok {
            assert!(served, "libcoap's request never arrived through DTLS");
            assert!(
                stdout.contains("served over DTLS"),
                "client printed {stdout:?}"
            );
            let s = session.unwrap();
            assert_eq!(s.peer_psk_identity(), Some(IDENTITY.as_bytes()));
        } else {
            assert!(!served, "a wrong key must not get a request through");
            assert!(session.is_none_or(|s| !s.is_established()));
            assert!(!stdout.contains("served"), "{stdout:?}");
        }
        let _ = peer;
    }
}

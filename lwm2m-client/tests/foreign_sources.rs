//! Only the server and the package host are listened to (issue 12 item 1): a request from any
//! other UDP source gets no answer and changes nothing, it is counted and logged at debug, and
//! the real server keeps managing the device; a forged response on a pull's socket is dropped
//! the same way. OMA LwM2M TS Core 1.1 §6.3 (operations come from the registered server),
//! RFC 7252 §5.3.2 (a response matches by endpoint and token).

mod common;

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::net::{
    answer, recv_request, request_packet, request_to, server_socket, spawn_client_logged, temp_dir,
};
use lwm2m_client::coap::TxParams;
use lwm2m_client::host::coap_pull::{fetch_counting, CoapPullConfig};
use lwm2m_client::host::runtime::ForeignDatagrams;
use lwm2m_client::pull::{PackageSink, SinkError};
use std::net::UdpSocket;
use std::time::Duration;

const LOG_LINE: &str = "dropped a datagram from a foreign source";

#[test]
fn device_ignores_requests_from_anyone_but_its_server() {
    let server = server_socket("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let state = temp_dir("foreign");
    let uri = format!("coap://127.0.0.1:{port}");
    let (mut child, log) = spawn_client_logged(
        &[
            "--server",
            &uri,
            "--endpoint",
            "guarded",
            "--log-level",
            "warn,lwm2m_client::host::runtime=debug",
        ],
        &state,
    );
    let (reg, device) = recv_request(&server, "Register");
    answer(&server, device, &reg, ResponseType::Created, &["rd", "g1"]);

    // Someone else on the network: reads the serial number, tries to shorten the lifetime.
    let stranger = server_socket("127.0.0.1:0").unwrap();
    let read = request_packet(0x100, RequestType::Get, "/3/0/2", None, &[]);
    let write = request_packet(0x101, RequestType::Put, "/1/0/1", Some(0), b"7");
    for p in [&read, &write] {
        stranger.send_to(&p.to_bytes().unwrap(), device).unwrap();
    }
    // The server's requests, sent after the stranger's, are answered: the device handled the
    // stranger's datagrams first (one socket, one queue), so any answer to them is out by now.
    let lifetime = request_to(
        &server,
        device,
        0x200,
        RequestType::Get,
        "/1/0/1",
        None,
        &[],
    );
    assert_eq!(
        lifetime.header.code,
        MessageClass::Response(ResponseType::Content)
    );
    assert_eq!(lifetime.payload, b"300", "the lifetime is unchanged");
    let serial = request_to(
        &server,
        device,
        0x201,
        RequestType::Get,
        "/3/0/2",
        None,
        &[],
    );
    assert_eq!(
        serial.payload, b"guarded",
        "the server still reads the device"
    );
    let mut buf = [0u8; 2048];
    let heard = stranger.recv_from(&mut buf);
    assert!(
        heard.is_err(),
        "the stranger got an answer: {:?}",
        heard.map(|(n, _)| Packet::from_bytes(&buf[..n]))
    );
    let line = log
        .wait_for(Duration::from_secs(5), |l| {
            l.contains(LOG_LINE) && l.contains("dropped=2")
        })
        .unwrap_or_else(|| panic!("no debug line counting 2 drops in {:?}", log.lines()));
    assert!(
        line.contains(&stranger.local_addr().unwrap().to_string()),
        "{line}"
    );

    child.signal("TERM");
    let (dereg, from) = recv_request(&server, "De-register");
    assert_eq!(
        dereg.header.code,
        MessageClass::Request(RequestType::Delete)
    );
    answer(&server, from, &dereg, ResponseType::Deleted, &[]);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn bind_option_sets_the_device_address() {
    let server = server_socket("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    // A free port: bound by the OS, released, then handed to the device.
    let local = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let state = temp_dir("bind");
    let uri = format!("coap://127.0.0.1:{port}");
    let (_child, _log) = spawn_client_logged(
        &[
            "--server",
            &uri,
            "--bind",
            &local.to_string(),
            "--log-level",
            "warn",
        ],
        &state,
    );
    let (_, device) = recv_request(&server, "Register");
    assert_eq!(device, local, "the Register comes from --bind");
    let _ = std::fs::remove_dir_all(&state);
}

#[derive(Default)]
struct Collect(Vec<u8>);

impl PackageSink for Collect {
    fn start(&mut self, from: u64, _: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
        self.0.truncate(from as usize);
        Ok(())
    }
    fn write(&mut self, _: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The answer to a pull's GET: one piggybacked 2.05 with the whole `body` (no Block2).
fn content(req: &Packet, body: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Acknowledgement);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = req.header.message_id;
    p.set_token(req.get_token().to_vec());
    p.payload = body.to_vec();
    p.to_bytes().unwrap()
}

#[test]
fn pull_drops_a_forged_response_from_another_source() {
    let host = server_socket("127.0.0.1:0").unwrap();
    let uri = format!("coap://{}/fw.bin", host.local_addr().unwrap());
    let forger = server_socket("127.0.0.1:0").unwrap();
    let script = std::thread::spawn(move || {
        let (req, pull) = recv_request(&host, "the pull's GET");
        // The forger saw the request (same mid and token) and answers first.
        forger.send_to(&content(&req, b"EVIL"), pull).unwrap();
        host.send_to(&content(&req, b"GOOD"), pull).unwrap();
    });
    let config = CoapPullConfig {
        block_size: 1024,
        tx: TxParams::default(),
        max_size: 1 << 20,
        dtls: None,
        qblock: None,
    };
    let foreign = ForeignDatagrams::default();
    let mut sink = Collect::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pulled = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                fetch_counting(&uri, None, &config, &mut sink, &foreign),
            )
            .await
        })
        .expect("pull within 20 s")
        .expect("pull succeeds");
    script.join().unwrap();
    assert_eq!(sink.0, b"GOOD", "only the package host's bytes are stored");
    assert_eq!(pulled.size, 4);
    assert_eq!(foreign.count(), 1, "the forged response was counted");
}

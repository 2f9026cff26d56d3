//! Block-wise transfer with a real peer: libcoap's `coap-client` pushes a package to /5/0/0
//! with Block1 and reads a large resource with Block2, both with 16-byte blocks so block
//! numbers pass 4096 (where coap-lite's own BlockValue would wrap). The engine runs on the
//! crate's tokio runtime; the test plays the LwM2M server for registration, then coap-client
//! sends from the server's address (the device answers its server only).

mod common;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use common::net::coap_client_from;
use common::BigOpaque;
use lwm2m_client::host::runtime::{self, Control};
use lwm2m_client::objects::{
    Device, DeviceInfo, Finished, FirmwareBackend, FirmwareUpdate, Security, Server,
};
use lwm2m_client::{Config, Engine, ObjectHandler};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LEN: usize = 70_000; // 4375 blocks of 16 bytes

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 7)) as u8
}

/// Records what arrives, in order, to compare with the file coap-client sent.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl FirmwareBackend for Recorder {
    fn begin(&mut self, _etag: Option<&[u8]>) -> Result<(), object5::UpdateResult> {
        self.0.lock().unwrap().clear();
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), object5::UpdateResult> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<Finished, object5::UpdateResult> {
        Ok(Finished::Downloaded {
            name: "pushed".into(),
            version: "9.9.9".into(),
        })
    }
    fn discard(&mut self, _: object5::UpdateResult) {}
}

/// Runs coap-client from `server`, the address the device registered with: the device
/// answers its server only.
fn coap_client(server: SocketAddr, args: &[&str]) {
    let status = coap_client_from(server)
        .args(["-B", "60"])
        .args(args)
        .status()
        .expect("coap-client-openssl is installed (Debian libcoap3-bin)");
    assert!(status.success(), "coap-client {args:?}: {status}");
}

/// Reads `path` with a confirmable GET from the server's address, on a socket of the test's
/// own. Two coap-client runs in a row often start from the same message id (libcoap seeds
/// its generator with the time since its own start), and the device rightly answers the
/// second from its duplicate cache (RFC 7252 §4.5); so short reads do not use coap-client.
/// An answer with another token (such a cache hit) is retried with the next message id.
fn get(server: SocketAddr, device: SocketAddr, path: &str) -> Vec<u8> {
    let socket = UdpSocket::bind(server).expect("the server's address is free again");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Every request of the test gets its own message id and token.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        let attempt = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = (u32::from(attempt) ^ 0x5eed_0000).to_be_bytes().to_vec();
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(coap_lite::RequestType::Get);
        p.header.message_id = 0x3c00u16.wrapping_add(attempt.wrapping_mul(97));
        p.set_token(token.clone());
        for seg in path.split('/') {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        socket.send_to(&p.to_bytes().unwrap(), device).unwrap();
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(r) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            if from == device && r.get_token() == token.as_slice() {
                return r.payload;
            }
        }
    }
    panic!("no answer to GET /{path}");
}

#[test]
fn coap_client_block1_push_and_block2_read_beyond_block_4096() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let server_addr = server.local_addr().unwrap();
    let recorder = Recorder::default();
    let sink = recorder.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let objects: Vec<Box<dyn ObjectHandler>> = vec![
                Box::new(Security::no_sec(&format!("coap://{server_addr}"))),
                Box::new(Server::new(300)),
                Box::new(Device::new(DeviceInfo {
                    manufacturer: "Acme".into(),
                    model: "B".into(),
                    serial: "1".into(),
                    firmware_version: "1.0.0".into(),
                })),
                Box::new(FirmwareUpdate::new(sink)),
                Box::new(BigOpaque { len: LEN, pattern }),
            ];
            let mut engine = Engine::new(Config::new("block-ep"), server_addr, objects);
            let socket = runtime::bind_for(&server_addr).await.unwrap();
            let stop = async move {
                let _ = stop_rx.await;
            };
            runtime::run(
                &mut engine,
                &socket,
                stop,
                Duration::from_secs(1),
                |_, _, _| Control::Continue,
            )
            .await
            .unwrap();
        });
    });

    // Registration: answer 2.01 and learn the client's address.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 2048];
    let client_addr: SocketAddr = loop {
        assert!(Instant::now() < deadline, "no Register");
        if let Ok((n, from)) = server.recv_from(&mut buf) {
            let req = Packet::from_bytes(&buf[..n]).unwrap();
            let mut p = Packet::new();
            p.header.set_version(1);
            p.header.set_type(MessageType::Acknowledgement);
            p.header.code = MessageClass::Response(ResponseType::Created);
            p.header.message_id = req.header.message_id;
            p.set_token(req.get_token().to_vec());
            p.add_option(CoapOption::LocationPath, b"rd".to_vec());
            p.add_option(CoapOption::LocationPath, b"b".to_vec());
            server.send_to(&p.to_bytes().unwrap(), from).unwrap();
            break from;
        }
    };
    // coap-client takes over the server's address for the requests below.
    drop(server);

    let dir = std::env::temp_dir().join(format!("lwm2m-client-block-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pkg = dir.join("pkg.bin");
    let data: Vec<u8> = (0..LEN).map(|i| pattern(i * 7 + 3)).collect();
    std::fs::write(&pkg, &data).unwrap();

    // Block1 push, 16-byte blocks: 4375 requests, NUM up to 4374.
    let fw = format!("coap://{client_addr}/5/0/0");
    coap_client(
        server_addr,
        &[
            "-m",
            "put",
            "-b",
            "16",
            "-t",
            "42",
            "-f",
            pkg.to_str().unwrap(),
            &fw,
        ],
    );
    assert_eq!(
        recorder.0.lock().unwrap().as_slice(),
        data.as_slice(),
        "every byte, in order"
    );
    assert_eq!(
        get(server_addr, client_addr, "5/0/3"),
        b"2",
        "State = Downloaded"
    );
    assert_eq!(get(server_addr, client_addr, "5/0/7"), b"9.9.9");

    // Block2 read, 16-byte blocks.
    let out = dir.join("big.out");
    coap_client(
        server_addr,
        &[
            "-m",
            "get",
            "-b",
            "16",
            "-o",
            out.to_str().unwrap(),
            &format!("coap://{client_addr}/33000/0/0"),
        ],
    );
    let want: Vec<u8> = (0..LEN).map(pattern).collect();
    assert_eq!(std::fs::read(&out).unwrap(), want);

    let _ = stop_tx.send(());
    client.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

//! Real loopback sockets for tests that play the LwM2M server against the `lwm2m-client`
//! binary: a bounded-wait server socket, the binary as a child process killed on drop, and
//! the raw request/answer steps of a scripted server.

use super::ack;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A new, unique temporary directory named after `tag`.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("lwm2m-client-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A server socket on `addr` whose reads give up after 200 ms, so every wait stays bounded.
pub fn server_socket(addr: &str) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(sock)
}

/// Starts the `lwm2m-client` binary with `args` and its state in `state`; killed on drop.
pub fn spawn_client(args: &[&str], state: &Path) -> Kill {
    let child = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Kill(child)
}

/// Waits (bounded) for one CoAP request on the server socket.
pub fn recv_request(sock: &UdpSocket, what: &str) -> (Packet, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Ok(p) = Packet::from_bytes(&buf[..n]) {
                if matches!(p.header.code, MessageClass::Request(_)) {
                    return (p, from);
                }
            }
        }
    }
    panic!("no {what} within 20 s");
}

/// Answers `req` with a piggybacked `code`, with Location-Path segments `location`.
pub fn answer(
    sock: &UdpSocket,
    to: SocketAddr,
    req: &Packet,
    code: ResponseType,
    location: &[&str],
) {
    let mut p = ack(req, code);
    for l in location {
        p.add_option(CoapOption::LocationPath, l.as_bytes().to_vec());
    }
    sock.send_to(&p.to_bytes().unwrap(), to).unwrap();
}

/// Sends a confirmable request from the server socket to the device and waits (bounded) for
/// its piggybacked answer, skipping anything else the device sends meanwhile.
pub fn request_to(
    sock: &UdpSocket,
    to: SocketAddr,
    mid: u16,
    method: RequestType,
    path: &str,
    cf: Option<u16>,
    payload: &[u8],
) -> Packet {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(vec![0xB5, mid as u8]);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    if let Some(cf) = cf {
        p.add_option(
            CoapOption::ContentFormat,
            lwm2m_client::codec::block::uint_option(u32::from(cf)),
        );
    }
    p.payload = payload.to_vec();
    exchange(sock, to, &p)
}

/// Sends `req` (confirmable) to the device and waits (bounded) for the ACK with its message id.
pub fn exchange(sock: &UdpSocket, to: SocketAddr, req: &Packet) -> Packet {
    let mid = req.header.message_id;
    sock.send_to(&req.to_bytes().unwrap(), to).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(r) = Packet::from_bytes(&buf[..n]) {
                if r.header.message_id == mid && r.header.get_type() == MessageType::Acknowledgement
                {
                    return r;
                }
            }
        }
    }
    panic!("no answer to {:?}", req.get_option(CoapOption::UriPath));
}

//! Real loopback sockets for tests that play the LwM2M server against the `lwm2m-client`
//! binary: a bounded-wait server socket, the binary as a child process killed on drop, and
//! the raw request/answer steps of a scripted server.

use super::{ack, request, request_with};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Kill {
    /// Sends `signal` (`TERM`, `INT`, ...) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill command");
        assert!(sent.success(), "kill -{signal} {pid}: {sent}");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.0.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "client did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

fn command(args: &[&str], state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"));
    c.args(args)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null());
    c
}

/// Starts the `lwm2m-client` binary with `args` and its state in `state`; killed on drop.
pub fn spawn_client(args: &[&str], state: &Path) -> Kill {
    Kill(
        command(args, state)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Lines the binary wrote to stderr so far (its log), collected by a reader thread.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Waits (bounded) until a line satisfies `pred`; returns it.
    pub fn wait_for(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.0.lock().unwrap().iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// [`spawn_client`] with its stderr (the log) captured (and echoed to the test's stderr).
pub fn spawn_client_logged(args: &[&str], state: &Path) -> (Kill, Log) {
    let mut child = command(args, state).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Log::default();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("client: {line}");
            lines.0.lock().unwrap().push(line);
        }
    });
    (Kill(child), log)
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

/// A confirmable request with message id `mid` (and a token derived from it), carrying
/// `payload` in content format `cf` when given.
pub fn request_packet(
    mid: u16,
    method: RequestType,
    path: &str,
    cf: Option<u16>,
    payload: &[u8],
) -> Packet {
    let token = [0xB5, mid as u8];
    match cf {
        Some(cf) => request_with(method, mid, &token, path, u32::from(cf), payload),
        None => {
            let mut p = request(method, mid, &token, path);
            p.payload = payload.to_vec();
            p
        }
    }
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
    exchange(sock, to, &request_packet(mid, method, path, cf, payload))
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

/// libcoap's `coap-client` (Debian libcoap3-bin) sending from `server`, the address the
/// device registered with: the device answers its server only, so a test closes its server
/// socket while coap-client runs and binds it again afterwards.
pub fn coap_client_from(server: SocketAddr) -> Command {
    let mut c = Command::new("coap-client-openssl");
    c.args([
        "-a",
        &server.ip().to_string(),
        "-p",
        &server.port().to_string(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

//! The `serve` process under thousands of idle and half-open HTTP connections, more than its
//! descriptor limit allows: the REST API, the HTTP and the CoAP package host still answer
//! within a second, and the idle connections are closed once their timeouts pass.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::{free_udp_port, temp_dir, SHIM};

/// Descriptor limit of the shim process: well below the number of connections opened.
const SHIM_NOFILE: u64 = 1024;
const CONNECTIONS: usize = 3000;

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Raises this process's soft descriptor limit to `want` (within the hard limit).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        assert!(
            lim.rlim_cur >= want,
            "hard descriptor limit {} below {want}",
            lim.rlim_max
        );
    }
}

/// The `serve` process with a descriptor limit of [`SHIM_NOFILE`]; killed on drop.
struct Serve {
    child: Child,
    http: SocketAddr,
    coap: SocketAddr,
}

impl Serve {
    fn start(packages: &Path, extra: &[&str]) -> Self {
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("addr");
        let coap: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
            .parse()
            .expect("addr");
        let mut cmd = Command::new(SHIM);
        cmd.args([
            "serve",
            "--no-coaps",
            "--coap",
            &coap.to_string(),
            "--http",
            &http.to_string(),
            "--packages",
            &packages.display().to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: SHIM_NOFILE,
                    rlim_max: SHIM_NOFILE,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = cmd.spawn().expect("shim starts");
        let s = Self { child, http, coap };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(s.http, "/api/clients", Duration::from_secs(1)).map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "shim did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET on a new connection, all of it within `within`: (status, body).
fn http_get(addr: SocketAddr, path: &str, within: Duration) -> Option<(u16, Vec<u8>)> {
    let deadline = Instant::now() + within;
    let mut s = TcpStream::connect_timeout(&addr, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    if Instant::now() > deadline {
        return None;
    }
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..head_end)?).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    // Bodies here are small and sent with content-length (no chunking).
    Some((status, raw.get(head_end + 4..)?.to_vec()))
}

/// A CoAP GET of block 0 of `/fw/<name>`: (code, payload) if answered within `within`.
fn coap_get_block0(
    coap: SocketAddr,
    name: &str,
    within: Duration,
) -> Option<(ResponseType, Vec<u8>)> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(within)).ok()?;
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = 7;
    p.set_token(vec![1, 2]);
    p.add_option(CoapOption::UriPath, b"fw".to_vec());
    p.add_option(CoapOption::UriPath, name.as_bytes().to_vec());
    sock.send_to(&p.to_bytes().ok()?, coap).ok()?;
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let r = Packet::from_bytes(buf.get(..n)?).ok()?;
    match r.header.code {
        MessageClass::Response(code) => Some((code, r.payload)),
        _ => None,
    }
}

#[test]
fn thousands_of_idle_connections_leave_the_api_and_both_package_hosts_answering() {
    raise_nofile(CONNECTIONS as u64 + 512);
    let dir = temp_dir("http-limits");
    let packages = dir.join("packages");
    std::fs::create_dir_all(&packages).expect("dir");
    let package = common::bytes(5000, 3);
    std::fs::write(packages.join("fw.bin"), &package).expect("package");
    let shim = Serve::start(
        &packages,
        &["--http-header-timeout", "1", "--http-idle-timeout", "2"],
    );

    // Two thirds connect and say nothing, one third starts a request head and stalls. A shim
    // that stops accepting fills its listen backlog and connecting times out.
    let mut held = Vec::with_capacity(CONNECTIONS);
    let mut refused = None;
    for i in 0..CONNECTIONS {
        let mut s = match TcpStream::connect_timeout(&shim.http, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => {
                refused = Some(format!("connection {i}: {e}"));
                break;
            }
        };
        if i % 3 == 0 {
            s.write_all(b"GET /api/clients HTTP/1.1\r\nhost: x\r\n")
                .expect("partial head");
        }
        held.push(s);
    }
    let opened = Instant::now();

    let second = Duration::from_secs(1);
    let t = Instant::now();
    let rest = http_get(shim.http, "/api/clients", second);
    assert_eq!(
        rest.as_ref().map(|r| r.0),
        Some(200),
        "REST API answered within 1 s"
    );
    assert!(t.elapsed() < second, "{:?}", t.elapsed());
    let t = Instant::now();
    let fw = http_get(shim.http, "/fw/fw.bin", second);
    assert_eq!(fw.map(|r| r.1), Some(package.clone()), "HTTP package host");
    assert!(t.elapsed() < second, "{:?}", t.elapsed());
    let t = Instant::now();
    let block = coap_get_block0(shim.coap, "fw.bin", second);
    assert_eq!(
        block,
        Some((ResponseType::Content, package[..1024].to_vec())),
        "CoAP package host"
    );
    assert!(t.elapsed() < second, "{:?}", t.elapsed());

    assert_eq!(refused, None, "the shim kept accepting");
    // Every held connection is closed by the server: evicted for newer ones, or after the
    // header (1 s) or idle (2 s) timeout. A read sees the end of the stream or a reset.
    let deadline = opened + Duration::from_secs(2 + 8);
    let mut still_open = 0;
    for s in &mut held {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => {}
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                still_open += 1
            }
            Err(_) => {}
        }
    }
    assert_eq!(still_open, 0, "connections the server never closed");
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_and_half_open_connections_are_closed_after_their_timeouts_below_the_cap() {
    let dir = temp_dir("http-timeouts");
    let shim = Serve::start(
        &dir.join("packages"),
        &["--http-header-timeout", "1", "--http-idle-timeout", "3"],
    );
    let mut silent = TcpStream::connect(shim.http).expect("connect");
    let mut half = TcpStream::connect(shim.http).expect("connect");
    half.write_all(b"GET /api/clients HTTP/1.1\r\n")
        .expect("partial");
    // Kept alive after a request: idle from the end of its response.
    let mut kept = TcpStream::connect(shim.http).expect("connect");
    kept.write_all(b"GET /api/clients HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("request");
    let start = Instant::now();
    let closed_after = |s: &mut TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => continue,
            }
        }
    };
    let half_closed = closed_after(&mut half);
    let silent_closed = closed_after(&mut silent);
    let kept_closed = closed_after(&mut kept);
    assert!(
        half_closed >= Duration::from_millis(900) && half_closed < Duration::from_secs(3),
        "header timeout: {half_closed:?}"
    );
    assert!(
        silent_closed >= Duration::from_millis(2900) && silent_closed < Duration::from_secs(6),
        "idle timeout: {silent_closed:?}"
    );
    assert!(
        kept_closed >= Duration::from_millis(2900) && kept_closed < Duration::from_secs(6),
        "keep-alive idle timeout: {kept_closed:?}"
    );
    drop(shim);
    let _ = std::fs::remove_dir_all(&dir);
}

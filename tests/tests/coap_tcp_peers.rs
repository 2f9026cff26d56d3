//! CoAP over TCP and TLS (RFC 8323) against peers we did not write, and the package host's
//! behaviour on a real socket when its input is hostile:
//! - libcoap's coap-client (Debian libcoap3-bin, OpenSSL build) fetches a package from our
//!   coap+tcp host (BERT, as it negotiates it) and with 1 KiB blocks, and from our coaps+tcp host
//!   verifying its certificate: byte-exact;
//! - our pull fetches from libcoap's coap-server over coap+tcp;
//! - a package replaced under the transfer restarts the pull (a host that keeps changing it
//!   ends in Update Result 5), never mixing versions in the sink;
//! - malformed frames, a missing CSM, idle and surplus connections end in an Abort and a
//!   close, and the listener keeps serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lwm2m_client::codec::coap_tcp::{self, Signal};
use lwm2m_client::host::dtls::{Psk, PskLookup};
use lwm2m_client::host::tcp_pull::{fetch, TcpPullConfig};
use lwm2m_client::pull::{MemSink, PackageSink, SinkError};
use lwm2m_server_shim::packages::coap_tcp::{
    TcpHostLimits, TcpPackageHost, TlsCredentials, TlsIdentity,
};
use lwm2m_server_shim::packages::host::PackageHost;
use object5::UpdateResult;
use tests::e2e::temp_dir;
use tests::process::{free_tcp_port, LoggedChild};

fn image(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(7919) >> 3) as u8).collect()
}

/// A package host directory with `p.bin` and a coap+tcp (or coaps+tcp) listener on it.
struct Host {
    rt: tokio::runtime::Runtime,
    packages: Arc<PackageHost>,
    listener: TcpPackageHost,
    dir: PathBuf,
    cert: Option<PathBuf>,
}

impl Host {
    fn start(tag: &str, body: &[u8], secure: bool, limits: TcpHostLimits) -> Self {
        Self::start_with(tag, body, secure, None, limits)
    }

    /// [`Host::start`], a coaps+tcp host taking the PSKs of `psk` besides its certificate.
    fn start_with(
        tag: &str,
        body: &[u8],
        secure: bool,
        psk: Option<PskLookup>,
        limits: TcpHostLimits,
    ) -> Self {
        let rt = tests::runtime();
        let dir = temp_dir(tag);
        let packages = Arc::new(PackageHost::new(dir.join("packages")).expect("package dir"));
        packages.store("p.bin", body).expect("store");
        let identity = secure.then(|| TlsIdentity::self_signed(&[]).expect("certificate"));
        let cert = identity.as_ref().map(|id| {
            let path = dir.join("cert.pem");
            std::fs::write(&path, &id.cert_pem).expect("write certificate");
            path
        });
        let listener = rt
            .block_on(TcpPackageHost::start(
                "127.0.0.1:0".parse().expect("addr"),
                packages.clone(),
                identity
                    .clone()
                    .map(|identity| TlsCredentials { identity, psk })
                    .as_ref(),
                limits,
            ))
            .expect("listener");
        Self {
            rt,
            packages,
            listener,
            dir,
            cert,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn coap_client(args: &[&str]) -> std::process::Output {
    Command::new("coap-client-openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("coap-client-openssl (libcoap3-bin) must be installed")
}

/// Our pull's settings for coaps+tcp with the test PSK identity and `key`.
fn psk_pull(key: &[u8]) -> TcpPullConfig {
    TcpPullConfig {
        stall: Duration::from_secs(10),
        psk: Some(Psk {
            identity: PSK_IDENTITY.as_bytes().to_vec(),
            key: key.to_vec(),
        }),
        ..TcpPullConfig::default()
    }
}

#[test]
fn libcoap_client_fetches_byte_exact_from_our_tcp_and_tls_hosts() {
    let body = image(256 * 1024 + 123);
    let plain = Host::start("tcp-libcoap-client", &body, false, TcpHostLimits::default());
    for extra in [&[][..], &["-b", "1024"][..]] {
        let out = plain.dir.join("got.bin");
        let _ = std::fs::remove_file(&out);
        let url = plain.listener.url("p.bin");
        let mut args = vec!["-m", "get", "-B", "20", "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(&url);
        let r = coap_client(&args);
        assert!(r.status.success(), "{extra:?}: {r:?}");
        let got = std::fs::read(&out).expect("coap-client wrote the file");
        assert!(got == body, "{extra:?}: {} bytes, differ", got.len());
    }

    // coaps+tcp, with libcoap checking our certificate against it as a trusted CA (-R).
    let tls = Host::start("tls-libcoap-client", &body, true, TcpHostLimits::default());
    let out = tls.dir.join("got.bin");
    let url = tls.listener.url("p.bin");
    assert!(url.starts_with("coaps+tcp://127.0.0.1:"), "{url}");
    let cert = tls
        .cert
        .as_ref()
        .expect("cert")
        .to_str()
        .unwrap()
        .to_owned();
    let r = coap_client(&[
        "-m",
        "get",
        "-B",
        "20",
        "-R",
        &cert,
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert!(r.status.success(), "{r:?}");
    assert!(std::fs::read(&out).expect("file") == body);
}

const PSK_IDENTITY: &str = "tcp-dev";
const PSK_KEY: &[u8] = b"coaps+tcp secret";

fn psk_lookup() -> PskLookup {
    Arc::new(|id: &[u8]| (id == PSK_IDENTITY.as_bytes()).then(|| PSK_KEY.to_vec()))
}

/// RFC 8323 over TLS with a PSK, as a device in PSK mode (LwM2M's usual credentials) pulls:
/// libcoap's coap-client authenticates to our coaps+tcp host with the PSK alone (no CA given,
/// so a certificate handshake could not succeed) and gets the file byte for byte; with a
/// wrong key it is refused. Our own pull does the same, and fails on a wrong key.
#[test]
fn a_psk_authenticates_coaps_tcp_pulls_from_our_host() {
    let body = image(100 * 1024 + 7);
    let host = Host::start_with(
        "tls-psk",
        &body,
        true,
        Some(psk_lookup()),
        TcpHostLimits::default(),
    );
    let url = host.listener.url("p.bin");
    let out = host.dir.join("got.bin");
    let out_arg = out.to_str().unwrap().to_owned();
    let key = String::from_utf8(PSK_KEY.to_vec()).unwrap();
    let libcoap = |key: &str| {
        let _ = std::fs::remove_file(&out);
        coap_client(&[
            "-m",
            "get",
            "-B",
            "20",
            "-u",
            PSK_IDENTITY,
            "-k",
            key,
            "-o",
            &out_arg,
            &url,
        ])
    };
    let r = libcoap(&key);
    assert!(r.status.success(), "{r:?}");
    assert!(std::fs::read(&out).expect("file") == body);
    let r = libcoap("another key");
    assert!(
        !r.status.success() || std::fs::read(&out).map_or(true, |got| got != body),
        "a wrong key got the file: {r:?}"
    );

    let pull = |key: &[u8]| {
        let config = psk_pull(key);
        let mut sink = MemSink::default();
        host.rt
            .block_on(fetch(&url, None, &config, &mut sink))
            .map(|_| sink.data)
    };
    assert!(pull(PSK_KEY).expect("pull with the PSK") == body);
    let e = pull(b"another key").expect_err("a wrong key");
    assert_eq!(e.update_result(), UpdateResult::ConnectionLost, "{e}");
}

/// Our device's PSK against libcoap's coap-server over coaps+tcp (its TLS listener on the
/// port after the plain one, keyed with `-k`).
#[test]
fn our_pull_fetches_from_libcoap_server_over_coaps_tcp_with_a_psk() {
    let dir = temp_dir("libcoap-tls-psk-server");
    let key = String::from_utf8(PSK_KEY.to_vec()).unwrap();
    let body = image(150 * 1024 + 1);
    let (_server, port) = libcoap_server_holding(&dir, &body, &["-k", &key]);

    let rt = tests::runtime();
    let config = psk_pull(PSK_KEY);
    let secure = format!("coaps+tcp://127.0.0.1:{}/fw", port + 1);
    let mut sink = MemSink::default();
    let done = rt
        .block_on(fetch(&secure, None, &config, &mut sink))
        .expect("pull from libcoap over TLS with the PSK");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "pulled bytes differ");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port whose UDP and TCP sockets are free, and those of the next port too: libcoap's
/// server binds all four (plain on `port`, DTLS and TLS on `port + 1`).
fn free_libcoap_port() -> u16 {
    (0..100)
        .map(|_| free_tcp_port())
        .find(|p| {
            *p < u16::MAX
                && [*p, p + 1].iter().all(|q| {
                    std::net::UdpSocket::bind(("127.0.0.1", *q)).is_ok()
                        && std::net::TcpListener::bind(("127.0.0.1", *q)).is_ok()
                })
        })
        .expect("a free port pair")
}

/// libcoap's coap-server on loopback with `extra` arguments, holding `body` at `/fw`
/// (uploaded with its own client over coap+tcp).
fn libcoap_server_holding(
    dir: &std::path::Path,
    body: &[u8],
    extra: &[&str],
) -> (LoggedChild, u16) {
    let (server, port) = libcoap_server(dir, extra);
    let file = dir.join("fw.suit");
    std::fs::write(&file, body).unwrap();
    let url = format!("coap+tcp://127.0.0.1:{port}/fw");
    let r = coap_client(&["-m", "put", "-B", "20", "-f", file.to_str().unwrap(), &url]);
    assert!(r.status.success(), "upload to coap-server: {r:?}");
    (server, port)
}

/// libcoap's coap-server on loopback with `extra` arguments, listening on TCP (a start that
/// loses a port race to another socket exits at once and is tried again on other ports,
/// three times at most).
fn libcoap_server(dir: &std::path::Path, extra: &[&str]) -> (LoggedChild, u16) {
    for attempt in 0..3 {
        let port = free_libcoap_port();
        let mut server = LoggedChild::spawn(
            "coap-server-openssl (libcoap3-bin)",
            Command::new("coap-server-openssl")
                .args(["-A", "127.0.0.1", "-p", &port.to_string()])
                .args(["-d", "4", "-v", "0"])
                .args(extra),
            dir.join(format!("coap-server-{attempt}.log")),
            false,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && server.exited().is_none() {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (server, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            server.exited().is_some(),
            "coap-server runs but does not listen on TCP {port}"
        );
    }
    panic!("coap-server did not start in three attempts");
}

#[test]
fn our_pull_fetches_from_libcoap_server_over_coap_tcp() {
    let dir = temp_dir("libcoap-tcp-server");
    let body = image(200 * 1024 + 9);
    let (_server, port) = libcoap_server_holding(&dir, &body, &[]);
    let url = format!("coap+tcp://127.0.0.1:{port}/fw");

    let rt = tests::runtime();
    let config = TcpPullConfig {
        stall: Duration::from_secs(10),
        ..TcpPullConfig::default()
    };
    let mut sink = MemSink::default();
    let done = rt
        .block_on(fetch(&url, None, &config, &mut sink))
        .expect("pull from libcoap");
    assert_eq!(done.size, body.len() as u64);
    assert!(sink.data == body, "pulled bytes differ");
    let missing = format!("coap+tcp://127.0.0.1:{port}/nope");
    let e = rt
        .block_on(fetch(&missing, None, &config, &mut MemSink::default()))
        .unwrap_err();
    assert_eq!(e.update_result(), UpdateResult::InvalidUri, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sink that replaces the hosted package after some writes, as an operator uploading a new
/// version during a download would; each version is one byte value repeated.
struct Replacing {
    inner: MemSink,
    host: Arc<PackageHost>,
    /// Writes since the last start.
    writes: u32,
    /// Replacements still to make, each at the first write after a start.
    replacements: u32,
    version: u8,
    len: usize,
}

impl PackageSink for Replacing {
    fn start(&mut self, from: u64, _: Option<&[u8]>, _: Option<u64>) -> Result<(), SinkError> {
        self.writes = 0;
        // The inner sink keeps no entity tag or size: only where the transfer starts matters.
        self.inner.start(from, None, None)
    }
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.inner.write(offset, bytes)?;
        self.writes += 1;
        if self.writes == 1 && self.replacements > 0 {
            self.replacements -= 1;
            self.version = self.version.wrapping_add(1);
            self.host
                .store("p.bin", &vec![self.version; self.len])
                .expect("replace");
        }
        Ok(())
    }
}

#[test]
fn a_package_replaced_under_the_pull_restarts_it_and_never_mixes_versions() {
    let len = 100 * 1024;
    let host = Host::start(
        "tcp-replaced",
        &vec![0u8; len],
        false,
        TcpHostLimits::default(),
    );
    let config = TcpPullConfig {
        stall: Duration::from_secs(10),
        ..TcpPullConfig::default()
    };
    let url = host.listener.url("p.bin");
    // Replaced once after the first block: the pull starts over and ends with version 1.
    let mut sink = Replacing {
        inner: MemSink::default(),
        host: host.packages.clone(),
        writes: 0,
        replacements: 1,
        version: 0,
        len,
    };
    let done = host
        .rt
        .block_on(fetch(&url, None, &config, &mut sink))
        .expect("pull");
    assert_eq!(done.size, len as u64);
    assert_eq!(sink.inner.starts, vec![0, 0]);
    assert!(sink.inner.data.iter().all(|b| *b == 1), "versions mixed");

    // Replaced after every first block: Update Result 5 after a few restarts, and what the
    // sink holds is always one version.
    sink.replacements = u32::MAX;
    sink.inner = MemSink::default();
    let e = host
        .rt
        .block_on(fetch(&url, None, &config, &mut sink))
        .unwrap_err();
    assert_eq!(e.update_result(), UpdateResult::IntegrityFailure, "{e}");
    assert!(sink.inner.starts.iter().all(|s| *s == 0));
    let first = sink.inner.data.first().copied();
    assert!(
        sink.inner.data.iter().all(|b| Some(*b) == first),
        "versions mixed"
    );
}

/// Writes `bytes` to the listener and reads what it answers until it closes (bounded).
fn send_raw(addr: SocketAddr, bytes: &[u8], close_write: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).expect("write");
    if close_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    back
}

fn signals(mut wire: &[u8]) -> Vec<(Signal, Vec<u8>)> {
    let mut out = Vec::new();
    while let Ok(Some((p, n))) = coap_tcp::decode(wire, u32::MAX) {
        if let Some(Ok(s)) = coap_tcp::signal(&p) {
            out.push((s, p.payload.clone()));
        }
        wire = &wire[n..];
    }
    out
}

fn pulls_fine(host: &Host) {
    let body = host.packages.read_range("p.bin", 0, usize::MAX).unwrap();
    let mut sink = MemSink::default();
    host.rt
        .block_on(fetch(
            &host.listener.url("p.bin"),
            None,
            &TcpPullConfig::default(),
            &mut sink,
        ))
        .expect("the listener still serves");
    assert!(sink.data == body);
}

#[test]
fn malformed_frames_get_an_abort_and_the_listener_keeps_serving() {
    let host = Host::start(
        "tcp-malformed",
        &image(5000),
        false,
        TcpHostLimits::default(),
    );
    let csm = coap_tcp::csm(4096, true);
    let cases: [(Vec<u8>, &str); 4] = [
        // A request before the CSM (RFC 8323 §5.3).
        (vec![0x01, 0x01, 0x07], "CSM expected"),
        // Reserved token length 15.
        ([csm.clone(), vec![0x0F, 0x01]].concat(), "token length"),
        // A 1 GiB frame: refused from its header, nothing buffered.
        (
            [csm.clone(), vec![0xF0, 0x3F, 0xFF, 0xFF, 0xFF, 0x01]].concat(),
            "Max-Message-Size",
        ),
        // An option running past the frame.
        (
            [csm.clone(), vec![0x20, 0x01, 0xB5, b'x']].concat(),
            "malformed",
        ),
    ];
    for (wire, why) in cases {
        let back = send_raw(host.addr(), &wire, false);
        let got = signals(&back);
        assert!(
            matches!(got.first(), Some((Signal::Csm { .. }, _))),
            "{why}: the host's CSM comes first: {got:?}"
        );
        let (last, diag) = got.last().expect("signals");
        assert_eq!(*last, Signal::Abort, "{why}");
        assert!(
            String::from_utf8_lossy(diag).contains(why),
            "{why}: {diag:?}"
        );
    }
    // A frame cut short by the peer closing: no answer to it, and no harm.
    let mut cut = csm.clone();
    cut.extend_from_slice(&[0xD1, 0x01, 0x07]);
    let back = send_raw(host.addr(), &cut, true);
    assert_eq!(signals(&back).len(), 1, "only the host's CSM");
    // Ping is answered with a Pong.
    let back = send_raw(
        host.addr(),
        &[csm.clone(), coap_tcp::ping(&[4])].concat(),
        true,
    );
    assert!(signals(&back).iter().any(|(s, _)| *s == Signal::Pong));
    // Junk of every shape: the host closes each connection and never stops serving.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..200 {
        let mut junk = if round % 2 == 0 {
            csm.clone()
        } else {
            Vec::new()
        };
        for _ in 0..(round % 40 + 1) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk.push(x as u8);
        }
        send_raw(host.addr(), &junk, true);
    }
    pulls_fine(&host);
}

#[test]
fn surplus_and_idle_connections_are_closed() {
    let limits = TcpHostLimits {
        max_connections: 2,
        idle: Duration::from_millis(500),
        ..TcpHostLimits::default()
    };
    let host = Host::start("tcp-limits", &image(3000), false, limits);
    let csm = coap_tcp::csm(4096, true);
    // Two connections take the two slots (each has had the host's CSM: it was accepted).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(host.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&csm).unwrap();
        let mut first = [0u8; 64];
        assert!(s.read(&mut first).unwrap() > 0, "the host's CSM");
        held.push(s);
    }
    let back = send_raw(host.addr(), &csm, false);
    let got = signals(&back);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, Signal::Abort);
    assert!(String::from_utf8_lossy(&got[0].1).contains("too many"));
    // The held connections go idle: each gets an Abort and is closed.
    for mut s in held {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let got = signals(&rest);
        assert_eq!(got.last().map(|g| &g.0), Some(&Signal::Abort), "{got:?}");
    }
    // With the slots free again the host serves (a slot frees when its task ends: retried).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = host.packages.read_range("p.bin", 0, usize::MAX).unwrap();
        let mut sink = MemSink::default();
        let r = host.rt.block_on(fetch(
            &host.listener.url("p.bin"),
            None,
            &TcpPullConfig::default(),
            &mut sink,
        ));
        if r.is_ok() {
            assert!(sink.data == body);
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

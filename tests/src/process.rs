//! Peers run as real processes: the workspace's own binaries (`lwm2m-client`,
//! `lwm2m-server-shim`) and Java programs. Each process logs to a file; the log is printed when
//! a test fails while the process runs, and the process is stopped by its pid when dropped.

use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A child process whose stdout and stderr go to a log file.
pub struct LoggedChild {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl LoggedChild {
    /// Starts `cmd` with its output in `log`; with `keep_stdin` its standard input stays open
    /// (a pipe) until [`LoggedChild::close_stdin`].
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf, keep_stdin: bool) -> Self {
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdout(out).stderr(err).stdin(if keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdin = child.stdin.take();
        Self {
            name: name.into(),
            child,
            stdin,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process (SIGKILL: no clean shutdown) and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Writes `line` and a newline to the process's standard input (kept open at spawn).
    pub fn send_line(&mut self, line: &str) {
        let stdin = self
            .stdin
            .as_mut()
            .expect("standard input kept open at spawn");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("write to the process's standard input");
    }

    /// Closes the process's standard input (programs here take that as "stop cleanly").
    pub fn close_stdin(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
    }

    /// Sends SIGTERM (what `kill`, systemd and container runtimes send to stop a service)
    /// and waits up to `limit` for the process to end.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_exit(limit)
    }

    /// Waits up to `limit` for the process to end by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits up to `limit` for `needle` to appear in the log; panics with the log otherwise.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} ended ({status}) before logging {needle:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not log {needle:?} within {limit:?}:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} (pid {}, {}) -----\n{}\n----- end of {} log -----",
                self.name,
                self.child.id(),
                self.log.display(),
                tail(&self.log(), 200),
                self.name
            );
        }
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback UDP port that was free a moment ago (for peers that need a port on their command
/// line instead of taking port 0 and reporting it).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

/// Whether a UDP socket on this machine is bound to `port` on 127.0.0.1 or the wildcard
/// address. Read from /proc/net/udp, so probing takes nothing from a peer that is starting.
pub fn udp_port_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|local| wanted.iter().any(|w| w == local))
}

/// Waits until a peer process has bound loopback UDP `port` (its readiness); panics after
/// `limit`.
pub fn wait_udp_bound(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !udp_port_bound(port) {
        assert!(
            Instant::now() < deadline,
            "nothing bound UDP port {port} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until a CoAP server answers on loopback `port` (a CoAP ping: an empty CON gets a
/// RST); panics after 15 s.
pub fn wait_for_coap(port: u16) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let _ = s.send_to(&[0x40, 0x00, 0x12, 0x34], ("127.0.0.1", port));
        if s.recv(&mut [0u8; 64]).is_ok() {
            return;
        }
    }
    panic!("CoAP server on port {port} did not come up");
}

/// aiocoap's file server (PyPI `aiocoap`) serving `dir` over CoAP with Block2 on loopback
/// `port`, answering once this returns; it logs to `dir/.aiocoap.log` (gone with `dir`).
pub fn aiocoap_fileserver(dir: &Path, port: u16) -> LoggedChild {
    let mut cmd = Command::new("aiocoap-fileserver");
    cmd.arg("--bind").arg(format!("127.0.0.1:{port}")).arg(dir);
    let log = dir.join(".aiocoap.log");
    let server = LoggedChild::spawn(
        "aiocoap-fileserver (pip install aiocoap)",
        &mut cmd,
        log,
        false,
    );
    wait_for_coap(port);
    server
}

/// Where `scripts/fetch-libcoap-qblock` (run by scripts/test) puts a tool of libcoap 4.3.4
/// (`coap-client`, `coap-server`; OpenSSL builds), the RFC 9177 Q-Block peer: Debian 13's
/// binaries under `target/peers/`. Bookworm's libcoap 4.3.1 has no Q-Block.
pub fn libcoap_qblock_path(tool: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/peers/libcoap-trixie/bin")
        .join(tool)
}

/// `node` running `tests/node/<script>` with Telefonica's lwm2m-node-lib (npm) on its
/// `NODE_PATH`: the second LwM2M implementation after Leshan that judges our device and our
/// conformance runner. `scripts/test` installs it under `target/peers/node/`; it must be there.
pub fn node_lib_command(script: &str) -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("../target/peers/node/node_modules");
    assert!(
        modules.join("lwm2m-node-lib").is_dir(),
        "{} has no lwm2m-node-lib: run scripts/test (npm install lwm2m-node-lib)",
        modules.display()
    );
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", modules)
        .arg(root.join("node").join(script));
    cmd
}

/// [`libcoap_qblock_path`], which must be there.
pub fn libcoap_qblock(tool: &str) -> PathBuf {
    let bin = libcoap_qblock_path(tool);
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/fetch-libcoap-qblock",
        bin.display()
    );
    bin
}

/// A loopback UDP port `p` that was free a moment ago with `p + 1` free too (libcoap's
/// coap-server serves coaps on the port after its coap port).
pub fn free_udp_port_pair() -> u16 {
    (0..50)
        .find_map(|_| {
            let p = free_udp_port();
            (p < 65535 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()).then_some(p)
        })
        .expect("free port pair")
}

/// A loopback TCP port that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free TCP port")
        .port()
}

/// Path of a binary of this workspace (`lwm2m-client`, `lwm2m-server-shim`), built once per
/// test process with the same cargo and profile as the running test, so it is never stale.
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let profile_dir = BUILT
        .get_or_init(build_workspace_bins)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let bin = profile_dir.join(name);
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

fn build_workspace_bins() -> Result<PathBuf, String> {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("test executable outside a target directory")?
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "-q",
        "-p",
        "lwm2m-client",
        "--bin",
        "lwm2m-client",
        "-p",
        "lwm2m-server-shim",
        "--bin",
        "lwm2m-server-shim",
    ]);
    if profile != "debug" {
        cmd.args(["--profile", profile]);
    }
    let out = cmd.output().map_err(|e| format!("cargo build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of the workspace binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(profile_dir)
}

/// Starts our simulated device binary `lwm2m-client` with `args`, logging to `dir/NAME.log`.
pub fn lwm2m_client(dir: &Path, name: &str, args: &[&str]) -> LoggedChild {
    let mut cmd = Command::new(workspace_bin("lwm2m-client"));
    cmd.args(args);
    LoggedChild::spawn(name, &mut cmd, dir.join(format!("{name}.log")), false)
}

/// Where `scripts/test` builds plgd's go-coap peer (`tests/gocoap`, pion DTLS underneath).
pub fn gocoap_peer_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/peers/gocoap-peer")
}

/// [`gocoap_peer_path`], which must be there.
pub fn gocoap_peer() -> PathBuf {
    let bin = gocoap_peer_path();
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test (go build in tests/gocoap)",
        bin.display()
    );
    bin
}

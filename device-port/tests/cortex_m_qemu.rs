//! The device-side core on an emulated Cortex-M3 (device-port/cortex-m-fw): builds the firmware
//! for thumbv7m-none-eabi with the workspace's `min-size` profile (opt-level z, fat LTO), runs it
//! under Debian's qemu-system-arm (mps2-an385, semihosting, `-icount shift=0`) with a timeout,
//! and parses the one summary line it prints. The static and text figures the firmware takes
//! from linker symbols are checked against the ELF's section headers, its object5 share against
//! the ELF's symbols. The same download and bootloader paths then run on the host under a stack
//! probe, and both stack figures are printed side by side.
//!
//! Fails, never skips, when the thumbv7m-none-eabi target or QEMU is missing: scripts/test
//! installs both. `cargo test -p device-port --test cortex_m_qemu -- --nocapture` shows the
//! figures.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cortex_m_fw::nor::RamNor;
use cortex_m_fw::packages::{NEW_PACKAGE, OLD_HEAD, OLD_IMAGE};
use cortex_m_fw::update::{self, BLOCK, FLASH_BYTES, HEAD_BUFFER, WORK_BUFFER};
use object5::slots::{BootPath, SlotManager, Strategy};

const TARGET: &str = "thumbv7m-none-eabi";
const MACHINE: &str = "mps2-an385";
/// A whole run takes about two seconds of QEMU; this bounds a hang.
const QEMU_TIMEOUT: Duration = Duration::from_secs(120);

/// The budgets (README, section "The device-side core on a Cortex-M"); every figure
/// must stay within its own.
const STACK_TARGET: u32 = 6 * 1024;
const STATIC_TARGET: u32 = 2 * 1024;
const TEXT_TARGET: u32 = 64 * 1024;
const OBJECT5_TARGET: u32 = 40 * 1024;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds the firmware in its own target dir (the test's own cargo holds the workspace's).
fn build_firmware() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("cortex-m-fw");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--locked",
            "-p",
            "cortex-m-fw",
            "--bin",
            "cortex-m-fw",
            "--features",
            "firmware",
        ])
        .args(["--target", TARGET, "--profile", "min-size", "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "building the firmware failed (is the target installed? `rustup target add {TARGET}`; \
         scripts/test does it):\n{stderr}"
    );
    target_dir.join(TARGET).join("min-size").join("cortex-m-fw")
}

/// Runs the firmware under QEMU; its semihosting output and exit status.
fn run_qemu(elf: &Path) -> (String, std::process::ExitStatus) {
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", MACHINE, "-cpu", "cortex-m3"])
        .args(["-display", "none", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        // One instruction per nanosecond of virtual time: the firmware's timer counts them.
        .args(["-icount", "shift=0", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("qemu-system-arm not runnable ({e}): apt-get install qemu-system-arm (scripts/test does it)")
        });
    let deadline = Instant::now() + QEMU_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("QEMU did not finish within {QEMU_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (stdout + &stderr, status)
}

/// The numbers in the summary line, or why it does not parse.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    stack: u32,
    static_ram: u32,
    text: u32,
    object5: u32,
}

/// Parses `cortex-m: MACHINE: verify+install ok, revert ok, bad-signature refused; stack N B,
/// static N B, text N B (object5 M B)`.
fn parse_summary(line: &str) -> Result<Summary, String> {
    let prefix =
        format!("cortex-m: {MACHINE}: verify+install ok, revert ok, bad-signature refused; ");
    let rest = line
        .strip_prefix(&prefix)
        .ok_or_else(|| format!("not the summary line: {line}"))?;
    let fields: Vec<&str> = rest
        .split([',', '(', ')'])
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if fields.len() != 4 {
        return Err(format!("expected 4 figures in {line}"));
    }
    let mut numbers = Vec::new();
    for (field, label) in fields
        .into_iter()
        .zip(["stack", "static", "text", "object5"])
    {
        let n = field
            .strip_prefix(label)
            .and_then(|f| f.strip_suffix(" B"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("field {label:?} malformed in {line}"))?;
        numbers.push(n);
    }
    match numbers[..] {
        [stack, static_ram, text, object5] => Ok(Summary {
            stack,
            static_ram,
            text,
            object5,
        }),
        _ => Err(format!("expected 4 figures in {line}")),
    }
}

/// The number after `label` in `line` (up to the next space, comma or semicolon).
fn number_after(line: &str, label: &str) -> u32 {
    let at = line
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {line}"))
        + label.len();
    line[at..]
        .split([' ', ',', ';', ')'])
        .find(|s| !s.is_empty())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("number after {label:?} in {line}"))
}

/// The few ELF32 facts the checks need: section headers and symbols.
mod elf {
    pub struct Section {
        pub name: String,
        pub addr: u32,
        pub size: u32,
        pub index: usize,
    }

    pub struct Symbol {
        pub name: String,
        pub addr: u32,
        pub size: u32,
        pub section: usize,
    }

    fn u16_at(b: &[u8], at: usize) -> usize {
        u16::from_le_bytes([b[at], b[at + 1]]) as usize
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    fn c_str(b: &[u8], at: usize) -> String {
        let end = b[at..]
            .iter()
            .position(|&c| c == 0)
            .map_or(b.len(), |n| at + n);
        String::from_utf8_lossy(&b[at..end]).into_owned()
    }

    /// Sections and symbols of a little-endian ELF32 file.
    pub fn read(b: &[u8]) -> (Vec<Section>, Vec<Symbol>) {
        assert_eq!(
            &b[..6],
            b"\x7fELF\x01\x01",
            "not a little-endian ELF32 file"
        );
        let (shoff, shentsize) = (u32_at(b, 0x20) as usize, u16_at(b, 0x2E));
        let (shnum, shstrndx) = (u16_at(b, 0x30), u16_at(b, 0x32));
        let header = |i: usize| shoff + i * shentsize;
        let names = u32_at(b, header(shstrndx) + 16) as usize;
        let mut sections = Vec::new();
        let mut symtab = None;
        for i in 0..shnum {
            let h = header(i);
            let kind = u32_at(b, h + 4);
            if kind == 2 {
                symtab = Some(h);
            }
            sections.push(Section {
                name: c_str(b, names + u32_at(b, h) as usize),
                addr: u32_at(b, h + 12),
                size: u32_at(b, h + 20),
                index: i,
            });
        }
        let mut symbols = Vec::new();
        if let Some(h) = symtab {
            let (off, size) = (u32_at(b, h + 16) as usize, u32_at(b, h + 20) as usize);
            let strtab = u32_at(b, header(u32_at(b, h + 24) as usize) + 16) as usize;
            for s in (off..off + size).step_by(16) {
                symbols.push(Symbol {
                    name: c_str(b, strtab + u32_at(b, s) as usize),
                    addr: u32_at(b, s + 4),
                    size: u32_at(b, s + 8),
                    section: u16_at(b, s + 14),
                });
            }
        }
        (sections, symbols)
    }
}

/// Stack bytes `f` uses below the caller's frame, on the host: the free stack below is
/// painted first, then scanned for the deepest byte that changed (the firmware does the same).
fn stack_probe<R>(f: impl FnOnce() -> R) -> (R, usize) {
    const PAINT: u8 = 0xA5;
    const DEPTH: usize = 512 * 1024;
    const MARGIN: usize = 1024;
    let here = std::hint::black_box(0u8);
    let sp = std::ptr::addr_of!(here) as usize;
    let low = sp - DEPTH;
    // SAFETY: the probe runs on a thread with a 2 MiB stack (host_stack), so
    // [sp - DEPTH, sp - MARGIN) is mapped stack below every live frame and unused.
    unsafe {
        for at in low..sp - MARGIN {
            (at as *mut u8).write_volatile(PAINT);
        }
    }
    let r = std::hint::black_box(f());
    // SAFETY: the same mapped region, read after `f` returned.
    let deepest = (low..sp - MARGIN)
        .find(|&at| unsafe { (at as *const u8).read_volatile() } != PAINT)
        .unwrap_or(sp - MARGIN);
    (r, sp - deepest)
}

/// The firmware's download and bootloader paths on the host (same code, same buffers): the
/// stack each uses, in bytes.
fn host_stack() -> (usize, usize) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let mut cells = vec![0xFFu8; FLASH_BYTES];
            let mut work = [0u8; WORK_BUFFER];
            let mut head = [0u8; HEAD_BUFFER];
            let layout = update::layout(Strategy::Swap);
            let mut slots =
                SlotManager::open(RamNor::new(&mut cells, None), layout, &mut work).expect("open");
            update::provision(&mut slots, &OLD_HEAD, &OLD_IMAGE).expect("provision");
            let mut at = 0;
            let mut link = |block: &mut [u8; BLOCK]| {
                let n = (NEW_PACKAGE.len() - at).min(BLOCK);
                block[..n].copy_from_slice(&NEW_PACKAGE[at..at + n]);
                at += n;
                n
            };
            let (r, download) = stack_probe(|| update::download(&mut slots, &mut head, &mut link));
            r.expect("host download");
            slots.request_install().expect("Execute");
            let (r, boot) = stack_probe(|| slots.boot(&mut update::authenticator()));
            assert_eq!(r.expect("host boot").path, BootPath::Test);
            (download, boot)
        })
        .expect("spawn")
        .join()
        .expect("host probe")
}

#[test]
fn firmware_updates_reverts_and_refuses_on_an_emulated_cortex_m3() {
    let elf_path = build_firmware();
    let (output, status) = run_qemu(&elf_path);
    println!("{output}");
    assert!(status.success(), "firmware failed ({status}):\n{output}");
    let summaries: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with(&format!("cortex-m: {MACHINE}: ")))
        .collect();
    assert_eq!(summaries.len(), 1, "exactly one summary line:\n{output}");
    let s = parse_summary(summaries[0]).unwrap_or_else(|e| panic!("{e}"));

    // icount is on: the calibration loop of 2,000,000 instructions counts as that.
    let counts = output
        .lines()
        .find(|l| l.starts_with("cortex-m: instructions:"))
        .expect("instructions line");
    let calibration = number_after(counts, "calibration ");
    assert!(
        calibration.abs_diff(2_000_000) <= 80,
        "instruction counting is off: {counts}"
    );
    let verify = number_after(counts, "verify of a 64 KiB image ");
    let authenticate = number_after(counts, "P-256 authenticate ");
    assert!(authenticate > 0 && verify > authenticate, "{counts}");

    // The firmware's static and text figures are the ELF's.
    let bytes = std::fs::read(&elf_path).expect("read ELF");
    let (sections, symbols) = elf::read(&bytes);
    let section = |name: &str| {
        sections
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("section {name} in the ELF"))
    };
    let ram = [".data", ".bss", ".uninit"].map(section);
    let ram_end = ram.iter().map(|s| s.addr + s.size).max().expect("RAM");
    let ram_start = ram.iter().map(|s| s.addr).min().expect("RAM");
    let ram_sum: u32 = ram.iter().map(|s| s.size).sum();
    assert_eq!(s.static_ram, ram_end - ram_start, "static RAM");
    assert!(
        s.static_ram - ram_sum < 8,
        "only alignment between the RAM sections"
    );
    let code = [".vector_table", ".object5", ".text", ".rodata"].map(section);
    let code_sum: u32 = code.iter().map(|s| s.size).sum();
    assert_eq!(s.text, section(".packages").addr - code[0].addr, "text");
    assert!(
        s.text - code_sum < 8,
        "only alignment between the text sections"
    );
    let o5 = section(".object5");
    assert_eq!(s.object5, o5.size, "object5 section");
    // Every function or constant of object5's own crate sits in its section; the symbols there
    // account for all of it but alignment.
    let in_o5: u32 = symbols
        .iter()
        .filter(|y| y.section == o5.index && y.size > 0)
        .map(|y| y.size)
        .sum();
    assert!(
        o5.size - in_o5 < o5.size / 50,
        "{in_o5} of {} bytes",
        o5.size
    );
    let strays: Vec<&str> = symbols
        .iter()
        .filter(|y| y.name.starts_with("_ZN7object5") && y.size > 0)
        .filter(|y| !(o5.addr..o5.addr + o5.size).contains(&(y.addr & !1)))
        .map(|y| y.name.as_str())
        .collect();
    assert!(
        strays.is_empty(),
        "object5 symbols outside .object5: {strays:?}"
    );

    let (host_download, host_boot) = host_stack();
    let stack_line = output
        .lines()
        .find(|l| l.starts_with("cortex-m: stack:"))
        .expect("stack line");
    let target_download = number_after(stack_line, "download ");
    let target_boot = number_after(stack_line, "bootloader ");
    println!(
        "stack, download path (1 KiB blocks, verify, stream into flash): cortex-m {target_download} B \
         (thumbv7m, opt-level z + LTO, from the top of the stack) | host {host_download} B \
         (x86_64, test profile, below the caller)"
    );
    println!("stack, bootloader (verify + swap): cortex-m {target_boot} B | host {host_boot} B");
    println!(
        "cortex-m figures vs targets: stack {} B (target {STACK_TARGET}), static {} B (target \
         {STATIC_TARGET}), text {} B (target {TEXT_TARGET}), object5 {} B (target \
         {OBJECT5_TARGET}); .data {} B, .bss {} B, .uninit {} B; verify of a 64 KiB image \
         {verify} instructions (P-256 {authenticate})",
        s.stack, s.static_ram, s.text, s.object5, ram[0].size, ram[1].size, ram[2].size
    );
    assert!(s.static_ram <= STATIC_TARGET, "static RAM over its target");
    assert!(s.stack <= STACK_TARGET, "peak stack over its target");
    assert!(s.text <= TEXT_TARGET, "text over its target");
    assert!(
        s.object5 <= OBJECT5_TARGET,
        "object5's text over its target"
    );
    assert!(host_download > 0 && host_boot > 0);
}

#[test]
fn summary_line_parses_and_wrong_lines_do_not() {
    let line = "cortex-m: mps2-an385: verify+install ok, revert ok, bad-signature refused; \
                stack 6852 B, static 1592 B, text 75108 B (object5 41592 B)";
    assert_eq!(
        parse_summary(line),
        Ok(Summary {
            stack: 6852,
            static_ram: 1592,
            text: 75108,
            object5: 41592
        })
    );
    for bad in [
        line.replace("revert ok", "revert FAILED"),
        line.replace("6852 B", "6852"),
        line.replace(" (object5 41592 B)", ""),
        line.replace("static", "statics"),
    ] {
        assert!(parse_summary(&bad).is_err(), "{bad}");
    }
}

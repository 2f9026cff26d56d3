//! SimFlash behaves like NOR flash and injects the faults the sweeps rely on.

use device_port::sim_flash::{CutMode, CutOperation, PowerCut, SimFlash, SimFlashError};
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

type Flash = SimFlash<4096, 4>;

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("device-port-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("flash.bin")
}

#[test]
fn erase_sets_ff_and_writes_only_clear_bits() {
    let mut f = Flash::new(2);
    f.write(0, &[0x0F, 0xF0, 0x00, 0xFF]).unwrap();
    // Clearing more bits of a written word is what NOR does.
    f.write(0, &[0x0E, 0x70, 0x00, 0xFE]).unwrap();
    let mut buf = [0u8; 4];
    f.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0x0E, 0x70, 0x00, 0xFE]);
    // Setting a bit needs an erase: refused, contents unchanged.
    assert!(matches!(
        f.write(0, &[0xFF, 0x70, 0x00, 0xFE]),
        Err(SimFlashError::NotErased { offset: 0 })
    ));
    f.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0x0E, 0x70, 0x00, 0xFE]);
    f.erase(0, 4096).unwrap();
    f.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0xFF; 4]);
    assert_eq!(f.erase_counts(), &[1, 0]);
}

#[test]
fn misaligned_and_out_of_bounds_access_is_an_error() {
    let mut f = Flash::new(1);
    assert!(matches!(
        f.write(2, &[0; 4]),
        Err(SimFlashError::NotAligned)
    ));
    assert!(matches!(
        f.write(0, &[0; 3]),
        Err(SimFlashError::NotAligned)
    ));
    assert!(matches!(f.erase(0, 100), Err(SimFlashError::NotAligned)));
    assert!(matches!(
        f.write(4096, &[0; 4]),
        Err(SimFlashError::OutOfBounds)
    ));
    assert!(matches!(
        f.erase(4096, 8192),
        Err(SimFlashError::OutOfBounds)
    ));
    let mut buf = [0u8; 8];
    assert!(matches!(
        f.read(4090, &mut buf),
        Err(SimFlashError::OutOfBounds)
    ));
}

#[test]
fn clean_cut_lands_nothing_and_everything_after_fails_until_power_on() {
    let mut f = Flash::new(1);
    f.arm(Some(PowerCut {
        after_ops: 1,
        mode: CutMode::Clean,
    }));
    f.write(0, &[0; 4]).unwrap();
    assert!(matches!(f.write(4, &[0; 4]), Err(SimFlashError::PowerLost)));
    assert_eq!(f.last_cut(), Some(CutOperation::Write));
    let mut buf = [0u8; 8];
    assert!(matches!(f.read(0, &mut buf), Err(SimFlashError::PowerLost)));
    assert!(matches!(f.erase(0, 4096), Err(SimFlashError::PowerLost)));
    f.power_on();
    f.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
}

#[test]
fn torn_writes_land_a_prefix_and_interrupted_erases_change_part_of_the_sector() {
    let data = [0u8; 4096];
    let mut saw_partial_write = false;
    let mut saw_partial_erase = false;
    for k in 0..64u64 {
        let mut f = Flash::new(1);
        f.arm(Some(PowerCut {
            after_ops: k,
            mode: CutMode::Partial,
        }));
        for _ in 0..k {
            f.write(0, &[0xFF; 4]).unwrap();
        }
        assert!(f.write(0, &data).is_err());
        f.power_on();
        let zeros = f.contents().iter().filter(|&&b| b == 0).count();
        assert!(zeros < 4096, "a torn write must not land whole");
        saw_partial_write |= zeros > 0;

        let mut g = Flash::new(1);
        g.write(0, &data).unwrap();
        g.arm(Some(PowerCut {
            after_ops: k,
            mode: CutMode::Partial,
        }));
        for _ in 0..k {
            g.write(0, &[0; 4]).unwrap();
        }
        assert!(g.erase(0, 4096).is_err());
        assert_eq!(g.last_cut(), Some(CutOperation::Erase));
        g.power_on();
        let erased = g.contents().iter().filter(|&&b| b == 0xFF).count();
        assert!(erased < 4096, "an interrupted erase must not complete");
        saw_partial_erase |= erased > 0;
    }
    assert!(saw_partial_write && saw_partial_erase);
}

#[test]
fn file_backing_survives_a_new_process_including_wear() {
    let path = temp_path("file");
    let _ = std::fs::remove_file(&path);
    {
        let mut f = Flash::open_file(&path, 2).unwrap();
        f.erase(4096, 8192).unwrap();
        f.write(4096, b"boot").unwrap();
        f.arm(Some(PowerCut {
            after_ops: 0,
            mode: CutMode::Partial,
        }));
        assert!(f.write(4100, &[0u8; 64]).is_err());
    }
    let mut f = Flash::open_file(&path, 2).unwrap();
    let mut buf = [0u8; 4];
    f.read(4096, &mut buf).unwrap();
    assert_eq!(&buf, b"boot");
    assert_eq!(f.erase_counts(), &[0, 1]);
    assert!(matches!(
        Flash::open_file(&path, 3),
        Err(SimFlashError::BackingSize { .. })
    ));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Write system calls this thread made so far (Linux task I/O accounting).
fn write_syscalls() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn file_backing_is_current_after_every_operation_without_a_write_call_per_operation() {
    let path = temp_path("mapped");
    let _ = std::fs::remove_file(&path);
    let mut f = Flash::open_file(&path, 4).unwrap();
    let before = write_syscalls();
    // What the download writer does per sector: erase, program, journal words.
    for sector in 0..4u32 {
        let base = sector * 4096;
        f.erase(base, base + 4096).unwrap();
        f.write(base, &[sector as u8; 284]).unwrap();
        f.write(base + 284, &[0xA5; 3812]).unwrap();
    }
    for word in 0..16u32 {
        f.write(word * 4, &[0; 4]).unwrap();
    }
    // A small pwrite into a file cached in large folios costs microseconds; six of them per
    // 4 KiB sector were most of the simulated device's excess download time (issue 19).
    assert_eq!(
        write_syscalls() - before,
        0,
        "flash operations made write calls"
    );
    // Still written through: another process (a reboot after a kill) reads it all now.
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[..64], &[0; 64]);
    assert_eq!(&file[64..284], &[0; 220]);
    for sector in 1..4usize {
        assert_eq!(
            &file[sector * 4096..sector * 4096 + 284],
            &[sector as u8; 284]
        );
        assert_eq!(file[sector * 4096 + 284..(sector + 1) * 4096], [0xA5; 3812]);
    }
    let wear = std::fs::read(path.with_extension("bin.wear")).unwrap();
    assert_eq!(
        wear,
        [1u32; 4]
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect::<Vec<_>>()
    );
    drop(f);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn power_cut_setting_parses_from_the_environment() {
    // One test owns these variables (tests in this binary run in parallel).
    std::env::set_var("SIM_POWER_CUT_AFTER", "17");
    std::env::set_var("SIM_POWER_CUT_MODE", "partial");
    assert_eq!(
        PowerCut::from_env().unwrap(),
        Some(PowerCut {
            after_ops: 17,
            mode: CutMode::Partial
        })
    );
    std::env::set_var("SIM_POWER_CUT_MODE", "sideways");
    assert!(PowerCut::from_env().is_err());
    std::env::remove_var("SIM_POWER_CUT_MODE");
    std::env::set_var("SIM_POWER_CUT_AFTER", "x");
    assert!(PowerCut::from_env().is_err());
    std::env::remove_var("SIM_POWER_CUT_AFTER");
    assert_eq!(PowerCut::from_env().unwrap(), None);
}

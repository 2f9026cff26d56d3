//! Wear: erases per sector for one whole update (download, install, test boot, confirm) and
//! for one reverted update, per strategy, printed by region. The numbers follow from the
//! strategy (swap-move erases each primary sector twice and each secondary sector once per swap),
//! so the test also checks the few that must hold for any correct implementation.

mod common;

use common::{run_update, Faults, Fixture, Package};
use object5::slots::Strategy;

/// Erase counts added by one uninterrupted update of `pkg`, per sector.
fn erases_per_update(fx: &Fixture, strategy: Strategy, pkg: &Package) -> Vec<u32> {
    let base = fx.factory_flash(strategy);
    let report = run_update(fx, strategy, &base, pkg, &[]);
    assert_eq!(report.faults, Faults::default(), "{:?}", report.notes);
    report
        .erase_counts
        .iter()
        .zip(base.erase_counts())
        .map(|(a, b)| a - b)
        .collect()
}

/// Straight to stdout, past the test harness's capture, so CI logs show the report.
fn report(line: &str) {
    std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes())
        .expect("stdout");
}

fn summary(label: &str, layout: &object5::slots::Layout, erases: &[u32]) -> String {
    let sector = |addr: u32| (addr / layout.sector_size) as usize;
    let range = |from: u32, n: u32| &erases[sector(from)..sector(from) + n as usize];
    let slot = |i: usize| {
        let r = range(layout.slots[i], layout.region_bytes(i) / layout.sector_size);
        format!(
            "max {} total {}",
            r.iter().max().unwrap(),
            r.iter().sum::<u32>()
        )
    };
    let mut line = format!(
        "wear: {:9} {:6}: journal {:?}",
        layout.strategy.name(),
        label,
        range(layout.journal, 2)
    );
    if layout.strategy != Strategy::AB {
        line += &format!(", progress {}", erases[sector(layout.progress)]);
    }
    line += &format!(
        ", slot0 {}, slot1 {} (erases per sector per update)",
        slot(0),
        slot(1)
    );
    line
}

#[test]
fn wear_per_sector_per_update() {
    let fx = Fixture::new();
    for strategy in Strategy::ALL {
        let layout = fx.config(strategy).layout();
        let good = erases_per_update(&fx, strategy, &fx.good);
        report(&summary("update", &layout, &good));
        let s = layout.slot_sectors as usize;
        let slot_erases = |i: usize| {
            let from = (layout.slots[i] / layout.sector_size) as usize;
            good[from..from + s].to_vec()
        };
        match strategy {
            // Download erases each candidate sector once; nothing is copied.
            Strategy::AB => {
                assert!(slot_erases(1).iter().all(|&e| e == 1));
                assert!(slot_erases(0).iter().all(|&e| e == 0));
            }
            // One swap: every primary and secondary sector once more, scratch once per sector.
            // One swap-move: primary sectors 1..n are a move target and a swap target, sector
            // 0 only a swap target, the spare sector n only a move target; the secondary slot
            // is written by the download and by the swap. No sector wears faster than that.
            Strategy::Swap => {
                let primary = slot_erases(0);
                assert_eq!(primary[0], 1);
                assert!(primary[1..].iter().all(|&e| e == 2));
                let spare = (layout.slots[0] / layout.sector_size + layout.slot_sectors) as usize;
                assert_eq!(good[spare], 1);
                assert!(slot_erases(1).iter().all(|&e| e == 2));
            }
            Strategy::Overwrite => {
                assert!(slot_erases(0).iter().all(|&e| e == 1));
                assert!(slot_erases(1).iter().all(|&e| e == 1));
            }
        }
        if strategy.can_revert() {
            let bad = erases_per_update(&fx, strategy, &fx.bad);
            report(&summary("revert", &layout, &bad));
        }
    }
}

//! Swap and overwrite as a numbered list of idempotent sector copies, one progress word each.
//!
//! Step `j` erases its destination sector and copies its source there; its sources are not
//! touched again until step `j` is done, so redoing it after a cut gives the same result. The
//! progress word of step `j` is written only after the step completed, hence any non-blank word
//! (even a torn one) means "done" and no word is ever rewritten. The progress sector is erased
//! before the journal enters `Installing`/`Reverting`, never while a copy is in flight.

use embedded_storage::nor_flash::NorFlash;

use super::error::{flash_err, SlotError};
use super::layout::{progress_word, Layout, Strategy};

/// Source and destination of step `j`.
///
/// Swap (move scheme, `n` slot sectors, primary has sector `n` spare): steps `0..n` move the
/// primary up by one sector from the top (`p[i+1] := p[i]`, `i = n-1..0`); then for each `i`
/// `p[i] := s[i]` and `s[i] := p[i+1]`. Each source is read before anything overwrites it, so
/// every step can be redone; running the same steps again swaps back (revert).
/// Overwrite: `p[j] := s[j]`.
fn step(layout: &Layout, j: u32) -> (u32, u32) {
    let s = layout.sector_size;
    let n = layout.slot_sectors;
    let [primary, secondary] = layout.slots;
    let p = |i: u32| primary + i * s;
    let q = |i: u32| secondary + i * s;
    match layout.strategy {
        Strategy::Swap if j < n => {
            let i = n - 1 - j;
            (p(i), p(i + 1))
        }
        Strategy::Swap => {
            let t = j - n;
            let i = t / 2;
            if t.is_multiple_of(2) {
                (q(i), p(i))
            } else {
                (p(i + 1), q(i))
            }
        }
        Strategy::Overwrite | Strategy::AB => (q(j), p(j)),
    }
}

/// Erases the progress sector: the first step of a swap or copy, before it is journaled.
pub(crate) fn prepare<F: NorFlash>(flash: &mut F, layout: &Layout) -> Result<(), SlotError> {
    flash
        .erase(layout.progress, layout.progress + layout.sector_size)
        .map_err(flash_err)
}

/// Performs every step whose progress word is still blank.
pub(crate) fn run<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
    buf: &mut [u8],
) -> Result<(), SlotError> {
    let word = progress_word(F::WRITE_SIZE);
    let done = [0u8; 16];
    let done = done.get(..word).ok_or(SlotError::BufferTooSmall)?;
    for j in 0..layout.copy_steps() {
        let at = layout.progress + j * word as u32;
        let mut current = [0u8; 16];
        let current = current.get_mut(..word).ok_or(SlotError::BufferTooSmall)?;
        flash.read(at, current).map_err(flash_err)?;
        if current.iter().any(|&b| b != 0xFF) {
            continue;
        }
        let (src, dst) = step(layout, j);
        copy_sector(flash, src, dst, layout.sector_size, buf)?;
        flash.write(at, done).map_err(flash_err)?;
    }
    Ok(())
}

/// Erases `dst` and copies the sector at `src` into it through `buf`.
fn copy_sector<F: NorFlash>(
    flash: &mut F,
    src: u32,
    dst: u32,
    sector: u32,
    buf: &mut [u8],
) -> Result<(), SlotError> {
    let chunk = buf.len().min(sector as usize) / 16 * 16;
    let buf = buf
        .get_mut(..chunk)
        .filter(|b| !b.is_empty())
        .ok_or(SlotError::BufferTooSmall)?;
    flash.erase(dst, dst + sector).map_err(flash_err)?;
    let mut done = 0u32;
    while done < sector {
        let len = (sector - done).min(chunk as u32);
        let part = buf
            .get_mut(..len as usize)
            .ok_or(SlotError::BufferTooSmall)?;
        flash.read(src + done, part).map_err(flash_err)?;
        if part.iter().any(|&b| b != 0xFF) {
            flash.write(dst + done, part).map_err(flash_err)?;
        }
        done += len;
    }
    Ok(())
}

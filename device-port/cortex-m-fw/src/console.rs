//! The firmware's output over semihosting, without `core::fmt`: text and decimal numbers
//! written piece by piece. core's formatting machinery (`Formatter`, padding, the integer and
//! `Debug` impls its users pull in) is several KB of text, a fifth of what the firmware may
//! have; these lines need none of it.

use cortex_m_semihosting::export::hstdout_str;

/// Writes `s` to the host's standard output.
pub fn text(s: &str) {
    hstdout_str(s);
}

/// Writes `n` in decimal.
pub fn number(n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // The bytes are ASCII digits.
    text(core::str::from_utf8(&digits[at..]).unwrap_or("?"));
}

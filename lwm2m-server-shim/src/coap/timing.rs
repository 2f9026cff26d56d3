//! CoAP timing (RFC 7252 §4.8) and the jitter the shim's timers draw from it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use lwm2m_client::coap::TxParams;

/// CoAP transmission parameters (RFC 7252 section 4.8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoapTiming {
    /// Initial retransmission timeout (ACK_TIMEOUT, 2 s by default).
    pub ack_timeout: Duration,
    /// Upper bound factor of the random initial timeout (ACK_RANDOM_FACTOR, 1.5).
    pub ack_random_factor: f64,
    /// Retransmissions before giving up (MAX_RETRANSMIT, 4).
    pub max_retransmit: u32,
}

impl Default for CoapTiming {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
        }
    }
}

impl CoapTiming {
    /// MAX_TRANSMIT_WAIT (RFC 7252 §4.8.2): the longest a CON message can wait for its
    /// acknowledgement, retransmissions included.
    pub fn max_transmit_wait(&self) -> Duration {
        Duration::from_millis(self.tx_params().max_transmit_wait_ms())
    }

    /// The first retransmission timeout of a CON message: random between ACK_TIMEOUT and
    /// ACK_TIMEOUT * ACK_RANDOM_FACTOR (RFC 7252 §4.2).
    pub fn initial_timeout(&self) -> Duration {
        randomized(self.ack_timeout, self.ack_random_factor)
    }

    /// The same parameters in the device core's terms (milliseconds), whose formulas the
    /// shim shares.
    pub fn tx_params(&self) -> TxParams {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        TxParams {
            ack_timeout_ms: ms(self.ack_timeout),
            ack_random_factor_milli: (self.ack_random_factor.max(1.0) * 1000.0).round() as u64,
            max_retransmit: self.max_retransmit.min(15) as u8,
            exchange_lifetime_ms: ms(self.exchange_lifetime()),
        }
    }

    /// EXCHANGE_LIFETIME: how long a message id must be remembered for duplicate detection.
    pub fn exchange_lifetime(&self) -> Duration {
        // MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY (100 s) + PROCESSING_DELAY (ACK_TIMEOUT).
        let span = scaled(self.ack_timeout, self.ack_random_factor)
            .saturating_mul((1u32 << self.max_retransmit.min(16)).saturating_sub(1));
        span.saturating_add(Duration::from_secs(200))
            .saturating_add(self.ack_timeout)
    }
}

/// A random duration between `base` and `base * factor` (`factor` at least 1): the jitter of
/// CoAP's first retransmission timeout (RFC 7252 §4.2) and of RFC 9177's NON_TIMEOUT_RANDOM
/// (§7.2), so that peers started together do not retry in step.
pub fn randomized(base: Duration, factor: f64) -> Duration {
    let spread = (factor - 1.0).max(0.0);
    let frac = (random_u64() % 1001) as f64 / 1000.0;
    scaled(base, 1.0 + spread * frac)
}

/// `d * factor`, saturating at [`Duration::MAX`] where `Duration::mul_f64` would panic:
/// timings come from the command line.
fn scaled(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor.max(0.0)).unwrap_or(Duration::MAX)
}

/// 64 bits from the standard library's per-process random hasher keys and the clock: enough
/// for tokens, message ids and jitter, which need to be unpredictable, not secret.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_give_rfc_7252s_derived_times() {
        let t = CoapTiming::default();
        assert_eq!(t.max_transmit_wait(), Duration::from_secs(93));
        assert_eq!(t.exchange_lifetime(), Duration::from_secs(247));
        assert_eq!(t.tx_params(), TxParams::default());
        for _ in 0..1000 {
            let first = t.initial_timeout();
            assert!(first >= Duration::from_secs(2) && first <= Duration::from_secs(3));
        }
    }

    #[test]
    fn parameters_out_of_range_saturate_instead_of_overflowing() {
        let t = CoapTiming {
            ack_timeout: Duration::from_secs(u64::MAX / 4),
            ack_random_factor: 1e6,
            max_retransmit: u32::MAX,
        };
        assert_eq!(t.max_transmit_wait(), Duration::from_millis(u64::MAX));
        assert_eq!(t.exchange_lifetime(), Duration::MAX);
        assert_eq!(t.initial_timeout(), Duration::MAX);
        let none = CoapTiming {
            ack_random_factor: 0.5,
            ..CoapTiming::default()
        };
        assert_eq!(none.initial_timeout(), Duration::from_secs(2));
    }
}

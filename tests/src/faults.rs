//! The link model shared by the UDP relay ([`crate::relay`]) and the IP link emulator
//! ([`crate::ip_link`]): which packets a link drops, duplicates or reorders (seeded, so a run can
//! be repeated) and the fixed one-way delay, so that both emulators model the same link.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Which faults a link applies, each per packet and independently per direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Probability (0.0-1.0) that a packet is dropped.
    pub loss: f64,
    /// Probability that a packet is sent twice.
    pub duplicate: f64,
    /// Probability that a packet is held back and sent after the next one.
    pub reorder: f64,
    /// Fixed delay added to every packet.
    pub delay: Duration,
    /// Seed of the PRNG that takes the decisions.
    pub seed: u64,
    /// Cut the link for good after this many packets were forwarded (a connection lost
    /// in the middle of a transfer).
    pub cut_after: Option<u64>,
}

impl Faults {
    /// Loss alone, each packet dropped with probability `loss`, decisions drawn from `seed`.
    pub fn lossy(loss: f64, seed: u64) -> Self {
        Self {
            loss,
            seed,
            ..Self::default()
        }
    }
}

/// xorshift64*: small, seedable, good enough to draw fault decisions.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        p > 0.0 && ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// One packet waiting for its send time, bound for `to`.
pub(crate) struct Pending<D> {
    /// When it goes out.
    pub due: Instant,
    /// Where it goes.
    pub to: D,
    /// The packet.
    pub bytes: Vec<u8>,
}

/// What [`FaultGate::admit`] did with a packet, for the caller's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fate {
    /// Dropped (loss or a cut link).
    pub dropped: bool,
    /// An extra copy was sent.
    pub duplicated: bool,
    /// Held back to go out after the next packet.
    pub reordered: bool,
}

impl Fate {
    /// Adds what happened to the `dropped`, `duplicated` and `reordered` counters.
    pub fn count(self, dropped: &AtomicU64, duplicated: &AtomicU64, reordered: &AtomicU64) {
        for (happened, counter) in [
            (self.dropped, dropped),
            (self.duplicated, duplicated),
            (self.reordered, reordered),
        ] {
            if happened {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Applies [`Faults`] to packets in the order they arrive, with one PRNG for both directions.
pub(crate) struct FaultGate<D> {
    faults: Faults,
    rng: Rng,
    held: Option<Pending<D>>,
}

impl<D: Copy> FaultGate<D> {
    /// A gate whose decisions follow `faults.seed`.
    pub fn new(faults: Faults) -> Self {
        Self {
            faults,
            rng: Rng(faults.seed | 1),
            held: None,
        }
    }

    /// Decides the fate of `bytes`, which arrived just now bound for `to`: dropped when `cut`,
    /// when `forwarded` (packets forwarded so far) reached [`Faults::cut_after`] or by the
    /// loss draw; otherwise handed to `pass` (twice if duplicated) with its due time, after
    /// the next packet if reordered.
    pub fn admit(
        &mut self,
        to: D,
        bytes: &[u8],
        cut: bool,
        forwarded: u64,
        mut pass: impl FnMut(Pending<D>),
    ) -> Fate {
        let mut fate = Fate::default();
        if cut
            || self.faults.cut_after.is_some_and(|n| forwarded >= n)
            || self.rng.chance(self.faults.loss)
        {
            fate.dropped = true;
            return fate;
        }
        let p = Pending {
            due: Instant::now() + self.faults.delay,
            to,
            bytes: bytes.to_vec(),
        };
        if self.rng.chance(self.faults.duplicate) {
            fate.duplicated = true;
            pass(Pending {
                due: p.due,
                to,
                bytes: p.bytes.clone(),
            });
        }
        if self.held.is_none() && self.rng.chance(self.faults.reorder) {
            fate.reordered = true;
            // Held until the next packet overtakes it, or 20 ms at most.
            self.held = Some(Pending {
                due: p.due + Duration::from_millis(20),
                ..p
            });
        } else {
            pass(p);
            // The held packet goes out after the one that overtook it.
            if let Some(mut h) = self.held.take() {
                h.due = Instant::now() + self.faults.delay;
                pass(h);
            }
        }
        fate
    }

    /// Hands a held packet whose time is up to `pass` (call this between arrivals).
    pub fn release_overdue(&mut self, pass: impl FnOnce(Pending<D>)) {
        if self.held.as_ref().is_some_and(|h| h.due <= Instant::now()) {
            if let Some(h) = self.held.take() {
                pass(h);
            }
        }
    }
}

/// Hands each packet from `rx` to `out` when it is due, in the order received among those due
/// together; returns when the sending side is gone. It waits exactly until the next packet is
/// due: a socket read timeout is rounded up to the kernel's tick (4 ms here), which would add
/// that much to every delayed packet.
pub(crate) fn send_when_due<D>(rx: &mpsc::Receiver<Pending<D>>, mut out: impl FnMut(Pending<D>)) {
    let mut queue: Vec<Pending<D>> = Vec::new();
    loop {
        let now = Instant::now();
        let mut i = 0;
        while i < queue.len() {
            if queue[i].due <= now {
                out(queue.remove(i));
            } else {
                i += 1;
            }
        }
        let next = match queue.iter().map(|p| p.due).min() {
            Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(p) => queue.push(p),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

//! What the update path needs from a board, as traits a real port implements.
//!
//! Flash is `embedded_storage::nor_flash::NorFlash` itself (object5's slot manager is generic
//! over it); the rest is small enough to implement on any MCU.

use embedded_storage::nor_flash::NorFlash;

/// Restarts the device. On hardware this does not return; the simulation reboots through the
/// simulated bootloader and returns what it booted.
pub trait Reset {
    /// What a reset can fail with (the simulation: flash errors during boot).
    type Error;
    /// Resets now.
    fn reset(&mut self) -> Result<(), Self::Error>;
}

/// A monotonic millisecond clock (lifetimes, retransmission timers).
pub trait Clock {
    /// Milliseconds since an arbitrary, fixed origin; never decreases.
    fn now_ms(&self) -> u64;
}

/// Small persistent key-value storage (registration state, credentials).
pub trait KeyValue {
    /// Storage failure.
    type Error;
    /// The value stored under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Stores `value` under `key`, replacing any old value atomically.
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// Removes `key` (no error when absent).
    fn remove(&mut self, key: &str) -> Result<(), Self::Error>;
}

/// The keys that may authorise firmware on this device, by kind: a package is accepted with
/// the signature algorithms its signer's key kind allows (ES256/ESP256 for P-256,
/// EdDSA/Ed25519 for Ed25519).
pub trait TrustAnchors {
    /// SEC1-encoded P-256 public keys (uncompressed or compressed).
    fn p256_keys(&self) -> &[Vec<u8>];
    /// Ed25519 public keys; none unless the board provisions some.
    fn ed25519_keys(&self) -> &[[u8; 32]] {
        &[]
    }
}

/// The keys that decrypt encrypted firmware payloads on this device (its key store's
/// decryption keys); none unless the board provisions some.
pub trait DecryptionKeys {
    /// The stored decryption keys.
    fn decryption_keys(&self) -> &[crate::auth::StoredDecryptionKey] {
        &[]
    }
}

/// A board: flash plus the services above.
pub trait Board: Reset + TrustAnchors {
    /// The firmware flash.
    type Flash: NorFlash;
    /// The clock.
    type Clock: Clock;
    /// The key-value store.
    type KeyValue: KeyValue;
    /// The firmware flash.
    fn flash(&mut self) -> &mut Self::Flash;
    /// The clock.
    fn clock(&self) -> &Self::Clock;
    /// The key-value store.
    fn key_value(&mut self) -> &mut Self::KeyValue;
}

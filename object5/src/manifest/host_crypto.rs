//! Crypto backends for hosts (feature `openssl`): simulators, servers and tools that verify
//! many manifests and have OpenSSL at hand. Devices keep [`Software`] or their accelerator.

use super::crypto::{CryptoBackend, Software, SoftwareSha256};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;

/// sha2 hashing (SHA-NI where the CPU has it) with OpenSSL's ECDSA P-256 verification: the
/// fastest mix measured on a host (`benches/suit_verify.rs`; OpenSSL's verify is about 8x the
/// portable p256 one, whose constant-time path is chosen for stack, not speed).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenSslEcdsa;

impl CryptoBackend for OpenSslEcdsa {
    type Hasher = SoftwareSha256;

    fn sha256(&self) -> SoftwareSha256 {
        Software.sha256()
    }

    fn verify_p256(&self, public_sec1: &[u8], digest: &[u8; 32], signature: &[u8]) -> bool {
        openssl_verify_p256(public_sec1, digest, signature).unwrap_or(false)
    }
}

/// ECDSA P-256 through OpenSSL; `None` for a key or signature OpenSSL cannot even parse.
pub fn openssl_verify_p256(sec1: &[u8], digest: &[u8; 32], signature: &[u8]) -> Option<bool> {
    if signature.len() != 64 {
        return None;
    }
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    let point = EcPoint::from_bytes(&group, sec1, &mut ctx).ok()?;
    let key = EcKey::from_public_key(&group, &point).ok()?;
    let (r, s) = signature.split_at(32);
    let sig =
        EcdsaSig::from_private_components(BigNum::from_slice(r).ok()?, BigNum::from_slice(s).ok()?)
            .ok()?;
    sig.verify(digest, &key).ok()
}

/// A backend chosen at run time, e.g. by a simulated device's configuration. The hasher is
/// the same for both, so only signature checks differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostCrypto {
    /// The portable device backend (p256 + sha2), as a device without an accelerator runs it.
    #[default]
    Software,
    /// [`OpenSslEcdsa`], as a device with a P-256 accelerator (or a host tool) would.
    OpenSsl,
}

impl core::str::FromStr for HostCrypto {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "software" => Ok(Self::Software),
            "openssl" => Ok(Self::OpenSsl),
            _ => Err("expected software or openssl"),
        }
    }
}

impl CryptoBackend for HostCrypto {
    type Hasher = SoftwareSha256;

    fn sha256(&self) -> SoftwareSha256 {
        Software.sha256()
    }

    fn verify_p256(&self, public_sec1: &[u8], digest: &[u8; 32], signature: &[u8]) -> bool {
        match self {
            Self::Software => Software.verify_p256(public_sec1, digest, signature),
            Self::OpenSsl => OpenSslEcdsa.verify_p256(public_sec1, digest, signature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    /// Both backends agree on a good signature, a flipped bit and malformed input.
    #[test]
    fn agrees_with_software() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
        let sec1 = key.verifying_key().to_sec1_point(false);
        let digest = [0x5a; 32];
        let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).expect("sign");
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&sig.to_bytes());
        let mut bad = bytes;
        bad[10] ^= 1;
        for backend in [HostCrypto::Software, HostCrypto::OpenSsl] {
            assert!(backend.verify_p256(sec1.as_bytes(), &digest, &bytes));
            assert!(!backend.verify_p256(sec1.as_bytes(), &digest, &bad));
            assert!(!backend.verify_p256(&sec1.as_bytes()[..30], &digest, &bytes));
            assert!(!backend.verify_p256(sec1.as_bytes(), &digest, &bytes[..63]));
            assert!(!backend.verify_p256(sec1.as_bytes(), &digest, &[0u8; 64]));
        }
    }
}

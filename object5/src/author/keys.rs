//! Signing keys as PEM (PKCS#8 private keys, SPKI public keys): P-256 for ES256/ESP256 and
//! Ed25519 for EdDSA/Ed25519 (SUIT MTI profiles suit-sha256-esp256-* and
//! suit-sha256-ed25519-*).

use crate::manifest::TrustAnchor;
use core::fmt;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use std::string::String;
use std::vec::Vec;

/// Why a key could not be made, read or used.
#[derive(Debug)]
pub enum KeyError {
    /// The system random source failed.
    Random(std::io::Error),
    /// Not a P-256 PKCS#8 private key / SPKI public key in PEM.
    Pem,
    /// Signing failed.
    Sign,
    /// The signature algorithm asked for does not go with the key.
    AlgorithmMismatch,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random(e) => write!(f, "system random source failed: {e}"),
            Self::Pem => {
                f.write_str("not a P-256 or Ed25519 key in PEM (PKCS#8 private or SPKI public)")
            }
            Self::Sign => f.write_str("signing failed"),
            Self::AlgorithmMismatch => {
                f.write_str("the signature algorithm does not go with the key's type")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// The kinds of signing key the author side makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 (ES256 / ESP256).
    #[default]
    P256,
    /// Ed25519 (EdDSA / Ed25519).
    Ed25519,
}

/// Creates the PEM file `path` holding `pem`, failing with `AlreadyExists` when there is one
/// (O_EXCL: a key is never replaced by accident, nor by a second process racing this one, and
/// a planted symbolic link is not followed). A `private` key file is created with mode 0600,
/// so the key is never readable by others, not even for a moment; the bytes are on disk when
/// this returns.
pub fn create_pem_file(path: &std::path::Path, pem: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(pem)?;
    file.sync_all()
}

/// Makes the private key file `path` readable by its owner only when others can read it (a
/// file written before [`create_pem_file`] existed, or copied in with a loose umask); returns
/// whether it had to. Not on platforms without Unix modes.
pub fn restrict_key_file(path: &std::path::Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    if open_to_others(path)? {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        return Ok(true);
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(false)
}

/// How far key files are read: a P-256 PEM is about 250 bytes, so a larger file, or a device
/// node such as /dev/zero, is a wrong path, not a key to read to the end.
pub const KEY_FILE_LIMIT: u64 = 64 * 1024;

/// How far certificate files (PEM; chains and CA bundles included) are read: Debian's whole
/// CA bundle is about 220 KB.
pub const CERT_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// The bytes of the file at `path`, or `InvalidData` when it holds more than `limit` bytes
/// (read no further than that: a user-named file can be endless).
pub fn read_bounded(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            std::format!("larger than {} KiB: not the file meant", limit / 1024),
        ));
    }
    Ok(bytes)
}

/// Whether users other than the owner of `path` may read, write or run it (any group or
/// other permission bit): what OpenSSH refuses in a private key file. Always `false` on
/// platforms without Unix modes.
pub fn open_to_others(path: &std::path::Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).map(|_| false)
    }
}

/// A fresh P-256 key: `(PKCS#8 private PEM, SPKI public PEM)`.
pub fn generate_key_pem() -> Result<(String, String), KeyError> {
    generate_key_pem_for(KeyAlg::P256)
}

/// A fresh key of kind `alg`: `(PKCS#8 private PEM, SPKI public PEM)`. Randomness comes from
/// the operating system (`/dev/urandom`).
pub fn generate_key_pem_for(alg: KeyAlg) -> Result<(String, String), KeyError> {
    use std::io::Read;
    let mut file = std::fs::File::open("/dev/urandom").map_err(KeyError::Random)?;
    loop {
        let mut bytes = [0u8; 32];
        file.read_exact(&mut bytes).map_err(KeyError::Random)?;
        if alg == KeyAlg::Ed25519 {
            // Any 32 bytes are an Ed25519 secret key (RFC 8032 section 5.1.5).
            let key = AuthorKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes));
            return Ok((key.private_pem()?, key.public_pem()?));
        }
        // Rejection sampling: retry the (astronomically rare) values outside [1, n).
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            let private = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| KeyError::Pem)?;
            let public = public_pem(key.verifying_key())?;
            return Ok((String::from(private.as_str()), public));
        }
    }
}

fn public_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|_| KeyError::Pem)
}

/// Reads a PKCS#8 private key PEM.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::Pem)
}

/// The public key PEM of a private key PEM (P-256 or Ed25519).
pub fn public_pem_from_private(pem: &str) -> Result<String, KeyError> {
    AuthorKey::from_pem(pem)?.public_pem()
}

/// A private key the author signs manifests with.
#[derive(Clone, Debug)]
pub enum AuthorKey {
    /// ECDSA P-256.
    P256(SigningKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

impl AuthorKey {
    /// Reads a PKCS#8 private key PEM of either kind.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if let Ok(k) = SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::P256(k));
        }
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Self::Ed25519)
            .map_err(|_| KeyError::Pem)
    }

    /// The PKCS#8 private key PEM.
    pub fn private_pem(&self) -> Result<String, KeyError> {
        let pem = match self {
            Self::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            // RFC 8410 v1 form without the optional public key, as OpenSSL writes it: Python's
            // cryptography refuses the v2 form the crate writes by default.
            Self::Ed25519(k) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF),
        };
        pem.map(|p| String::from(p.as_str()))
            .map_err(|_| KeyError::Pem)
    }

    /// The SPKI public key PEM.
    pub fn public_pem(&self) -> Result<String, KeyError> {
        match self {
            Self::P256(k) => public_pem(k.verifying_key()),
            Self::Ed25519(k) => k
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|_| KeyError::Pem),
        }
    }

    /// The algorithm a package is signed with by default: ESP256 (-9) or Ed25519 (-19), the
    /// fully specified ids the SUIT MTI profiles name.
    pub fn default_alg(&self) -> super::SignAlg {
        match self {
            Self::P256(_) => super::SignAlg::Esp256,
            Self::Ed25519(_) => super::SignAlg::Ed25519,
        }
    }

    /// Signs a COSE Sig_structure: ECDSA over its SHA-256 (`r || s`), or PureEdDSA over the
    /// structure itself (RFC 9053 section 2).
    pub fn sign(&self, alg: super::SignAlg, to_be_signed: &[u8]) -> Result<Vec<u8>, KeyError> {
        use super::SignAlg;
        match (self, alg) {
            (Self::P256(k), SignAlg::Esp256 | SignAlg::Es256) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let digest = super::sha256(to_be_signed);
                let sig: p256::ecdsa::Signature =
                    k.sign_prehash(&digest).map_err(|_| KeyError::Sign)?;
                Ok(sig.to_bytes().to_vec())
            }
            (Self::Ed25519(k), SignAlg::Ed25519 | SignAlg::EdDsa) => {
                use ed25519_dalek::Signer;
                Ok(k.sign(to_be_signed).to_bytes().to_vec())
            }
            _ => Err(KeyError::AlgorithmMismatch),
        }
    }
}

/// SEC1 public key bytes (uncompressed) from an SPKI public key PEM, the form trust anchors use.
pub fn public_sec1_from_pem(pem: &str) -> Result<Vec<u8>, KeyError> {
    use p256::pkcs8::DecodePublicKey;
    let key = p256::PublicKey::from_public_key_pem(pem).map_err(|_| KeyError::Pem)?;
    Ok(key.to_sec1_bytes().to_vec())
}

/// A key `package verify` and `package inspect` trust, owned, in the form the verifier takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorKey {
    /// P-256 public key, SEC1 uncompressed.
    P256(Vec<u8>),
    /// Ed25519 public key.
    Ed25519([u8; 32]),
    /// HMAC-256 shared secret (COSE_Mac0).
    Hmac256(Vec<u8>),
}

impl AnchorKey {
    /// A public key from an SPKI PEM (P-256 or Ed25519).
    pub fn from_public_pem(pem: &str) -> Result<Self, KeyError> {
        if let Ok(k) = public_sec1_from_pem(pem) {
            return Ok(Self::P256(k));
        }
        ed25519_public_from_pem(pem).map(Self::Ed25519)
    }

    /// The trust anchor borrowing this key.
    pub fn anchor(&self) -> TrustAnchor<'_> {
        match self {
            Self::P256(k) => TrustAnchor::P256(k),
            Self::Ed25519(k) => TrustAnchor::Ed25519(k),
            Self::Hmac256(k) => TrustAnchor::Hmac256(k),
        }
    }
}

/// The 32 public key bytes of an Ed25519 SPKI public key PEM.
pub fn ed25519_public_from_pem(pem: &str) -> Result<[u8; 32], KeyError> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
        .map(|k| k.to_bytes())
        .map_err(|_| KeyError::Pem)
}

/// The 32-byte private scalar of a P-256 PKCS#8 private key PEM (a device's ECDH-ES key for
/// payload decryption).
pub fn p256_private_from_pem(pem: &str) -> Result<[u8; 32], KeyError> {
    p256::SecretKey::from_pkcs8_pem(pem)
        .map(|k| k.to_bytes().into())
        .map_err(|_| KeyError::Pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_up_to_their_limit_and_no_further() {
        let dir =
            std::env::temp_dir().join(std::format!("object5-read-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        std::fs::write(&path, [b'k'; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        let e = read_bounded(&path, 99).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        // An endless file ends at the limit too.
        let e = read_bounded(std::path::Path::new("/dev/zero"), KEY_FILE_LIMIT).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Certificates for certificate-mode tests, made with the `openssl` command-line tool the way
//! an operator makes them for Leshan (its wiki's credential file formats): a P-256 CA and the
//! certificates it issues, with PEM and DER copies where a peer wants them.

use std::path::{Path, PathBuf};
use std::process::Command;

use lwm2m_client::host::dtls::CertIdentity;

use crate::e2e::owner_only;

/// `openssl req` options for a new unencrypted P-256 key.
const P256: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// A CA in a folder of its own.
pub struct Pki {
    dir: PathBuf,
}

/// A certificate the CA issued and its key.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: PathBuf,
    /// The certificate, DER (Leshan's client wants it so).
    pub cert_der: PathBuf,
    /// Its private key, PKCS#8 PEM (readable by its owner only).
    pub key_pem: PathBuf,
    /// The same key, PKCS#8 DER (Leshan's `-prik`).
    pub key_der: PathBuf,
}

/// Runs `openssl` in `dir` with the words of `command` (file names here have no spaces).
fn openssl(dir: &Path, command: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(command.split_whitespace())
        .output()
        .expect("run openssl (the openssl package)");
    assert!(
        out.status.success(),
        "openssl {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A self-signed CA named `name` in `dir` (created).
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).expect("pki dir");
        openssl(
            dir,
            &format!(
                "req -x509 {P256} -keyout ca.key -out ca.pem -days 2 -subj /CN={name} \
                 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        owner_only(&dir.join("ca.key"));
        openssl(dir, "x509 -in ca.pem -outform DER -out ca.der");
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate, PEM (the device's `--ca`).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate, DER (Leshan's `-truststore`).
    pub fn ca_der(&self) -> PathBuf {
        self.dir.join("ca.der")
    }

    /// Issues `file`.pem for subject CN `cn` with `alt_names` as subjectAltName entries in
    /// OpenSSL's syntax (`IP:127.0.0.1`, `DNS:host.example`), good for either TLS role.
    pub fn issue(&self, file: &str, cn: &str, alt_names: &[&str]) -> Issued {
        let mut ext = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        );
        if !alt_names.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", alt_names.join(",")));
        }
        std::fs::write(self.dir.join(format!("{file}.ext")), ext).expect("write extensions");
        openssl(
            &self.dir,
            &format!("req -new {P256} -keyout {file}.key -out {file}.csr -subj /CN={cn}"),
        );
        openssl(
            &self.dir,
            &format!(
                "x509 -req -in {file}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                 -out {file}.pem -extfile {file}.ext"
            ),
        );
        openssl(
            &self.dir,
            &format!("pkcs8 -topk8 -nocrypt -in {file}.key -outform DER -out {file}.key.der"),
        );
        openssl(
            &self.dir,
            &format!("x509 -in {file}.pem -outform DER -out {file}.der"),
        );
        let issued = Issued {
            cert_pem: self.dir.join(format!("{file}.pem")),
            key_pem: self.dir.join(format!("{file}.key")),
            cert_der: self.dir.join(format!("{file}.der")),
            key_der: self.dir.join(format!("{file}.key.der")),
        };
        owner_only(&issued.key_pem);
        owner_only(&issued.key_der);
        issued
    }

    /// `issued` as our DTLS layer takes a certificate identity, trusting this CA.
    pub fn identity(&self, issued: &Issued) -> CertIdentity {
        let read = |p: &Path| std::fs::read(p).expect("read pki file");
        CertIdentity {
            cert_pem: read(&issued.cert_pem),
            key_pem: read(&issued.key_pem),
            ca_pem: read(&self.ca_pem()),
        }
    }

    /// libcoap's `coap-server` PKI options serving `issued`, checking clients against this
    /// CA.
    pub fn libcoap_options(&self, issued: &Issued) -> [String; 6] {
        let path = |p: &Path| p.display().to_string();
        [
            "-c".into(),
            path(&issued.cert_pem),
            "-j".into(),
            path(&issued.key_pem),
            "-C".into(),
            path(&self.ca_pem()),
        ]
    }
}

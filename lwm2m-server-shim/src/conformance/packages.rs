//! The packages a run offers, hosted in the shim's package host: SUIT packages built and signed
//! for our simulated device (a fresh one, with a higher sequence number, for every update), or
//! the device's own files given per role (flags or profile). A role without a package makes the
//! cases that need it N/A.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::profile::{NativePackages, PackageRole};
use super::verdict::{Abort, Step};
use super::ConformanceError;
use crate::packages::test_packages::{fresh_sequence, Kind, Signer};
use crate::server::shim::Shim;

/// Where the packages come from.
#[derive(Debug, Clone)]
pub enum PackageSource {
    /// Build SUIT packages for our simulated device, signed with this key.
    Suit(Signer),
    /// The device's own packages, by role.
    Native(NativePackages),
}

/// A package in the shim's package host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hosted {
    /// Name in the package host (`/fw/{name}`).
    pub name: String,
    /// What it is, for the evidence (`SUIT, other device class`, a file name).
    pub label: String,
    /// The firmware version /3/0/3 shows once it is installed, when known.
    pub version: Option<String>,
}

/// The run's packages.
pub(crate) struct Packages {
    shim: Arc<Shim>,
    source: PackageSource,
    tag: String,
    /// Next SUIT sequence number: every build is newer than the last.
    seq: AtomicU64,
    /// Good packages handed out so far (native goods are used in turn).
    goods: AtomicUsize,
    /// Native files hosted at the start, by role.
    native: Vec<(PackageRole, Hosted)>,
}

/// A package name the host accepts, from a file name.
fn host_name(tag: &str, role: PackageRole, file: &Path) -> String {
    let stem: String = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("conf-{tag}-{}-{stem}", role.key())
}

impl Packages {
    /// Hosts the native files (read now, so a file that vanished is an error before any case
    /// runs); SUIT packages are built when a case asks for them.
    pub fn prepare(shim: &Arc<Shim>, source: PackageSource) -> Result<Self, ConformanceError> {
        let seq = fresh_sequence();
        let tag = seq.to_string();
        let mut native = Vec::new();
        if let PackageSource::Native(files) = &source {
            files
                .check()
                .map_err(|e| ConformanceError::Package(e.to_string()))?;
            for (i, (role, f)) in files.files().enumerate() {
                let bytes = std::fs::read(&f.path)
                    .map_err(|e| ConformanceError::Package(format!("{}: {e}", f.path.display())))?;
                let name = host_name(&format!("{tag}-{i}"), role, &f.path);
                shim.packages
                    .store(&name, &bytes)
                    .map_err(|e| ConformanceError::Package(format!("{name}: {e}")))?;
                let label = f
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| name.clone());
                native.push((
                    role,
                    Hosted {
                        name,
                        label,
                        version: f.version.clone(),
                    },
                ));
            }
        }
        Ok(Self {
            shim: shim.clone(),
            source,
            seq: AtomicU64::new(seq + 1),
            tag,
            goods: AtomicUsize::new(0),
            native,
        })
    }

    /// The (first) native package of `role`.
    fn native(&self, role: PackageRole) -> Option<Hosted> {
        self.native
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, h)| h.clone())
    }

    /// Builds, signs and hosts a SUIT package of `kind`.
    fn build(&self, signer: &Signer, kind: Kind, what: &str) -> Step<Hosted> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let version = format!("9.{}.{}", seq % 100_000, seq % 1000);
        let bytes = signer
            .build(kind, &version, seq)
            .map_err(|e| Abort::Runner(format!("building a {what} package: {e}")))?;
        let name = format!("conf-{}-{seq}-{}.suit", self.tag, what.replace(' ', "-"));
        self.shim
            .packages
            .store(&name, &bytes)
            .map_err(|e| Abort::Runner(format!("hosting {name}: {e}")))?;
        Ok(Hosted {
            name,
            label: format!("SUIT {what}"),
            version: matches!(kind, Kind::Good).then_some(version),
        })
    }

    /// The native good packages in the order updates use them: every `good`, then `good_2`.
    fn native_goods(&self) -> Vec<Hosted> {
        [PackageRole::Good, PackageRole::Good2]
            .into_iter()
            .flat_map(|r| {
                self.native
                    .iter()
                    .filter(move |(role, _)| *role == r)
                    .map(|(_, h)| h.clone())
            })
            .collect()
    }

    /// A good package for the next update, which installs it: a fresh SUIT build, or the next
    /// native good package in turn (so a device that refuses older or equal versions can be
    /// given one per update). `Ok(None)` when no good package was given.
    pub fn good(&self) -> Step<Option<Hosted>> {
        self.pick_good(true)
    }

    /// A good package for a case that only downloads it (and resets): the one the next
    /// update will install, so no version is spent.
    pub fn good_to_download(&self) -> Step<Option<Hosted>> {
        self.pick_good(false)
    }

    fn pick_good(&self, install: bool) -> Step<Option<Hosted>> {
        match &self.source {
            PackageSource::Suit(s) => self.build(s, Kind::Good, "good").map(Some),
            PackageSource::Native(_) => {
                let goods = self.native_goods();
                if goods.is_empty() {
                    return Ok(None);
                }
                let n = if install {
                    self.goods.fetch_add(1, Ordering::Relaxed)
                } else {
                    self.goods.load(Ordering::Relaxed)
                };
                Ok(goods.get(n % goods.len()).cloned())
            }
        }
    }

    /// The packages for a failing `role` (corrupt, wrong type, too large, failing): for SUIT,
    /// wrong type means both another device class and no SUIT envelope at all.
    pub fn for_role(&self, role: PackageRole) -> Step<Vec<Hosted>> {
        match &self.source {
            PackageSource::Native(_) => Ok(self.native(role).into_iter().collect()),
            PackageSource::Suit(s) => Ok(match role {
                PackageRole::Good | PackageRole::Good2 => self.good()?.into_iter().collect(),
                PackageRole::Corrupt => vec![self.build(s, Kind::Corrupted, "corrupted")?],
                PackageRole::WrongType => vec![
                    self.build(s, Kind::WrongClass, "other device class")?,
                    self.build(s, Kind::NotSuit, "not a SUIT envelope")?,
                ],
                PackageRole::TooLarge => vec![self.build(s, Kind::TooLarge, "too large")?],
                PackageRole::Failing => {
                    vec![self.build(s, Kind::FailsSelfTest, "failing self-test")?]
                }
            }),
        }
    }

    /// A valid package to cut off mid-transfer (775), never installed before, so the cut
    /// alone decides: a fresh SUIT build, or the good package the next update will install.
    pub fn cut(&self) -> Step<Option<Hosted>> {
        match &self.source {
            PackageSource::Suit(s) => self.build(s, Kind::Good, "cut").map(Some),
            PackageSource::Native(_) => self.good_to_download(),
        }
    }

    /// Why a case that needs `role` is N/A.
    pub fn missing(&self, role: PackageRole) -> String {
        format!(
            "no package for this case: give {} (or packages.{} in --profile)",
            role.flag(),
            role.key()
        )
    }

    /// The package's bytes (for a push or a cut-off transfer).
    pub fn bytes(&self, p: &Hosted) -> Step<Vec<u8>> {
        let info = self
            .shim
            .packages
            .info(&p.name)
            .map_err(|e| Abort::Runner(format!("{}: {e}", p.name)))?;
        let len = usize::try_from(info.size).map_err(|e| Abort::Runner(e.to_string()))?;
        self.shim
            .packages
            .read_range(&p.name, 0, len)
            .map_err(|e| Abort::Runner(format!("{}: {e}", p.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_valid_package_names() {
        let n = host_name("42", PackageRole::WrongType, Path::new("/x/my fw (v2).bin"));
        assert_eq!(n, "conf-42-wrong_type-my_fw__v2_.bin");
        assert!(crate::packages::host::valid_name(&n));
    }
}

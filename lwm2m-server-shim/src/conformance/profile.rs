//! A device profile: the device's own firmware packages (one per role a case needs) and what
//! the device is expected to do (which Update Results it uses, whether it reboots on an
//! update, how long downloads and updates take). Read from TOML or JSON, so a test lab can keep
//! one file per device:
//!
//! ```toml
//! [packages]
//! # One good package, or a list used in turn by the updates (for a device that refuses a
//! # version it ran: one per update).
//! good = { file = "fw-2.0.bin", version = "2.0.0" }
//! good_2 = "fw-2.1.bin"
//! corrupt = "fw-bad-crc.bin"
//! wrong_type = "other-board.bin"
//! too_large = "huge.bin"
//! failing = "fw-no-boot.bin"
//!
//! [device]
//! results = [1, 2, 4, 5, 6, 7, 8, 9]
//! reboots_on_update = true
//! download_timeout_s = 120
//! update_timeout_s = 60
//! ```
//!
//! Relative file names are taken from the profile's folder.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// What a package is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageRole {
    /// Installs and succeeds (Update Result 1).
    Good,
    /// A second good package, for runs that update more than once.
    Good2,
    /// Fails the integrity check (Update Result 5).
    Corrupt,
    /// A package type the device does not take (Update Result 6).
    WrongType,
    /// Larger than the device can store (Update Result 2, or 4.13 on a push).
    TooLarge,
    /// Downloads, installs, then the update fails (Update Result 8).
    Failing,
}

impl PackageRole {
    /// Every role, in flag order.
    pub const ALL: [PackageRole; 6] = [
        Self::Good,
        Self::Good2,
        Self::Corrupt,
        Self::WrongType,
        Self::TooLarge,
        Self::Failing,
    ];

    /// The command-line flag that gives this role's file.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Good => "--package-good",
            Self::Good2 => "--package-good-2",
            Self::Corrupt => "--package-corrupt",
            Self::WrongType => "--package-wrong-type",
            Self::TooLarge => "--package-too-large",
            Self::Failing => "--package-failing",
        }
    }

    /// The key in a profile's `[packages]` table.
    pub fn key(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Good2 => "good_2",
            Self::Corrupt => "corrupt",
            Self::WrongType => "wrong_type",
            Self::TooLarge => "too_large",
            Self::Failing => "failing",
        }
    }
}

/// A device-native package file, and the firmware version it installs when known (then the
/// update cases check /3/0/3 against it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// The file.
    pub path: PathBuf,
    /// The version the device reports in /3/0/3 after installing it.
    pub version: Option<String>,
}

/// The device's own packages, by role; a case whose package is missing is N/A. `good` may
/// hold several files: updates use them in turn, for devices that refuse a version they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativePackages {
    files: Vec<(PackageRole, PackageFile)>,
}

impl NativePackages {
    /// The (first) file for `role`.
    pub fn get(&self, role: PackageRole) -> Option<&PackageFile> {
        self.files.iter().find(|(r, _)| *r == role).map(|(_, f)| f)
    }

    /// Every file, with its role, in the order given.
    pub fn files(&self) -> impl Iterator<Item = (PackageRole, &PackageFile)> {
        self.files.iter().map(|(r, f)| (*r, f))
    }

    /// Sets the files for `role`, replacing any it had.
    pub fn set(&mut self, role: PackageRole, files: Vec<PackageFile>) {
        self.files.retain(|(r, _)| *r != role);
        self.files.extend(files.into_iter().map(|f| (role, f)));
    }

    /// Whether no role has a file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Checks that every named file exists and is a readable file.
    pub fn check(&self) -> Result<(), ProfileError> {
        match self.files().find(|(_, f)| !f.path.is_file()) {
            Some((role, f)) => Err(ProfileError::MissingFile {
                role,
                path: f.path.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// What the device is expected to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The Update Result codes the device uses; a case expecting another code is N/A. `None`:
    /// all of them.
    pub results: Option<Vec<i64>>,
    /// Whether the device reboots (re-registers) to install an update; `None`: either.
    pub reboots_on_update: Option<bool>,
    /// How long a download may take.
    pub download_timeout: Option<Duration>,
    /// How long from Execute until the device reports the outcome.
    pub update_timeout: Option<Duration>,
}

impl Expectations {
    /// Whether the device reports Update Result `code`.
    pub fn uses_result(&self, code: i64) -> bool {
        self.results.as_ref().is_none_or(|r| r.contains(&code))
    }
}

/// A device profile: its packages and expectations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Device-native packages.
    pub packages: NativePackages,
    /// Expected behaviour.
    pub expect: Expectations,
}

/// Why a profile cannot be used.
#[derive(Debug)]
pub enum ProfileError {
    /// The profile file cannot be read.
    Read(PathBuf, std::io::Error),
    /// The profile does not parse (TOML or JSON) or has unknown keys.
    Syntax(PathBuf, String),
    /// A package file does not exist.
    MissingFile {
        /// The role it was given for.
        role: PackageRole,
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(p, e) => write!(f, "cannot read profile {}: {e}", p.display()),
            // Parser messages span lines (source excerpt, caret); an error here is one line.
            Self::Syntax(p, e) => write!(
                f,
                "profile {}: {}",
                p.display(),
                e.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            Self::MissingFile { role, path } => write!(
                f,
                "package file {} ({} / packages.{}) does not exist",
                path.display(),
                role.flag(),
                role.key()
            ),
        }
    }
}

impl std::error::Error for ProfileError {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    packages: RawPackages,
    #[serde(default)]
    device: RawDevice,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPackages {
    good: Option<OneOrMany>,
    #[serde(alias = "good-2")]
    good_2: Option<RawPackage>,
    corrupt: Option<RawPackage>,
    #[serde(alias = "wrong-type")]
    wrong_type: Option<RawPackage>,
    #[serde(alias = "too-large")]
    too_large: Option<RawPackage>,
    failing: Option<RawPackage>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(RawPackage),
    Many(Vec<RawPackage>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPackage {
    File(String),
    Described {
        file: String,
        #[serde(default)]
        version: Option<String>,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    results: Option<Vec<i64>>,
    reboots_on_update: Option<bool>,
    download_timeout_s: Option<u64>,
    update_timeout_s: Option<u64>,
}

impl Profile {
    /// Reads a profile file: JSON when it ends in `.json` or starts with `{`, else TOML.
    /// Relative package paths are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Read(path.into(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses profile `text` (named `name` in errors), resolving files against `base`.
    pub fn parse(text: &str, name: &Path, base: &Path) -> Result<Self, ProfileError> {
        let json =
            name.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let syntax = |e: String| ProfileError::Syntax(name.into(), e);
        let raw: RawProfile = if json {
            serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| syntax(e.to_string()))?
        };
        let mut packages = NativePackages::default();
        let p = raw.packages;
        let good = match p.good {
            Some(OneOrMany::One(g)) => vec![g],
            Some(OneOrMany::Many(g)) => g,
            None => Vec::new(),
        };
        let one = |e: Option<RawPackage>| e.into_iter().collect::<Vec<_>>();
        for (role, entries) in [
            (PackageRole::Good, good),
            (PackageRole::Good2, one(p.good_2)),
            (PackageRole::Corrupt, one(p.corrupt)),
            (PackageRole::WrongType, one(p.wrong_type)),
            (PackageRole::TooLarge, one(p.too_large)),
            (PackageRole::Failing, one(p.failing)),
        ] {
            let files = entries
                .into_iter()
                .map(|entry| {
                    let (file, version) = match entry {
                        RawPackage::File(f) => (f, None),
                        RawPackage::Described { file, version } => (file, version),
                    };
                    PackageFile {
                        path: base.join(file),
                        version,
                    }
                })
                .collect::<Vec<_>>();
            if !files.is_empty() {
                packages.set(role, files);
            }
        }
        let d = raw.device;
        Ok(Self {
            packages,
            expect: Expectations {
                results: d.results,
                reboots_on_update: d.reboots_on_update,
                download_timeout: d.download_timeout_s.map(Duration::from_secs),
                update_timeout: d.update_timeout_s.map(Duration::from_secs),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_profiles_say_the_same() {
        let toml_text = r#"
            [packages]
            good = { file = "g.bin", version = "2.0.0" }
            good-2 = "g2.bin"
            corrupt = "c.bin"
            [device]
            results = [1, 5]
            reboots_on_update = false
            update_timeout_s = 30
        "#;
        let json_text = r#"{"packages": {"good": {"file": "g.bin", "version": "2.0.0"},
            "good_2": "g2.bin", "corrupt": "c.bin"},
            "device": {"results": [1, 5], "reboots_on_update": false, "update_timeout_s": 30}}"#;
        let base = Path::new("/labs/dev");
        let a = Profile::parse(toml_text, Path::new("p.toml"), base).expect("toml");
        let b = Profile::parse(json_text, Path::new("p.json"), base).expect("json");
        assert_eq!(a, b);
        let good = a.packages.get(PackageRole::Good).expect("good");
        assert_eq!(good.path, Path::new("/labs/dev/g.bin"));
        assert_eq!(good.version.as_deref(), Some("2.0.0"));
        assert_eq!(
            a.packages.get(PackageRole::Good2).map(|f| f.path.clone()),
            Some(PathBuf::from("/labs/dev/g2.bin"))
        );
        assert!(a.packages.get(PackageRole::Failing).is_none());
        assert!(a.expect.uses_result(5) && !a.expect.uses_result(2));
        assert_eq!(a.expect.reboots_on_update, Some(false));
        assert_eq!(a.expect.update_timeout, Some(Duration::from_secs(30)));
        assert!(Expectations::default().uses_result(9));
    }

    #[test]
    fn good_takes_a_list() {
        let p = Profile::parse(
            "[packages]\ngood = [\"a.bin\", { file = \"b.bin\", version = \"3\" }]\n",
            Path::new("p.toml"),
            Path::new("/d"),
        )
        .expect("parses");
        let goods: Vec<_> = p
            .packages
            .files()
            .filter(|(r, _)| *r == PackageRole::Good)
            .map(|(_, f)| (f.path.clone(), f.version.clone()))
            .collect();
        assert_eq!(
            goods,
            [
                (PathBuf::from("/d/a.bin"), None),
                (PathBuf::from("/d/b.bin"), Some("3".to_string()))
            ]
        );
    }

    #[test]
    fn typos_and_missing_files_are_one_clear_error() {
        let e = Profile::parse(
            "[packages]\ngod = \"x\"\n",
            Path::new("p.toml"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().contains("god"), "{e}");
        let e = Profile::parse(
            "{\"device\": {\"reboot\": 1}}",
            Path::new("p"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().contains("reboot"), "{e}");
        let p = Profile::parse(
            "[packages]\ncorrupt = \"no-such-file.bin\"\n",
            Path::new("p.toml"),
            Path::new("/nonexistent-dir"),
        )
        .expect("parses");
        let e = p.packages.check().unwrap_err();
        let line = e.to_string();
        assert!(
            line.contains("no-such-file.bin") && line.contains("--package-corrupt"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}

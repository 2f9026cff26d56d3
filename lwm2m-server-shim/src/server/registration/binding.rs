//! The LwM2M enabler versions the shim implements and the binding modes each allows in the
//! `lwm2m=` and `b=` parameters of Register and Update.

use std::fmt;

/// An LwM2M enabler version the shim implements. Any other `lwm2m=` value is refused with
/// 4.12 Precondition Failed (core TS 1.1 section 6.2.1.1), so a client offering a newer
/// version falls back to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LwM2mVersion {
    /// LwM2M 1.0 (also what a Register without `lwm2m=` means).
    V1_0,
    /// LwM2M 1.1.
    V1_1,
}

impl LwM2mVersion {
    /// Parses the `lwm2m=` value; `None` for versions the shim does not implement.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1.0" => Some(Self::V1_0),
            "1.1" => Some(Self::V1_1),
            _ => None,
        }
    }

    /// The version as the client wrote it (`1.0`, `1.1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
        }
    }
}

/// Why a `b=` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBinding {
    binding: String,
    version: LwM2mVersion,
}

impl fmt::Display for BadBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "binding mode {:?} is not valid for LwM2M {}",
            self.binding,
            self.version.as_str()
        )
    }
}

impl std::error::Error for BadBinding {}

/// The binding modes LwM2M 1.0 defines (TS 1.0 section 5.3.1.1, Table 7): UDP, SMS, both,
/// each optionally in queue mode.
const V1_0_BINDINGS: [&str; 6] = ["U", "UQ", "S", "SQ", "US", "UQS"];

/// Transports a 1.1 binding may combine (core TS 1.1 section 6.2.1.1): UDP, TCP, SMS, Non-IP.
const V1_1_TRANSPORTS: &str = "UTSN";

/// Checks `binding` for `version` and returns whether it asks for queue mode.
///
/// 1.0: one of U, UQ, S, SQ, US, UQS; `Q` in it is queue mode. 1.1: each of U, T, S, N at most
/// once, at least one of them; queue mode is the separate `Q` parameter there, but the 1.0
/// spelling `UQ` from clients that kept it is read as queue mode rather than refused.
pub fn parse_binding(version: LwM2mVersion, binding: &str) -> Result<bool, BadBinding> {
    let bad = || BadBinding {
        binding: binding.to_string(),
        version,
    };
    match version {
        LwM2mVersion::V1_0 => V1_0_BINDINGS
            .contains(&binding)
            .then(|| binding.contains('Q'))
            .ok_or_else(bad),
        LwM2mVersion::V1_1 => {
            let mut seen = String::new();
            for c in binding.chars() {
                if !(V1_1_TRANSPORTS.contains(c) || c == 'Q') || seen.contains(c) {
                    return Err(bad());
                }
                seen.push(c);
            }
            if !seen.chars().any(|c| V1_1_TRANSPORTS.contains(c)) {
                return Err(bad());
            }
            Ok(seen.contains('Q'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_per_version() {
        use LwM2mVersion::{V1_0, V1_1};
        assert_eq!(parse_binding(V1_0, "U"), Ok(false));
        assert_eq!(parse_binding(V1_0, "UQS"), Ok(true));
        for b in ["", "Q", "QU", "USQ", "T", "UU", "u"] {
            assert!(parse_binding(V1_0, b).is_err(), "1.0 {b:?}");
        }
        assert_eq!(parse_binding(V1_1, "TSNU"), Ok(false));
        assert_eq!(parse_binding(V1_1, "UQ"), Ok(true));
        for b in ["", "Q", "UU", "UX", "U Q", "QQU"] {
            assert!(parse_binding(V1_1, b).is_err(), "1.1 {b:?}");
        }
        assert_eq!(LwM2mVersion::parse("1.2"), None);
        assert_eq!(
            LwM2mVersion::parse("1.1").map(LwM2mVersion::as_str),
            Some("1.1")
        );
    }
}

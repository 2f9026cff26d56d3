//! The cases the runner drives, named by their OMA ETS ids where the ETS has one (firmware:
//! OMA-ETS-LightweightM2M-V1_0_1 section 6.1.6.6, cases 751-780; core: the LwM2M 1.1 ETS
//! interoperability cases 101-311), and the `--cases` selection (ids, numbers, groups).

use std::fmt;

/// Which part of the enabler a case exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Firmware update (Object 5).
    Firmware,
    /// Registration interface (core TS section 6.2).
    Registration,
    /// Device management on objects 1 and 3 (core TS section 6.3).
    DeviceManagement,
    /// Information reporting: Observe, attributes, notifications (core TS section 6.4).
    Reporting,
    /// Send (LwM2M 1.1, core TS section 6.4.7).
    Send,
}

impl Group {
    /// Short name used in `--cases` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Firmware => "fw",
            Self::Registration => "reg",
            Self::DeviceManagement => "dm",
            Self::Reporting => "ir",
            Self::Send => "send",
        }
    }

    /// Whether `--cases core` selects it.
    pub fn is_core(self) -> bool {
        self != Self::Firmware
    }
}

/// One case the runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseDef {
    /// Id (`1.0-int-771`, `1.1-int-301`, `core-ir-pmin-pmax`).
    pub id: &'static str,
    /// Title (the ETS title where there is one).
    pub title: &'static str,
    /// Group.
    pub group: Group,
    /// Whether a server can provoke what the case checks. Cases it cannot (774 out of RAM,
    /// Send) run only when named and are reported INCONCLUSIVE with the reason.
    pub provokable: bool,
}

const fn case(id: &'static str, title: &'static str, group: Group) -> CaseDef {
    CaseDef {
        id,
        title,
        group,
        provokable: true,
    }
}

use Group::{DeviceManagement as Dm, Firmware as Fw, Registration as Reg, Reporting as Ir};

/// Every case, in the order they run: registration first (what the device announced decides
/// the rest), then device management, information reporting, Send, and firmware last (an
/// update reboots the device).
pub const CASES: &[CaseDef] = &[
    case("1.1-int-101", "Initial Registration", Reg),
    case(
        "core-reg-params",
        "Registration binding and version parameters",
        Reg,
    ),
    case("1.1-int-102", "Registration Update", Reg),
    case("1.1-int-104", "Registration Update Trigger", Reg),
    case(
        "1.1-int-107",
        "Extending the lifetime of a registration",
        Reg,
    ),
    case(
        "core-reg-queue-mode",
        "Queue Mode: a request kept for the client is answered on its wake-up Update",
        Reg,
    ),
    case(
        "1.1-int-201",
        "Querying basic information in Plain Text format",
        Dm,
    ),
    case(
        "1.1-int-203",
        "Querying basic information in TLV format",
        Dm,
    ),
    case(
        "1.1-int-204",
        "Querying basic information in JSON format",
        Dm,
    ),
    case(
        "1.1-int-211",
        "Querying basic information in CBOR format",
        Dm,
    ),
    case(
        "1.1-int-231",
        "Querying basic information in SenML JSON format",
        Dm,
    ),
    case(
        "1.1-int-232",
        "Querying basic information in SenML CBOR format",
        Dm,
    ),
    case("1.1-int-222", "Read on Object", Dm),
    case("1.1-int-223", "Read on Object Instance", Dm),
    case("1.1-int-224", "Read on Resource", Dm),
    case("1.1-int-225", "Read on Resource Instance", Dm),
    case(
        "1.1-int-205",
        "Setting basic information in Plain Text format",
        Dm,
    ),
    case("1.1-int-227", "Write (replace) on Resource", Dm),
    case(
        "1.1-int-226",
        "Write (Partial Update) on Object Instance",
        Dm,
    ),
    case("1.1-int-256", "Write Operation Failure", Dm),
    case(
        "1.1-int-221",
        "Attempt to perform operations on Security",
        Dm,
    ),
    case("1.1-int-260", "Discover Command with attributes", Dm),
    case(
        "core-dm-create-delete",
        "Create and Delete an object instance, Update with object links",
        Dm,
    ),
    case(
        "1.1-int-301",
        "Observation and Notification of parameter values",
        Ir,
    ),
    case("core-ir-instance", "Observe an object instance", Ir),
    case("core-ir-object", "Observe an object", Ir),
    case(
        "1.1-int-303",
        "Cancel observations using Observe with Cancel parameter",
        Ir,
    ),
    case("core-ir-pmin-pmax", "pmin and pmax honoured", Ir),
    case("core-ir-gt-lt", "gt and lt honoured", Ir),
    case("core-ir-st", "st honoured", Ir),
    CaseDef {
        id: "1.1-int-306",
        title: "Send Operation",
        group: Group::Send,
        provokable: false,
    },
    case("1.0-int-751", "Querying the readable resources", Fw),
    case("1.0-int-755", "Setting the writable resource Package", Fw),
    case(
        "1.0-int-756",
        "Setting the writable resource Package URI",
        Fw,
    ),
    case(
        "1.0-int-760",
        "Basic observation on the firmware object",
        Fw,
    ),
    case(
        "1.0-int-772",
        "Error 1: install without a downloaded package",
        Fw,
    ),
    case("1.0-int-773", "Error 2: shortage of storage", Fw),
    CaseDef {
        id: "1.0-int-774",
        title: "Error 3: out of RAM",
        group: Fw,
        provokable: false,
    },
    case(
        "1.0-int-775",
        "Error 4: connection lost during download",
        Fw,
    ),
    case("1.0-int-776", "Error 5: integrity check failure", Fw),
    case("1.0-int-777", "Error 6: unsupported package type", Fw),
    case("1.0-int-778", "Error 7: invalid URI", Fw),
    case("1.0-int-780", "Error 9: unsupported protocol", Fw),
    // Updates after the cases that only download: a device that refuses a version it ran
    // still takes the cut-off or refused packages before.
    case("1.0-int-770", "Successful firmware update (CoAP push)", Fw),
    case("1.0-int-771", "Successful firmware update (pull)", Fw),
    case("1.0-int-779", "Error 8: unsuccessful update", Fw),
    // Cases that reboot or disconnect the device come last.
    case(
        "1.1-int-241",
        "Executable Resource: Rebooting the device",
        Dm,
    ),
    case("1.1-int-103", "Deregistration", Reg),
];

/// The case with this exact id.
pub fn find(id: &str) -> Option<&'static CaseDef> {
    CASES.iter().find(|c| c.id == id)
}

/// A `--cases` entry that names nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCase(pub String);

impl fmt::Display for UnknownCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--cases: '{}' names no case or group (groups: all, fw, core, reg, dm, ir, send; \
             ids like 1.0-int-771, 771, core-301, core-ir-st)",
            self.0
        )
    }
}

impl std::error::Error for UnknownCase {}

/// Which cases run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The selected cases in run order, and whether each was named on its own (cases a
    /// server cannot provoke run only then).
    picked: Vec<(&'static CaseDef, bool)>,
}

/// Whether `token` names `c` on its own: its id, its ETS number (`771` for `1.0-int-771`),
/// or `core-<number>` for a core case.
fn names(token: &str, c: &CaseDef) -> bool {
    if token.eq_ignore_ascii_case(c.id) {
        return true;
    }
    let number = c.id.rsplit('-').next().filter(|n| n.parse::<u32>().is_ok());
    let Some(number) = number else { return false };
    token == number || (c.group.is_core() && token.eq_ignore_ascii_case(&format!("core-{number}")))
}

impl Selection {
    /// Every case a server can provoke (the default run).
    pub fn all() -> Self {
        Self {
            picked: CASES.iter().map(|c| (c, false)).collect(),
        }
    }

    /// Parses `--cases` entries: `all`, `fw`, `core`, `reg`, `dm`, `ir`, `send`, case ids
    /// (`1.0-int-771`), ETS numbers (`771`) and `core-<number>`. Empty means [`Self::all`].
    pub fn parse(tokens: &[String]) -> Result<Self, UnknownCase> {
        let tokens: Vec<&str> = tokens
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            return Ok(Self::all());
        }
        let mut named = vec![false; CASES.len()];
        let mut grouped = vec![false; CASES.len()];
        for t in tokens {
            let lower = t.to_ascii_lowercase();
            let group: Option<fn(&CaseDef) -> bool> = match lower.as_str() {
                "all" => Some(|_| true),
                "fw" | "firmware" => Some(|c| c.group == Group::Firmware),
                "core" => Some(|c| c.group.is_core()),
                "reg" => Some(|c| c.group == Group::Registration),
                "dm" => Some(|c| c.group == Group::DeviceManagement),
                "ir" => Some(|c| c.group == Group::Reporting),
                "send" => Some(|c| c.group == Group::Send),
                _ => None,
            };
            let mut hit = false;
            for (i, c) in CASES.iter().enumerate() {
                match group {
                    Some(g) if g(c) => {
                        grouped[i] = true;
                        hit = true;
                    }
                    Some(_) => {}
                    None if names(&lower, c) => {
                        named[i] = true;
                        hit = true;
                    }
                    None => {}
                }
            }
            if !hit {
                return Err(UnknownCase(t.to_string()));
            }
        }
        Ok(Self {
            picked: CASES
                .iter()
                .enumerate()
                .filter(|(i, _)| named[*i] || grouped[*i])
                .map(|(i, c)| (c, named[i]))
                .collect(),
        })
    }

    /// The cases to run, in order: cases a server cannot provoke only when named on their own.
    pub fn cases(&self) -> impl Iterator<Item = &'static CaseDef> + '_ {
        self.picked
            .iter()
            .filter(|(c, named)| c.provokable || *named)
            .map(|(c, _)| *c)
    }

    /// Whether any selected case is in `group`.
    pub fn any_in(&self, group: Group) -> bool {
        self.cases().any(|c| c.group == group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &Selection) -> Vec<&'static str> {
        s.cases().map(|c| c.id).collect()
    }

    fn sel(t: &[&str]) -> Result<Selection, UnknownCase> {
        Selection::parse(&t.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn ids_are_unique_and_findable() {
        for c in CASES {
            assert_eq!(CASES.iter().filter(|d| d.id == c.id).count(), 1, "{}", c.id);
            assert_eq!(find(c.id), Some(c));
        }
    }

    #[test]
    fn selection_by_id_number_and_group() {
        assert_eq!(
            ids(&sel(&["1.0-int-771", "core-101"]).unwrap()),
            ["1.1-int-101", "1.0-int-771"]
        );
        assert_eq!(
            ids(&sel(&["770", "779"]).unwrap()),
            ["1.0-int-770", "1.0-int-779"]
        );
        let fw = ids(&sel(&["fw"]).unwrap());
        assert!(fw.iter().all(|id| id.starts_with("1.0-int-7")), "{fw:?}");
        // A case the server cannot provoke runs only when named.
        assert!(!fw.contains(&"1.0-int-774"));
        assert_eq!(ids(&sel(&["fw", "774"]).unwrap()).len(), fw.len() + 1);
        let core = ids(&sel(&["core"]).unwrap());
        assert!(core.contains(&"core-ir-st") && core.contains(&"1.1-int-103"));
        assert!(!core.iter().any(|id| id.starts_with("1.0-int-7")));
        assert!(!core.contains(&"1.1-int-306"));
        assert_eq!(ids(&sel(&["306"]).unwrap()), ["1.1-int-306"]);
        assert_eq!(ids(&sel(&[]).unwrap()), ids(&Selection::all()));
        assert!(!ids(&Selection::all()).contains(&"1.0-int-774"));
        assert_eq!(ids(&sel(&["core-ir-st"]).unwrap()), ["core-ir-st"]);
    }

    #[test]
    fn unknown_entries_are_refused() {
        let e = sel(&["fw", "999"]).unwrap_err();
        assert_eq!(e, UnknownCase("999".into()));
        assert!(e.to_string().contains("'999'"));
        assert!(sel(&["core-771"]).is_err(), "771 is no core case");
    }
}

//! CoAP Content-Format numbers used by LwM2M (OMA TS Core 1.1, section 5.1; IANA CoAP registry).

/// A content format the client or server may put in Content-Format or Accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentFormat {
    /// 0: text/plain; charset=utf-8 (single values).
    Text,
    /// 40: application/link-format (Discover, registration).
    LinkFormat,
    /// 42: application/octet-stream (opaque single values, firmware packages).
    Opaque,
    /// 60: application/cbor (single values, [`super::cbor`]).
    Cbor,
    /// 110: application/senml+json.
    SenmlJson,
    /// 112: application/senml+cbor.
    SenmlCbor,
    /// 11542: application/vnd.oma.lwm2m+tlv.
    Tlv,
    /// 11543: application/vnd.oma.lwm2m+json (the LwM2M 1.0 JSON format, [`super::lwm2m_json`]).
    LwM2mJson,
    /// 11544: application/vnd.oma.lwm2m+cbor (LwM2M 1.2 nested maps).
    LwM2mCbor,
    /// Legacy pre-registration TLV number 1542 (LwM2M 1.0 drafts, old servers).
    LegacyTlv,
    /// Any other number.
    Other(u16),
}

/// The LwM2M data formats the client reads and writes, by their command-line names; the first
/// (SenML CBOR, the compact LwM2M 1.1 format) is the one announced by default.
pub const DATA_FORMATS: [(&str, ContentFormat); 4] = [
    ("senml-cbor", ContentFormat::SenmlCbor),
    ("senml-json", ContentFormat::SenmlJson),
    ("tlv", ContentFormat::Tlv),
    ("lwm2m-cbor", ContentFormat::LwM2mCbor),
];

impl ContentFormat {
    /// The LwM2M version whose data formats first list this one (TS Core 1.0 §6.4 has text,
    /// opaque, TLV and JSON; 1.1 §7.4 adds CBOR, SenML JSON and SenML CBOR; 1.2 adds LwM2M
    /// CBOR): a client registered with an older `lwm2m=` is not expected to speak it. `None`
    /// for numbers no LwM2M version lists.
    pub const fn since_lwm2m(self) -> Option<&'static str> {
        match self {
            Self::Text | Self::LinkFormat | Self::Opaque | Self::Tlv | Self::LwM2mJson => {
                Some("1.0")
            }
            Self::Cbor | Self::SenmlJson | Self::SenmlCbor => Some("1.1"),
            Self::LwM2mCbor => Some("1.2"),
            Self::LegacyTlv | Self::Other(_) => None,
        }
    }

    /// The registered number.
    pub const fn number(self) -> u16 {
        match self {
            Self::Text => 0,
            Self::LinkFormat => 40,
            Self::Opaque => 42,
            Self::Cbor => 60,
            Self::SenmlJson => 110,
            Self::SenmlCbor => 112,
            Self::Tlv => 11542,
            Self::LwM2mJson => 11543,
            Self::LwM2mCbor => 11544,
            Self::LegacyTlv => 1542,
            Self::Other(n) => n,
        }
    }

    /// Whether the format carries whole instances, objects and multiple resources, not only
    /// single values (text, opaque, CBOR) or links.
    pub const fn carries_nodes(self) -> bool {
        matches!(
            self,
            Self::Tlv
                | Self::LegacyTlv
                | Self::SenmlJson
                | Self::SenmlCbor
                | Self::LwM2mJson
                | Self::LwM2mCbor
        )
    }

    /// Maps a number to its format; unknown numbers become [`ContentFormat::Other`].
    pub const fn from_number(n: u16) -> Self {
        match n {
            0 => Self::Text,
            40 => Self::LinkFormat,
            42 => Self::Opaque,
            60 => Self::Cbor,
            110 => Self::SenmlJson,
            112 => Self::SenmlCbor,
            11542 => Self::Tlv,
            11543 => Self::LwM2mJson,
            11544 => Self::LwM2mCbor,
            1542 => Self::LegacyTlv,
            n => Self::Other(n),
        }
    }

    /// Decodes a CoAP uint option value (0-2 bytes big-endian); `None` when longer.
    pub fn from_option(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 2 {
            return None;
        }
        let n = bytes.iter().fold(0u16, |acc, b| (acc << 8) | u16::from(*b));
        Some(Self::from_number(n))
    }

    /// The LwM2M data format named `name` (`senml-cbor`, `senml-json`, `tlv`, `lwm2m-cbor`):
    /// the formats the client decodes and encodes for every node, so the ones it may announce
    /// as preferred at registration. `None` for any other name.
    pub fn from_data_format_name(name: &str) -> Option<Self> {
        DATA_FORMATS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }

    /// Encodes as a minimal CoAP uint option value.
    pub fn to_option(self) -> alloc::vec::Vec<u8> {
        crate::codec::block::uint_option(u32::from(self.number()))
    }
}

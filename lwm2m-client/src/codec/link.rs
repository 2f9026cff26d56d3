//! CoRE Link Format (RFC 6690, CF 40): registration payloads and Discover answers.

use super::CodecError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// One link: `<target>;name=value;flag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`.
    pub target: String,
    /// Parameters in order; the value is unquoted, `None` for a bare flag.
    pub attrs: Vec<(String, Option<String>)>,
}

impl Link {
    /// A link with no parameters.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            attrs: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attrs.push((String::from(name), Some(value.into())));
        self
    }

    /// The first value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn is_ptoken(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'()*+-./:<=>?@[]^_`{|}~".contains(&b))
}

/// The value of parameter `name` as a link-format document writes it (RFC 6690 section 2:
/// `ptoken / quoted-string`): `rt`, `if` and `title` values, whose grammar is a quoted string,
/// and any value that is not a ptoken are quoted (`"oma.lwm2m"`, `"110 112"`), others are bare
/// (`1.1`).
pub fn value_text(name: &str, value: &str) -> String {
    if matches!(name, "rt" | "if" | "title") || !is_ptoken(value) {
        let mut out = String::from("\"");
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    } else {
        String::from(value)
    }
}

/// Encodes links separated by commas, each value as [`value_text`] writes it.
pub fn encode(links: &[Link]) -> String {
    let mut out = String::new();
    for (n, link) in links.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "<{}>", link.target);
        for (name, value) in &link.attrs {
            let _ = write!(out, ";{name}");
            if let Some(v) = value {
                let _ = write!(out, "={}", value_text(name, v));
            }
        }
    }
    out
}

/// Parses a link-format document.
pub fn parse(s: &str) -> Result<Vec<Link>, CodecError> {
    let mut links = Vec::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Ok(links);
    }
    loop {
        rest = rest
            .strip_prefix('<')
            .ok_or(CodecError::Malformed("link does not start with <"))?;
        let end = rest
            .find('>')
            .ok_or(CodecError::Malformed("unterminated link target"))?;
        let target = rest.get(..end).ok_or(CodecError::Truncated)?;
        let mut link = Link::new(target);
        rest = rest.get(end + 1..).ok_or(CodecError::Truncated)?;
        while let Some(r) = rest.strip_prefix(';') {
            let name_end = r.find(['=', ';', ',']).unwrap_or(r.len());
            let name = r.get(..name_end).ok_or(CodecError::Truncated)?.trim();
            if name.is_empty() {
                return Err(CodecError::Malformed("empty link parameter name"));
            }
            rest = r.get(name_end..).ok_or(CodecError::Truncated)?;
            let value = if let Some(v) = rest.strip_prefix('=') {
                let (value, after) = parse_value(v)?;
                rest = after;
                Some(value)
            } else {
                None
            };
            link.attrs.push((String::from(name), value));
        }
        links.push(link);
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(links);
        }
        rest = rest
            .strip_prefix(',')
            .ok_or(CodecError::Malformed("expected , between links"))?
            .trim_start();
    }
}

fn parse_value(v: &str) -> Result<(String, &str), CodecError> {
    if let Some(q) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next().ok_or(CodecError::Truncated)?.1),
                '"' => return Ok((out, q.get(i + 1..).ok_or(CodecError::Truncated)?)),
                c => out.push(c),
            }
        }
        Err(CodecError::Malformed("unterminated quoted string"))
    } else {
        let end = v.find([';', ',']).unwrap_or(v.len());
        let (value, rest) = v.split_at(end);
        Ok((String::from(value), rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn registration_payload_round_trip() {
        let links = vec![
            Link::new("/")
                .attr("rt", "oma.lwm2m")
                .attr("ct", "110 112 11542"),
            Link::new("/1/0"),
            Link::new("/3/0").attr("ver", "1.1"),
            Link::new("/5/0"),
        ];
        let s = encode(&links);
        assert_eq!(
            s,
            r#"</>;rt="oma.lwm2m";ct="110 112 11542",</1/0>,</3/0>;ver=1.1,</5/0>"#
        );
        assert_eq!(parse(&s).unwrap(), links);
    }

    #[test]
    fn parses_flags_and_whitespace() {
        let l = parse("</5>;ver=1.0, </5/0>;pmin=10;obs,</5/0/1>").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].get("pmin"), Some("10"));
        assert_eq!(l[1].attrs[1], (String::from("obs"), None));
        assert!(parse("<5").is_err());
        assert!(parse("</5>;x=\"abc").is_err());
        assert!(parse("</5>x").is_err());
        assert!(parse("").unwrap().is_empty());
    }
}

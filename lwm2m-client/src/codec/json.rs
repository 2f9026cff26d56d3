//! A small JSON reader and writer, enough for SenML JSON in the no_std core (serde_json needs
//! std). Nesting is bounded so hostile input cannot exhaust the stack.

use super::CodecError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Deepest nesting accepted by [`parse`].
pub const MAX_DEPTH: usize = 16;

/// A parsed JSON value; numbers keep their source text so integers stay exact.
#[derive(Clone, Debug, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written.
    Number(&'a str),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object, members in order.
    Object(Vec<(String, Json<'a>)>),
}

/// Parses one JSON document (surrounding whitespace allowed, nothing after it).
pub fn parse(s: &str) -> Result<Json<'_>, CodecError> {
    let mut p = Parser { s, pos: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.pos != s.len() {
        return Err(CodecError::Malformed("trailing data after JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, lit: &str) -> Result<(), CodecError> {
        if self.s.get(self.pos..).is_some_and(|r| r.starts_with(lit)) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(CodecError::Malformed("unexpected JSON token"))
        }
    }
    fn value(&mut self, depth: usize) -> Result<Json<'a>, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep);
        }
        self.ws();
        match self.peek().ok_or(CodecError::Truncated)? {
            b'n' => self.eat("null").map(|_| Json::Null),
            b't' => self.eat("true").map(|_| Json::Bool(true)),
            b'f' => self.eat("false").map(|_| Json::Bool(false)),
            b'"' => self.string().map(Json::String),
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek().ok_or(CodecError::Truncated)? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(CodecError::Malformed("expected , or ] in JSON array")),
                    }
                }
            }
            b'{' => {
                self.pos += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(CodecError::Malformed("JSON object key is not a string"));
                    }
                    let key = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    members.push((key, self.value(depth + 1)?));
                    self.ws();
                    match self.peek().ok_or(CodecError::Truncated)? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Ok(Json::Object(members));
                        }
                        _ => return Err(CodecError::Malformed("expected , or } in JSON object")),
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(CodecError::Malformed("unexpected JSON character")),
        }
    }
    fn number(&mut self) -> Result<Json<'a>, CodecError> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        let text = self.s.get(start..self.pos).ok_or(CodecError::Truncated)?;
        // Validate with the float parser; keep the text for exact integers.
        text.parse::<f64>()
            .map_err(|_| CodecError::Malformed("bad JSON number"))?;
        Ok(Json::Number(text))
    }
    fn string(&mut self) -> Result<String, CodecError> {
        self.eat("\"")?;
        let mut out = String::new();
        loop {
            let rest = self.s.get(self.pos..).ok_or(CodecError::Truncated)?;
            let c = rest.chars().next().ok_or(CodecError::Truncated)?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self.peek().ok_or(CodecError::Truncated)?;
                    self.pos += 1;
                    out.push(match e {
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                self.eat("\\u")?;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(CodecError::Malformed("bad JSON surrogate pair"));
                                }
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                char::from_u32(cp)
                                    .ok_or(CodecError::Malformed("bad JSON escape"))?
                            } else {
                                char::from_u32(hi)
                                    .ok_or(CodecError::Malformed("bad JSON escape"))?
                            }
                        }
                        e => simple_escape(e).ok_or(CodecError::Malformed("bad JSON escape"))?,
                    });
                }
                c if (c as u32) < 0x20 => {
                    return Err(CodecError::Malformed("control character in JSON string"))
                }
                c => out.push(c),
            }
        }
    }
    fn hex4(&mut self) -> Result<u32, CodecError> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or(CodecError::Truncated)?;
        self.pos += 4;
        u32::from_str_radix(h, 16).map_err(|_| CodecError::Malformed("bad JSON \\u escape"))
    }
}

/// The character a one-letter JSON escape (`\\n`, `\\"`...) stands for (RFC 8259 section
/// 7); `None` for `u` and anything else.
pub(crate) fn simple_escape(e: u8) -> Option<char> {
    Some(match e {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}

/// Appends `s` as a JSON string literal.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn parses_documents() {
        let v = parse(r#" [{"bn":"/3/0/","n":"0","vs":"a\"\u00e9\ud83d\ude00"},{"v":-1.5e3,"vb":true,"x":null}] "#).unwrap();
        let Json::Array(items) = v else {
            panic!("not an array")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0],
            Json::Object(vec![
                ("bn".into(), Json::String("/3/0/".into())),
                ("n".into(), Json::String("0".into())),
                ("vs".into(), Json::String("a\"é😀".into())),
            ])
        );
        assert!(matches!(&items[1], Json::Object(m) if m[0].1 == Json::Number("-1.5e3")));
        for bad in [
            "",
            "[",
            "[1,]",
            "{\"a\"}",
            "[1] x",
            "\"\\x\"",
            "[\"\u{1}\"]",
            "tru",
            "{1:2}",
            "\"\\ud800\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(100);
        assert_eq!(parse(&deep), Err(CodecError::TooDeep));
        let mut s = String::new();
        write_string(&mut s, "a\"\\\n\u{1}");
        assert_eq!(s, r#""a\"\\\n\u0001""#);
    }
}

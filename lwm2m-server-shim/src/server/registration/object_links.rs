//! A client's registered object links (the link-format payload of Register/Update) and the
//! views Leshan's REST API derives from them: `objectLinks`, `rootPath`, `availableInstances`.

use std::collections::BTreeMap;

use lwm2m_client::codec::link::{self, Link};
use lwm2m_client::codec::{CodecError, ContentFormat};
use serde_json::{json, Map, Value};

use crate::content::object_model::DEFAULT_OBJECT_VERSION;

/// Parsed object links of one registration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectLinks {
    links: Vec<Link>,
}

impl ObjectLinks {
    /// Parses a link-format payload, rejecting malformed documents.
    pub fn try_parse(s: &str) -> Result<Self, CodecError> {
        Ok(Self {
            links: link::parse(s)?,
        })
    }

    /// Parses a payload the registration interface already validated; malformed input (which
    /// could only come from a store filled elsewhere) yields no links.
    pub fn parse(s: &str) -> Self {
        Self::try_parse(s).unwrap_or_default()
    }

    /// The links in payload order.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The alternate root path: the target of the `rt="oma.lwm2m"` link, `/` without one.
    pub fn root_path(&self) -> String {
        let root = self
            .links
            .iter()
            .find(|l| l.get("rt") == Some("oma.lwm2m"))
            .map(|l| l.target.clone())
            .unwrap_or_else(|| "/".into());
        if root.ends_with('/') {
            root
        } else {
            format!("{root}/")
        }
    }

    /// The content formats announced with `ct` on the root link (`</>;rt="oma.lwm2m";ct=112`,
    /// core TS 1.1 section 6.2.1.1; TS 1.0 writes `</>;ct=11543`), in the order given; a quoted
    /// space-separated list counts as several. Unparsable numbers are skipped.
    pub fn content_formats(&self) -> Vec<ContentFormat> {
        let root = self
            .links
            .iter()
            .find(|l| l.get("rt") == Some("oma.lwm2m"))
            .or_else(|| self.links.iter().find(|l| l.target == "/"));
        root.and_then(|l| l.get("ct"))
            .map(|ct| {
                ct.split_whitespace()
                    .filter_map(|n| n.parse::<u16>().ok())
                    .map(ContentFormat::from_number)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `[{"url":"/3/0","attributes":{...}}]` as Leshan serializes `Link`: each attribute value
    /// as the link-format text writes it (Leshan's `Attribute.getCoreLinkValue`), so
    /// `rt="oma.lwm2m"` shows as `"\"oma.lwm2m\""` and `ct="110 112"` keeps its quotes.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.links
                .iter()
                .map(|l| {
                    let attrs: Map<String, Value> = l
                        .attrs
                        .iter()
                        .map(|(k, v)| {
                            let text = v.as_deref().map(|v| link::value_text(k, v));
                            (k.clone(), text.map(Value::String).unwrap_or(Value::Null))
                        })
                        .collect();
                    json!({"url": l.target, "attributes": attrs})
                })
                .collect(),
        )
    }

    /// Object id -> instance ids, from links naming `/o/i` under the root path.
    pub fn available_instances(&self) -> BTreeMap<u16, Vec<u16>> {
        let root = self.root_path();
        let mut out: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
        for l in &self.links {
            let Some(rel) = l.target.strip_prefix(root.as_str()) else {
                continue;
            };
            let mut ids = rel
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::parse::<u16>);
            match (ids.next(), ids.next(), ids.next()) {
                (Some(Ok(o)), Some(Ok(i)), None) => {
                    let v = out.entry(o).or_default();
                    if !v.contains(&i) {
                        v.push(i);
                    }
                }
                (Some(Ok(o)), None, None) => {
                    out.entry(o).or_default();
                }
                _ => {}
            }
        }
        out
    }

    /// Object id -> object version the client supports: the `ver` attribute of the object's own
    /// link (`</5>;ver=1.1`, LwM2M core TS 1.1 section 6.2.1.1), else `1.0`; an object named only
    /// by its instances has version `1.0`. (Leshan reads versions the same way.)
    pub fn supported_objects(&self) -> BTreeMap<u16, String> {
        let root = self.root_path();
        let mut out = BTreeMap::new();
        for l in &self.links {
            let Some(rel) = l.target.strip_prefix(root.as_str()) else {
                continue;
            };
            let mut ids = rel.split('/').filter(|s| !s.is_empty());
            let Some(Ok(object)) = ids.next().map(str::parse::<u16>) else {
                continue;
            };
            match (ids.next().map(str::parse::<u16>), ids.next()) {
                (None, _) => {
                    let v = l.get("ver").unwrap_or(DEFAULT_OBJECT_VERSION);
                    out.insert(object, v.to_string());
                }
                (Some(Ok(_)), None) => {
                    out.entry(object)
                        .or_insert_with(|| DEFAULT_OBJECT_VERSION.to_string());
                }
                _ => {}
            }
        }
        out
    }

    /// `{"5":[0]}` as Leshan's registration JSON shows it.
    pub fn available_instances_json(&self) -> Value {
        let m: Map<String, Value> = self
            .available_instances()
            .into_iter()
            .map(|(o, is)| (o.to_string(), json!(is)))
            .collect();
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leshan_views_of_a_registration_payload() {
        let l = ObjectLinks::try_parse(
            r#"</>;rt="oma.lwm2m";ct=110,</1/0>,</3>,</3/0>;ver=1.1,</5/0>"#,
        )
        .expect("valid");
        assert_eq!(l.root_path(), "/");
        assert_eq!(
            l.available_instances_json(),
            json!({"1":[0],"3":[0],"5":[0]})
        );
        let j = l.to_json();
        assert_eq!(
            j[0],
            json!({"url":"/","attributes":{"rt":"\"oma.lwm2m\"","ct":"110"}})
        );
        assert_eq!(j[3], json!({"url":"/3/0","attributes":{"ver":"1.1"}}));
        assert!(ObjectLinks::try_parse("</3/0").is_err());
    }

    /// Leshan keeps a value's link-format quotes (`Attribute.getCoreLinkValue`): quoted
    /// attributes and lists stay quoted, single tokens stay bare.
    #[test]
    fn attribute_values_keep_their_link_format_quotes() {
        let l = ObjectLinks::parse(r#"</>;rt="oma.lwm2m";ct="110 112",</5>;ver=1.1;dim=3"#);
        let j = l.to_json();
        assert_eq!(
            j[0]["attributes"],
            json!({"rt":"\"oma.lwm2m\"","ct":"\"110 112\""})
        );
        assert_eq!(j[1]["attributes"], json!({"ver":"1.1","dim":"3"}));
        assert_eq!(
            l.root_path(),
            "/",
            "the unquoted value still finds the root"
        );
    }

    #[test]
    fn supported_object_versions() {
        let l = ObjectLinks::parse(
            r#"</>;rt="oma.lwm2m",</1/0>,</3/0>;ver=1.1,</5>;ver=1.1,</5/0>,</6/0/1>,</7>"#,
        );
        let supported = l.supported_objects();
        let v: Vec<(u16, &str)> = supported.iter().map(|(o, v)| (*o, v.as_str())).collect();
        // `ver` counts on the object's link only; /6/0/1 names no object or instance.
        assert_eq!(v, [(1, "1.0"), (3, "1.0"), (5, "1.1"), (7, "1.0")]);
    }

    #[test]
    fn announced_content_formats() {
        let cf = |s: &str| ObjectLinks::parse(s).content_formats();
        assert_eq!(
            cf(r#"</>;rt="oma.lwm2m";ct=110,</3/0>"#),
            [ContentFormat::SenmlJson]
        );
        assert_eq!(
            cf(r#"</>;rt="oma.lwm2m";ct="112 11542 x",</3/0>"#),
            [ContentFormat::SenmlCbor, ContentFormat::Tlv]
        );
        assert_eq!(cf("</>;ct=11543,</3/0>"), [ContentFormat::LwM2mJson]);
        assert!(cf("</3/0>;ct=110").is_empty());
    }

    #[test]
    fn alternate_root_path() {
        let l = ObjectLinks::parse(r#"</lwm2m>;rt="oma.lwm2m",</lwm2m/5/0>,</6/0>"#);
        assert_eq!(l.root_path(), "/lwm2m/");
        assert_eq!(l.available_instances_json(), json!({"5":[0]}));
    }
}

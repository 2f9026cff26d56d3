//! OMA DDF (Device Description Framework) object definitions: the XML files OMA publishes for
//! every LwM2M object (schema `LWM2M.xsd`; LwM2M core TS 1.1 section 7.1), read into
//! [`ObjectModel`]s. The files a user loads are untrusted input: the XML parser refuses DTDs
//! (no entity expansion), and every error names its line and what is wrong instead of
//! panicking.

use std::fmt;

use roxmltree::{Document, Node};

use crate::content::object_model::{
    ModelType, ObjectModel, Operations, ResourceModel, DEFAULT_OBJECT_VERSION,
};

/// Why a DDF document was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum DdfError {
    /// Not well-formed XML (or it has a DTD).
    Xml(String),
    /// The root element is not `LWM2M`, or it holds no `Object`.
    NotDdf(&'static str),
    /// A required element or attribute is missing.
    Missing {
        /// Line of the element that lacks it.
        line: u32,
        /// What is missing.
        what: &'static str,
    },
    /// A value is not one the schema allows.
    Invalid {
        /// Line of the value.
        line: u32,
        /// Which field.
        what: &'static str,
        /// The value found.
        value: String,
    },
    /// Two resources of one object share an id.
    DuplicateResource {
        /// Line of the second one.
        line: u32,
        /// The id.
        id: u16,
    },
}

impl fmt::Display for DdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xml(e) => write!(f, "not well-formed XML: {e}"),
            Self::NotDdf(why) => write!(f, "not an OMA DDF object definition: {why}"),
            Self::Missing { line, what } => write!(f, "line {line}: missing {what}"),
            Self::Invalid { line, what, value } => {
                write!(f, "line {line}: {what} {value:?} is not valid")
            }
            Self::DuplicateResource { line, id } => {
                write!(f, "line {line}: resource {id} is defined twice")
            }
        }
    }
}

impl std::error::Error for DdfError {}

/// Parses a DDF document: every `Object` of its `LWM2M` root.
pub fn parse(text: &str) -> Result<Vec<ObjectModel>, DdfError> {
    let doc = Document::parse(text).map_err(|e| DdfError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "LWM2M" {
        return Err(DdfError::NotDdf("the root element is not LWM2M"));
    }
    let objects: Vec<ObjectModel> = elements(root, "Object")
        .map(|o| object(&doc, o))
        .collect::<Result<_, _>>()?;
    if objects.is_empty() {
        return Err(DdfError::NotDdf("no Object element"));
    }
    Ok(objects)
}

fn line(doc: &Document, n: Node) -> u32 {
    doc.text_pos_at(n.range().start).row
}

fn elements<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The trimmed text of child element `name` (CDATA included), `None` without that element.
fn text(n: Node, name: &'static str) -> Option<String> {
    elements(n, name).next().map(|e| {
        e.children()
            .filter_map(|c| c.text())
            .collect::<String>()
            .trim()
            .to_string()
    })
}

fn required(doc: &Document, n: Node, name: &'static str) -> Result<String, DdfError> {
    text(n, name).ok_or(DdfError::Missing {
        line: line(doc, n),
        what: name,
    })
}

fn invalid(doc: &Document, n: Node, what: &'static str, value: &str) -> DdfError {
    let at = elements(n, what).next().unwrap_or(n);
    DdfError::Invalid {
        line: line(doc, at),
        what,
        value: value.to_string(),
    }
}

/// `Single` / `Multiple`.
fn multiple(doc: &Document, n: Node) -> Result<bool, DdfError> {
    match required(doc, n, "MultipleInstances")?.as_str() {
        "Single" => Ok(false),
        "Multiple" => Ok(true),
        other => Err(invalid(doc, n, "MultipleInstances", other)),
    }
}

/// `Mandatory` / `Optional`.
fn mandatory(doc: &Document, n: Node) -> Result<bool, DdfError> {
    match required(doc, n, "Mandatory")?.as_str() {
        "Mandatory" => Ok(true),
        "Optional" => Ok(false),
        other => Err(invalid(doc, n, "Mandatory", other)),
    }
}

/// A version `major.minor`, `default` when the element is absent or empty.
fn version(doc: &Document, n: Node, name: &'static str) -> Result<String, DdfError> {
    let v = text(n, name).unwrap_or_default();
    if v.is_empty() {
        return Ok(DEFAULT_OBJECT_VERSION.to_string());
    }
    let well_formed = v.split_once('.').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
    });
    if well_formed {
        Ok(v)
    } else {
        Err(invalid(doc, n, name, &v))
    }
}

fn object(doc: &Document, o: Node) -> Result<ObjectModel, DdfError> {
    let id_text = required(doc, o, "ObjectID")?;
    let id = id_text
        .parse::<u16>()
        .map_err(|_| invalid(doc, o, "ObjectID", &id_text))?;
    let name = required(doc, o, "Name")?;
    let mut resources: Vec<ResourceModel> = Vec::new();
    if let Some(list) = elements(o, "Resources").next() {
        for item in elements(list, "Item") {
            let r = resource(doc, item)?;
            if resources.iter().any(|x| x.id == r.id) {
                return Err(DdfError::DuplicateResource {
                    line: line(doc, item),
                    id: r.id,
                });
            }
            resources.push(r);
        }
    }
    resources.sort_by_key(|r| r.id);
    Ok(ObjectModel {
        id,
        name,
        description: text(o, "Description1").unwrap_or_default(),
        description2: text(o, "Description2").unwrap_or_default(),
        version: version(doc, o, "ObjectVersion")?,
        lwm2m_version: version(doc, o, "LWM2MVersion")?,
        multiple: multiple(doc, o)?,
        mandatory: mandatory(doc, o)?,
        urn: text(o, "ObjectURN").unwrap_or_default(),
        resources,
    })
}

fn resource(doc: &Document, item: Node) -> Result<ResourceModel, DdfError> {
    let id_attr = item.attribute("ID").ok_or(DdfError::Missing {
        line: line(doc, item),
        what: "Item attribute ID",
    })?;
    let id = id_attr
        .trim()
        .parse::<u16>()
        .map_err(|_| DdfError::Invalid {
            line: line(doc, item),
            what: "Item ID",
            value: id_attr.to_string(),
        })?;
    let ops = text(item, "Operations").unwrap_or_default();
    let operations = match ops.as_str() {
        "" => Operations::None,
        "R" => Operations::R,
        "W" => Operations::W,
        "RW" => Operations::RW,
        "E" => Operations::E,
        other => return Err(invalid(doc, item, "Operations", other)),
    };
    let ty_text = text(item, "Type").unwrap_or_default();
    let ty = match ty_text.to_ascii_lowercase().as_str() {
        "" | "none" => ModelType::None,
        "string" => ModelType::String,
        "integer" => ModelType::Integer,
        "unsigned integer" => ModelType::UnsignedInteger,
        "float" => ModelType::Float,
        "boolean" => ModelType::Boolean,
        "opaque" => ModelType::Opaque,
        "time" => ModelType::Time,
        "objlnk" => ModelType::Objlnk,
        "corelnk" => ModelType::Corelnk,
        _ => return Err(invalid(doc, item, "Type", &ty_text)),
    };
    Ok(ResourceModel {
        id,
        name: required(doc, item, "Name")?,
        operations,
        multiple: multiple(doc, item)?,
        mandatory: mandatory(doc, item)?,
        ty,
        range: text(item, "RangeEnumeration").unwrap_or_default(),
        units: text(item, "Units").unwrap_or_default(),
        description: text(item, "Description").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<LWM2M>
  <Object ObjectType="MODefinition">
    <Name>Test</Name>
    <ObjectID>10250</ObjectID>
    <ObjectVersion>2.3</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="7"><Name>B</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory><Type>Unsigned Integer</Type><Units>s</Units><Description><![CDATA[ seven ]]></Description></Item>
      <Item ID="1"><Name>A</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory><Type></Type></Item>
    </Resources>
  </Object>
</LWM2M>"#;

    #[test]
    fn a_minimal_definition_reads_with_defaults() {
        let [m] = parse(MINIMAL)
            .expect("valid")
            .try_into()
            .expect("one object");
        assert_eq!(
            (m.id, m.name.as_str(), m.version.as_str()),
            (10250, "Test", "2.3")
        );
        assert_eq!(m.lwm2m_version, "1.0");
        assert!(m.multiple && !m.mandatory);
        let ids: Vec<u16> = m.resources.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 7], "sorted by id");
        let r7 = m.resource(7).expect("resource 7");
        assert_eq!(
            (
                r7.operations,
                r7.ty,
                r7.units.as_str(),
                r7.description.as_str()
            ),
            (Operations::RW, ModelType::UnsignedInteger, "s", "seven")
        );
        assert_eq!(m.resource(1).map(|r| r.ty), Some(ModelType::None));
    }

    #[test]
    fn refusals_name_the_line_and_the_value() {
        let cases = [
            ("<LWM2M><Object>", "not well-formed XML"),
            (
                "<Other/>",
                "not an OMA DDF object definition: the root element is not LWM2M",
            ),
            (
                "<LWM2M/>",
                "not an OMA DDF object definition: no Object element",
            ),
            (
                "<LWM2M>\n<Object><Name>x</Name></Object></LWM2M>",
                "line 2: missing ObjectID",
            ),
            (
                "<LWM2M><Object>\n<ObjectID>70000</ObjectID></Object></LWM2M>",
                "line 2: ObjectID \"70000\" is not valid",
            ),
            (
                "<!DOCTYPE l [<!ENTITY a \"aaaa\">]><LWM2M/>",
                "not well-formed XML",
            ),
        ];
        for (xml, want) in cases {
            let e = parse(xml).expect_err(xml).to_string();
            assert!(e.starts_with(want), "{xml}: {e}");
        }
        let bad_type = MINIMAL.replace("Unsigned Integer", "Decimal");
        assert_eq!(
            parse(&bad_type).expect_err("type").to_string(),
            "line 10: Type \"Decimal\" is not valid"
        );
        let twice = MINIMAL.replace("Item ID=\"1\"", "Item ID=\"7\"");
        assert_eq!(
            parse(&twice).expect_err("duplicate").to_string(),
            "line 11: resource 7 is defined twice"
        );
        let bad_version = MINIMAL.replace("2.3", "2.x");
        assert!(parse(&bad_version).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let alphabet = b"<>/=\"' LWM2MObjectIDItemNameType!-[]CDATA&;#x0123456789\n";
        for len in 0..400 {
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(alphabet[(x % alphabet.len() as u64) as usize])
                })
                .collect();
            let _ = parse(&s);
            let cut = &MINIMAL[..(len * 7).min(MINIMAL.len())];
            let _ = parse(cut);
        }
    }
}

//! The object models a server knows ([`ObjectModels`]): objects 0 (Security) 1.0, 1 (Server),
//! 3 (Device) and 5 (Firmware Update) in versions 1.0 and 1.1 built in (`models/*.xml` in this
//! crate), and more from a directory of OMA DDF files (`serve --models DIR`), as Leshan's demo
//! loads them with `-m`. They give Leshan's `GET /api/objectspecs/{ep}` its answer and the
//! codecs their types: TLV carries none, so without the built-in models a TLV read of /3/0/9
//! would show up as opaque bytes instead of an integer.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use lwm2m_client::codec::ResourceType;

use crate::content::ddf::{self, DdfError};
use crate::content::object_model::ObjectModel;

/// The built-in DDF files: objects 0, 1, 3 and 5 as our device and Leshan's bundle define them.
const BUILT_IN: [(&str, &str); 7] = [
    ("0-1_0.xml", include_str!("../../models/0-1_0.xml")),
    ("1-1_0.xml", include_str!("../../models/1-1_0.xml")),
    ("1-1_1.xml", include_str!("../../models/1-1_1.xml")),
    ("3-1_0.xml", include_str!("../../models/3-1_0.xml")),
    ("3-1_1.xml", include_str!("../../models/3-1_1.xml")),
    ("5-1_0.xml", include_str!("../../models/5-1_0.xml")),
    ("5-1_1.xml", include_str!("../../models/5-1_1.xml")),
];

/// Largest DDF file read from a models directory (the OMA registry's largest are about 200 KB).
pub const MAX_DDF_FILE: u64 = 4 * 1024 * 1024;

/// Why a models directory could not be loaded.
#[derive(Debug)]
pub enum ModelLoadError {
    /// The directory or a file in it cannot be read.
    Io(PathBuf, std::io::Error),
    /// A file is larger than [`MAX_DDF_FILE`].
    TooLarge(PathBuf, u64),
    /// A file is not a valid DDF document.
    Ddf(PathBuf, DdfError),
}

impl fmt::Display for ModelLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::TooLarge(p, n) => write!(
                f,
                "{}: {n} bytes; object model files are at most {MAX_DDF_FILE}",
                p.display()
            ),
            Self::Ddf(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ModelLoadError {}

/// The object models a server knows, by object id and version.
#[derive(Debug, Clone, Default)]
pub struct ObjectModels {
    models: BTreeMap<(u16, String), Arc<ObjectModel>>,
}

impl ObjectModels {
    /// The built-in models (objects 0, 1, 3 and 5).
    pub fn built_in() -> Self {
        static MODELS: OnceLock<ObjectModels> = OnceLock::new();
        MODELS
            .get_or_init(|| {
                let mut all = Self::default();
                for (name, text) in BUILT_IN {
                    match ddf::parse(text) {
                        Ok(models) => models.into_iter().for_each(|m| {
                            all.add(m);
                        }),
                        // Unreachable for the files shipped (a unit test parses them all).
                        Err(e) => tracing::error!(file = name, error = %e, "built-in model"),
                    }
                }
                all
            })
            .clone()
    }

    /// Adds a model, replacing one of the same object id and version.
    pub fn add(&mut self, model: ObjectModel) -> Option<Arc<ObjectModel>> {
        self.models
            .insert((model.id, model.version.clone()), Arc::new(model))
    }

    /// Adds every model of the `*.xml` files directly in `dir` (file names in order; a model
    /// replaces an earlier one of the same id and version); returns how many were added.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, ModelLoadError> {
        let io = |p: &Path, e| ModelLoadError::Io(p.to_path_buf(), e);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")) && p.is_file())
            .collect();
        files.sort();
        let mut added = 0;
        for path in files {
            let len = std::fs::metadata(&path).map_err(|e| io(&path, e))?.len();
            if len > MAX_DDF_FILE {
                return Err(ModelLoadError::TooLarge(path, len));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let models = ddf::parse(&text).map_err(|e| ModelLoadError::Ddf(path.clone(), e))?;
            for m in models {
                added += 1;
                self.add(m);
            }
        }
        Ok(added)
    }

    /// The model of object `id` in `version`.
    pub fn get(&self, id: u16, version: &str) -> Option<&Arc<ObjectModel>> {
        self.models.get(&(id, version.to_string()))
    }

    /// Every model, by object id then version.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ObjectModel>> {
        self.models.values()
    }

    /// The models of the objects a client supports (object id -> the version it announced),
    /// in object id order; an object whose version has no model is left out, as Leshan does.
    pub fn for_objects(&self, supported: &BTreeMap<u16, String>) -> Vec<Arc<ObjectModel>> {
        supported
            .iter()
            .filter_map(|(id, v)| self.get(*id, v).cloned())
            .collect()
    }

    /// The declared type of `/object/*/resource` in the newest version that defines it.
    pub fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        self.models
            .range((object, String::new())..)
            .take_while(|((o, _), _)| *o == object)
            .filter_map(|(_, m)| m.resource(resource))
            .last()
            .map(|r| r.ty.codec_type())
    }
}

/// The declared type of `/object/*/resource` in the built-in models, if they know it.
pub fn resource_type(object: u16, resource: u16) -> Option<ResourceType> {
    static BUILT_IN_TYPES: OnceLock<ObjectModels> = OnceLock::new();
    BUILT_IN_TYPES
        .get_or_init(ObjectModels::built_in)
        .resource_type(object, resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_client::codec::ResourceType as T;

    #[test]
    fn firmware_object_types() {
        assert_eq!(resource_type(5, 0), Some(T::Opaque));
        assert_eq!(resource_type(5, 3), Some(T::Integer));
        assert_eq!(resource_type(5, 4), None);
        assert_eq!(resource_type(3, 13), Some(T::Time));
        assert_eq!(resource_type(42, 0), None);
    }

    #[test]
    fn every_built_in_file_parses_into_its_object_and_version() {
        for (name, text) in BUILT_IN {
            let models = ddf::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let [m] = models.as_slice() else {
                panic!("{name}: one object per file")
            };
            assert_eq!(
                format!("{}-{}.xml", m.id, m.version.replace('.', "_")),
                name
            );
        }
        let all = ObjectModels::built_in();
        assert_eq!(all.all().count(), BUILT_IN.len());
        // Types the codecs relied on before the models existed (LwM2M 1.1 definitions).
        for (o, r, t) in [
            (0, 1, T::Boolean),
            (0, 12, T::Integer),
            (1, 10, T::ObjLnk),
            (1, 12, T::Time),
            (1, 13, T::Unsigned),
            (1, 23, T::Boolean),
            (3, 9, T::Integer),
            (3, 22, T::ObjLnk),
            (5, 1, T::String),
            (5, 2, T::None),
            (5, 13, T::Unsigned),
        ] {
            assert_eq!(all.resource_type(o, r), Some(t), "/{o}/*/{r}");
        }
        let v10 = all.get(1, "1.0").expect("Server 1.0");
        assert!(
            v10.resource(9).is_none(),
            "Bootstrap-Request Trigger came with 1.1"
        );
        assert!(all.get(1, "1.1").and_then(|m| m.resource(9)).is_some());
    }

    #[test]
    fn models_for_a_client_follow_its_announced_versions() {
        let all = ObjectModels::built_in();
        let supported: BTreeMap<u16, String> = [(3, "1.1"), (5, "1.0"), (6, "1.0"), (1, "9.9")]
            .into_iter()
            .map(|(o, v)| (o, v.to_string()))
            .collect();
        let got: Vec<(u16, String)> = all
            .for_objects(&supported)
            .iter()
            .map(|m| (m.id, m.version.clone()))
            .collect();
        assert_eq!(got, [(3, "1.1".to_string()), (5, "1.0".to_string())]);
    }
}

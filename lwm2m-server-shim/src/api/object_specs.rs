//! `GET /api/objectspecs/{ep}` (Leshan's `ObjectSpecServlet`): the object models of the objects a
//! registered client supports, in the versions it announced, shaped as Leshan's
//! `ObjectModelSerDes` writes them. Leshan's web UI and scripts read names, operations and types
//! from here.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::api::http_server::{json, Body};
use crate::content::models::ObjectModels;
use crate::content::object_model::{ObjectModel, ResourceModel};
use crate::server::registration::object_links::ObjectLinks;
use crate::server::registration::store::Registration;

/// The models of `reg`'s objects (an object whose announced version has no model is left out).
pub fn for_client(models: &ObjectModels, reg: &Registration) -> Response<Body> {
    let supported = ObjectLinks::parse(&reg.object_links).supported_objects();
    let all: Vec<Value> = models
        .for_objects(&supported)
        .iter()
        .map(|m| object_json(m))
        .collect();
    json(StatusCode::OK, &Value::Array(all))
}

/// One object model in Leshan's JSON.
pub fn object_json(m: &ObjectModel) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "instancetype": instance_type(m.multiple),
        "mandatory": m.mandatory,
        "urn": m.urn,
        "version": m.version,
        "lwm2mversion": m.lwm2m_version,
        "description": m.description,
        "description2": m.description2,
        "resourcedefs": m.resources.iter().map(resource_json).collect::<Vec<_>>(),
    })
}

fn resource_json(r: &ResourceModel) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "operations": r.operations.as_str(),
        "instancetype": instance_type(r.multiple),
        "mandatory": r.mandatory,
        "type": r.ty.as_str(),
        "range": r.range,
        "units": r.units,
        "description": r.description,
    })
}

fn instance_type(multiple: bool) -> &'static str {
    if multiple {
        "multiple"
    } else {
        "single"
    }
}

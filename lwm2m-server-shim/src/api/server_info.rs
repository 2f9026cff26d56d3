//! Leshan's server resource (its `ServerServlet`): `GET /api/server/security`, the credentials a
//! client must trust to reach the server over coaps, and `GET /api/server/endpoint`, the ports of
//! its CoAP and CoAPS listeners. A client set-up script written for Leshan reads both to build a
//! device's Security object (LwM2M core TS 1.1 section E.1: server URI and server public key).

use std::net::SocketAddr;

use hyper::{Response, StatusCode};
use lwm2m_client::codec::{base64, hex};
use openssl::bn::{BigNum, BigNumContext};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::x509::X509;
use serde_json::{json, Map, Value};

use crate::api::http_server::{json, Body};

/// What the server resource reports: fixed once the listeners are bound.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    coap: Option<SocketAddr>,
    coaps: Option<SocketAddr>,
    security: Value,
}

impl ServerInfo {
    /// The bound plain CoAP and coaps addresses and, in certificate mode, the server
    /// certificate (PEM) coaps clients are shown.
    pub fn new(
        coap: Option<SocketAddr>,
        coaps: Option<SocketAddr>,
        certificate_pem: Option<&[u8]>,
    ) -> Result<Self, ErrorStack> {
        let mut security = Map::new();
        if let Some(pem) = certificate_pem {
            security.insert("certificate".into(), certificate_json(pem)?);
        }
        Ok(Self {
            coap,
            coaps,
            security: Value::Object(security),
        })
    }

    /// `GET /api/server/security`: `{"certificate":{"pubkey":{..},"b64Der":..}}` in certificate
    /// mode; `{}` when the shim authenticates with pre-shared keys only (Leshan then has
    /// nothing to show either).
    pub fn security(&self) -> Response<Body> {
        json(StatusCode::OK, &self.security)
    }

    /// `GET /api/server/endpoint`: `{"securedEndpointPort":"5684","unsecuredEndpointPort":"5683"}`,
    /// the ports as strings as Leshan 2.0.0-M4 writes them; a listener the shim does not run
    /// (plain CoAP is off by default) is left out.
    pub fn endpoint(&self) -> Response<Body> {
        let mut m = Map::new();
        if let Some(a) = self.coaps {
            m.insert("securedEndpointPort".into(), a.port().to_string().into());
        }
        if let Some(a) = self.coap {
            m.insert("unsecuredEndpointPort".into(), a.port().to_string().into());
        }
        json(StatusCode::OK, &Value::Object(m))
    }
}

/// The name Java gives the P-256 curve parameters, which Leshan prints in `params`.
const P256_PARAMS: &str = "secp256r1 [NIST P-256,X9.62 prime256v1] (1.2.840.10045.3.1.7)";

/// A certificate as Leshan's `X509CertificateSerDes` shows it: its DER in base64 and its public
/// key (`PublicKeySerDes`: the EC point's coordinates in hex, the curve, the
/// SubjectPublicKeyInfo DER in base64).
pub fn certificate_json(pem: &[u8]) -> Result<Value, ErrorStack> {
    let cert = X509::from_pem(pem)?;
    let key = cert.public_key()?;
    let ec = key.ec_key()?;
    let group = ec.group();
    let mut ctx = BigNumContext::new()?;
    let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
    ec.public_key()
        .affine_coordinates(group, &mut x, &mut y, &mut ctx)?;
    let width = i32::try_from(group.degree().div_ceil(8)).unwrap_or(32);
    let params = match group.curve_name() {
        Some(Nid::X9_62_PRIME256V1) => P256_PARAMS.to_string(),
        Some(nid) => nid.short_name().unwrap_or("unknown curve").to_string(),
        None => "explicit curve parameters".to_string(),
    };
    let b64 = |d: &[u8]| base64::encode(d, base64::Alphabet::Standard);
    Ok(json!({
        "pubkey": {
            "x": hex::encode(&x.to_vec_padded(width)?),
            "y": hex::encode(&y.to_vec_padded(width)?),
            "params": params,
            "b64Der": b64(&key.public_key_to_der()?),
        },
        "b64Der": b64(&cert.to_der()?),
    }))
}

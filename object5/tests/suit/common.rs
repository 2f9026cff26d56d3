//! Shared helpers for the SUIT tests: vector files, keys, and the INDEX.md table.
#![allow(dead_code)]

use p256::pkcs8::DecodePublicKey;
use std::path::PathBuf;

pub fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/suit"
    ))
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// SEC1 uncompressed bytes of a P-256 SPKI PEM public key.
pub fn p256_public_pem(pem: &str) -> Vec<u8> {
    let key = p256::PublicKey::from_public_key_pem(pem).expect("public key PEM");
    key.to_sec1_bytes().to_vec()
}

pub fn key(name: &str) -> Vec<u8> {
    match name {
        "K1" => p256_public_pem(&String::from_utf8(read("keys/K1_spec_p256_public.pem")).unwrap()),
        "K2" => {
            p256_public_pem(&String::from_utf8(read("keys/K2_encdep_p256_public.pem")).unwrap())
        }
        "K3" => {
            let raw = read("keys/K3_hmac256.key");
            // Stored as the raw 32 bytes (possibly with a trailing newline).
            let trimmed: Vec<u8> = raw.into_iter().filter(|b| *b != b'\n').collect();
            trimmed
        }
        other => panic!("unknown key {other}"),
    }
}

/// One row of INDEX.md.
#[derive(Debug)]
pub struct Row {
    pub file: String,
    pub auth: String,
    pub key: String,
    pub seq: u64,
    pub valid: bool,
}

pub fn index() -> Vec<Row> {
    let text = String::from_utf8(read("INDEX.md")).unwrap();
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | file | exercises | authentication | key | seq | expected |
        if cells.len() < 7 || !cells[1].ends_with(".cbor") {
            continue;
        }
        rows.push(Row {
            file: cells[1].to_string(),
            auth: cells[3].to_string(),
            key: cells[4].to_string(),
            seq: cells[5].parse().unwrap(),
            valid: cells[6].starts_with("VALID"),
        });
    }
    assert!(rows.len() >= 28, "INDEX.md table not found");
    rows
}

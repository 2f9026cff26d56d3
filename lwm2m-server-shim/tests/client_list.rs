//! `GET /api/clients` with thousands of registrations: the body is streamed in chunks from the
//! store (no response built whole) and still is the Leshan JSON array, ordered by endpoint.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Harness;
use lwm2m_server_shim::api::registration_json::registration_json;
use serde_json::Value;

const CLIENTS: usize = 2500;

/// Reads one HTTP/1.1 response: (lower-cased header lines, body chunk sizes, body).
fn get_raw(addr: std::net::SocketAddr, path: &str) -> (Vec<String>, Vec<usize>, Vec<u8>) {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    (&s).write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .expect("request");
    let mut r = BufReader::new(s);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("head");
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        headers.push(line);
    }
    let mut chunks = Vec::new();
    let mut body = Vec::new();
    if headers.iter().any(|h| h == "transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            if n == 0 {
                break;
            }
            chunks.push(n);
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).expect("body");
        chunks.push(body.len());
    }
    (headers, chunks, body)
}

#[test]
fn the_client_list_is_streamed_in_chunks_in_endpoint_order() {
    let h = Harness::start("client-list", |_| {});
    let addr: std::net::SocketAddr = "127.0.0.1:5999".parse().expect("addr");
    // Registered in reverse order: the listing sorts by endpoint name.
    for i in (0..CLIENTS).rev() {
        h.register_direct(&format!("dev-{i:05}"), addr, "</1/0>,</3/0>,</5/0>");
    }
    let (headers, chunks, body) = get_raw(h.running().http_addr, "/api/clients");
    assert!(headers[0].starts_with("http/1.1 200"), "{headers:?}");
    assert!(
        headers.iter().any(|h| h == "transfer-encoding: chunked"),
        "{headers:?}"
    );
    assert!(
        !headers.iter().any(|h| h.starts_with("content-length")),
        "{headers:?}"
    );
    assert!(
        headers
            .iter()
            .any(|h| h == "content-type: application/json"),
        "{headers:?}"
    );
    // About a megabyte of JSON, never in one piece.
    let largest = chunks.iter().max().copied().unwrap_or(0);
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    assert!(largest < 256 * 1024, "largest chunk {largest} bytes");
    let listed: Value = serde_json::from_slice(&body).expect("JSON array");
    let expected: Vec<Value> = h
        .running()
        .shim
        .store
        .all()
        .iter()
        .map(registration_json)
        .collect();
    assert_eq!(listed, Value::Array(expected));
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["endpoint"].as_str())
        .collect();
    assert_eq!(names.len(), CLIENTS);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "ordered by endpoint");

    // No registration and exactly one page's worth list as well-formed arrays too.
    let empty = Harness::start("client-list-empty", |_| {});
    let (_, _, body) = get_raw(empty.running().http_addr, "/api/clients");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).ok(),
        Some(Value::Array(vec![]))
    );
    for i in 0..64 {
        empty.register_direct(&format!("p-{i:02}"), addr, "</3/0>");
    }
    let (_, _, body) = get_raw(empty.running().http_addr, "/api/clients");
    let listed: Value = serde_json::from_slice(&body).expect("JSON array");
    assert_eq!(listed.as_array().map(Vec::len), Some(64));
}

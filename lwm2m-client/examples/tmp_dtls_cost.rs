use lwm2m_client::host::dtls::*;
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let psk = Psk {
        identity: b"dev".to_vec(),
        key: b"0123456789abcdef".to_vec(),
    };
    let k = psk.key.clone();
    let sctx = DtlsContext::psk_server(Arc::new(move |_| Some(k.clone()))).unwrap();
    let mut c = DtlsSession::client(&DtlsContext::psk_client(psk).unwrap(), None).unwrap();
    let mut s = DtlsSession::server(&sctx, "127.0.0.1:1".parse().unwrap()).unwrap();
    for _ in 0..10 {
        while let Some(d) = c.poll_transmit() {
            s.handle_datagram(&d).unwrap();
        }
        while let Some(d) = s.poll_transmit() {
            c.handle_datagram(&d).unwrap();
        }
    }
    assert!(c.is_established() && s.is_established());
    let req = vec![0x41u8; 40];
    let resp = vec![0x42u8; 1040];
    let n = 20000;
    let t = Instant::now();
    for _ in 0..n {
        c.send(&req).unwrap();
        let d = c.poll_transmit().unwrap();
        let got = s.handle_datagram(&d).unwrap();
        assert_eq!(got.len(), 1);
        s.send(&resp).unwrap();
        let d = s.poll_transmit().unwrap();
        let got = c.handle_datagram(&d).unwrap();
        assert_eq!(got.len(), 1);
    }
    println!(
        "{:.2} us per block (4 record ops)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        s.send(&resp).unwrap();
        let _ = s.poll_transmit().unwrap();
    }
    println!(
        "{:.2} us per 1 KiB seal",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let cipher = openssl::symm::Cipher::aes_128_ccm();
    let key = [7u8; 16];
    let iv = [1u8; 12];
    let mut tag = [0u8; 16];
    let t = Instant::now();
    for _ in 0..n {
        let _ = openssl::symm::encrypt_aead(cipher, &key, Some(&iv), &[0u8; 13], &resp, &mut tag)
            .unwrap();
    }
    println!(
        "{:.2} us per raw EVP aes-128-ccm 1 KiB (encrypt_aead)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

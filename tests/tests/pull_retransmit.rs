//! `--pull-max-retransmit`: a device pulling from a host that never answers sends its first
//! request and exactly MAX_RETRANSMIT retransmissions (RFC 7252 §4.2), with Block2 and with
//! Q-Block2 (whose first request is Confirmable, RFC 9177 §4.4), then reports Update Result 4
//! (connection lost) and keeps its firmware.

use std::net::UdpSocket;
use std::time::Duration;

use lwm2m_client::sim::InThreadDevice;
use tests::e2e::Harness;

const IDLE: i64 = 0;
const T: Duration = Duration::from_secs(60);

/// A UDP socket on loopback that receives and never answers.
fn black_hole() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// Datagrams waiting on `s`.
fn drain(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while s.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn a_silent_host_gets_the_configured_number_of_retransmissions() {
    let h = Harness::start("pull-retx");
    for (ep, qblock, max_retransmit) in [
        ("retx-block2", false, 2u8),
        ("retx-qblock2", true, 2),
        ("retx-default", false, 4),
    ] {
        let mut opts = h.device_options(ep);
        opts.pull_qblock = qblock;
        opts.pull_ack_timeout_ms = 100;
        opts.pull_max_retransmit = max_retransmit;
        let _dev = InThreadDevice::start(opts);
        h.wait_until("registration", T, || h.registered(ep));
        let hole = black_hole();
        let addr = hole.local_addr().expect("addr");
        h.write_uri(ep, &format!("coap://{addr}/fw/fw.suit"));
        h.wait_state(ep, (IDLE, 4), T);
        assert_eq!(
            drain(&hole),
            1 + usize::from(max_retransmit),
            "{ep}: datagrams sent to a host that never answers"
        );
        assert_eq!(h.read_string(ep, "/3/0/3").as_deref(), Some("1.0.0"));
    }
}

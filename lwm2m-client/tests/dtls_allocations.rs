//! The per-block path of an established DTLS session allocates nothing: a coaps pull moves a
//! request record and a 1 KiB response record per block, and a fresh buffer for each (larger
//! than glibc's per-thread cache takes) was a measured part of what DTLS added to a pull.
//!
//! Counts the Rust allocations of both sides' record work (encrypt, transmit, recycle,
//! decrypt into reused plaintext buffers) after a warm-up. OpenSSL's own allocations go
//! through its allocator, not Rust's, and are not counted. Runs without the libtest harness,
//! so no other thread allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use lwm2m_client::host::dtls::{DtlsContext, DtlsSession, Plaintexts, Psk};

struct Counting;
static ON: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.load(SeqCst) {
            ALLOCATIONS.fetch_add(1, SeqCst);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if ON.load(SeqCst) {
            ALLOCATIONS.fetch_add(1, SeqCst);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Moves every queued datagram of `from` into `to`, as the sockets would, handing each sent
/// buffer back; returns how many application datagrams `to` decrypted.
fn carry(from: &mut DtlsSession, to: &mut DtlsSession, plain: &mut Plaintexts) -> usize {
    let mut delivered = 0;
    while let Some(d) = from.poll_transmit() {
        to.handle_datagram_into(&d, plain).expect("record accepted");
        delivered += plain.len();
        from.recycle(d);
    }
    delivered
}

/// One block's exchange: a small request one way, a 1 KiB response the other.
fn block(
    client: &mut DtlsSession,
    server: &mut DtlsSession,
    plain: (&mut Plaintexts, &mut Plaintexts),
    request: &[u8],
    response: &[u8],
) {
    client.send(request).expect("request sealed");
    assert_eq!(carry(client, server, plain.0), 1);
    assert_eq!(plain.0.get(0), Some(request));
    server.send(response).expect("response sealed");
    assert_eq!(carry(server, client, plain.1), 1);
    assert_eq!(plain.1.get(0), Some(response));
}

fn main() {
    let psk = Psk {
        identity: b"dev".to_vec(),
        key: b"0123456789abcdef".to_vec(),
    };
    let key = psk.key.clone();
    let sctx = DtlsContext::psk_server(Arc::new(move |_| Some(key.clone()))).expect("server");
    let cctx = DtlsContext::psk_client(psk).expect("client");
    let mut client = DtlsSession::client(&cctx, None).expect("client session");
    let mut server =
        DtlsSession::server(&sctx, "127.0.0.1:5684".parse().expect("addr")).expect("session");
    let (mut at_server, mut at_client) = (Plaintexts::default(), Plaintexts::default());
    for _ in 0..16 {
        carry(&mut client, &mut server, &mut at_server);
        carry(&mut server, &mut client, &mut at_client);
    }
    assert!(client.is_established() && server.is_established());
    let request = [0x42u8; 24];
    let response = [0x5au8; 1040];
    // Warm-up: the buffers come into being.
    for _ in 0..4 {
        let plain = (&mut at_server, &mut at_client);
        block(&mut client, &mut server, plain, &request, &response);
    }
    ON.store(true, SeqCst);
    for _ in 0..256 {
        let plain = (&mut at_server, &mut at_client);
        block(&mut client, &mut server, plain, &request, &response);
    }
    ON.store(false, SeqCst);
    let n = ALLOCATIONS.load(SeqCst);
    assert_eq!(n, 0, "{n} allocations for 256 blocks");
    println!("dtls_allocations: 256 blocks, no allocation");
}

//! A 256 KiB package pull over CoAP over TCP (RFC 8323, BERT blocks, 4 requests in flight) and
//! over TLS, next to an HTTP pull of the same package from the same shim in the same run, on
//! loopback; libcoap's coap-client fetching it over coap+tcp from our host is printed too (its
//! time includes starting the process).
//! Run: `cargo bench -p tests --bench tcp_pull`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lwm2m_client::host::http_pull::{pull_async, HttpLimits};
use lwm2m_client::pull::MemSink;
use lwm2m_server_shim::app::{self, ShimConfig};
use tests::coap_tcp::timed_tcp_pull;
use tests::e2e::temp_dir;

const RUNS: usize = 21;
const LEN: usize = 256 * 1024;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rt = tests::runtime();
    let dir = temp_dir("tcp-pull-bench");
    let any = "127.0.0.1:0".parse().ok();
    let running = rt
        .block_on(app::start(ShimConfig {
            coap_addr: any,
            coaps_addr: None,
            coap_tcp_addr: any,
            coaps_tcp_addr: any,
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            package_dir: dir.join("packages"),
            ..ShimConfig::default()
        }))
        .expect("shim starts");
    let body: Vec<u8> = (0..LEN)
        .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
        .collect();
    running.shim.packages.store("p.bin", &body).expect("store");
    let tcp_url = running.coap_tcp.as_ref().expect("coap+tcp").url("p.bin");
    let tls_url = running.coaps_tcp.as_ref().expect("coaps+tcp").url("p.bin");
    let http_url = format!("http://{}/fw/p.bin", running.http_addr);
    let ca = running.tls_cert_pem.clone();
    let limits = HttpLimits {
        stall: Duration::from_secs(10),
        max_size: 1 << 20,
    };
    let (mut tcp, mut tls, mut http, mut peer) = (vec![], vec![], vec![], vec![]);
    let mut ratios = Vec::new();
    for _ in 0..RUNS {
        let (got, t) = rt
            .block_on(timed_tcp_pull(&tcp_url, None))
            .expect("coap+tcp");
        assert!(got == body);
        tcp.push(t);
        let (got, t) = rt
            .block_on(timed_tcp_pull(&tls_url, ca.as_deref()))
            .expect("coaps+tcp");
        assert!(got == body);
        tls.push(t);
        let mut sink = MemSink::default();
        let t0 = Instant::now();
        rt.block_on(pull_async(&http_url, None, &limits, &mut sink))
            .expect("http");
        let t_http = t0.elapsed();
        assert!(sink.data == body);
        http.push(t_http);
        ratios.push(ms(*tcp.last().unwrap_or(&t_http)) / ms(t_http));

        let out = dir.join("peer.bin");
        let t0 = Instant::now();
        let status = Command::new("coap-client-openssl")
            .args(["-m", "get", "-o"])
            .arg(&out)
            .arg(&tcp_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("coap-client-openssl (libcoap3-bin)");
        peer.push(t0.elapsed());
        assert!(status.success() && std::fs::read(&out).expect("file") == body);
    }
    ratios.sort_by(f64::total_cmp);
    println!("256 KiB pull on loopback, median of {RUNS} runs:");
    println!("  coap+tcp (ours, BERT)     {:8.2} ms", ms(median(tcp)));
    println!("  coaps+tcp (ours, TLS)     {:8.2} ms", ms(median(tls)));
    println!("  http (ours)               {:8.2} ms", ms(median(http)));
    println!(
        "  coap-client over coap+tcp {:8.2} ms (process start included)",
        ms(median(peer))
    );
    println!(
        "  coap+tcp / http: median per-run ratio {:.2} (runs {:.2}-{:.2}; target <= 2)",
        ratios[RUNS / 2],
        ratios[0],
        ratios[RUNS - 1]
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

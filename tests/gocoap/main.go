// gocoap-peer: plgd's go-coap (with pion's DTLS) as a package host and as a pulling client, so
// our device's pulls and our shim's package host meet a CoAP, RFC 9177 Q-Block and DTLS stack
// we did not write (tests/tests/gocoap_peer.rs).
//
//	gocoap-peer serve -net udp|dtls|tcp|tls -file F [-path /fw] [-qblock] [-psk-id ID -psk-key HEX]
//	    [-cert PEM -key PEM [-ca PEM]]
//	    prints "listening HOST:PORT" once bound, then logs each request on stderr; a PUT
//	    (Block1 or Q-Block1) replaces what GET serves
//	gocoap-peer get -uri coap://..|coaps://..|coap+tcp://..|coaps+tcp://.. -out F [-qblock]
//	    [-psk-id -psk-key [-cid]] [-ca PEM]
//	    prints "got N bytes, Q-Block responses M, Block2 responses K" and exits 0
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/tcp"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

type pskFlags struct {
	id, key *string
}

func (p pskFlags) keyBytes() []byte {
	k, err := hex.DecodeString(*p.key)
	if err != nil || len(k) == 0 {
		log.Fatalf("-psk-key: want hex bytes: %v", err)
	}
	return k
}

func qmode(on bool) options.QBlockwiseOpt {
	if on {
		return options.WithQBlockwise(options.QBlockwiseAuto)
	}
	return options.WithQBlockwise(options.QBlockwiseDisabled)
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	network := fs.String("net", "udp", "udp, dtls, tcp or tls")
	certFile := fs.String("cert", "", "certificate chain, PEM (tls; dtls in certificate mode)")
	keyFile := fs.String("key", "", "private key, PEM (tls, dtls)")
	ca := fs.String("ca", "", "CA certificates of the clients, PEM (dtls with -cert)")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	file := fs.String("file", "", "the package to serve")
	path := fs.String("path", "/fw", "its path")
	q := fs.Bool("qblock", false, "answer Q-Block2 (RFC 9177) requests")
	psk := pskFlags{fs.String("psk-id", "", "PSK identity (dtls)"), fs.String("psk-key", "", "PSK, hex (dtls)")}
	_ = fs.Parse(args)
	body, err := os.ReadFile(*file)
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	router := mux.NewRouter()
	err = router.Handle(*path, mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		log.Printf("%v %v block2=%v qblock2=%v", r.Code(), *path, r.HasOption(message.Block2), r.HasOption(message.QBlock2))
		mu.Lock()
		defer mu.Unlock()
		switch r.Code() {
		case codes.GET:
			sum := sha256.Sum256(body)
			_ = w.SetResponse(codes.Content, message.AppOctets, bytes.NewReader(body),
				message.Option{ID: message.ETag, Value: sum[:8]})
		case codes.PUT:
			// A pushed body (Q-Block1 or Block1, reassembled by go-coap) replaces the package.
			put, err := r.ReadBody()
			if err != nil {
				_ = w.SetResponse(codes.BadRequest, message.TextPlain, nil)
				return
			}
			body = put
			log.Printf("PUT %v: %d bytes", *path, len(body))
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		default:
			_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		}
	}))
	if err != nil {
		log.Fatal(err)
	}
	bw := options.WithBlockwise(true, blockwise.SZX1024, time.Minute)
	switch *network {
	case "udp":
		l, err := coapNet.NewListenUDP("udp", *addr)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("listening %v\n", l.LocalAddr())
		log.Fatal(udp.NewServer(options.WithMux(router), bw, qmode(*q)).Serve(l))
	case "dtls":
		var dtlsOpts []piondtls.ServerOption
		if *certFile != "" {
			// Certificate mode, as LwM2M mandates it: ECDHE_ECDSA with CCM_8, the client's
			// certificate required and checked against -ca.
			cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				log.Fatal(err)
			}
			dtlsOpts = append(dtlsOpts,
				piondtls.WithCertificates(cert),
				piondtls.WithClientAuth(piondtls.RequireAndVerifyClientCert),
				piondtls.WithClientCAs(roots(*ca)),
				piondtls.WithCipherSuites(piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8))
		} else {
			key := psk.keyBytes()
			dtlsOpts = append(dtlsOpts,
				piondtls.WithPSK(func(id []byte) ([]byte, error) {
					if string(id) != *psk.id {
						return nil, fmt.Errorf("unknown PSK identity %q", id)
					}
					return key, nil
				}),
				piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8))
		}
		l, err := coapNet.NewDTLSListener("udp", *addr, coapNet.NewDTLSServerOptions(dtlsOpts...))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("listening %v\n", l.Addr())
		log.Fatal(dtls.NewServer(options.WithMux(router), bw, qmode(*q)).Serve(l))
	case "tcp":
		l, err := coapNet.NewTCPListener("tcp", *addr)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("listening %v\n", l.Addr())
		log.Fatal(tcp.NewServer(options.WithMux(router), bw).Serve(l))
	case "tls":
		// Go's own TLS (crypto/tls), not OpenSSL.
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		l, err := coapNet.NewTLSListener("tcp", *addr, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("listening %v\n", l.Addr())
		log.Fatal(tcp.NewServer(options.WithMux(router), bw).Serve(l))
	default:
		log.Fatalf("-net %q: want udp, dtls, tcp or tls", *network)
	}
}

// roots reads the CA certificates of a PEM file.
func roots(file string) *x509.CertPool {
	pem, err := os.ReadFile(file)
	if err != nil {
		log.Fatalf("-ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		log.Fatalf("-ca %v: no certificate", file)
	}
	return pool
}

// content returns a function taking a GET's outcome to its body; anything but 2.05 Content
// ends the program.
func content(uri string) func(*pool.Message, error) []byte {
	return func(resp *pool.Message, err error) []byte {
		if err != nil {
			log.Fatalf("GET %v: %v", uri, err)
		}
		if resp.Code() != codes.Content {
			log.Fatalf("GET %v: %v", uri, resp.Code())
		}
		body, err := resp.ReadBody()
		if err != nil {
			log.Fatal(err)
		}
		return body
	}
}

// counter counts the responses that carried Q-Block2 and Block2.
type counter struct{ q, b atomic.Int64 }

func (c *counter) see(m *pool.Message) {
	if m.HasOption(message.QBlock2) {
		c.q.Add(1)
	}
	if m.HasOption(message.Block2) {
		c.b.Add(1)
	}
}

func get(args []string) {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	raw := fs.String("uri", "", "the package's URI")
	out := fs.String("out", "", "where to write it")
	q := fs.Bool("qblock", false, "ask with Q-Block2 (RFC 9177)")
	timeout := fs.Duration("timeout", time.Minute, "give up after")
	ca := fs.String("ca", "", "CA certificates to trust, PEM (coaps+tcp)")
	psk := pskFlags{fs.String("psk-id", "", "PSK identity (coaps)"), fs.String("psk-key", "", "PSK, hex (coaps)")}
	cid := fs.Bool("cid", false, "offer an 8-byte DTLS Connection ID (RFC 9146), as Zephyr and other mbedTLS devices do")
	_ = fs.Parse(args)
	u, err := url.Parse(*raw)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var seen counter
	bw := options.WithBlockwise(true, blockwise.SZX1024, *timeout)
	var body []byte
	switch u.Scheme {
	case "coap", "coaps":
		monitor := options.WithRequestMonitor(func(_ *udpClient.Conn, m *pool.Message) (bool, error) {
			seen.see(m)
			return false, nil
		})
		var cc *udpClient.Conn
		if u.Scheme == "coap" {
			cc, err = udp.Dial(u.Host, options.WithContext(ctx), bw, qmode(*q), monitor)
		} else {
			key := psk.keyBytes()
			dtlsOpts := []piondtls.ClientOption{
				piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
				piondtls.WithPSKIdentityHint([]byte(*psk.id)),
				piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
			}
			if *cid {
				dtlsOpts = append(dtlsOpts, piondtls.WithConnectionIDGenerator(piondtls.RandomCIDGenerator(8)))
			}
			cc, err = dtls.Dial(u.Host, dtls.NewDTLSClientOptions(dtlsOpts...),
				options.WithContext(ctx), bw, qmode(*q), monitor)
		}
		if err != nil {
			log.Fatalf("dial %v: %v", u.Host, err)
		}
		defer cc.Close()
		req, err := cc.NewGetRequest(ctx, u.Path)
		if err != nil {
			log.Fatal(err)
		}
		if *q {
			// NON, as the example client of go-coap's Q-Block does: each block as a NON
			// response, not as a CON acknowledged one by one.
			req.SetType(message.NonConfirmable)
		}
		body = content(*raw)(cc.Do(req))
	case "coap+tcp", "coaps+tcp":
		// Wait for the host's CSM (RFC 8323 §5.3): go-coap uses Block2 only once the peer's
		// CSM offered Block-Wise-Transfer, and a response that comes before is dropped.
		opts := []tcp.Option{options.WithContext(ctx), bw, options.WithCSMExchangeTimeout(10 * time.Second)}
		if u.Scheme == "coaps+tcp" {
			opts = append(opts, options.WithTLS(&tls.Config{RootCAs: roots(*ca), ServerName: u.Hostname()}))
		}
		cc, err := tcp.Dial(u.Host, opts...)
		if err != nil {
			log.Fatalf("dial %v: %v", u.Host, err)
		}
		defer cc.Close()
		body = content(*raw)(cc.Get(ctx, u.Path))
	default:
		log.Fatalf("-uri: scheme %q: want coap, coaps, coap+tcp or coaps+tcp", u.Scheme)
	}
	if err := os.WriteFile(*out, body, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("got %d bytes, Q-Block responses %d, Block2 responses %d\n", len(body), seen.q.Load(), seen.b.Load())
}

func main() {
	log.SetFlags(log.Lmicroseconds)
	if len(os.Args) < 2 {
		log.Fatal("usage: gocoap-peer serve|get ...")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "get":
		get(os.Args[2:])
	default:
		log.Fatalf("unknown command %q: want serve or get", os.Args[1])
	}
}

// A Leshan LwM2M bootstrap server for the interop tests (tests/tests/leshan_bootstrap.rs):
// Eclipse Leshan's bootstrap server library (LeshanBootstrapServerBuilder with its in-memory
// config store, from the leshan-server-demo jar pinned in tests/leshan/pom.xml). The bootstrap
// server demo is not on the registry the project reaches; this file only wires the library up
// as that demo does. Everything on the wire (Bootstrap-Request handling, Bootstrap-Delete,
// Bootstrap-Write of /0 and /1 in TLV, Bootstrap-Finish, the order of them) is Leshan's code.
//
// Usage: java -cp SERVER_DEMO_JAR:CLASSES LeshanTestBootstrap PORT ENDPOINT SERVER_URI
//            [PSK_IDENTITY PSK_HEX [BS_PSK_IDENTITY BS_PSK_HEX]
//             | x509 CERT_DER KEY_PKCS8_DER SERVER_CERT_DER]
// It deletes /0 and /1 (as Leshan's bootstrap demo does by default), then provisions ENDPOINT
// with one management server account, Short Server ID 123, lifetime
// 300 s, binding U, at SERVER_URI: NoSec, PSK with the identity and key given, or X.509 with
// the device's certificate and key and the server's certificate (Security resources 3, 5, 4). Its own
// account (Security instance 0, bootstrap server) is written too, as Leshan's demo does. With
// BS_PSK_IDENTITY and BS_PSK_HEX it listens on PORT over DTLS (coaps://) instead, and lets in
// ENDPOINT with that PSK only (Leshan's BootstrapSecurityStore). It prints "ready PORT" once it listens, then one line per request it sends and per
// answer ("request ...", "response CODE ...", "failure ..."), and "bootstrap end ENDPOINT" or
// "bootstrap failed ENDPOINT CAUSE" when a session ends. It runs until its standard input
// closes; see the end of main for the one command it reads there.

import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Collections;
import java.util.Iterator;

import org.eclipse.leshan.core.CertificateUsage;
import org.eclipse.leshan.core.MatchingType;
import org.eclipse.leshan.core.SecurityMode;
import org.eclipse.leshan.core.request.BindingMode;
import org.eclipse.leshan.core.request.BootstrapDownlinkRequest;
import org.eclipse.leshan.core.request.BootstrapReadRequest;
import org.eclipse.leshan.core.response.BootstrapReadResponse;
import org.eclipse.leshan.core.response.LwM2mResponse;
import org.eclipse.leshan.core.util.datatype.ULong;
import org.eclipse.leshan.server.bootstrap.BootstrapConfig;
import org.eclipse.leshan.server.bootstrap.BootstrapFailureCause;
import org.eclipse.leshan.server.bootstrap.BootstrapSession;
import org.eclipse.leshan.server.bootstrap.BootstrapConfigStoreTaskProvider;
import org.eclipse.leshan.server.bootstrap.BootstrapSessionAdapter;
import org.eclipse.leshan.server.bootstrap.BootstrapTaskProvider;
import org.eclipse.leshan.server.bootstrap.DefaultBootstrapSessionManager;
import org.eclipse.leshan.server.bootstrap.InMemoryBootstrapConfigStore;
import org.eclipse.leshan.server.californium.bootstrap.LeshanBootstrapServer;
import org.eclipse.leshan.server.californium.bootstrap.LeshanBootstrapServerBuilder;
import org.eclipse.leshan.server.model.StandardBootstrapModelProvider;
import org.eclipse.leshan.server.security.BootstrapSecurityStore;
import org.eclipse.leshan.server.security.SecurityChecker;
import org.eclipse.leshan.server.security.SecurityInfo;

public class LeshanTestBootstrap {
    private static final int SHORT_SERVER_ID = 123;

    public static void main(String[] args) throws Exception {
        boolean x509 = args.length == 7 && "x509".equals(args[3]);
        if (args.length != 3 && args.length != 5 && args.length != 7) {
            System.err.println("usage: LeshanTestBootstrap PORT ENDPOINT SERVER_URI "
                    + "[PSK_IDENTITY PSK_HEX [BS_PSK_IDENTITY BS_PSK_HEX] "
                    + "| x509 CERT_DER KEY_PKCS8_DER SERVER_CERT_DER]");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        String endpoint = args[1];
        String serverUri = args[2];

        BootstrapConfig config = new BootstrapConfig();
        // What Leshan's bootstrap demo deletes before writing a configuration.
        config.toDelete = java.util.Arrays.asList("/0", "/1");
        // With LESHAN_AUTO_ID=1 Leshan picks the Security instance ids itself: it reads the
        // client's /0 with Bootstrap-Discover first and keeps clear of the bootstrap account's.
        config.autoIdForSecurityObject = "1".equals(System.getenv("LESHAN_AUTO_ID"));
        boolean secure = args.length == 7 && !x509;
        String bsUri = (secure ? "coaps" : "coap") + "://127.0.0.1:" + port;
        config.security.put(0, account(bsUri, true, secure ? args[5] : null,
                secure ? args[6] : null));
        // With LESHAN_BS_ACCOUNT_TIMEOUT=N its own account gets Bootstrap-Server Account
        // Timeout N (resource 12): the client is to purge that account N s after bootstrap.
        String timeout = System.getenv("LESHAN_BS_ACCOUNT_TIMEOUT");
        if (timeout != null) {
            config.security.get(0).bootstrapServerAccountTimeout = Integer.parseInt(timeout);
        }
        BootstrapConfig.ServerSecurity dm = account(serverUri, false,
                args.length >= 5 && !x509 ? args[3] : null,
                args.length >= 5 && !x509 ? args[4] : null);
        if (x509) {
            dm.securityMode = SecurityMode.X509;
            dm.publicKeyOrId = Files.readAllBytes(Paths.get(args[4]));
            dm.secretKey = Files.readAllBytes(Paths.get(args[5]));
            dm.serverPublicKey = Files.readAllBytes(Paths.get(args[6]));
            // With LESHAN_CERT_USAGE=N Leshan also writes Certificate Usage N (resource 15 of
            // Security 1.1), as its bootstrap demo does when one is chosen.
            String usage = System.getenv("LESHAN_CERT_USAGE");
            if (usage != null) {
                dm.certificateUsage = CertificateUsage.fromCode(Integer.parseInt(usage));
            }
            // With LESHAN_MATCHING_TYPE=N Leshan also writes Matching Type N (resource 13:
            // 1-3, resource 4 is a SHA-256, -384 or -512 hash of the certificate).
            String matching = System.getenv("LESHAN_MATCHING_TYPE");
            if (matching != null) {
                dm.matchingType = MatchingType.fromCode(Integer.parseInt(matching));
            }
        }
        // With LESHAN_CIPHER_SUITE=N (0x-prefixed hex or decimal) Leshan also writes DTLS/TLS
        // Ciphersuite N (resource 16 of Security 1.1), as its bootstrap demo does when one is
        // chosen: the suite the client is to propose.
        String suite = System.getenv("LESHAN_CIPHER_SUITE");
        if (suite != null) {
            dm.cipherSuite = ULong.valueOf(Long.decode(suite));
        }
        dm.serverId = SHORT_SERVER_ID;
        config.security.put(1, dm);

        BootstrapConfig.ServerConfig server = new BootstrapConfig.ServerConfig();
        server.shortId = SHORT_SERVER_ID;
        server.lifetime = 300;
        // LESHAN_BINDING: the Binding (resource 7) as an operator writes it, e.g. LwM2M 1.0's
        // "UQ" (UDP with Queue Mode); U otherwise.
        String binding = System.getenv("LESHAN_BINDING");
        server.binding = binding != null ? BindingMode.parse(binding)
                : java.util.EnumSet.of(BindingMode.U);
        // With LESHAN_SERVER_1_1=1 Leshan also writes what an operator may set of Server 1.1:
        // Disable Timeout (5), APN Link (10), Trigger (21), Preferred Transport (22) and Mute
        // Send (23).
        if ("1".equals(System.getenv("LESHAN_SERVER_1_1"))) {
            server.disableTimeout = 3600;
            server.apnLink = 0;
            server.trigger = false;
            server.preferredTransport = BindingMode.U;
            server.muteSend = true;
        }
        config.servers.put(0, server);

        // Leshan 2.0.0-M4's configuration check wants resource 4 to be a whole certificate in
        // X.509 mode whatever Matching Type says; with a hash the store skips that check and
        // Leshan writes the configuration as given.
        MatchingType matchingType = config.security.get(1).matchingType;
        boolean hashed = matchingType != null && matchingType != MatchingType.EXACT_MATCH;
        InMemoryBootstrapConfigStore store = !hashed
                ? new InMemoryBootstrapConfigStore()
                : new InMemoryBootstrapConfigStore() {
                    @Override
                    protected void checkConfig(String ep, BootstrapConfig c) {
                    }
                };
        store.add(endpoint, config);

        LeshanBootstrapServerBuilder builder = new LeshanBootstrapServerBuilder();
        BootstrapSecurityStore securityStore = null;
        if (secure) {
            String identity = args[5];
            SecurityInfo info = SecurityInfo.newPreSharedKeyInfo(endpoint, identity, hex(args[6]));
            builder.setLocalSecureAddress(new InetSocketAddress("127.0.0.1", port));
            builder.disableUnsecuredEndpoint();
            securityStore = new BootstrapSecurityStore() {
                @Override
                public Iterator<SecurityInfo> getAllByEndpoint(String ep) {
                    return endpoint.equals(ep) ? Collections.singletonList(info).iterator()
                            : Collections.<SecurityInfo>emptyIterator();
                }

                @Override
                public SecurityInfo getByIdentity(String id) {
                    return identity.equals(id) ? info : null;
                }
            };
            builder.setSecurityStore(securityStore);
        } else {
            builder.setLocalAddress(new InetSocketAddress("127.0.0.1", port));
            builder.disableSecuredEndpoint();
        }
        builder.setConfigStore(store);
        // LESHAN_BOOTSTRAP_READ: paths (comma-separated) Leshan reads with Bootstrap-Read after
        // its writes, before Bootstrap-Finish; otherwise the session manager Leshan's builder
        // makes by default, which this one is but for the reads.
        String reads = System.getenv("LESHAN_BOOTSTRAP_READ");
        if (reads != null) {
            BootstrapTaskProvider configured = new BootstrapConfigStoreTaskProvider(store);
            BootstrapTaskProvider withReads = (session, previous) -> {
                BootstrapTaskProvider.Tasks tasks = configured.getTasks(session, previous);
                if (tasks != null && tasks.last) {
                    tasks.requestsToSend = new java.util.ArrayList<>(tasks.requestsToSend);
                    for (String path : reads.split(",")) {
                        tasks.requestsToSend.add(new BootstrapReadRequest(path));
                    }
                }
                return tasks;
            };
            builder.setSessionManager(new DefaultBootstrapSessionManager(securityStore,
                    new SecurityChecker(), withReads, new StandardBootstrapModelProvider()));
        }
        LeshanBootstrapServer bsServer = builder.build();
        bsServer.addListener(new BootstrapSessionAdapter() {
            @Override
            public void sendRequest(BootstrapSession session,
                    BootstrapDownlinkRequest<? extends LwM2mResponse> request) {
                say("request " + request);
            }

            @Override
            public void onResponseSuccess(BootstrapSession session,
                    BootstrapDownlinkRequest<? extends LwM2mResponse> request,
                    LwM2mResponse response) {
                say("response " + response.getCode() + " to " + request.getPath());
                if (response instanceof BootstrapReadResponse) {
                    say("read " + request.getPath() + " "
                            + ((BootstrapReadResponse) response).getContent());
                }
            }

            @Override
            public void onResponseError(BootstrapSession session,
                    BootstrapDownlinkRequest<? extends LwM2mResponse> request,
                    LwM2mResponse response) {
                say("response " + response.getCode() + " to " + request.getPath() + " "
                        + response.getErrorMessage());
            }

            @Override
            public void onRequestFailure(BootstrapSession session,
                    BootstrapDownlinkRequest<? extends LwM2mResponse> request,
                    Throwable cause) {
                say("failure " + request.getPath() + " " + cause);
            }

            @Override
            public void end(BootstrapSession session) {
                say("bootstrap end " + session.getEndpoint());
            }

            @Override
            public void failed(BootstrapSession session, BootstrapFailureCause cause) {
                say("bootstrap failed " + session.getEndpoint() + " " + cause);
            }
        });
        bsServer.start();
        InetSocketAddress bound = secure ? bsServer.getSecuredAddress()
                : bsServer.getUnsecuredAddress();
        say("ready " + bound.getPort());

        // Runs until the test closes standard input. A line "psk IDENTITY HEX" gives the
        // management server account a new PSK from then on (a key rotation), answered with
        // "config psk IDENTITY".
        java.io.BufferedReader in = new java.io.BufferedReader(
                new java.io.InputStreamReader(System.in, "UTF-8"));
        for (String line; (line = in.readLine()) != null;) {
            String[] words = line.trim().split(" ");
            if (words.length == 3 && "psk".equals(words[0])) {
                config.security.put(1, account(serverUri, false, words[1], words[2]));
                config.security.get(1).serverId = SHORT_SERVER_ID;
                store.add(endpoint, config);
                say("config psk " + words[1]);
            }
        }
        bsServer.destroy();
    }

    // A Security instance for uri: PSK with identity and hex key, or NoSec when they are null.
    private static BootstrapConfig.ServerSecurity account(String uri, boolean bootstrap,
            String identity, String keyHex) throws Exception {
        BootstrapConfig.ServerSecurity a = new BootstrapConfig.ServerSecurity();
        a.uri = uri;
        a.bootstrapServer = bootstrap;
        if (identity != null) {
            a.securityMode = SecurityMode.PSK;
            a.publicKeyOrId = identity.getBytes("UTF-8");
            a.secretKey = hex(keyHex);
        } else {
            a.securityMode = SecurityMode.NO_SEC;
        }
        return a;
    }

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}

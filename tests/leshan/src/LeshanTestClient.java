// A Leshan LwM2M client for the interop tests (tests/tests/leshan_client.rs): Eclipse Leshan's
// client library (leshan-lwm2m-client with its Californium CoAP/CoAPS transport, pinned in
// tests/leshan/pom.xml) with Leshan's own Security, Server and Device objects. This file only
// wires them up, as Leshan's demo client does; the demo client itself is not on the registry the
// project reaches. Everything on the wire (registration, TLV / SenML / LwM2M JSON / LwM2M CBOR
// codecs, observe, DTLS) is Leshan's code.
//
// Usage: java -cp CLASSPATH LeshanTestClient ENDPOINT SERVER_URI LIFETIME_S
//            [PSK_IDENTITY PSK_HEX | x509 CERT_DER KEY_PKCS8_DER SERVER_CA_DER]
// In X.509 mode the Security object's Certificate Usage is 2 (trust anchor assertion): the
// server's certificate must chain to SERVER_CA_DER and name the server URI's host.
// With LESHAN_FIRMWARE=1 in the environment it also has a Firmware Update instance (/5/0, Leshan's
// generic SimpleInstanceEnabler) that prints "package N bytes sha256=HEX" for every package
// written to /5/0/0, and takes block-wise bodies up to 4 MiB. It registers, prints "started" on stdout, runs until its standard input closes and then
// deregisters (LwM2M 1.1 core TS section 6.2.3) before it exits.

import java.io.InputStream;
import java.net.InetAddress;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.EnumSet;
import java.util.List;

import org.eclipse.leshan.client.LeshanClient;
import org.eclipse.leshan.client.LeshanClientBuilder;
import org.eclipse.leshan.client.object.Device;
import org.eclipse.leshan.client.object.Security;
import org.eclipse.leshan.client.object.Server;
import org.eclipse.leshan.client.resource.LwM2mObjectEnabler;
import org.eclipse.leshan.client.resource.ObjectsInitializer;
import org.eclipse.leshan.client.resource.SimpleInstanceEnabler;
import org.eclipse.leshan.client.servers.LwM2mServer;
import org.eclipse.leshan.core.node.LwM2mResource;
import org.eclipse.leshan.core.response.WriteResponse;
import org.eclipse.californium.core.config.CoapConfig;
import org.eclipse.californium.elements.config.Configuration;
import org.eclipse.leshan.core.CertificateUsage;
import org.eclipse.leshan.core.LwM2mId;
import org.eclipse.leshan.client.engine.DefaultRegistrationEngineFactory;
import org.eclipse.leshan.core.model.LwM2mModelRepository;
import org.eclipse.leshan.core.model.ObjectLoader;
import org.eclipse.leshan.core.request.BindingMode;
import org.eclipse.leshan.transport.californium.client.endpoint.CaliforniumClientEndpointsProvider;
import org.eclipse.leshan.transport.californium.client.endpoint.coap.CoapClientProtocolProvider;
import org.eclipse.leshan.transport.californium.client.endpoint.coaps.CoapsClientProtocolProvider;

public class LeshanTestClient {
    private static final int SHORT_SERVER_ID = 123;

    public static void main(String[] args) throws Exception {
        boolean x509 = args.length == 7 && "x509".equals(args[3]);
        if (args.length != 3 && args.length != 5 && !x509) {
            System.err.println("usage: LeshanTestClient ENDPOINT SERVER_URI LIFETIME_S "
                    + "[PSK_IDENTITY PSK_HEX | x509 CERT_DER KEY_PKCS8_DER SERVER_CA_DER]");
            System.exit(2);
        }
        String endpoint = args[0];
        String uri = args[1];
        long lifetime = Long.parseLong(args[2]);

        ObjectsInitializer init = new ObjectsInitializer(
                new LwM2mModelRepository(ObjectLoader.loadAllDefault()).getLwM2mModel());
        if (x509) {
            init.setInstancesForObject(LwM2mId.SECURITY,
                    Security.x509(uri, SHORT_SERVER_ID, Files.readAllBytes(Paths.get(args[4])),
                            Files.readAllBytes(Paths.get(args[5])), Files.readAllBytes(Paths.get(args[6])),
                            CertificateUsage.TRUST_ANCHOR_ASSERTION.code));
        } else if (args.length == 5) {
            init.setInstancesForObject(LwM2mId.SECURITY,
                    Security.psk(uri, SHORT_SERVER_ID, args[3].getBytes("UTF-8"), hex(args[4])));
        } else {
            init.setInstancesForObject(LwM2mId.SECURITY, Security.noSec(uri, SHORT_SERVER_ID));
        }
        init.setInstancesForObject(LwM2mId.SERVER, new Server(SHORT_SERVER_ID, lifetime));
        init.setInstancesForObject(LwM2mId.DEVICE,
                new Device("Eclipse Leshan", "leshan-lwm2m-client", "LT-0001", EnumSet.of(BindingMode.U)));
        boolean firmware = "1".equals(System.getenv("LESHAN_FIRMWARE"));
        if (firmware) {
            init.setInstancesForObject(LwM2mId.FIRMWARE, new Firmware());
        }
        List<LwM2mObjectEnabler> objects = init.createAll();

        CaliforniumClientEndpointsProvider.Builder endpoints = new CaliforniumClientEndpointsProvider.Builder(
                new CoapClientProtocolProvider(), new CoapsClientProtocolProvider());
        endpoints.setClientAddress(InetAddress.getLoopbackAddress());
        if (firmware) {
            // Californium's default largest block-wise body (8 KiB) is below a package.
            Configuration config = endpoints.createDefaultConfiguration();
            config.set(CoapConfig.MAX_RESOURCE_BODY_SIZE, 4 * 1024 * 1024);
            endpoints.setConfiguration(config);
        }

        LeshanClientBuilder builder = new LeshanClientBuilder(endpoint);
        if ("1".equals(System.getenv("LESHAN_QUEUE_MODE"))) {
            // Registers with the Q parameter (LwM2M 1.1 Queue Mode).
            builder.setRegistrationEngineFactory(new DefaultRegistrationEngineFactory().setQueueMode(true));
        }
        builder.setObjects(objects);
        builder.setEndpointsProviders(endpoints.build());
        LeshanClient client = builder.build();
        client.start();
        System.out.println("started");
        System.out.flush();

        // Run until the test harness closes our stdin, then deregister and stop.
        InputStream in = System.in;
        while (in.read() != -1) {
            // ignore input
        }
        client.destroy(true);
        System.out.println("stopped");
        System.out.flush();
        System.exit(0);
    }

    /** Firmware Update instance 0 that reports each package written to /5/0/0. */
    public static class Firmware extends SimpleInstanceEnabler {
        public Firmware() {
            super(0);
        }

        @Override
        public WriteResponse write(LwM2mServer server, boolean replace, int resourceId, LwM2mResource value) {
            if (resourceId == 0 && value.getValue() instanceof byte[]) {
                byte[] pkg = (byte[]) value.getValue();
                try {
                    byte[] digest = MessageDigest.getInstance("SHA-256").digest(pkg);
                    StringBuilder hex = new StringBuilder();
                    for (byte b : digest) {
                        hex.append(String.format("%02x", b));
                    }
                    System.out.println("package " + pkg.length + " bytes sha256=" + hex);
                    System.out.flush();
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }
            return super.write(server, replace, resourceId, value);
        }
    }

    private static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}

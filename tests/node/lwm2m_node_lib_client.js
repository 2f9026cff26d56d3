// Telefonica's lwm2m-node-lib client (npm, LwM2M 1.0) as a device under test for the
// conformance runner (tests/tests/conformance_node_lib.rs): a Device object instance /3/0 with
// manufacturer, model and firmware version, registered on the server at 127.0.0.1:PORT as EP.
// It is the library's client as its README sets it up; it runs until killed.
// Usage: node lwm2m_node_lib_client.js PORT EP (NODE_PATH names the node_modules holding it).
'use strict';

const client = require('lwm2m-node-lib').client;

const [port, ep] = [parseInt(process.argv[2], 10), process.argv[3]];
client.init({
    client: {
        lifetime: '300',
        version: '1.0',
        logLevel: 'FATAL',
        observe: { period: 3000 },
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [{ name: 'text/plain', value: 0 }],
        writeFormat: 'text/plain',
    },
});

function call(fn, ...args) {
    return new Promise((resolve, reject) =>
        fn(...args, (error, value) => (error ? reject(error) : resolve(value))));
}

(async () => {
    await call(client.registry.create, '/3/0');
    await call(client.registry.setResource, '/3/0', 0, 'Telefonica');
    await call(client.registry.setResource, '/3/0', 1, 'lwm2m-node-lib');
    await call(client.registry.setResource, '/3/0', 3, '1.4.0');
    const info = await call(client.register, '127.0.0.1', port, '', ep);
    process.stdout.write(JSON.stringify({ registered: info.location }) + '\n');
})().catch((error) => {
    process.stdout.write(JSON.stringify({ error: String(error) }) + '\n');
    process.exit(1);
});

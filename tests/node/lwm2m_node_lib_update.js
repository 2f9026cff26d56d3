// A firmware update driven by another LwM2M server implementation: Telefonica's
// lwm2m-node-lib (npm, an LwM2M 1.0 server on node-coap), through its own API. It only acts
// and reports: each observation is one JSON line on stdout, judged by
// tests/tests/node_lib_server.rs. Usage: node lwm2m_node_lib_update.js PORT BAD_URI GOOD_URI
// (NODE_PATH names the node_modules holding lwm2m-node-lib).
//
// On the first registration: read /3/0/3 and /5/0/3, write the Package URI of a package the
// device must refuse and poll State and Update Result until the result is set, then write the
// good package's URI, poll until State is 2 (Downloaded) and execute /5/0/2. On the
// registration after the reboot: read /3/0/3, /5/0/3 and /5/0/5, then exit.
'use strict';

const server = require('lwm2m-node-lib').server;

const [port, badUri, goodUri] = [parseInt(process.argv[2], 10), process.argv[3], process.argv[4]];
const config = {
    port,
    lifetimeCheckInterval: 1000,
    udpWindow: 100,
    defaultType: 'Device',
    types: [],
    logLevel: 'FATAL',
    ipProtocol: 'udp4',
    serverProtocol: 'udp4',
    // Reads ask for text/plain and writes send it (LwM2M 1.0 §6.4.1, Content-Format 0).
    formats: [{ name: 'text/plain', value: 0 }],
    writeFormat: 'text/plain',
    defaultAcceptFormat: 'text/plain',
};
const POLLS = 300; // of 200 ms each: a minute for a download to end

function report(line) {
    process.stdout.write(JSON.stringify(line) + '\n');
}

function call(fn, ...args) {
    return new Promise((resolve, reject) =>
        fn(...args, (error, value) => (error ? reject(error) : resolve(value))));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Settled once the Execute of /5/0/2 is answered: the device may register again before that
// answer is handled here, and what it reports after the reboot is read only after it.
let executed;
const execution = new Promise((resolve) => { executed = resolve; });

// Calls the server's `operation` (read, write, execute) on `path` (/O/I/R) of the device
// registered as `ep` now (a reboot registers anew), with `args` after the path.
async function on(operation, ep, path, ...args) {
    const device = await call(server.getDevice, ep);
    const [o, i, r] = path.split('/').slice(1).map((n) => parseInt(n, 10));
    return call(operation, device.id, o, i, r, ...args);
}

const value = (ep, path) => on(server.read, ep, path);

async function read(ep, path) {
    const v = await value(ep, path);
    report({ read: path, value: v });
    return v;
}

async function write(ep, path, v) {
    await on(server.write, ep, path, v);
    report({ wrote: path, value: v });
}

async function pollUntil(ep, path, done) {
    for (let n = 0; n < POLLS; n++) {
        const v = await value(ep, path);
        if (done(v)) {
            report({ read: path, value: v });
            return;
        }
        await sleep(200);
    }
    report({ gave_up: path });
}

async function update(ep) {
    await read(ep, '/3/0/3');
    await read(ep, '/5/0/3');
    await write(ep, '/5/0/1', badUri);
    await pollUntil(ep, '/5/0/5', (v) => v !== '0');
    await read(ep, '/5/0/3');
    await write(ep, '/5/0/1', goodUri);
    await pollUntil(ep, '/5/0/3', (v) => v === '2');
    await on(server.execute, ep, '/5/0/2', '');
    report({ executed: '/5/0/2' });
    executed();
}

async function afterReboot(ep) {
    await execution;
    await read(ep, '/3/0/3');
    await read(ep, '/5/0/3');
    await read(ep, '/5/0/5');
    report({ done: true });
    process.exit(0);
}

function failed(error) {
    report({ error: String((error && (error.name + ' ' + (error.message || ''))) || error) });
    process.exit(1);
}

setTimeout(() => failed('no result in 150 s'), 150000).unref();

server.start(config, (error, info) => {
    if (error) {
        failed(error);
    }
    let registrations = 0;
    server.setHandler(info, 'registration', (ep, lifetime, version, binding, links, done) => {
        registrations += 1;
        report({ register: ep, lifetime, version, binding, links });
        done();
        // Answered first: the device must know it is registered before it is asked anything.
        setTimeout(() => (registrations === 1 ? update(ep) : afterReboot(ep)).catch(failed), 100);
    });
    server.setHandler(info, 'updateRegistration', (device, done) => done());
    server.setHandler(info, 'unregistration', (device, done) => done());
    report({ listening: port });
});

'use strict';
// What the WebSocket test scripts share: promises over the npm package ws
// (the client), raw frames for what ws would never send, and one way to
// report. Every wait has a deadline; a script exits 0 only if every check
// passed, and prints one line per check ("ok NAME" or "FAIL NAME: why").
const WebSocket = require('ws');

let failed = 0;
let passed = 0;

function ok(name) {
    passed++;
    console.log(`ok ${name}`);
}

function fail(name, why) {
    failed++;
    console.log(`FAIL ${name}: ${why}`);
}

function check(name, cond, why) {
    if (cond) {
        ok(name);
    } else {
        fail(name, why);
    }
    return cond;
}

// Resolve p, or reject after ms with what as the reason.
function within(ms, p, what) {
    let t;
    const timeout = new Promise((_, reject) => {
        t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/* Resolve once cond() holds (checked every 10 ms), fail after ms. */
function waitFor(what, ms, cond) {
    return within(ms, new Promise((resolve) => {
        const t = setInterval(() => {
            if (cond()) {
                clearInterval(t);
                resolve();
            }
        }, 10);
    }), what);
}

function connect(url, opts = {}, protocols = undefined) {
    return within(5000, new Promise((resolve, reject) => {
        const ws = new WebSocket(url, protocols, opts);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
        ws.once('unexpected-response', (req, res) => {
            const e = new Error(`unexpected response ${res.statusCode}`);
            e.status = res.statusCode;
            e.headers = res.headers;
            reject(e);
        });
    }), `connect ${url}`);
}

// The next message on ws: {data, binary}.
function message(ws, ms = 5000) {
    return within(ms, new Promise((resolve, reject) => {
        const onClose = (code) => reject(new Error(`closed with ${code} before a message`));
        ws.once('message', (data, binary) => {
            ws.off('close', onClose);
            resolve({data, binary});
        });
        ws.once('close', onClose);
    }), 'a message');
}

// How ws ends: {code, reason, at} (at: Date.now() of the close event), and
// whether the socket saw an error first (a reset).
function closed(ws, ms = 10000) {
    if (ws.readyState === WebSocket.CLOSED) {
        return Promise.resolve(ws._upClosed);
    }
    return within(ms, new Promise((resolve) => {
        ws.once('close', (code, reason) => resolve({code, reason: reason.toString(), at: Date.now()}));
    }), 'the close');
}

// One client frame as the bytes on the wire: fin, rsv bits, opcode, masked
// (with a zero key, so the payload reads as it is) unless mask is false.
function frame(opcode, payload, {fin = true, rsv = 0, mask = true, len = undefined} = {}) {
    payload = Buffer.from(payload);
    const n = len === undefined ? payload.length : len;
    const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
    const m = mask ? 0x80 : 0;
    if (n < 126) {
        head.push(m | n);
    } else if (n < 65536) {
        head.push(m | 126, n >> 8, n & 255);
    } else {
        head.push(m | 127, 0, 0, 0, 0, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255);
    }
    if (mask) {
        head.push(0, 0, 0, 0);
    }
    return Buffer.concat([Buffer.from(head), payload]);
}

async function run(main) {
    try {
        await main();
    } catch (e) {
        fail('script', e.stack || e);
    }
    console.log(`ws checks: ${passed} ok, ${failed} failed`);
    process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

module.exports = {WebSocket, ok, fail, check, within, waitFor, connect, message, closed, frame, run};

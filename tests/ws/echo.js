'use strict';
// node echo.js PORT: wsecho.so's echo, checked with the ws client: text and
// binary messages of every size class of the framing (7-bit, 16-bit and
// 64-bit lengths), fragmented messages, ping/pong, both closing handshakes,
// subprotocols, and the answers to handshakes the runtime refuses.
const {connect, message, closed, check, fail, run, frame, within} = require('./wslib');

const port = process.argv[2];
const url = `ws://127.0.0.1:${port}/ws`;
const sizes = [0, 125, 126, 65535, 65536, 1024 * 1024];

function pattern(n, seed) {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
        b[i] = (i * 31 + seed) & 255;
    }
    return b;
}

async function echoes(ws) {
    for (const n of sizes) {
        const text = 'é'.repeat(Math.floor(n / 2)) + (n % 2 ? 'x' : '');
        ws.send(text);
        const t = await message(ws);
        check(`text ${n} B`, !t.binary && t.data.toString() === text, `got ${t.data.length} B`);
        const bin = pattern(n, n);
        ws.send(bin);
        const b = await message(ws);
        check(`binary ${n} B`, b.binary && Buffer.compare(b.data, bin) === 0,
              `got ${b.data.length} B binary=${b.binary}`);
    }
}

async function fragments(ws) {
    // ws sends a message in frames when fin is false on all but the last.
    ws.send('frag', {fin: false});
    ws.send('men', {fin: false});
    ws.send('ted', {fin: true});
    const m = await message(ws);
    check('fragmented text', m.data.toString() === 'fragmented', `got ${m.data}`);
    const a = pattern(70000, 1), b = pattern(3, 2);
    ws.send(a, {fin: false, binary: true});
    ws.ping('between fragments'); // a control frame inside a fragmented message
    ws.send(b, {fin: true, binary: true});
    const r = await message(ws);
    check('fragmented binary with a ping inside', Buffer.compare(r.data, Buffer.concat([a, b])) === 0,
          `got ${r.data.length} B`);
    // A character split between two frames is still one valid message.
    ws._socket.write(Buffer.concat([frame(1, Buffer.from([0x61, 0xc3]), {fin: false}),
                                    frame(0, Buffer.from([0xa9]))]));
    const s = await message(ws);
    check('a character split across frames', s.data.toString() === 'aé', `got ${s.data}`);
}

async function pings(ws) {
    const pong = within(5000, new Promise((resolve) => ws.once('pong', resolve)), 'a pong');
    ws.ping('are you there');
    const p = await pong;
    check('ping gets its pong', p.toString() === 'are you there', `pong ${p}`);
    const big = 'p'.repeat(125);
    const pong2 = within(5000, new Promise((resolve) => ws.once('pong', resolve)), 'a pong');
    ws.ping(big);
    check('a 125-byte ping is answered', (await pong2).toString() === big, 'pong differs');
}

async function closes() {
    let ws = await connect(url);
    const c1 = closed(ws);
    ws.close(1000, 'bye');
    const r1 = await c1;
    check('client close 1000 is answered with 1000', r1.code === 1000, `code ${r1.code}`);
    ws = await connect(url);
    const c2 = closed(ws);
    ws.close(4321, 'app code');
    check('client close 4321 echoed', (await c2).code === 4321, 'code differs');
    ws = await connect(url);
    const c3 = closed(ws);
    ws.close(1012);
    check('client close 1012 (registry code) echoed', (await c3).code === 1012, 'code differs');
    ws = await connect(url);
    const c4 = closed(ws);
    ws.send('close 4001 app says bye');
    const r4 = await c4;
    check('server close with the app code and reason', r4.code === 4001 && r4.reason === 'app says bye',
          `code ${r4.code} reason '${r4.reason}'`);
    ws = await connect(url);
    ws.send('close 1006 not on the wire');
    const m = await message(ws);
    check('the app may not send 1006', m.data.toString() === 'close refused', `got ${m.data}`);
    ws.close();
}

async function handshakes() {
    let ws = await connect(`${url}?proto=chat`, {}, ['superchat', 'chat']);
    check('the subprotocol the app picked', ws.protocol === 'chat', `protocol '${ws.protocol}'`);
    ws.close();
    ws = await connect(`${url}?proto=chat`);
    check('no subprotocol when the client offers none', ws.protocol === '', `protocol '${ws.protocol}'`);
    ws.close();
    try {
        await connect(url, {protocolVersion: 8});
        fail('version 8 is 426', 'it was accepted');
    } catch (e) {
        check('version 8 is 426 with Sec-WebSocket-Version: 13',
              e.status === 426 && e.headers['sec-websocket-version'] === '13',
              `${e.message} ${JSON.stringify(e.headers)}`);
    }
}

run(async () => {
    const ws = await connect(url);
    await echoes(ws);
    await fragments(ws);
    await pings(ws);
    const c = closed(ws);
    ws.close(1000);
    await c;
    await closes();
    await handshakes();
});

'use strict';
// node chat.js PORT N: N clients of examples/chat, each saying something
// every 20 ms, across a reload the test sends when it reads READY.
//
//   READY g    all N are greeted by generation g: the test reloads
//   BACK g     all N are back on generation g and have been heard there
//
// Checked: every close is 1012 (never a reset, an error or another code);
// every client is greeted again by a newer generation within 1 s of its
// close; every message a client sent came back to it (the echo of the
// broadcast) or ended in something it saw (an error message, or the close
// that overtook it): none is lost silently; and clients hear each other
// (the broadcast) before and after the reload.
const {WebSocket, check, run, waitFor} = require('./wslib');

const [port, n] = process.argv.slice(2).map(Number);
const url = `ws://127.0.0.1:${port}/ws`;
const clients = [];
const bad = [];
let sending = true;
let done = false;

function open(c) {
    const ws = new WebSocket(url);
    c.ws = ws;
    ws.on('message', (m) => {
        const [kind, id, ...rest] = m.toString().split(' ');
        if (kind === 'hello') {
            if (c.closedAt !== undefined) {
                c.backMs = Math.max(c.backMs, Date.now() - c.closedAt);
                c.closedAt = undefined;
            }
            c.gen = Number(id);
        } else if (kind === 'msg' && c.pending.delete(id)) {
            c.echoed++;
            c.echoedOn[c.gen] = (c.echoedOn[c.gen] || 0) + 1;
        } else if (kind === 'msg' && !id.startsWith(`c${c.i}-`)) {
            c.heardOn[c.gen] = (c.heardOn[c.gen] || 0) + 1;
        } else if (kind === 'error' && c.pending.delete(id)) {
            c.errors++;
            bad.push(`client ${c.i}: error for ${id}: ${rest.join(' ')}`);
        }
    });
    ws.on('error', (e) => bad.push(`client ${c.i}: error ${e.message}`));
    ws.on('close', (code) => {
        c.closes.push(code);
        if (code !== 1012 && !done) {
            bad.push(`client ${c.i}: closed with ${code}`);
        }
        // What was in flight is what this client sees fail: the close.
        c.lostAtClose += c.pending.size;
        c.pending.clear();
        c.gen = undefined;
        c.closedAt = Date.now();
        if (!done) {
            setTimeout(() => open(c), Math.random() * 200); // as the page does
        }
    });
}

function say(c) {
    if (sending && c.ws.readyState === WebSocket.OPEN && c.gen !== undefined) {
        const id = `c${c.i}-${++c.seq}`;
        c.pending.add(id);
        c.sent++;
        c.ws.send(`say ${id} message ${c.seq} from client ${c.i}`);
    }
}

const allOn = (pred) => clients.every((c) => c.gen !== undefined && pred(c.gen));
const sum = (f) => clients.reduce((a, c) => a + f(c), 0);

run(async () => {
    for (let i = 0; i < n; i++) {
        const c = {i, seq: 0, sent: 0, echoed: 0, errors: 0, lostAtClose: 0, backMs: 0,
                   pending: new Set(), closes: [], echoedOn: {}, heardOn: {}};
        clients.push(c);
        open(c);
        c.timer = setInterval(() => say(c), 20);
    }
    await waitFor('all greeted', 20000, () => allOn(() => true));
    const g0 = clients[0].gen;
    await waitFor('all heard on the first generation', 10000,
                  () => clients.every((c) => c.echoedOn[g0] > 0 && c.heardOn[g0] > 0));
    console.log(`READY ${g0}`);
    await waitFor('all back on a newer generation, and heard there', 30000,
                  () => allOn((g) => g > g0) &&
                        clients.every((c) => c.echoedOn[c.gen] >= 3 && c.heardOn[c.gen] > 0));
    const g1 = clients[0].gen;
    console.log(`BACK ${g1}`);
    sending = false;
    await waitFor('the last echoes', 5000, () => clients.every((c) => c.pending.size === 0));
    done = true;
    clients.forEach((c) => clearInterval(c.timer));

    const sent = sum((c) => c.sent), echoed = sum((c) => c.echoed);
    const lost = sum((c) => c.lostAtClose), errors = sum((c) => c.errors);
    const slowest = Math.max(...clients.map((c) => c.backMs));
    check(`every one of ${n} closed once, with 1012`,
          clients.every((c) => c.closes.length === 1) && bad.length === 0,
          bad.slice(0, 5).join('; ') || clients.map((c) => c.closes.length).join(','));
    check(`every client back on generation ${g1} within 1 s (slowest ${slowest} ms)`,
          slowest <= 1000 && allOn((g) => g === g1), `${slowest} ms`);
    check(`${sent} messages sent: ${echoed} echoed, ${lost} overtaken by the close, ` +
          `${errors} refused, none lost silently`, echoed + lost + errors === sent && echoed > 0,
          `${sent - echoed - lost - errors} unaccounted`);
    check('the clients heard each other before and after the reload',
          clients.every((c) => c.heardOn[g0] > 0 && c.heardOn[g1] > 0), 'a client heard no one');
    console.log(`chat: ${n} clients, ${sent} messages, ${echoed} echoed, ${lost} overtaken by ` +
                `the 1012 close (the client saw it), slowest back ${slowest} ms`);
    clients.forEach((c) => c.ws.close(1000));
});

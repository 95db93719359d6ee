'use strict';
// node storm.js PORT N GRACE SPREAD [once]: N WebSockets (wsecho, hello=1)
// through up-run, across reloads the test sends (SIGUSR2). Every client
// reconnects at once when closed and must be greeted by a newer generation.
//
//   READY g      all N are open on generation g: the test reloads
//   PHASE2 g     all N came back on generation g (with once: the end);
//                the test storms
//   FINAL g      no close for a while, all N on generation g
//
// Checked: every close is 1012 (never an error or a reset, never another
// code); every client is back (greeted) within 1 s of its close; and the
// closes that sent the clients to generation g begin after GRACE (from
// READY) and are spread over SPREAD, evenly.
const {WebSocket, check, run, waitFor} = require('./wslib');

const [port, n, grace, spread] = process.argv.slice(2, 6).map(Number);
const once = process.argv[6] === 'once';
const url = `ws://127.0.0.1:${port}/ws?hello=1`;
const clients = [];
let phase = 1;
let done = false;
let lastClose = 0;
const bad = [];

function open(c) {
    const ws = new WebSocket(url);
    c.ws = ws;
    ws.on('message', (m) => {
        const [word, gen] = m.toString().split(' ');
        if (word !== 'hello') {
            return;
        }
        if (c.closedAt !== undefined) {
            c.backMs = Math.max(c.backMs || 0, Date.now() - c.closedAt);
            c.closedAt = undefined;
        }
        c.gen = Number(gen);
    });
    ws.on('error', (e) => bad.push(`client ${c.i}: error ${e.message}`));
    ws.on('close', (code) => {
        const at = Date.now();
        lastClose = at;
        c.closes.push({code, at, phase});
        if (code !== 1012) {
            bad.push(`client ${c.i}: closed with ${code} in phase ${phase}`);
        }
        c.gen = undefined;
        c.closedAt = at;
        if (!done) {
            open(c);
        }
    });
}

const allOn = (pred) => clients.every((c) => c.gen !== undefined && pred(c.gen));

run(async () => {
    for (let i = 0; i < n; i++) {
        clients.push({i, closes: []});
        open(clients[i]);
    }
    await waitFor('all open', 20000, () => allOn(() => true));
    const g0 = clients[0].gen;
    const ready = Date.now();
    console.log(`READY ${g0}`);
    await waitFor('all back after the reload', 30000, () => allOn((g) => g > g0));
    const g1 = clients[0].gen;
    const closes = clients.flatMap((c) => c.closes).map((x) => x.at).sort((a, b) => a - b);
    const first = closes[0] - ready, span = closes[closes.length - 1] - closes[0];
    const mid = closes[0] + span / 2;
    const early = closes.filter((t) => t < mid).length;
    check(`every one of ${n} closed once`, closes.length === n, `${closes.length} closes`);
    // Slack for a busy 2-core machine: the clients' own event loop, 200
    // sockets, reconnects in flight.
    check(`the first close after the grace (${first} ms >= ${grace} ms)`, first >= grace - 50,
          `first close ${first} ms after READY`);
    check(`the closes spread over ${span} ms (--close-spread ${spread} ms)`,
          span >= spread * 0.7 && span <= spread + 600, `span ${span} ms`);
    check(`spread evenly: ${early} of ${n} in the first half`, early >= n * 0.35 && early <= n * 0.65,
          `${early} in the first half`);
    const slowest = Math.max(...clients.map((c) => c.backMs || 0));
    check(`every client back within 1 s (slowest ${slowest} ms)`, slowest <= 1000, `${slowest} ms`);
    console.log(`closes: first ${first} ms after READY, spread over ${span} ms, ` +
                `${early} of ${n} in the first half, slowest back ${slowest} ms`);
    phase = 2;
    console.log(`PHASE2 ${g1}`);
    if (once) {
        check('no error and no other close code', bad.length === 0, bad.slice(0, 5).join('; '));
        done = true;
        clients.forEach((c) => c.ws.terminate());
        return;
    }
    // The storm: the test reloads again and again; then all settle.
    await waitFor('the storm to settle', 60000, () => Date.now() - lastClose > grace + spread + 3000 &&
                  allOn((g) => g === clients[0].gen) && clients[0].gen > g1);
    const closes2 = clients.flatMap((c) => c.closes).filter((x) => x.phase === 2).length;
    console.log(`FINAL ${clients[0].gen}`);
    check(`the storm: ${closes2} closes, all 1012, all back`, bad.length === 0, bad.slice(0, 5).join('; '));
    const slowest2 = Math.max(...clients.map((c) => c.backMs || 0));
    check(`every client back within 1 s in the storm (slowest ${slowest2} ms)`, slowest2 <= 1000,
          `${slowest2} ms`);
    done = true;
    for (const c of clients) {
        c.ws.terminate();
    }
});

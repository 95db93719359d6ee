'use strict';
// node browser.js CHROMIUM URL DIR: headless Chromium on the chat page
// (examples/chat) at URL, driven over the DevTools protocol (a WebSocket:
// the npm package ws again), its profile in DIR (fresh, removed by the
// test). Never downloads anything: Debian's chromium, run as it is.
//
//   BROWSER pgid   the browser's process group (the test kills it at the end)
//   OPEN g         the page is connected to generation g and a message it
//                  sent came back: the test reloads
//   BACK g         the page came back to generation g by itself
//
// Checked: the page connects and says something; after the reload it
// shows the close (1012) and is connected to a newer generation within a
// second of losing the old one; what it says there is delivered too; no
// message shows as failed. The page's text is printed for the record, and
// a screenshot is left in DIR/chat.png.
const {spawn} = require('child_process');
const fs = require('fs');
const path = require('path');
const {WebSocket, check, run, within} = require('./wslib');

const [chromium, url, dir] = process.argv.slice(2);
let browser;

// The browser goes with this script, however it ends (SIGTERM from the
// test's teardown included).
function killBrowser() {
    if (browser !== undefined) {
        try {
            process.kill(-browser.pid, 'SIGKILL'); // its helpers too
        } catch (e) {
            // gone already
        }
    }
}
process.on('exit', killBrowser);
process.on('SIGTERM', () => process.exit(1));

function startBrowser() {
    fs.mkdirSync(dir, {recursive: true});
    const err = fs.openSync(path.join(dir, 'chromium.log'), 'w');
    browser = spawn(chromium, [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        `--user-data-dir=${dir}`, '--remote-debugging-port=0', 'about:blank',
    ], {detached: true, stdio: ['ignore', 'ignore', err]});
    console.log(`BROWSER ${browser.pid}`);
}

// Chromium writes the port it listens on (and the browser's path) into
// DevToolsActivePort in its profile.
async function devtoolsUrl() {
    const file = path.join(dir, 'DevToolsActivePort');
    for (let i = 0; i < 600; i++) {
        if (browser.exitCode !== null) {
            throw new Error(`chromium exited with ${browser.exitCode}: see ${dir}/chromium.log`);
        }
        const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n') : [];
        if (lines.length >= 2 && lines[1] !== '') {
            return `ws://127.0.0.1:${lines[0]}${lines[1]}`;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('chromium did not open its DevTools port within 30 s');
}

// One DevTools connection: send(method, params, session) -> result.
function devtools(ws) {
    let next = 1;
    const waiting = new Map();
    ws.on('message', (m) => {
        const msg = JSON.parse(m);
        const w = waiting.get(msg.id);
        if (w !== undefined) {
            waiting.delete(msg.id);
            if (msg.error) {
                w.reject(new Error(`${w.method}: ${msg.error.message}`));
            } else {
                w.resolve(msg.result);
            }
        }
    });
    return (method, params = {}, sessionId = undefined) => within(10000, new Promise(
        (resolve, reject) => {
            const id = next++;
            waiting.set(id, {resolve, reject, method});
            ws.send(JSON.stringify({id, method, params, sessionId}));
        }), method);
}

run(async () => {
    startBrowser();
    const ws = new WebSocket(await devtoolsUrl());
    await within(5000, new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
    }), 'the DevTools connection');
    const send = devtools(ws);
    const {targetId} = await send('Target.createTarget', {url});
    const {sessionId} = await send('Target.attachToTarget', {targetId, flatten: true});
    const page = async (expression) => {
        const r = await send('Runtime.evaluate', {expression, returnByValue: true}, sessionId);
        return r.result.value;
    };
    const state = () => page(`(() => {
        const s = document.getElementById('status');
        const li = [...document.querySelectorAll('#log li')];
        return s === null ? null : {
            state: s.dataset.state, gen: Number(s.dataset.generation),
            since: Number(s.dataset.since), closedAt: Number(s.dataset.closedAt),
            mine: li.filter((e) => e.classList.contains('mine')).length,
            pending: li.filter((e) => e.classList.contains('pending')).length,
            failed: li.filter((e) => e.classList.contains('failed')).length,
            text: document.body.innerText,
        };
    })()`);
    const poll = async (what, ms, cond) => {
        const end = Date.now() + ms;
        for (;;) {
            const s = await state();
            if (s !== null && cond(s)) {
                return s;
            }
            if (Date.now() > end) {
                throw new Error(`${what} within ${ms} ms; the page: ${JSON.stringify(s)}`);
            }
            await new Promise((resolve) => setTimeout(resolve, 20));
        }
    };
    const say = (text) => page(`(() => {
        document.getElementById('text').value = ${JSON.stringify(text)};
        document.getElementById('say').requestSubmit();
    })()`);

    let s = await poll('the page connected', 30000, (x) => x.state === 'open');
    const g0 = s.gen;
    await say('hello from before the reload');
    s = await poll('the message delivered', 5000, (x) => x.mine === 1 && x.pending === 0);
    check(`connected to generation ${g0}, and the message came back`, s.failed === 0, s.text);
    console.log(`OPEN ${g0}`);

    // The test reloads: the page loses the connection (1012) and is back.
    // Its reconnect waits at most 200 ms, less than a poll may take on a
    // loaded machine: the close may come and go between two polls, so the
    // time it was away is the page's own (data-since of the close and of
    // the open that followed).
    s = await poll('the page back on a newer generation', 30000,
                   (x) => x.state === 'open' && x.gen > g0);
    const back = s.since - s.closedAt;
    console.log(`BACK ${s.gen}`);
    check(`back on generation ${s.gen} within 1 s (${back} ms by the page's clock)`,
          back >= 0 && back <= 1000, `${back} ms`);
    check('the page says it closed with 1012', /closed with 1012 \(service restart\)/.test(s.text),
          s.text);
    await say('hello from after the reload');
    s = await poll('the second message delivered', 5000, (x) => x.mine === 2 && x.pending === 0);
    check('both messages delivered, none failed', s.failed === 0, s.text);
    const shot = await send('Page.captureScreenshot', {format: 'png'}, sessionId);
    fs.writeFileSync(path.join(dir, 'chat.png'), Buffer.from(shot.data, 'base64'));
    console.log(`the page after the reload:\n${s.text}`);
    await send('Browser.close').catch(() => {});
    await within(5000, new Promise((resolve) => {
        if (browser.exitCode !== null) {
            resolve();
        } else {
            browser.once('exit', resolve);
        }
    }), 'chromium to exit').catch(() => {});
});

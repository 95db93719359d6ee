'use strict';
// node noread.js PORT MS: asks wsecho to flood, then reads nothing for MS
// (past the server's send timeout). The server must refuse its app's sends
// past its queue and drop the connection: once the client reads again, it
// finds what the kernel still held and then the end (a reset).
const {connect, check, run, within} = require('./wslib');

const port = process.argv[2];

run(async () => {
    const ws = await connect(`ws://127.0.0.1:${port}/ws`);
    const sock = ws._socket;
    const ended = new Promise((resolve) => {
        sock.once('close', () => resolve('closed'));
        sock.once('error', (e) => resolve(e.code));
    });
    ws.send('flood');
    sock.pause(); // nothing is read: the kernel's buffers fill
    console.log('paused');
    await new Promise((resolve) => setTimeout(resolve, Number(process.argv[3])));
    sock.resume(); // a paused socket would not notice the reset
    const how = await within(20000, ended, 'the server to drop the connection');
    check('the server dropped a client that never reads', true, how);
});

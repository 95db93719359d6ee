'use strict';
// node invalid.js PORT MAX: frames no client should send, each on a
// WebSocket of its own, and the close code the server must answer with
// (RFC 6455 7.4.1); MAX is the server's message limit.
const {connect, closed, check, run, frame} = require('./wslib');

const port = process.argv[2];
const max = Number(process.argv[3]);
const url = `ws://127.0.0.1:${port}/ws`;

const cases = [
    ['an unmasked frame', 1002, () => frame(1, 'hi', {mask: false})],
    ['text that is not UTF-8', 1007, () => frame(1, Buffer.from([0x61, 0xff]))],
    ['text ending inside a character', 1007, () => frame(1, Buffer.from([0x61, 0xc3]))],
    ['a surrogate in text', 1007, () => frame(1, Buffer.from([0xed, 0xa0, 0x80]))],
    ['a ping of 126 bytes', 1002, () => frame(9, Buffer.alloc(126))],
    ['a fragmented ping', 1002, () => frame(9, 'x', {fin: false})],
    ['rsv1 without an extension', 1002, () => frame(1, 'x', {rsv: 4})],
    ['rsv3 on a ping', 1002, () => frame(9, 'x', {rsv: 1})],
    ['a reserved data opcode', 1002, () => frame(3, 'x')],
    ['a reserved control opcode', 1002, () => frame(0xb, 'x')],
    ['a continuation of nothing', 1002, () => frame(0, 'x')],
    ['a new message inside a fragmented one', 1002,
     () => Buffer.concat([frame(1, 'a', {fin: false}), frame(1, 'b')])],
    ['a close of one byte', 1002, () => frame(8, Buffer.from([3]))],
    ['a close with code 1005', 1002, () => frame(8, Buffer.from([0x03, 0xed]))],
    ['a close with code 999', 1002, () => frame(8, Buffer.from([0x03, 0xe7]))],
    ['a close reason that is not UTF-8', 1007, () => frame(8, Buffer.from([0x03, 0xe8, 0xff]))],
    ['a message over the limit', 1009, () => frame(2, Buffer.alloc(max + 1))],
    ['fragments over the limit together', 1009,
     () => Buffer.concat([frame(2, Buffer.alloc(max), {fin: false}), frame(0, 'x')])],
    ['a 64-bit length not in its shortest form', 1002,
     () => Buffer.concat([Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0]), Buffer.alloc(10)])],
];

run(async () => {
    for (const [name, want, bytes] of cases) {
        const ws = await connect(url);
        const c = closed(ws);
        ws._socket.write(bytes());
        const r = await c;
        check(`${name} is closed with ${want}`, r.code === want, `got ${r.code} '${r.reason}'`);
    }
});

// Node's http server under up-run --exec: listen({fd: 3}) on the master's
// listener (socket activation); no notify support, so --ready-after.
const http = require('http');
const server = http.createServer((req, res) => {
  res.writeHead(200, {'Content-Length': 11, 'X-Up-Pid': process.pid});
  res.end('Hello World');
});
server.listen({fd: 3});
process.on('SIGTERM', () => server.close(() => process.exit(0)));

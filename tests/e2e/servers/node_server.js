// A Node.js test server: prints its port, answers with chunked bodies.
//   GET /chunked      -> "part1" "part2" "part3" as three chunks
//   POST /echo        -> the request body back, chunked
//   GET /upgrade      -> 101 Switching Protocols when asked to upgrade, then raw bytes
const http = require('http');

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/chunked') {
    res.writeHead(200, {'Content-Type': 'text/plain'});
    res.write('part1');
    setTimeout(() => { res.write('part2'); setTimeout(() => res.end('part3'), 5); }, 5);
  } else if (req.method === 'POST' && req.url === '/echo') {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      res.writeHead(200, {'Content-Type': 'application/octet-stream'});
      res.end(Buffer.concat(parts));
    });
  } else {
    res.writeHead(404, {'Content-Type': 'text/plain'});
    res.end('not found\n');
  }
});

server.on('upgrade', (req, socket) => {
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
  socket.on('data', (d) => socket.write(d));
});

server.keepAliveTimeout = 30000;
server.listen(0, process.argv[2] || '127.0.0.1', () => {
  console.log(server.address().port);
});

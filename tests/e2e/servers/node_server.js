// A Node.js test server: prints its port, answers with chunked bodies.
// Listens on 127.0.0.1, on the host given as its argument, or with
// "unix:PATH" on that Unix domain socket (and prints PATH).
//   GET /chunked      -> "part1" "part2" "part3" as three chunks
//   POST /echo        -> the request body back, chunked
//   GET /upgrade      -> 101 Switching Protocols when asked to upgrade, then raw bytes
//   GET /bigchunk?n=N -> one chunk of N bytes (printable, a fixed pattern), then "tail"
//   GET /events?n=N&ms=M -> a server-sent event stream: "data: <i>\n\n" every M ms, N times
//   GET /burst?n=N    -> N chunks of 64 KiB written at once (joined in writevs), then "end"
//   GET /stream?n=N   -> N chunks of 64 KiB, each 2 ms after the last was written (a
//                        stream paced by its source: one writev per chunk), then "end"
const http = require('http');

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/chunked') {
    res.writeHead(200, {'Content-Type': 'text/plain'});
    res.write('part1');
    setTimeout(() => { res.write('part2'); setTimeout(() => res.end('part3'), 5); }, 5);
  } else if (req.method === 'GET' && req.url.startsWith('/bigchunk?n=')) {
    const n = parseInt(req.url.slice('/bigchunk?n='.length), 10);
    const big = Buffer.alloc(n);
    for (let i = 0; i < n; i++) big[i] = 0x20 + ((i * 7 + (i >> 12)) % 95);
    res.writeHead(200, {'Content-Type': 'text/plain'});
    res.write(big);
    res.end('tail');
  } else if (req.method === 'GET' && req.url.startsWith('/stream?n=')) {
    const n = parseInt(req.url.slice('/stream?n='.length), 10);
    res.writeHead(200, {'Content-Type': 'text/plain'});
    let i = 0;
    const more = () => {
      if (i >= n) {
        res.end('end');
        return;
      }
      // The next chunk is written once this one is in the kernel, so Node
      // never joins two chunks in one writev, however slow the reader.
      res.write(Buffer.alloc(65536, 0x61 + (i % 26)), () => setTimeout(more, 2));
      i++;
    };
    more();
  } else if (req.method === 'GET' && req.url.startsWith('/events?')) {
    const q = new URLSearchParams(req.url.slice('/events?'.length));
    const n = parseInt(q.get('n'), 10);
    const ms = parseInt(q.get('ms'), 10);
    res.writeHead(200, {'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache'});
    let i = 0;
    const tick = setInterval(() => {
      res.write(`data: ${i}\n\n`);
      if (++i === n) {
        clearInterval(tick);
        res.end();
      }
    }, ms);
  } else if (req.method === 'GET' && req.url.startsWith('/burst?n=')) {
    // N chunks of 64 KiB written at once: past the first, Node queues them
    // while the socket is busy and writes them together, several chunks (their
    // size lines, data and CRLFs as separate iovecs) in one writev.
    const n = parseInt(req.url.slice('/burst?n='.length), 10);
    res.writeHead(200, {'Content-Type': 'text/plain'});
    for (let i = 0; i < n; i++) res.write(Buffer.alloc(65536, 0x61 + (i % 26)));
    res.end('end');
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
const where = process.argv[2] || '127.0.0.1';
if (where.startsWith('unix:')) {
  server.listen(where.slice('unix:'.length), () => console.log(server.address()));
} else {
  server.listen(0, where, () => console.log(server.address().port));
}

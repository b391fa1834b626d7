// Node.js over its own TLS (node's OpenSSL driven through memory BIOs: the
// socket I/O is libuv's, outside every libssl call).
//   node node_tls.js server CERT KEY
//       prints its port; GET -> "path=<url>\n"; POST -> "path=<url> got=<body bytes>\n"
//   node node_tls.js client PORT N
//       waits for a line on standard input, then sends N POSTs of 1000+i bytes
//       to /c<i> over at most 4 kept-alive connections; prints each response,
//       then "done"
const https = require('https');
const fs = require('fs');
const readline = require('readline');

const mode = process.argv[2];
if (mode === 'server') {
  const server = https.createServer(
      {cert: fs.readFileSync(process.argv[3]), key: fs.readFileSync(process.argv[4])},
      (req, res) => {
        let got = 0;
        req.on('data', (d) => { got += d.length; });
        req.on('end', () => {
          res.writeHead(200, {'Content-Type': 'text/plain'});
          res.end(req.method === 'POST' ? `path=${req.url} got=${got}\n` : `path=${req.url}\n`);
        });
      });
  server.keepAliveTimeout = 30000;
  server.listen(0, '127.0.0.1', () => console.log(server.address().port));
} else if (mode === 'client') {
  const port = parseInt(process.argv[3], 10);
  const n = parseInt(process.argv[4], 10);
  const agent = new https.Agent({keepAlive: true, maxSockets: 4});
  const rl = readline.createInterface({input: process.stdin});
  rl.once('line', () => {
    rl.close();
    let done = 0;
    for (let i = 0; i < n; i++) {
      const body = 'x'.repeat(1000 + i);
      const req = https.request(
          {host: '127.0.0.1', port, path: `/c${i}`, method: 'POST', agent,
           rejectUnauthorized: false, headers: {'Content-Length': body.length}},
          (res) => {
            let text = '';
            res.on('data', (d) => { text += d; });
            res.on('end', () => {
              process.stdout.write(text);
              if (++done === n) {
                agent.destroy();
                console.log('done');
              }
            });
          });
      req.end(body);
    }
  });
} else {
  console.error('usage: node_tls.js server CERT KEY | client PORT N');
  process.exit(64);
}

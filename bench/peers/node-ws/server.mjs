// The Node.js peer of the benchmark: the broadcast server many teams
// write instead of an edge, on the `ws` package and nothing else. One
// process (as such servers usually run), WebSocket subscribers on any
// path, POST /publish sends the body to every subscriber.
//
//   node server.mjs PORT
import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url.split('?')[0] !== '/publish') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    for (const client of wss.clients) {
      client.send(body);
    }
    res.writeHead(204).end();
  });
});

server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws));
});

// A client that goes away must not take the server down.
wss.on('connection', (ws) => ws.on('error', () => ws.terminate()));

server.listen(port, '127.0.0.1');

// Upstream servers for the egress tests, run by the host's node inside a
// network namespace the test made (Tests/TestSupport/EgressUpstreams.swift).
// Every server answers with which server it is, so a test can tell where a
// guest's connection really went. Prints "ready" once all listen.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import fs from 'node:fs';

const [publicAddress, privateAddress, publicAddress6] = process.argv.slice(2);
const here = new URL('.', import.meta.url).pathname;
const tls = { key: fs.readFileSync(here + 'server.key'), cert: fs.readFileSync(here + 'server.pem') };
const accepted = {};

function handler(name) {
  return (request, response) => {
    const url = new URL(request.url, 'http://x');
    if (url.pathname === '/stats') {
      response.end(JSON.stringify(accepted));
      return;
    }
    if (url.pathname === '/bytes') {
      let left = Number(url.searchParams.get('n') ?? '0');
      response.writeHead(200, { 'content-length': String(left) });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = () => {
        while (left > 0) {
          const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= piece.length;
          if (!response.write(piece)) return response.once('drain', pump);
        }
        response.end();
      };
      return pump();
    }
    if (url.pathname === '/hold') return; // never answers: a connection that stays open
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ server: name, path: url.pathname, host: request.headers.host ?? null }));
  };
}

function count(name, server) {
  server.on('connection', () => { accepted[name] = (accepted[name] ?? 0) + 1; });
  return server;
}

const servers = [
  [count('plain', http.createServer(handler('plain'))), publicAddress, 80],
  [count('plain-8080', http.createServer(handler('plain-8080'))), publicAddress, 8080],
  [count('secure', https.createServer(tls, handler('secure'))), publicAddress, 443],
  [count('private', http.createServer(handler('private'))), privateAddress, 80],
  [count('echo', net.createServer((socket) => socket.pipe(socket))), publicAddress, 7000],
];
if (publicAddress6) servers.push([count('plain-v6', http.createServer(handler('plain-v6'))), publicAddress6, 80]);
for (const [server] of servers) server.keepAliveTimeout = 60_000;
await Promise.all(servers.map(([server, host, port]) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen({ host, port, backlog: 1024 }, resolve);
})));
process.stdout.write('ready\n');
// Runs until the test stops it (HostProgram.stop).

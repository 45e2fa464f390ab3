// Upstream servers for the egress tests, run by the host's node inside a
// network namespace the test made (Tests/TestSupport/EgressUpstreams.swift).
// Every server answers with which server it is, so a test can tell where a
// guest's connection really went. Prints "ready" once all listen.
//
// For the client tests (EgressClientsTests) every HTTP(S) server also plays
// two parts: a fake npm registry (`/left-pad`, the packument npm asks for),
// and a static file server (`/static/<dir>/<file>`) for dumb-HTTP git.
// Static files come from a directory under the static root (an optional
// fourth argument, /tmp by default) whose name starts with
// `secure-exec-test-`, i.e. one a test made with `withHostDirectory`.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';

const [publicAddress, privateAddress, publicAddress6, staticRoot = '/tmp'] = process.argv.slice(2);
const here = new URL('.', import.meta.url).pathname;
const tls = { key: fs.readFileSync(here + 'server.key'), cert: fs.readFileSync(here + 'server.pem') };
const accepted = {};

// What the fake registry knows: one package, one version no real registry has.
const leftPadVersion = '9.9.9-secure-exec';
const leftPad = (origin) => ({
  _id: 'left-pad',
  name: 'left-pad',
  description: 'served by the egress tests\' fake registry',
  'dist-tags': { latest: leftPadVersion },
  versions: {
    [leftPadVersion]: {
      name: 'left-pad',
      version: leftPadVersion,
      description: 'served by the egress tests\' fake registry',
      dist: { tarball: `${origin}/left-pad/-/left-pad-${leftPadVersion}.tgz` },
    },
  },
  time: { created: '2024-01-01T00:00:00.000Z', modified: '2024-01-01T00:00:00.000Z', [leftPadVersion]: '2024-01-01T00:00:00.000Z' },
});

// The file `/static/<dir>/<rest>` names, or null: <dir> must be a test's directory
// directly under the static root, and the path may not leave it.
function staticFile(pathname) {
  const [dir, ...rest] = pathname.slice('/static/'.length).split('/');
  if (!/^secure-exec-test-[A-Za-z0-9]+$/.test(dir ?? '') || rest.length === 0) return null;
  const base = path.join(staticRoot, dir);
  let file;
  try {
    file = path.resolve(base, rest.map(decodeURIComponent).join('/'));
  } catch {
    return null; // a malformed %-escape
  }
  return file.startsWith(base + '/') ? file : null;
}

function serveStatic(pathname, response) {
  const file = staticFile(pathname);
  fs.readFile(file ?? '/nonexistent', (error, data) => {
    if (error || file === null) {
      response.writeHead(404, { 'content-type': 'text/plain' });
      return response.end('not found\n');
    }
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(data.length) });
    response.end(data);
  });
}

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
    if (url.pathname === '/left-pad') {
      const origin = `${name === 'secure' ? 'https' : 'http'}://${request.headers.host ?? 'registry.upstream.test'}`;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(leftPad(origin)));
      return;
    }
    if (url.pathname.startsWith('/static/')) return serveStatic(url.pathname, response);
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

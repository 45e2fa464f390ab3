/// The programs of the `egress` workload: the upstream server (host node in
/// its own network namespace) and the client, which runs byte for byte the
/// same in a guest and directly on the host.
public enum EgressScripts {
    /// Serves plain HTTP on `UPSTREAM_ADDRESS`:80: `/small` (a 12-byte JSON
    /// body) and `/bytes?n=N` (N bytes in 64 KiB writes, with backpressure).
    /// Every response carries `x-connection`, the number of the connection it
    /// came on, so the client can check which requests shared one. Prints
    /// "ready" once it listens. A trimmed copy of the egress tests' upstream
    /// (Tests/Fixtures/egress/upstream.mjs).
    public static let upstream = """
        import http from 'node:http';
        let connections = 0;
        const chunk = Buffer.alloc(64 * 1024, 120);
        const server = http.createServer((request, response) => {
          request.socket.number ??= ++connections;
          response.setHeader('x-connection', String(request.socket.number));
          const url = new URL(request.url, 'http://x');
          if (url.pathname === '/bytes') {
            let left = Number(url.searchParams.get('n') ?? '0');
            response.writeHead(200, { 'content-length': String(left) });
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
          response.writeHead(200, { 'content-type': 'application/json', 'content-length': '11' });
          response.end('{"ok":true}');
        });
        server.keepAliveTimeout = 60_000;
        server.listen({ host: process.env.UPSTREAM_ADDRESS, port: 80, backlog: 1024 }, () => process.stdout.write('ready\\n'));
        """

    /// What the client reads from its environment: `BENCH_URL` (the
    /// upstream's origin, by name or address), `BENCH_WARMUP` and
    /// `BENCH_REQUESTS` (kept-alive GETs of /small), `BENCH_FRESH` (GETs of
    /// /small with `connection: close`, after 5 warm-up ones), `BENCH_LOOKUPS`
    /// (timed `dns.lookup`s of the URL's host, as `net.connect` asks: all
    /// addresses, AI_ADDRCONFIG; 0 for none), `BENCH_BYTES`
    /// (one download of /bytes?n=), and `BENCH_HOSTS` (a JSON name → IPv4
    /// table; when set, `dns.lookup` answers those names in-process, which is
    /// how the host run finds the upstream's name without a DNS server).
    ///
    /// Prints one JSON line: per-request times in ms (`performance.now()`
    /// from just before `fetch` to the body's end), how many connections
    /// each phase used (from `x-connection`), the times of the lookups
    /// fetch made for the new connections (a wrapper around `dns.lookup`)
    /// and of the separate ones, and the download's bytes and ms.
    public static let client = """
        import dns from 'node:dns';
        const env = process.env;
        const base = env.BENCH_URL;
        if (env.BENCH_HOSTS) {
          const table = JSON.parse(env.BENCH_HOSTS);
          const systemLookup = dns.lookup;
          dns.lookup = (host, options, callback) => {
            if (typeof options === 'function') { callback = options; options = {}; }
            const address = table[host];
            if (address === undefined) return systemLookup(host, options, callback);
            process.nextTick(() => options?.all ? callback(null, [{ address, family: 4 }]) : callback(null, address, 4));
          };
        }
        // Times every lookup fetch's connections make (none for an address URL).
        const connectLookups = [];
        const lookup = dns.lookup;
        dns.lookup = (host, options, callback) => {
          if (typeof options === 'function') { callback = options; options = {}; }
          const started = performance.now();
          return lookup(host, options, (...answer) => { connectLookups.push(performance.now() - started); callback(...answer); });
        };
        async function get(path, init) {
          const started = performance.now();
          const response = await fetch(base + path, init);
          const body = await response.text();
          const elapsed = performance.now() - started;
          if (response.status !== 200 || body !== '{"ok":true}') throw new Error(`GET ${path}: ${response.status} ${body}`);
          return [elapsed, response.headers.get('x-connection')];
        }
        async function phase(warmup, count, init) {
          const times = [], connections = new Set();
          for (let index = 0; index < warmup + count; index++) {
            const [elapsed, connection] = await get('/small', init);
            if (index >= warmup) { times.push(elapsed); connections.add(connection); }
          }
          return [times, connections.size];
        }
        const [kept, keptConnections] = await phase(Number(env.BENCH_WARMUP), Number(env.BENCH_REQUESTS));
        connectLookups.length = 0;
        const [fresh, freshConnections] = await phase(5, Number(env.BENCH_FRESH), { headers: { connection: 'close' } });
        const freshLookups = connectLookups.slice(-Number(env.BENCH_FRESH));
        const lookups = [];
        const name = new URL(base).hostname;
        for (let index = 0; index < Number(env.BENCH_LOOKUPS ?? 0); index++) {
          const started = performance.now();
          await new Promise((resolve, reject) =>
            dns.lookup(name, { all: true, hints: dns.ADDRCONFIG }, (error, found) => error ? reject(error) : resolve(found)));
          lookups.push(performance.now() - started);
        }
        const bytes = Number(env.BENCH_BYTES);
        const started = performance.now();
        const response = await fetch(`${base}/bytes?n=${bytes}`);
        let received = 0;
        for await (const piece of response.body) received += piece.byteLength;
        const downloadMs = performance.now() - started;
        if (received !== bytes) throw new Error(`downloaded ${received} of ${bytes} bytes`);
        console.log(JSON.stringify({ kept, keptConnections, fresh, freshConnections, freshLookups, lookups, received, downloadMs }));
        """

    /// The client's one line of output.
    public struct ClientReport: Decodable, Sendable {
        /// Per kept-alive request, ms.
        public var kept: [Double]
        public var keptConnections: Int
        /// Per request on a connection of its own, ms.
        public var fresh: [Double]
        public var freshConnections: Int
        /// The lookups fetch made for those requests' connections, ms (none by address).
        public var freshLookups: [Double]
        /// Per `dns.lookup` of the URL's host, ms.
        public var lookups: [Double]
        public var received: Int
        public var downloadMs: Double
    }
}

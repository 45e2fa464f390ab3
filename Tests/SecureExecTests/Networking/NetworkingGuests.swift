import TestSupport

/// The guest servers of the networking suites.
enum NetworkingGuests {
    /// An HTTP server on `host`:`port` whose routes are the behaviours the tests check.
    ///
    /// - `/echo/<text>`: answers `<text>`.
    /// - `/connections`: how many TCP connections the server has accepted so far (this one included).
    /// - `/chunked`: four writes 20 ms apart, no content-length ("alpha,beta,gamma,delta").
    /// - `/events-acked`: server-sent events, `data: event N` five times, each next one only after a fetch of `/ack`.
    /// - `/ack`: acknowledges the last event ("acked"), so `/events-acked` sends the next.
    /// - `/hello`: "hello world" with an explicit content-length (and no body for HEAD).
    /// - `/nocontent`: 204.
    /// - `/cookies`: two set-cookie headers, a=1 then b=2.
    /// - `/download?bytes=N`: N bytes of `TransferPattern`, 1 MiB per write, with backpressure.
    /// - `/upload`: checks the body against `TransferPattern` as it streams in and
    ///   answers `{"bytes": <count>, "mismatch": <first wrong index or -1>}`.
    ///
    /// Prints "listening <port>" once it listens, `listenAfter` milliseconds after it started.
    static func httpServer(port: Int = 3000, host: String = "127.0.0.1", listenAfter: Int = 0) -> String {
        """
        const http = require("http");
        \(TransferPattern.javaScript)
        let connections = 0;
        const server = http.createServer((req, res) => {
          const url = new URL(req.url, "http://localhost");
          if (url.pathname.startsWith("/echo/")) { res.end(url.pathname.slice(6)); return; }
          switch (url.pathname) {
            case "/connections":
              res.end(String(connections));
              return;
            case "/chunked": {
              const parts = ["alpha,", "beta,", "gamma,", "delta"];
              let sent = 0;
              const next = () => {
                res.write(parts[sent++]);
                if (sent < parts.length) setTimeout(next, 20); else res.end();
              };
              next();
              return;
            }
            case "/events-acked": {
              // One event, then the next only after the host fetched /ack:
              // a host that buffered the stream to its end would never ack.
              res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
              let sent = 0;
              const send = () => {
                sent += 1;
                res.write(`data: event ${sent}\\n\\n`);
                if (sent === 5) { globalThis.onAck = null; res.end(); } else { globalThis.onAck = send; }
              };
              send();
              return;
            }
            case "/ack": {
              const next = globalThis.onAck;
              globalThis.onAck = null;
              res.end(next ? "acked" : "nothing to ack");
              if (next) next();
              return;
            }
            case "/hello":
              res.setHeader("content-type", "text/plain");
              res.setHeader("content-length", "11");
              res.end(req.method === "HEAD" ? undefined : "hello world");
              return;
            case "/nocontent":
              res.statusCode = 204;
              res.end();
              return;
            case "/cookies":
              res.setHeader("set-cookie", ["a=1", "b=2"]);
              res.end("cookies");
              return;
            case "/download": {
              const total = Number(url.searchParams.get("bytes"));
              const chunkSize = 1 << 20;
              res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(total) });
              let offset = 0;
              const pump = () => {
                while (offset < total) {
                  const chunk = pattern(offset, Math.min(chunkSize, total - offset));
                  offset += chunk.length;
                  if (offset >= total) { res.end(chunk); return; }
                  // Backpressure: stop when the socket's buffer is full, go on at 'drain'.
                  if (!res.write(chunk)) { res.once("drain", pump); return; }
                }
                res.end();
              };
              pump();
              return;
            }
            case "/upload": {
              let bytes = 0;
              let mismatch = -1;
              req.on("data", (chunk) => {
                if (mismatch < 0) mismatch = firstMismatch(bytes, chunk);
                bytes += chunk.length;
              });
              req.on("end", () => res.end(JSON.stringify({ bytes, mismatch })));
              return;
            }
            default:
              res.statusCode = 404;
              res.end("not found");
          }
        });
        server.on("connection", () => { connections += 1; });
        setTimeout(() => server.listen(\(port), "\(host)", () => console.log("listening \(port)")), \(listenAfter));
        """
    }

    /// Servers that misbehave, one per port, all on 127.0.0.1:
    /// - 4001: accepts, reads the request (printing "request"), never answers;
    /// - 4002: sends a head with content-length 100, then 10 bytes, then closes the socket;
    /// - 4003: answers any request with "garbage\\r\\n\\r\\n" and closes.
    static let misbehavingServers = """
        const http = require("http");
        const net = require("net");
        net.createServer((socket) => {
          socket.on("error", () => {});
          socket.on("data", () => console.log("request"));
        }).listen(4001, "127.0.0.1");
        http.createServer((req, res) => {
          res.writeHead(200, { "content-type": "application/octet-stream", "content-length": "100" });
          // end(), not destroy(): a reset may make the host's kernel drop the
          // 10 bytes it has not read yet, and the test checks they arrive.
          res.write(Buffer.alloc(10, "x"), () => res.socket.end());
        }).listen(4002, "127.0.0.1");
        net.createServer((socket) => {
          socket.on("error", () => {});
          socket.once("data", () => socket.end("garbage\\r\\n\\r\\n"));
        }).listen(4003, "127.0.0.1");
        """

    /// A WebSocket echo server on 127.0.0.1:3000, plain node with the http `upgrade` event.
    ///
    /// It answers the handshake (Sec-WebSocket-Accept from sha1), unmasks
    /// client frames (and drops a client that does not mask), echoes each text
    /// message in an unmasked frame, and after a "bye" message ends the socket
    /// itself. It prints "ws <n> open", "ws <n> message <length>", "ws <n> end"
    /// (the client's FIN) and "ws <n> close" per connection.
    static let webSocketEcho = """
        const http = require("http");
        const crypto = require("crypto");
        const server = http.createServer((req, res) => res.end("plain http"));
        let connections = 0;
        server.on("upgrade", (req, socket, head) => {
          const id = ++connections;
          const accept = crypto.createHash("sha1")
            .update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
            .digest("base64");
          socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
            + "Sec-WebSocket-Accept: " + accept + "\\r\\n\\r\\n");
          console.log(`ws ${id} open`);
          const send = (opcode, payload) => {
            let header;
            if (payload.length < 126) {
              header = Buffer.from([0x80 | opcode, payload.length]);
            } else if (payload.length < 65536) {
              header = Buffer.alloc(4);
              header[0] = 0x80 | opcode; header[1] = 126; header.writeUInt16BE(payload.length, 2);
            } else {
              header = Buffer.alloc(10);
              header[0] = 0x80 | opcode; header[1] = 127; header.writeBigUInt64BE(BigInt(payload.length), 2);
            }
            socket.write(Buffer.concat([header, payload]));
          };
          let buffer = Buffer.from(head);
          socket.on("data", (data) => {
            buffer = Buffer.concat([buffer, data]);
            while (buffer.length >= 2) {
              const opcode = buffer[0] & 0x0f;
              if ((buffer[1] & 0x80) === 0) { console.log(`ws ${id} unmasked client frame`); socket.destroy(); return; }
              let length = buffer[1] & 0x7f;
              let offset = 2;
              if (length === 126) { if (buffer.length < 4) return; length = buffer.readUInt16BE(2); offset = 4; }
              else if (length === 127) { if (buffer.length < 10) return; length = Number(buffer.readBigUInt64BE(2)); offset = 10; }
              if (buffer.length < offset + 4 + length) return;
              const mask = buffer.subarray(offset, offset + 4);
              const payload = Buffer.from(buffer.subarray(offset + 4, offset + 4 + length));
              for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
              buffer = buffer.subarray(offset + 4 + length);
              if (opcode === 0x1) {
                const text = payload.toString("utf8");
                console.log(`ws ${id} message ${text.length}`);
                send(0x1, payload);
                if (text === "bye") socket.end();
              } else if (opcode === 0x8) {
                send(0x8, payload);
                socket.end();
              }
            }
          });
          // The server's sockets allow half-open: answer the client's FIN with ours.
          socket.on("end", () => { console.log(`ws ${id} end`); socket.end(); });
          socket.on("close", () => console.log(`ws ${id} close`));
          socket.on("error", (error) => console.log(`ws ${id} error ${error.code}`));
        });
        server.listen(3000, "127.0.0.1", () => console.log("listening 3000"));
        """
}

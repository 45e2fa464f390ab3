import Foundation

/// JavaScript the tests run as guests.
public enum GuestPrograms {
    /// The seed's dev server, exactly as the README's API example shows it.
    public static let devServer = """
        import http from "node:http";
        const app = http.createServer((req, res) => {
          if (req.url === "/health") {
            res.writeHead(200, { "content-type": "application/json" });
            res.end(JSON.stringify({ ok: true }));
            return;
          }
          res.writeHead(200, { "content-type": "text/plain" });
          res.end("hello from the sandboxed dev server");
        });
        app.listen(3000, "127.0.0.1", () => console.log("server listening on 127.0.0.1:3000"));
        """

    /// A server on 127.0.0.1:`port` that answers every request with `body`
    /// and prints "listening <port>" once it listens.
    public static func server(port: Int, body: String) -> String {
        """
        const http = require("http");
        http.createServer((req, res) => res.end(\(jsString(body))))
          .listen(\(port), "127.0.0.1", () => console.log("listening \(port)"));
        """
    }

    /// A client that GETs http://127.0.0.1:`port`/ and prints `body <text>`,
    /// or `error <code>` when the request fails.
    public static func httpGet(port: Int) -> String {
        """
        const http = require("http");
        http.get("http://127.0.0.1:\(port)/", (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk) => body += chunk);
          res.on("end", () => console.log("body " + body));
        }).on("error", (error) => console.log("error " + error.code));
        """
    }

    /// A TCP client to `host`:`port` that prints "connected" or `error <code>`.
    public static func tcpConnect(host: String, port: Int) -> String {
        """
        const net = require("net");
        const socket = net.connect({ host: \(jsString(host)), port: \(port) });
        socket.on("connect", () => { console.log("connected"); socket.destroy(); });
        socket.on("error", (error) => console.log("error " + error.code));
        """
    }

    /// `text` as a JavaScript string literal.
    public static func jsString(_ text: String) -> String {
        var literal = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": literal += "\\\""
            case "\\": literal += "\\\\"
            case "\n": literal += "\\n"
            case "\r": literal += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value > 0x7e {
                    literal += scalar.value > 0xffff
                        ? String(format: "\\u{%x}", scalar.value) : String(format: "\\u%04x", scalar.value)
                } else {
                    literal.unicodeScalars.append(scalar)
                }
            }
        }
        return literal + "\""
    }
}

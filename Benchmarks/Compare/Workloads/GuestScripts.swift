/// The guest programs every contender runs, byte for byte.
public enum GuestScripts {
    /// Prints two readings and exits: when node's process began (its
    /// `performance.timeOrigin`, a wall-clock reading taken as node starts,
    /// after exec and the dynamic loader) and when this first line of the
    /// user's code ran (CLOCK_MONOTONIC, `process.hrtime`). Between them is
    /// node's own start; before the first, the launch, exec and loading.
    /// (`hrtime - performance.now()` is no good as the first: node 20 counts
    /// performance.now() from an origin a few ms before the process exists.)
    public static let stamp = """
        const now = process.hrtime.bigint();
        process.stdout.write(performance.timeOrigin.toFixed(3) + " " + now + "\\n");
        """

    /// The README's example dev server, with its port from `PORT` (default
    /// 3000) so bare node on the host can use a free one.
    public static let devServer = """
        import http from "node:http";
        const port = Number(process.env.PORT ?? 3000);
        const app = http.createServer((req, res) => {
          if (req.url === "/health") {
            res.writeHead(200, { "content-type": "application/json" });
            res.end(JSON.stringify({ ok: true }));
            return;
          }
          res.writeHead(200, { "content-type": "text/plain" });
          res.end("hello from the sandboxed dev server");
        });
        app.listen(port, "127.0.0.1", () => console.log(`server listening on 127.0.0.1:${port}`));
        """

    /// What the dev server prints once it listens.
    public static let listeningLine = "server listening on"

    /// The two times `stamp` prints, on the monotonic timeline (`clocks`
    /// read just before the launch carries the wall-clock origin over), or
    /// nil if `output` is not that line.
    public static func parseStamp(_ output: String, clocks: ClockPair) -> (nodeMain: Int64, script: Int64)? {
        let fields = output.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let origin = Double(fields[0]), let script = Int64(fields[1]) else { return nil }
        return (clocks.monotonic(ofWall: Int64((origin * 1_000_000).rounded())), script)
    }
}

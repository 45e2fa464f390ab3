import Foundation
import SecureExec
import TestSupport
import Testing

/// Egress floods measured by the whole process's memory: part of the leak
/// suite, which runs alone and one test at a time.
extension LeakTests {
    /// DNS over TCP reads queries without end and writes every answer, with
    /// no regard for whether the guest reads them: a guest that pipelines
    /// queries and never reads makes the supervisor buffer the answers.
    @Test("a guest that sends DNS-over-TCP queries and never reads the answers does not grow the supervisor's memory")
    func dnsStreamUnreadAnswers() async throws {
        let policy = try EgressPolicy(allow: ["api.upstream.test"], resolver: .hosts(EgressUpstreams.names))
        try await withRuntime(permissions: Permissions(network: .allow(egress: policy))) { runtime in
            let watch = ResidentMemoryWatch.sampling()
            let out = try await runtime.runGuest(
                """
                import net from 'node:net';
                import { once } from 'node:events';
                const name = 'x'.repeat(60) + '.' + 'y'.repeat(60) + '.' + 'z'.repeat(60) + '.denied.test';
                const query = (id) => {
                  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
                  const body = Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
                    ...labels, Buffer.from([0, 0, 1, 0, 1])]);
                  const length = Buffer.alloc(2); length.writeUInt16BE(body.length);
                  return Buffer.concat([length, body]);
                };
                const socket = net.connect({ host: '127.0.0.1', port: 53 });
                await once(socket, 'connect');
                socket.pause(); // never read an answer
                // The server may stop reading (backpressure) and close an idle stream: both end the flood.
                socket.on('error', () => {});
                const writable = () => new Promise((resolve) => { socket.once('drain', resolve); socket.once('close', resolve); });
                const chunk = Buffer.concat(Array.from({ length: 32 }, (_, i) => query(i)));
                let sent = 0;
                const deadline = Date.now() + 30000;
                while (sent < 3 * 1024 * 1024 * 1024 && Date.now() < deadline && !socket.destroyed) {
                  if (!socket.write(chunk)) await writable();
                  sent += chunk.length;
                  if ((sent / chunk.length) % 8 === 0) await new Promise((r) => setImmediate(r));
                }
                console.log(sent);
                await new Promise((r) => setTimeout(r, 1000));
                process.exit(0);
                """)
            await watch.stop()
            let grown = watch.peak - watch.start
            print("dnsStreamUnreadAnswers: guest sent \(out.line) bytes; supervisor RSS grew \(grown >> 20) MiB")
            #expect(out.termination == .exited(0), "\(out)")
            #expect(grown < 64 << 20, "the supervisor's memory grew by \(grown >> 20) MiB")
        }
    }

}

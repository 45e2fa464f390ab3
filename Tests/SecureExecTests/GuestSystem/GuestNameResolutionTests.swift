import SecureExec
import TestSupport
import Testing

/// /etc/hosts and /etc/resolv.conf suit a sandbox with no route out, with or
/// without the network permission: localhost is the sandbox's own loopback
/// (127.0.0.1 first, ::1 when IPv6 is asked for; there is no host.conf, so
/// glibc answers one address family unless asked), and no name server
/// outside the sandbox is named.
@Suite("Guest system: name resolution", .needsRoot, .timeLimit(.minutes(2)))
struct GuestNameResolutionTests {
    struct Resolution: Decodable {
        let localhost: [String]
        let localhost6: [String]
        let nameservers: [String]
    }

    @Test("localhost is 127.0.0.1 and ::1; resolv.conf names no server", arguments: [NetworkAccess.deny, .allow])
    func localhost(network: NetworkAccess) async throws {
        let guest = try await withRuntime(permissions: Permissions(network: network)) { runtime in
            try await runtime.runGuest(
                """
                const fs = require("fs"), dns = require("dns").promises;
                (async () => {
                  const addresses = async (options) => (await dns.lookup("localhost", { all: true, ...options })).map((entry) => entry.address);
                  const nameservers = fs.readFileSync("/etc/resolv.conf", "utf8").split("\\n")
                    .filter((line) => /^\\s*nameserver\\s/.test(line)).map((line) => line.trim().split(/\\s+/)[1]);
                  console.log(JSON.stringify({ localhost: await addresses({}), localhost6: await addresses({ family: 6 }), nameservers }));
                })();
                """)
        }
        try #require(guest.termination == .exited(0), "\(guest)")
        let resolution = try guest.json(Resolution.self)
        #expect(resolution.localhost == ["127.0.0.1"])
        #expect(resolution.localhost6 == ["::1"])
        #expect(resolution.nameservers.allSatisfy { $0 == "127.0.0.1" || $0 == "::1" }, "\(resolution.nameservers)")
    }
}

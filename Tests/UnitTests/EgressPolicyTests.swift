import Foundation
import SecureExec
import Testing

/// The egress allow-list: how `--allow-host` patterns parse, which names and
/// addresses rules allow, which addresses are special, and the decisions the
/// supervisor takes on DNS answers and connections. Pure logic, no root.
@Suite("Egress policy: patterns, address classes and decisions", .timeLimit(.minutes(1)))
struct EgressPolicyTests {
    // MARK: Parsing

    /// A pattern and the rule it must parse to.
    struct Parsed: Sendable, CustomStringConvertible {
        var pattern: String
        var target: EgressPolicy.Rule.Target
        var ports: Set<Int>?
        var description: String { pattern }
    }

    static let validPatterns: [Parsed] = [
        Parsed(pattern: "api.example.com", target: .domain("api.example.com"), ports: nil),
        Parsed(pattern: "API.Example.COM.", target: .domain("api.example.com"), ports: nil),
        Parsed(pattern: "api.example.com:8443", target: .domain("api.example.com"), ports: [8443]),
        Parsed(pattern: "api.example.com:443,8443,443", target: .domain("api.example.com"), ports: [443, 8443]),
        Parsed(pattern: "localhost:1,65535", target: .domain("localhost"), ports: [1, 65535]),
        Parsed(pattern: "_svc.my-host.internal", target: .domain("_svc.my-host.internal"), ports: nil),
        Parsed(pattern: "*.example.com", target: .wildcard("example.com"), ports: nil),
        Parsed(pattern: "*.Example.com.:22", target: .wildcard("example.com"), ports: [22]),
        Parsed(pattern: "10.1.2.3", target: network("10.1.2.3/32"), ports: nil),
        Parsed(pattern: "10.0.0.0/8:22", target: network("10.0.0.0/8"), ports: [22]),
        Parsed(pattern: "10.1.2.3/8", target: network("10.0.0.0/8"), ports: nil),
        Parsed(pattern: "0.0.0.0/0:5432", target: network("0.0.0.0/0"), ports: [5432]),
        Parsed(pattern: "2001:db8::1", target: network("2001:db8::1/128"), ports: nil),
        Parsed(pattern: "2001:db8::/32", target: network("2001:db8::/32"), ports: nil),
        Parsed(pattern: "[2001:db8::1]:443", target: network("2001:db8::1"), ports: [443]),
        Parsed(pattern: "[2001:db8::/32]:443,8443", target: network("2001:db8::/32"), ports: [443, 8443]),
        // Two or more colons without brackets: all of it is the address, ports are the defaults.
        Parsed(pattern: "::1:443", target: network("0:0:0:0:0:0:1:443"), ports: nil),
        Parsed(pattern: "::1", target: network("::1/128"), ports: nil),
    ]

    @Test("every --allow-host form parses to its rule, and its description parses back to the same rule", arguments: validPatterns)
    func validPattern(_ expected: Parsed) throws {
        let rule = try EgressPolicy.Rule(parsing: expected.pattern)
        #expect(rule.target == expected.target)
        #expect(rule.ports == expected.ports)
        #expect(rule.allowedPorts == expected.ports ?? [443, 80])
        #expect(try EgressPolicy.Rule(parsing: rule.description) == rule, "\(rule.description)")
    }

    static let invalidPatterns = [
        "", "*", "*.", "a..b", "exa mple.com", "-x:0", "x:0", "x:70000", "x:65536", "x:", "x:443,", "x:,443", "x:+443", "x: 443",
        "x:443:80", "[::1]", "[::1]:", "[::1]x", "[::1]x443", "[::1", "[10.0.0.1]:443",
        "10.0.0.0/33", "1.2.3.4/x", "1.2.3.4/", "2001:db8::/129",
        "-x", "x-", "x.-y.com", "*.*.example.com", "a.*.com", "*example.com", "example.*", "1.2.3", "999.1.1.1", "*.10.0.0.1",
        "example.com/path", "caf\u{E9}.com", "api.\u{212A}.com", "a\0.com", ".example.com", " example.com", "example.com\n",
        String(repeating: "a", count: 64) + ".com", Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: "."),
    ]

    @Test("a malformed pattern is .invalidArgument at step egress, naming the pattern", arguments: invalidPatterns)
    func invalidPattern(_ pattern: String) {
        let error = #expect(throws: SecureExecError.self, "\(pattern.debugDescription)") { try EgressPolicy.Rule(parsing: pattern) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.step == "egress")
        #expect(error?.message.contains(pattern.debugDescription) == true, "\(error.map(String.init(describing:)) ?? "")")
    }

    @Test("the longest valid name (253 characters, labels of 63) parses; one more character does not")
    func nameLengthLimit() throws {
        let label = String(repeating: "a", count: 63)
        let longest = [label, label, label, String(repeating: "b", count: 61)].joined(separator: ".")
        #expect(longest.count == 253)
        #expect(try EgressPolicy.Rule(parsing: longest).target == .domain(longest))
        #expect(try EgressPolicy.Rule(parsing: longest + ".").target == .domain(longest))
        #expect(throws: SecureExecError.self) { try EgressPolicy.Rule(parsing: longest + "b") }
    }

    @Test("a rule made from a target is normalized and checked like a parsed one")
    func ruleFromTarget() throws {
        #expect(try EgressPolicy.Rule(.domain("API.Example.com.")).target == .domain("api.example.com"))
        #expect(try EgressPolicy.Rule(.wildcard("Example.com"), ports: [8443]).description == "*.example.com:8443")
        #expect(try EgressPolicy.Rule(.network(IPNetwork(parsing: "2001:db8::/32")), ports: [443]).description == "[2001:db8::/32]:443")
        #expect(try EgressPolicy.Rule(.domain("x.com"), ports: [65535]).ports == [65535])
        let refused: [(EgressPolicy.Rule.Target, Set<Int>?)] = [
            (.domain("*.example.com"), nil), (.wildcard("*.example.com"), nil), (.domain(""), nil), (.wildcard(""), nil),
            (.domain("a b"), nil), (.domain("x.com"), []), (.domain("x.com"), [0]), (.domain("x.com"), [443, 65536]),
            (.domain("x.com"), [-443]),
        ]
        for (target, ports) in refused {
            let error = #expect(throws: SecureExecError.self, "\(target) \(String(describing: ports))") {
                try EgressPolicy.Rule(target, ports: ports)
            }
            #expect(error?.code == .invalidArgument && error?.step == "egress")
        }
    }

    @Test("IP networks: host bits are masked, containment is by prefix and family")
    func networks() throws {
        let eight = try IPNetwork(parsing: "10.9.8.7/8")
        #expect(eight.address == IPAddress("10.0.0.0") && eight.prefixLength == 8 && eight.description == "10.0.0.0/8")
        #expect(eight.contains(address("10.255.255.255")) && eight.contains(address("10.0.0.0")))
        #expect(!eight.contains(address("11.0.0.0")) && !eight.contains(address("9.255.255.255")))
        #expect(!eight.contains(address("::ffff:10.0.0.1")), "an IPv4 network holds no IPv6 address")

        let twelve = try IPNetwork(parsing: "172.16.0.0/12")
        #expect(twelve.contains(address("172.31.255.255")) && !twelve.contains(address("172.32.0.0")))

        let host = try IPNetwork(parsing: "192.0.2.1")
        #expect(host.prefixLength == 32 && host.contains(address("192.0.2.1")) && !host.contains(address("192.0.2.2")))
        #expect(host.description == "192.0.2.1")

        let all = try IPNetwork(parsing: "0.0.0.0/0")
        #expect(all.contains(address("255.255.255.255")) && !all.contains(address("::")))

        let v6 = try IPNetwork(parsing: "2001:db8:1234::/33")
        #expect(v6.address == IPAddress("2001:db8::") && v6.prefixLength == 33)
        #expect(v6.contains(address("2001:db8:7fff::1")) && !v6.contains(address("2001:db8:8000::1")))
        #expect(try IPNetwork(parsing: "::1").prefixLength == 128)

        for bad in ["", "/8", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/+8", "1.2.3.4/33", "::1/129", "1.2.3.4/8/9", "example.com", "[::1]"] {
            let error = #expect(throws: SecureExecError.self, "\(bad.debugDescription)") { try IPNetwork(parsing: bad) }
            #expect(error?.code == .invalidArgument && error?.step == "egress")
        }
    }

    @Test("IP addresses: plain literals of either family, nothing else")
    func addresses() {
        #expect(IPAddress("192.0.2.1")?.bytes == [192, 0, 2, 1])
        #expect(IPAddress("192.0.2.1")?.isIPv4 == true)
        #expect(IPAddress("::1")?.bytes == [UInt8](repeating: 0, count: 15) + [1])
        #expect(IPAddress("::ffff:192.0.2.1")?.isIPv4 == false)
        #expect(IPAddress("2001:DB8:0:0::1")?.description == "2001:db8::1")
        #expect(IPAddress("::ffff:192.0.2.1")?.description == "::ffff:192.0.2.1")
        #expect(IPAddress(bytes: [203, 0, 113, 5])?.description == "203.0.113.5")
        #expect(IPAddress(bytes: [1, 2, 3]) == nil && IPAddress(bytes: []) == nil)
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 5)) == nil && IPAddress(bytes: [UInt8](repeating: 0, count: 17)) == nil)
        for bad in ["", "[::1]", "fe80::1%eth0", "1.2.3.4 ", "1.2.3", "256.1.1.1", "1.2.3.4\0", "example.com", "1.2.3.4/32"] {
            #expect(IPAddress(bad) == nil, "\(bad.debugDescription)")
        }
    }

    // MARK: Policy

    @Test("a policy from patterns parses each; the first bad one throws naming it")
    func policyFromPatterns() throws {
        let policy = try EgressPolicy(allow: ["api.example.com", "*.cdn.example.net:443", "10.0.0.0/8:5432"], maxConnections: 8)
        #expect(policy.rules.map(\.description) == ["api.example.com", "*.cdn.example.net:443", "10.0.0.0/8:5432"])
        #expect(policy.maxConnections == 8 && policy.maxBytes == nil && policy.resolver == .system)
        let error = #expect(throws: SecureExecError.self) { try EgressPolicy(allow: ["ok.example.com", "bad..example.com"]) }
        #expect(error?.message.contains("bad..example.com") == true)
    }

    @Test("validate checks the limits, the outbound namespace path and a hosts table")
    func validation() throws {
        try EgressPolicy().validate()
        try EgressPolicy(maxConnections: 1, maxBytes: 1, outboundNetworkNamespace: "/run/netns/out").validate()
        try EgressPolicy(maxConnections: 65536).validate()
        try EgressPolicy(resolver: .hosts(["API.example.com.": ["192.0.2.1", "2001:db8::1"]])).validate()
        let refused = [
            EgressPolicy(maxConnections: 0), EgressPolicy(maxConnections: 65537), EgressPolicy(maxConnections: -1),
            EgressPolicy(maxBytes: 0), EgressPolicy(maxBytes: -5), EgressPolicy(outboundNetworkNamespace: "run/netns/out"),
            EgressPolicy(outboundNetworkNamespace: ""), EgressPolicy(resolver: .hosts(["api.example.com": ["not-an-address"]])),
            EgressPolicy(resolver: .hosts(["bad name": ["192.0.2.1"]])), EgressPolicy(resolver: .hosts(["a.com..": ["192.0.2.1"]])),
        ]
        for policy in refused {
            let error = #expect(throws: SecureExecError.self, "\(policy)") { try policy.validate() }
            #expect(error?.code == .invalidArgument && error?.step == "egress")
        }
    }

    @Test("wildcards match names strictly below their domain; domains match exactly; case and a trailing dot do not matter")
    func nameMatching() throws {
        let policy = try EgressPolicy(allow: ["*.example.com", "api.other.com:8443", "api.example.com:22", "10.0.0.0/8"])
        for allowed in ["a.example.com", "a.b.example.com", "A.EXAMPLE.COM.", "api.other.com", "API.Other.Com."] {
            #expect(policy.nameAllowed(allowed), "\(allowed)")
        }
        let refusedNames = [
            "example.com", "badexample.com", "example.com.evil.net", ".example.com", "other.com", "x.api.other.com", "10.1.2.3", "",
        ]
        for refused in refusedNames {
            #expect(!policy.nameAllowed(refused), "\(refused)")
        }
        #expect(policy.matchingNameRules("api.example.com").map(\.description) == ["*.example.com", "api.example.com:22"])
        #expect(policy.matchingNameRules("www.example.com").map(\.description) == ["*.example.com"])
    }

    @Test("an IP rule covers addresses in its network, on its ports (any port when none is asked)")
    func ipRules() throws {
        let policy = try EgressPolicy(allow: ["10.0.0.0/8:22", "[2001:db8::/32]:443", "192.0.2.1", "db.example.com:5432"])
        #expect(policy.ipRule(covering: address("10.1.1.1"), port: 22)?.description == "10.0.0.0/8:22")
        #expect(policy.ipRule(covering: address("10.1.1.1"), port: 443) == nil)
        #expect(policy.ipRule(covering: address("10.1.1.1"), port: nil)?.description == "10.0.0.0/8:22")
        #expect(policy.ipRule(covering: address("11.0.0.1"), port: nil) == nil)
        #expect(policy.ipRule(covering: address("2001:db8::5"), port: 443) != nil)
        #expect(policy.ipRule(covering: address("2001:db9::5"), port: 443) == nil)
        #expect(policy.ipRule(covering: address("192.0.2.1"), port: 80) != nil)
        #expect(policy.ipRule(covering: address("192.0.2.1"), port: 22) == nil)
    }

    // MARK: Address classes

    static let classes: [(String, AddressClass)] = [
        ("127.0.0.1", .loopback), ("127.255.255.254", .loopback), ("::1", .loopback),
        ("10.0.0.1", .privateNetwork), ("10.255.255.255", .privateNetwork), ("172.16.0.1", .privateNetwork),
        ("172.31.255.255", .privateNetwork), ("192.168.1.1", .privateNetwork), ("fc00::1", .privateNetwork),
        ("fd00:ec2::254", .privateNetwork), ("fdff:ffff::1", .privateNetwork), ("fec0::1", .privateNetwork),
        ("169.254.169.254", .linkLocal), ("169.254.0.1", .linkLocal), ("fe80::1", .linkLocal), ("febf::1", .linkLocal),
        ("100.64.0.1", .sharedAddressSpace), ("100.127.255.255", .sharedAddressSpace),
        ("224.0.0.1", .multicast), ("239.255.255.250", .multicast), ("ff02::1", .multicast), ("ff0e::1", .multicast),
        ("0.0.0.0", .unspecified), ("::", .unspecified), ("255.255.255.255", .broadcast),
        ("0.1.2.3", .reserved), ("240.0.0.1", .reserved), ("255.255.255.254", .reserved), ("198.18.0.1", .reserved),
        ("198.19.255.255", .reserved), ("192.0.0.170", .reserved),
        // IPv6 forms that carry an IPv4 address are what that address is.
        ("::ffff:127.0.0.1", .loopback), ("::ffff:169.254.169.254", .linkLocal), ("::ffff:10.1.2.3", .privateNetwork),
        ("::ffff:8.8.8.8", .publicAddress), ("64:ff9b::a9fe:a9fe", .linkLocal), ("64:ff9b::10.0.0.1", .privateNetwork),
        ("64:ff9b::127.0.0.1", .loopback), ("64:ff9b::8.8.8.8", .publicAddress), ("2002:a9fe:a9fe::1", .linkLocal),
        ("2002:7f00:1::1", .loopback), ("2002:c0a8:101::", .privateNetwork), ("2002:808:808::1", .publicAddress),
        ("::127.0.0.1", .loopback), ("::10.0.0.1", .privateNetwork), ("::100.64.0.1", .sharedAddressSpace),
        ("64:ff9b:1::a00:1", .reserved), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", .reserved), ("2001:2::1", .reserved),
        ("4000::1", .reserved), ("100::1", .reserved),
        // Just outside the special blocks, and the documentation blocks the tests use.
        ("8.8.8.8", .publicAddress), ("203.0.113.5", .publicAddress), ("192.0.2.1", .publicAddress),
        ("198.51.100.1", .publicAddress), ("172.32.0.1", .publicAddress), ("172.15.255.255", .publicAddress),
        ("192.169.0.1", .publicAddress), ("100.128.0.1", .publicAddress), ("100.63.255.255", .publicAddress),
        ("198.20.0.1", .publicAddress), ("11.0.0.1", .publicAddress), ("126.255.255.255", .publicAddress),
        ("223.255.255.255", .publicAddress), ("192.0.1.255", .publicAddress), ("2606:4700::1111", .publicAddress),
        ("2001:db8::1", .publicAddress), ("2001:4860:4860::8888", .publicAddress), ("3fff:ffff::1", .publicAddress),
    ]

    @Test("every special range is classified, mapped, NAT64, compatible and 6to4 forms by their IPv4 address", arguments: classes)
    func classification(_ text: String, _ expected: AddressClass) {
        #expect(classify(address(text), hostAddresses: []) == expected)
    }

    @Test("the host's own public addresses are hostOwn, in any IPv6 form that carries them too")
    func hostOwnAddresses() {
        let host: Set<IPAddress> = [address("203.0.113.9"), address("2001:db8::9"), address("10.0.0.5")]
        #expect(classify(address("203.0.113.9"), hostAddresses: host) == .hostOwn)
        #expect(classify(address("::ffff:203.0.113.9"), hostAddresses: host) == .hostOwn)
        #expect(classify(address("64:ff9b::203.0.113.9"), hostAddresses: host) == .hostOwn)
        #expect(classify(address("2002:cb00:7109::1"), hostAddresses: host) == .hostOwn)
        #expect(classify(address("2001:db8::9"), hostAddresses: host) == .hostOwn)
        #expect(classify(address("203.0.113.10"), hostAddresses: host) == .publicAddress)
        #expect(classify(address("10.0.0.5"), hostAddresses: host) == .privateNetwork, "the range says more than hostOwn")
    }

    // MARK: Decisions

    @Test("answers: only for allowed names, and only public addresses unless an IP rule covers them")
    func answers() throws {
        let policy = try EgressPolicy(allow: ["api.example.com", "10.0.0.0/8:22", "192.0.2.0/24"])
        let host: Set<IPAddress> = [address("203.0.113.9")]
        func decision(_ name: String, _ text: String) -> EgressDecision {
            policy.answerDecision(name: name, address: address(text), hostAddresses: host)
        }
        #expect(decision("api.example.com", "203.0.113.5") == .allow)
        #expect(decision("API.example.com.", "2606:4700::1") == .allow)
        #expect(decision("evil.example.com", "203.0.113.5") == .deny(.nameNotAllowed))
        #expect(decision("evil.example.com", "10.1.1.1") == .deny(.nameNotAllowed), "an IP rule does not allow a name")
        #expect(decision("api.example.com", "172.16.0.1") == .deny(.privateAddress))
        #expect(decision("api.example.com", "169.254.169.254") == .deny(.privateAddress))
        #expect(decision("api.example.com", "::ffff:127.0.0.1") == .deny(.privateAddress))
        #expect(decision("api.example.com", "fd00:ec2::254") == .deny(.privateAddress))
        #expect(decision("api.example.com", "203.0.113.9") == .deny(.privateAddress), "the host's own address")
        #expect(decision("api.example.com", "10.1.1.1") == .allow, "an IP rule covers it (on another port)")
        #expect(decision("api.example.com", "192.0.2.77") == .allow)
    }

    @Test("connections: an IP rule on the port, or a public address pinned by an allowed name on one of its ports")
    func connections() throws {
        let policy = try EgressPolicy(allow: ["api.example.com", "*.cdn.example.net:8443", "10.0.0.0/8:22", "[2001:db8::/32]:443"])
        let host: Set<IPAddress> = [address("203.0.113.9")]
        func decision(_ text: String, _ port: Int, _ pins: Set<String> = []) -> EgressDecision {
            policy.connectionDecision(address: address(text), port: port, pinnedNames: pins, hostAddresses: host)
        }
        #expect(decision("10.1.2.3", 22) == .allow)
        #expect(decision("2001:db8::1", 443) == .allow)
        #expect(decision("203.0.113.5", 443, ["api.example.com"]) == .allow)
        #expect(decision("203.0.113.5", 80, ["api.example.com"]) == .allow)
        #expect(decision("203.0.113.5", 8443, ["api.example.com", "x.cdn.example.net"]) == .allow, "either pinned name's ports")
        #expect(decision("203.0.113.5", 22, ["api.example.com"]) == .deny(.portNotAllowed))
        #expect(decision("203.0.113.5", 443, ["x.cdn.example.net"]) == .deny(.portNotAllowed))
        #expect(decision("172.16.0.1", 443, ["api.example.com"]) == .deny(.privateAddress))
        #expect(decision("10.1.2.3", 443, ["api.example.com"]) == .deny(.privateAddress), "covered by an IP rule only on 22")
        #expect(decision("203.0.113.9", 443, ["api.example.com"]) == .deny(.privateAddress), "the host's own address")
        #expect(decision("10.1.2.3", 443) == .deny(.portNotAllowed))
        #expect(decision("2001:db8::1", 80) == .deny(.portNotAllowed))
        #expect(decision("203.0.113.5", 443) == .deny(.addressNotAllowed))
        #expect(decision("203.0.113.5", 443, ["evil.example.org"]) == .deny(.addressNotAllowed))
        #expect(decision("127.0.0.1", 443) == .deny(.addressNotAllowed))
    }

    // MARK: Resolvers

    @Test("a hosts table resolves normalized names, in order, without duplicates; other names do not resolve")
    func hostsResolver() async throws {
        let resolver = EgressResolver.hosts([
            "API.Example.com.": ["192.0.2.1", "2001:db8::1", "192.0.2.1"], "api.example.com": ["192.0.2.2"],
        ])
        let found = try await resolver.resolve("api.EXAMPLE.com")
        #expect(found == [address("192.0.2.1"), address("2001:db8::1"), address("192.0.2.2")])
        #expect(try await resolver.resolve("other.example.com").isEmpty)
        #expect(resolver == .hosts(["api.example.com": ["192.0.2.1", "2001:db8::1", "192.0.2.1", "192.0.2.2"]]))
        await #expect(throws: SecureExecError.self) { try await EgressResolver.hosts(["x.com": ["nope"]]).resolve("x.com") }
    }

    @Test("a custom resolver gets the normalized name; its results are deduplicated; each one equals only itself")
    func customResolver() async throws {
        let resolver = EgressResolver.custom { name in
            #expect(name == "api.example.com")
            return [address("192.0.2.1"), address("192.0.2.1"), address("2001:db8::1")]
        }
        #expect(try await resolver.resolve("API.example.com.") == [address("192.0.2.1"), address("2001:db8::1")])
        #expect(resolver == resolver)
        #expect(resolver != EgressResolver.custom({ _ in [] }))
        #expect(resolver != .system)
    }

    @Test("the system resolver answers from the host: literals and localhost")
    func systemResolver() async throws {
        #expect(try await EgressResolver.system.resolve("192.0.2.7") == [address("192.0.2.7")])
        let local = try await EgressResolver.system.resolve("localhost")
        #expect(!local.isEmpty)
        #expect(local.allSatisfy { classify($0, hostAddresses: []) == .loopback }, "\(local)")
    }

    // MARK: Events

    @Test("an event is one line: reason, host or address with port, detail; control characters escaped")
    func eventDescription() {
        let named = EgressEvent(
            reason: .nameNotAllowed, host: "api.evil.com", address: nil, port: 443, detail: "api.evil.com is not on the allow-list")
        #expect(named.description == "egress denied: nameNotAllowed api.evil.com:443 — api.evil.com is not on the allow-list")
        let v6 = EgressEvent(reason: .addressNotAllowed, host: nil, address: "2001:db8::1", port: 22, detail: "no rule")
        #expect(v6.description == "egress denied: addressNotAllowed [2001:db8::1]:22 — no rule")
        let bare = EgressEvent(reason: .connectionLimit, host: nil, address: nil, port: nil, detail: "256 open")
        #expect(bare.description == "egress denied: connectionLimit — 256 open")
        let hostile = EgressEvent(reason: .nameNotAllowed, host: "a\nb\u{1B}[2J", address: nil, port: nil, detail: "x\r\u{2028}y")
        #expect(!hostile.description.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "\u{2028}" })
        #expect(hostile.description.contains("a\\u{a}b\\u{1b}[2J"))
    }

    @Test("an event's JSON is one line that decodes back to its fields")
    func eventJSON() throws {
        let event = EgressEvent(
            reason: .privateAddress, host: "q\"uote\\back\nline\u{1}\u{7F}é\u{2028}", address: "10.0.0.1", port: 443,
            detail: "tab\there")
        #expect(!event.json.contains("\n") && !event.json.contains("\u{2028}") && !event.json.contains("\u{7F}"))
        let object = try #require(JSONSerialization.jsonObject(with: Data(event.json.utf8)) as? [String: Any])
        #expect(object["event"] as? String == "egress-denied")
        #expect(object["reason"] as? String == "privateAddress")
        #expect(object["host"] as? String == event.host)
        #expect(object["address"] as? String == "10.0.0.1")
        #expect(object["port"] as? Int == 443)
        #expect(object["detail"] as? String == "tab\there")

        let empty = EgressEvent(reason: .byteLimit, host: nil, address: nil, port: nil, detail: "")
        #expect(empty.json == #"{"event":"egress-denied","reason":"byteLimit","host":null,"address":null,"port":null,"detail":""}"#)
    }
}

/// The rule target for the network `text`, recording an issue when it does not parse.
private func network(_ text: String) -> EgressPolicy.Rule.Target {
    do {
        return .network(try IPNetwork(parsing: text))
    } catch {
        Issue.record("\(text): \(error)")
        return .domain("unparsable.invalid")
    }
}

/// The address `text` is, recording an issue when it is none.
private func address(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> IPAddress {
    guard let address = IPAddress(text) else {
        Issue.record("\(text) is not an IP literal", sourceLocation: sourceLocation)
        return IPAddress(bytes: [0, 0, 0, 0])!
    }
    return address
}

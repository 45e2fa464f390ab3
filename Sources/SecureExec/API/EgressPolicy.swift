import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address: 4 or 16 bytes in network order.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address in network byte order: 4 bytes for IPv4, 16 for IPv6.
    public let bytes: [UInt8]

    /// True for a 4-byte IPv4 address (an IPv4-mapped IPv6 address is IPv6).
    public var isIPv4: Bool { bytes.count == 4 }

    /// Parses a plain IPv4 (`192.0.2.1`) or IPv6 (`2001:db8::1`) literal as
    /// `inet_pton` does; nil for anything else (names, brackets, zone ids, prefixes).
    public init?(_ text: String) {
        // A NUL would end the C string early and let "1.2.3.4\0junk" through.
        guard !text.contains("\0") else { return nil }
        if text.contains(":") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &address) { Array($0) }
        } else {
            var address = in_addr()
            guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &address) { Array($0) }
        }
    }

    /// The address with these bytes in network order; nil unless there are 4 or 16.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// The address as `inet_ntop` writes it: `192.0.2.1`, `2001:db8::1`, `::ffff:192.0.2.1`.
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let written = bytes.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        guard written else { return bytes.map(String.init).joined(separator: ".") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The address with every bit past the first `bits` cleared.
    func masked(to bits: Int) -> IPAddress {
        var masked = bytes
        for index in masked.indices {
            let kept = min(max(bits - index * 8, 0), 8)
            masked[index] &= kept == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - kept))
        }
        return IPAddress(uncheckedBytes: masked)
    }

    private init(uncheckedBytes: [UInt8]) { bytes = uncheckedBytes }
}

/// An IPv4 or IPv6 address, or a network (address + prefix length).
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// The network's first address: the parsed address with its host bits cleared.
    public let address: IPAddress
    /// The number of leading bits that name the network: 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int

    /// Parses `10.0.0.0/8`, `1.2.3.4` (a /32), `2001:db8::/32` or `::1` (a /128).
    ///
    /// Host bits may be set (`10.1.2.3/8` is `10.0.0.0/8`). Anything else
    /// throws `.invalidArgument` (step `egress`) naming the text.
    public init(parsing text: String) throws(SecureExecError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let parsed = IPAddress(String(parts[0])) else {
            throw egressError("\(text.debugDescription) is not an IP address or network")
        }
        let maximum = parsed.bytes.count * 8
        var length = maximum
        if parts.count == 2 {
            guard let value = decimal(parts[1]), value <= maximum else {
                throw egressError("\(text.debugDescription) has a prefix length that is not 0...\(maximum)")
            }
            length = value
        }
        address = parsed.masked(to: length)
        prefixLength = length
    }

    /// True when `address` is of the same family and its first `prefixLength` bits match.
    ///
    /// An IPv4 network never contains an IPv6 address, IPv4-mapped ones included.
    public func contains(_ address: IPAddress) -> Bool {
        address.bytes.count == self.address.bytes.count && address.masked(to: prefixLength) == self.address
    }

    /// `10.0.0.0/8`, `2001:db8::/32`; a single address without its prefix length.
    public var description: String {
        prefixLength == address.bytes.count * 8 ? "\(address)" : "\(address)/\(prefixLength)"
    }
}

/// Which outbound TCP connections guests may open, and how many.
///
/// Everything is denied unless a rule allows it. A name rule allows the
/// addresses the guest got by asking the supervisor's DNS for that name,
/// and only public ones: loopback, private, link-local, shared (CGNAT),
/// multicast, reserved and the host's own addresses are dropped from the
/// answers unless an IP rule names them. An IP rule allows its addresses
/// directly; special ones only when the rule lies inside special space
/// (`10.0.0.0/8` opens private addresses, `0.0.0.0/0` does not).
public struct EgressPolicy: Sendable, Hashable {
    /// One allow-list entry: a name, a wildcard or an IP network, and its ports.
    public struct Rule: Sendable, Hashable, CustomStringConvertible {
        /// What a rule allows.
        public enum Target: Sendable, Hashable {
            /// Exactly this name (`api.example.com`), lowercased, without a trailing dot.
            case domain(String)
            /// Any name strictly below this domain: `.wildcard("example.com")` is
            /// `*.example.com` and allows `a.example.com`, not `example.com` itself.
            case wildcard(String)
            /// Any public address in this network, and its special ones
            /// (loopback, private, link-local, the host's own) when the whole
            /// network lies inside special space of one kind.
            case network(IPNetwork)
        }

        /// What the rule allows, normalized (lowercase names without a trailing dot).
        public let target: Target
        /// nil means the default ports, 443 and 80.
        public let ports: Set<Int>?
        /// The ports the rule allows: `ports`, or 443 and 80 when that is nil.
        public var allowedPorts: Set<Int> { ports ?? [443, 80] }

        /// Parses one pattern of the CLI's `--allow-host` syntax, `PATTERN[:PORT[,PORT...]]`.
        ///
        /// PATTERN is a domain (`api.example.com`), a wildcard (`*.example.com`:
        /// any name strictly below example.com, not example.com itself), an IPv4
        /// address or CIDR (`10.1.2.3`, `10.0.0.0/8`), or an IPv6 address or CIDR.
        /// IPv6 with ports must be bracketed: `[2001:db8::1]:443`, `[2001:db8::/32]:443,8443`;
        /// unbracketed text with 2+ colons is IPv6 with the default ports (so `::1:443` is
        /// the address `::1:443`). Domains are lowercased and lose a trailing dot; each label is
        /// 1...63 letters, digits, underscores and inner hyphens, the name at most 253 characters,
        /// and the last label not all digits (that would be a malformed address). Ports are 1...65535.
        /// Anything else throws `.invalidArgument` (step `egress`) naming the pattern.
        public init(parsing pattern: String) throws(SecureExecError) {
            var host = pattern[...]
            var portList: Substring?
            if pattern.hasPrefix("[") {
                // Brackets exist only to separate an IPv6 address from its ports.
                guard let close = pattern.firstIndex(of: "]") else {
                    throw Self.invalid(pattern, "an opening [ has no closing ]")
                }
                host = pattern[pattern.index(after: pattern.startIndex)..<close]
                let rest = pattern[pattern.index(after: close)...]
                guard rest.hasPrefix(":") else {
                    throw Self.invalid(pattern, "brackets are only for an IPv6 address followed by :PORT")
                }
                guard host.contains(":") else { throw Self.invalid(pattern, "only IPv6 addresses are bracketed") }
                portList = rest.dropFirst()
            } else if pattern.count(where: { $0 == ":" }) == 1, let colon = pattern.firstIndex(of: ":") {
                host = pattern[..<colon]
                portList = pattern[pattern.index(after: colon)...]
            }
            let ports: Set<Int>?
            if let portList {
                var parsed: Set<Int> = []
                for text in portList.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let port = decimal(text), (1...65535).contains(port) else {
                        throw Self.invalid(pattern, "\(String(text).debugDescription) is not a port 1...65535")
                    }
                    parsed.insert(port)
                }
                ports = parsed
            } else {
                ports = nil
            }
            let target: Target
            if host.hasPrefix("*.") {
                target = .wildcard(String(host.dropFirst(2)))
            } else if host.contains("/") || host.contains(":") || IPAddress(String(host)) != nil {
                do {
                    target = .network(try IPNetwork(parsing: String(host)))
                } catch {
                    throw Self.invalid(pattern, "not an IP address or network")
                }
            } else {
                target = .domain(String(host))
            }
            try self.init(target, ports: ports, pattern: pattern)
        }

        /// A rule for `target` and `ports` (nil: 443 and 80), checked like `init(parsing:)`.
        ///
        /// Names are normalized (lowercased, a trailing dot removed); a wildcard's
        /// value is the parent domain without `*.`. Invalid names and ports throw
        /// `.invalidArgument` (step `egress`).
        public init(_ target: Target, ports: Set<Int>? = nil) throws(SecureExecError) {
            try self.init(target, ports: ports, pattern: nil)
        }

        private init(_ target: Target, ports: Set<Int>?, pattern: String?) throws(SecureExecError) {
            switch target {
            case .domain(let name):
                guard let normalized = EgressNames.validDomain(name) else {
                    throw Self.invalid(pattern ?? name, "\(name.debugDescription) is not a valid domain name")
                }
                self.target = .domain(normalized)
            case .wildcard(let parent):
                guard let normalized = EgressNames.validDomain(parent) else {
                    throw Self.invalid(pattern ?? parent, "\(parent.debugDescription) is not a valid domain name to put under *.")
                }
                // `*.com` would allow a whole top-level domain: surely a slip.
                guard normalized.contains(".") else {
                    throw Self.invalid(
                        pattern ?? parent, "*.\(normalized) would allow every name under a top-level domain; name the domain")
                }
                self.target = .wildcard(normalized)
            case .network:
                self.target = target
            }
            if let ports {
                guard !ports.isEmpty else { throw Self.invalid(pattern ?? "\(self.target)", "the port list is empty") }
                if let bad = ports.sorted().first(where: { !(1...65535).contains($0) }) {
                    throw Self.invalid(pattern ?? "\(self.target)", "\(bad) is not a port 1...65535")
                }
            }
            self.ports = ports
        }

        private static func invalid(_ pattern: String, _ why: String) -> SecureExecError {
            egressError("\(pattern.debugDescription) is not a valid allow-host pattern: \(why)")
        }

        /// The rule in `--allow-host` syntax: `api.example.com`, `*.example.com:443,8443`, `[2001:db8::/32]:443`.
        public var description: String {
            let host: String
            switch target {
            case .domain(let name): host = name
            case .wildcard(let parent): host = "*." + parent
            case .network(let network): host = network.address.isIPv4 || ports == nil ? "\(network)" : "[\(network)]"
            }
            guard let ports else { return host }
            return host + ":" + ports.sorted().map(String.init).joined(separator: ",")
        }
    }

    /// The allow-list; empty (the default) allows no connection at all.
    public var rules: [Rule]
    /// How names the guest asks for are resolved, on the host. Default `.system`.
    public var resolver: EgressResolver
    /// Concurrent outbound connections per runtime (`connectionLimit` past it). Default 256; 1...65536.
    public var maxConnections: Int
    /// Bytes both directions per runtime, over all its connections (`byteLimit`
    /// past it). Default nil (unbounded); at least 1 when set.
    public var maxBytes: Int?
    /// Path to a network namespace file (e.g. `/run/netns/egress`) that the
    /// supervisor dials out from; nil (the default) dials from the supervisor's own.
    public var outboundNetworkNamespace: String?

    /// A policy with these rules and limits; `validate()` checks the limits.
    public init(
        rules: [Rule] = [], resolver: EgressResolver = .system, maxConnections: Int = 256, maxBytes: Int? = nil,
        outboundNetworkNamespace: String? = nil
    ) {
        self.rules = rules
        self.resolver = resolver
        self.maxConnections = maxConnections
        self.maxBytes = maxBytes
        self.outboundNetworkNamespace = outboundNetworkNamespace
    }

    /// A policy whose rules are `patterns` in `--allow-host` syntax (see `Rule.init(parsing:)`).
    ///
    /// The first invalid pattern throws `.invalidArgument` (step `egress`) naming it.
    public init(
        allow patterns: [String], resolver: EgressResolver = .system, maxConnections: Int = 256, maxBytes: Int? = nil,
        outboundNetworkNamespace: String? = nil
    ) throws(SecureExecError) {
        var rules: [Rule] = []
        for pattern in patterns { rules.append(try Rule(parsing: pattern)) }
        self.init(
            rules: rules, resolver: resolver, maxConnections: maxConnections, maxBytes: maxBytes,
            outboundNetworkNamespace: outboundNetworkNamespace)
    }

    /// Checks the limits and settings: `maxConnections` 1...65536, `maxBytes` at
    /// least 1 when set, `outboundNetworkNamespace` an absolute path when set,
    /// and a `.hosts` resolver's names and addresses well formed.
    ///
    /// Throws `.invalidArgument` (step `egress`) naming the first bad value.
    public func validate() throws(SecureExecError) {
        guard (1...65536).contains(maxConnections) else {
            throw egressError("maxConnections must be 1...65536, got \(maxConnections)")
        }
        if let maxBytes, maxBytes < 1 { throw egressError("maxBytes must be at least 1 when set, got \(maxBytes)") }
        if let path = outboundNetworkNamespace, !path.hasPrefix("/") || path.contains("\0") {
            throw egressError("outboundNetworkNamespace must be an absolute path, got \(path.debugDescription)")
        }
        try resolver.validate()
    }
}

/// How the supervisor resolves names for the guest, on the host.
///
/// Only names the policy allows are ever resolved; what comes back is still
/// filtered (special addresses dropped) before the guest sees it.
public struct EgressResolver: Sendable, Hashable {
    private enum Kind: Sendable, Hashable {
        case system
        case hosts([String: [String]])
        case custom(ResolveFunction)
    }

    /// A closure compared by identity: two resolvers made by separate `custom` calls differ.
    private final class ResolveFunction: Sendable, Hashable {
        let resolve: @Sendable (String) async throws -> [IPAddress]
        init(_ resolve: @escaping @Sendable (String) async throws -> [IPAddress]) { self.resolve = resolve }
        static func == (lhs: ResolveFunction, rhs: ResolveFunction) -> Bool { lhs === rhs }
        func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    }

    private let kind: Kind

    private init(_ kind: Kind) { self.kind = kind }

    /// The host's own resolver (`getaddrinfo`, so `/etc/hosts` and `/etc/resolv.conf`
    /// of the supervisor), with `AI_ADDRCONFIG`: IPv6 answers only when the host has IPv6.
    ///
    /// Each lookup runs on a Dispatch thread, never on the cooperative pool.
    public static let system = EgressResolver(.system)

    /// A fixed table, name -> address literals; names not in it do not resolve.
    ///
    /// Names are normalized like rules' domains (lowercased, a trailing dot
    /// removed). `EgressPolicy.validate()` refuses a name that is not a valid
    /// domain or an address that is not an IPv4 or IPv6 literal.
    public static func hosts(_ table: [String: [String]]) -> EgressResolver {
        var normalized: [String: [String]] = [:]
        // Sorted, so names that normalize alike merge in the same order every time.
        for (name, addresses) in table.sorted(by: { $0.key < $1.key }) {
            normalized[EgressNames.normalized(name), default: []] += addresses
        }
        return EgressResolver(.hosts(normalized))
    }

    /// Resolution by the caller's closure, given the normalized name; an empty
    /// result means the name does not exist, a throw that resolution failed.
    ///
    /// Each call of `custom` makes a resolver equal only to itself.
    public static func custom(_ resolve: @escaping @Sendable (String) async throws -> [IPAddress]) -> EgressResolver {
        EgressResolver(.custom(ResolveFunction(resolve)))
    }

    /// The addresses of `name` (normalized first), duplicates removed, in the resolver's order.
    ///
    /// Empty when the name does not exist (or has no address); throws when
    /// resolution itself failed (`.system`: a `getaddrinfo` error other than
    /// "no such name", as `.ioFailed` step `getaddrinfo`; a custom closure's own error).
    package func resolve(_ name: String) async throws -> [IPAddress] {
        let name = EgressNames.normalized(name)
        let found: [IPAddress]
        switch kind {
        case .system:
            // getaddrinfo cannot be interrupted: against a DNS server that
            // never answers, each lookup holds a thread for its own timeouts.
            // A process-wide cap keeps guests' lookups from holding many.
            guard systemLookups.add(1, ordering: .relaxed).newValue <= maxSystemLookups else {
                systemLookups.subtract(1, ordering: .relaxed)
                throw SecureExecError(
                    .ioFailed, "\(maxSystemLookups) host lookups are already running; \(name) was not looked up",
                    step: "getaddrinfo")
            }
            defer { systemLookups.subtract(1, ordering: .relaxed) }
            found = try await Blocking.run { () throws(SecureExecError) in try systemLookup(name) }
        case .hosts(let table):
            var parsed: [IPAddress] = []
            for text in table[name] ?? [] {
                guard let address = IPAddress(text) else {
                    throw egressError("the hosts table gives \(name) the address \(text.debugDescription), which is not an IP literal")
                }
                parsed.append(address)
            }
            found = parsed
        case .custom(let function):
            found = try await function.resolve(name)
        }
        var seen: Set<IPAddress> = []
        return found.filter { seen.insert($0).inserted }
    }

    fileprivate func validate() throws(SecureExecError) {
        guard case .hosts(let table) = kind else { return }
        for (name, addresses) in table.sorted(by: { $0.key < $1.key }) {
            // Keys were normalized once already: one that changes again (two trailing dots) would never match.
            guard EgressNames.validDomain(name) == name else {
                throw egressError("the hosts table's name \(name.debugDescription) is not a valid domain name")
            }
            if let bad = addresses.first(where: { IPAddress($0) == nil }) {
                throw egressError("the hosts table gives \(name) the address \(bad.debugDescription), which is not an IP literal")
            }
        }
    }
}

/// One outbound connection or name lookup the supervisor refused.
public struct EgressEvent: Sendable, Hashable, CustomStringConvertible {
    /// Why it was refused.
    public enum Reason: String, Sendable, Hashable {
        /// The name is not on the allow-list.
        case nameNotAllowed
        /// The address is allowed, but not on this port.
        case portNotAllowed
        /// No allowed name was answered with this address and no IP rule covers it.
        case addressNotAllowed
        /// The address is special (loopback, private, link-local, the host's own, ...) and no IP rule names it.
        case privateAddress
        /// The policy that allowed it was withdrawn.
        case revoked
        /// The runtime already has `maxConnections` connections open.
        case connectionLimit
        /// The runtime used up `maxBytes`.
        case byteLimit
        /// Resolving an allowed name failed on the host.
        case resolutionFailed
        /// Connecting out from the host failed.
        case upstreamUnreachable
        /// More refusals of one kind came in a second than are reported; this
        /// event says how many were left out.
        case eventsDropped
    }

    /// Why it was refused.
    public let reason: Reason
    /// The name the guest asked for or that was pinned to the address, if any.
    public let host: String?
    /// The destination address as text, if there was one.
    public let address: String?
    /// The destination port, if there was one.
    public let port: Int?
    /// One human sentence, e.g. "api.evil.com is not on the allow-list".
    public let detail: String

    /// An event with these fields, as the supervisor reports it.
    public init(reason: Reason, host: String?, address: String?, port: Int?, detail: String) {
        self.reason = reason
        self.host = host
        self.address = address
        self.port = port
        self.detail = detail
    }

    /// `egress denied: <reason> <host or address>:<port> — <detail>` on one
    /// line; control characters (which the guest could choose) are escaped.
    public var description: String {
        var target = host ?? address ?? ""
        if let port {
            if host == nil, target.contains(":") { target = "[\(target)]" }
            target += ":\(port)"
        }
        let parts = ["egress denied:", reason.rawValue, target].filter { !$0.isEmpty }.joined(separator: " ")
        return EgressNames.printable(parts + " — " + detail)
    }

    /// The event as one line of JSON: `{"event":"egress-denied","reason":...,
    /// "host":...,"address":...,"port":...,"detail":...}`, absent values `null`.
    public var json: String {
        func string(_ value: String?) -> String { value.map(jsonString) ?? "null" }
        return "{\"event\":\"egress-denied\",\"reason\":\(jsonString(reason.rawValue)),\"host\":\(string(host)),"
            + "\"address\":\(string(address)),\"port\":\(port.map(String.init) ?? "null"),\"detail\":\(jsonString(detail))}"
    }
}

/// How names are normalized, checked and shown, for rules, hosts tables and events.
enum EgressNames {
    /// ASCII letters lowercased, one trailing dot removed; not checked.
    ///
    /// Only ASCII is folded: Unicode case mapping would turn the Kelvin sign into `k`.
    static func normalized(_ name: String) -> String {
        var bytes = Array(name.utf8)
        for index in bytes.indices where (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(bytes[index]) { bytes[index] += 32 }
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The normalized name if it is a valid domain: labels of 1...63 ASCII
    /// letters, digits, underscores and inner hyphens, at most 253 characters,
    /// the last label not all digits (`1.2.3` and `999.1.1.1` look like addresses
    /// and a guest's resolver would never ask for them by name).
    static func validDomain(_ name: String) -> String? {
        let name = normalized(name)
        guard (1...253).contains(name.utf8.count) else { return nil }
        let labels = name.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else {
                return nil
            }
            let valid = label.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            }
            guard valid else { return nil }
        }
        guard let last = labels.last, !last.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
            return nil
        }
        return name
    }

    /// `text` with control characters (and line and paragraph separators) written as `\u{…}`, so it stays one line.
    static func printable(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}" {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}

/// `text` as a JSON string literal; every control character escaped, so the line never breaks.
private func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F || scalar == "\u{2028}" || scalar == "\u{2029}"
                || scalar.properties.generalCategory == .control
            {
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}

/// A non-negative decimal of ASCII digits only (no sign, no spaces); nil otherwise or on overflow.
private func decimal(_ text: Substring) -> Int? {
    guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
    return Int(text)
}

private func egressError(_ message: String) -> SecureExecError {
    SecureExecError(.invalidArgument, message, step: "egress")
}

// glibc's EAI_NODATA and EAI_ADDRFAMILY (netdb.h), which Swift does not import: they need __USE_GNU.
private let eaiNoData: Int32 = -5
private let eaiAddressFamily: Int32 = -9

/// Host lookups running now, in the whole process, and their cap.
private let systemLookups = Atomic<Int>(0)
private let maxSystemLookups = 32

/// `getaddrinfo(name, AF_UNSPEC, SOCK_STREAM)`: blocks, so run it through `Blocking`.
private func systemLookup(_ name: String) throws(SecureExecError) -> [IPAddress] {
    guard !name.isEmpty, !name.contains("\0") else { return [] }
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_ADDRCONFIG
    var list: UnsafeMutablePointer<addrinfo>?
    if let literal = IPAddress(name) { return [literal] }
    // A dotted name is looked up as absolute (a trailing dot), so the host's
    // search domains never turn a guest's name into one of the host's
    // internal names; glibc then skips /etc/hosts for it. A single label
    // ("localhost") is looked up as is.
    let absolute = name.contains(".") && !name.hasSuffix(".") ? name + "." : name
    let status = getaddrinfo(absolute, nil, &hints, &list)
    defer { if let list { freeaddrinfo(list) } }
    switch status {
    case 0: break
    // No such name, or a name with no address of a family in use: an empty answer, not a failure.
    case EAI_NONAME, eaiNoData, eaiAddressFamily: return []
    default:
        let errno = status == EAI_SYSTEM ? Glibc.errno : nil
        throw SecureExecError(
            .ioFailed, "resolving \(name) failed: \(String(cString: gai_strerror(status)))", step: "getaddrinfo", errno: errno)
    }
    var addresses: [IPAddress] = []
    var entry = list
    while let current = entry {
        if let socketAddress = current.pointee.ai_addr {
            switch Int32(current.pointee.ai_family) {
            case AF_INET:
                let bytes = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
                }
                if let address = IPAddress(bytes: bytes) { addresses.append(address) }
            case AF_INET6:
                let bytes = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                }
                if let address = IPAddress(bytes: bytes) { addresses.append(address) }
            default: break
            }
        }
        entry = current.pointee.ai_next
    }
    return addresses
}

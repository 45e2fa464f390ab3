/// What kind of destination an address is, for egress.
///
/// Everything but `publicAddress` is special: a guest never gets it from a
/// name rule, only from an IP rule that covers it.
package enum AddressClass: String, Sendable {
    /// 127.0.0.0/8, ::1.
    case loopback
    /// 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10.
    case privateNetwork
    /// 169.254/16 (cloud metadata 169.254.169.254 included), fe80::/10.
    case linkLocal
    /// 100.64/10, carrier-grade NAT.
    case sharedAddressSpace
    /// 224/4, ff00::/8.
    case multicast
    /// 0.0.0.0, ::.
    case unspecified
    /// 255.255.255.255.
    case broadcast
    /// 0/8, 192.0.0/24, 198.18/15, 240/4; IPv6 outside 2000::/3 and some blocks inside it.
    case reserved
    /// One of the host's own addresses that would otherwise be public.
    case hostOwn
    /// Anything else.
    case publicAddress
}

/// IPv4 blocks, first match wins (so 255.255.255.255 comes before 240/4).
private let specialIPv4: [(prefix: [UInt8], bits: Int, kind: AddressClass)] = [
    ([0, 0, 0, 0], 32, .unspecified),
    ([255, 255, 255, 255], 32, .broadcast),
    ([0], 8, .reserved),
    ([10], 8, .privateNetwork),
    ([100, 64], 10, .sharedAddressSpace),
    ([127], 8, .loopback),
    ([169, 254], 16, .linkLocal),
    ([172, 16], 12, .privateNetwork),
    // IETF protocol assignments: DS-Lite and NAT64 discovery endpoints, never global.
    ([192, 0, 0], 24, .reserved),
    ([192, 168], 16, .privateNetwork),
    // Benchmarking. The documentation blocks (192.0.2/24, 198.51.100/24, 203.0.113/24) stay public.
    ([198, 18], 15, .reserved),
    ([224], 4, .multicast),
    ([240], 4, .reserved),
]

/// IPv6 blocks that are special on their own, after the ones that embed an IPv4 address.
private let specialIPv6: [(prefix: [UInt8], bits: Int, kind: AddressClass)] = [
    // Local-use NAT64 (RFC 8215): its IPv4 address sits where the operator chose, so it is never public.
    ([0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01], 48, .reserved),
    // Teredo embeds an obfuscated IPv4 client address a tunnel could reach.
    ([0x20, 0x01, 0x00, 0x00], 32, .reserved),
    ([0x20, 0x01, 0x00, 0x02, 0x00, 0x00], 48, .reserved),
    ([0xFC], 7, .privateNetwork),
    ([0xFE, 0xC0], 10, .privateNetwork),
    ([0xFE, 0x80], 10, .linkLocal),
    ([0xFF], 8, .multicast),
]

/// Classifies `address`; `hostAddresses` are the host's own, which are special too.
///
/// IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96,
/// IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are classified
/// by that IPv4 address, since the kernel or a translator may deliver them there.
package func classify(_ address: IPAddress, hostAddresses: Set<IPAddress>) -> AddressClass {
    let kind = address.isIPv4 ? classifyIPv4(address.bytes) : classifyIPv6(address.bytes, hostAddresses: hostAddresses)
    if kind == .publicAddress, hostAddresses.contains(address) { return .hostOwn }
    return kind
}

private func classifyIPv4(_ bytes: [UInt8]) -> AddressClass {
    specialIPv4.first { bytes.hasBitPrefix($0.prefix, bits: $0.bits) }?.kind ?? .publicAddress
}

private func classifyIPv6(_ bytes: [UInt8], hostAddresses: Set<IPAddress>) -> AddressClass {
    func embedded(_ range: Range<Int>) -> AddressClass {
        guard let inner = IPAddress(bytes: Array(bytes[range])) else { return .reserved }
        return classify(inner, hostAddresses: hostAddresses)
    }
    let zeros = [UInt8](repeating: 0, count: 16)
    if bytes == zeros { return .unspecified }
    if bytes == zeros.dropLast() + [1] { return .loopback }
    if bytes.hasBitPrefix(zeros.prefix(10) + [0xFF, 0xFF], bits: 96) { return embedded(12..<16) }
    if bytes.hasBitPrefix(zeros.prefix(12), bits: 96) { return embedded(12..<16) }
    if bytes.hasBitPrefix([0x00, 0x64, 0xFF, 0x9B] + zeros.prefix(8), bits: 96) { return embedded(12..<16) }
    if bytes.hasBitPrefix([0x20, 0x02], bits: 16) { return embedded(2..<6) }
    if let special = specialIPv6.first(where: { bytes.hasBitPrefix($0.prefix, bits: $0.bits) }) { return special.kind }
    // Only 2000::/3 is allocated for global unicast; the rest has no route anyway.
    return bytes.hasBitPrefix([0x20], bits: 3) ? .publicAddress : .reserved
}

extension [UInt8] {
    /// True when the first `bits` bits equal those of `prefix` (which holds at least that many).
    fileprivate func hasBitPrefix<Prefix: Collection<UInt8>>(_ prefix: Prefix, bits: Int) -> Bool {
        let prefix = Array(prefix)
        guard count * 8 >= bits, prefix.count * 8 >= bits else { return false }
        for index in 0..<(bits + 7) / 8 {
            let kept = Swift.min(bits - index * 8, 8)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - kept))
            if self[index] & mask != prefix[index] & mask { return false }
        }
        return true
    }
}

/// Whether the supervisor lets an answer or a connection through, and if not, why.
package struct EgressDecision: Sendable, Equatable {
    /// True: let it through.
    package var allowed: Bool
    /// Why it was refused; nil when allowed.
    package var reason: EgressEvent.Reason?

    /// Let it through.
    package static let allow = EgressDecision(allowed: true, reason: nil)

    /// Refuse it for `reason`.
    package static func deny(_ reason: EgressEvent.Reason) -> EgressDecision {
        EgressDecision(allowed: false, reason: reason)
    }
}

extension EgressPolicy {
    /// The name rules that allow `name` (any case, a trailing dot ignored):
    /// domains equal to it, wildcards it lies strictly below.
    package func matchingNameRules(_ name: String) -> [Rule] {
        let name = EgressNames.normalized(name)
        return rules.filter { rule in
            switch rule.target {
            case .domain(let domain): return name == domain
            case .wildcard(let parent): return name.count > parent.count + 1 && name.hasSuffix("." + parent)
            case .network: return false
            }
        }
    }

    /// True when some name rule allows `name`.
    package func nameAllowed(_ name: String) -> Bool {
        !matchingNameRules(name).isEmpty
    }

    /// The first IP rule whose network holds `address` and whose ports include
    /// `port`; with `port` nil, any IP rule whose network holds it. For a
    /// special address (not `.publicAddress`), only a rule that names special
    /// space counts (`namesSpecialSpace`): `0.0.0.0/0` opens the public
    /// internet, never loopback, private, metadata or the host's own addresses.
    package func ipRule(covering address: IPAddress, port: Int?, hostAddresses: Set<IPAddress> = []) -> Rule? {
        let special = classify(address, hostAddresses: hostAddresses) != .publicAddress
        return rules.first { rule in
            guard case .network(let network) = rule.target, network.contains(address) else { return false }
            if special && !namesSpecialSpace(network, hostAddresses: hostAddresses) { return false }
            return port.map(rule.allowedPorts.contains) ?? true
        }
    }

    /// May `address` be given to the guest as an answer for `name`? (name allowed; address public, or covered by an IP rule)
    ///
    /// Refusals: `.nameNotAllowed`, `.privateAddress`.
    package func answerDecision(name: String, address: IPAddress, hostAddresses: Set<IPAddress>) -> EgressDecision {
        guard nameAllowed(name) else { return .deny(.nameNotAllowed) }
        if classify(address, hostAddresses: hostAddresses) == .publicAddress { return .allow }
        return ipRule(covering: address, port: nil, hostAddresses: hostAddresses) != nil ? .allow : .deny(.privateAddress)
    }

    /// May a connection to address:port go out, given the names pinned to that address (names the guest got this address for)?
    ///
    /// Allowed when an IP rule covers the address on this port, or when a
    /// pinned name's rule includes this port and the address is public.
    /// Refusals, first that applies: an allowed pinned name without this port
    /// (`.portNotAllowed`); an allowed pinned name but a special address
    /// (`.privateAddress`); an IP rule for the address without this port
    /// (`.portNotAllowed`); otherwise `.addressNotAllowed`.
    package func connectionDecision(
        address: IPAddress, port: Int, pinnedNames: Set<String>, hostAddresses: Set<IPAddress>
    ) -> EgressDecision {
        if ipRule(covering: address, port: port, hostAddresses: hostAddresses) != nil { return .allow }
        let nameRules = pinnedNames.flatMap(matchingNameRules)
        let portAllowed = nameRules.contains { $0.allowedPorts.contains(port) }
        let isPublic = classify(address, hostAddresses: hostAddresses) == .publicAddress
        if portAllowed && isPublic { return .allow }
        if !nameRules.isEmpty { return .deny(portAllowed ? .privateAddress : .portNotAllowed) }
        if ipRule(covering: address, port: nil, hostAddresses: hostAddresses) != nil { return .deny(.portNotAllowed) }
        return .deny(.addressNotAllowed)
    }
}

/// True when `network` lies in special space of one kind: its first and last
/// addresses are both special and of the same class (so every address
/// between is too: the special blocks of one class are never separated by
/// public space that a single prefix could span without one end being
/// public or of another class). `10.0.0.0/8` and `169.254.169.254/32` name
/// special space; `0.0.0.0/0`, `0.0.0.0/1` and `172.0.0.0/8` do not. A
/// host's own address is named only by a network that starts and ends at
/// host addresses (a /32 or /128 of it).
package func namesSpecialSpace(_ network: IPNetwork, hostAddresses: Set<IPAddress>) -> Bool {
    let first = network.address.bytes
    var last = first
    let hostBits = first.count * 8 - network.prefixLength
    for bit in 0..<hostBits {
        let index = first.count - 1 - bit / 8
        last[index] |= UInt8(1 << (bit % 8))
    }
    guard let low = IPAddress(bytes: first), let high = IPAddress(bytes: last) else { return false }
    let lowClass = classify(low, hostAddresses: hostAddresses)
    guard lowClass != .publicAddress, lowClass == classify(high, hostAddresses: hostAddresses) else { return false }
    // IPv6 outside 2000::/3 is reserved, but the blocks that embed an IPv4
    // address inside it take that address's class: a network reaching into
    // one (and not lying wholly inside it) spans more than one kind.
    guard !network.address.isIPv4 else { return true }
    return embeddingIPv4Blocks.allSatisfy { block in
        let shorter = min(block.bits, network.prefixLength)
        let overlaps = first.hasBitPrefix(block.prefix, bits: shorter)
        return !overlaps || network.prefixLength >= block.bits
    }
}

/// IPv6 blocks classified by the IPv4 address they carry (see `classifyIPv6`).
private let embeddingIPv4Blocks: [(prefix: [UInt8], bits: Int)] = [
    ([UInt8](repeating: 0, count: 10) + [0xFF, 0xFF], 96),
    ([UInt8](repeating: 0, count: 12), 96),
    ([0x00, 0x64, 0xFF, 0x9B] + [UInt8](repeating: 0, count: 8), 96),
    ([0x20, 0x02], 16),
]

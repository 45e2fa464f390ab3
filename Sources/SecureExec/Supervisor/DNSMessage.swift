/// One question the guest asked the supervisor's DNS server.
package struct DNSQuery: Sendable, Equatable {
    /// The message id, echoed in the response.
    package let id: UInt16
    /// The name asked for: ASCII-lowercased, labels joined by dots, no trailing dot ("" for the root).
    package let name: String
    /// QTYPE: `DNSMessage.typeA`, `DNSMessage.typeAAAA`, or any other.
    package let type: UInt16
    /// QCLASS; only IN (1) gets addresses.
    package let queryClass: UInt16
    /// RD, echoed in the response.
    package let recursionDesired: Bool
    /// The question section exactly as sent (name case included, which some
    /// resolvers randomize and check), echoed in the response.
    package let questionBytes: [UInt8]
}

/// A minimal DNS wire codec (RFC 1035) for the supervisor's stub server:
/// parses a standard query with one question, writes answers and failures.
///
/// Messages here are bare (UDP); over TCP the caller adds and strips the
/// two-byte length prefix.
package enum DNSMessage {
    /// QTYPE A: an IPv4 address.
    package static let typeA: UInt16 = 1
    /// QTYPE AAAA: an IPv6 address.
    package static let typeAAAA: UInt16 = 28
    /// QTYPE OPT: the EDNS pseudo-record a query may carry in its additional section.
    static let typeOPT: UInt16 = 41
    /// QCLASS IN.
    static let classIN: UInt16 = 1
    /// The largest UDP response a client without EDNS takes (RFC 1035 §4.2.1).
    package static let classicUDPSize = 512

    /// The query in `bytes`, or nil when it is not one this server answers.
    ///
    /// Accepted: QR=0, opcode 0 (QUERY), exactly one question, no answer or
    /// authority records, at most one additional record, which must be an
    /// EDNS OPT (ignored), and nothing after it. The name must not use
    /// compression, labels are 1...63 bytes of printable ASCII other than `.`
    /// and the name is at most 253 characters. Anything truncated is nil.
    package static func parseQuery(_ bytes: [UInt8]) -> DNSQuery? {
        var reader = Reader(bytes: bytes)
        guard let id = reader.word(), let flags = reader.word(), let questions = reader.word(), let answers = reader.word(),
            let authorities = reader.word(), let additionals = reader.word()
        else { return nil }
        let opcode = (flags >> 11) & 0xF
        guard flags & 0x8000 == 0, opcode == 0, questions == 1, answers == 0, authorities == 0, additionals <= 1 else { return nil }

        var labels: [String] = []
        var nameLength = 0
        while true {
            guard let length = reader.byte() else { return nil }
            if length == 0 { break }
            // 0xC0 is a compression pointer, 0x40 and 0x80 are obsolete extended labels: none belong in a question.
            guard length & 0xC0 == 0, let label = reader.take(Int(length)) else { return nil }
            guard label.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: ".") }) else { return nil }
            nameLength += (labels.isEmpty ? 0 : 1) + label.count
            guard nameLength <= 253 else { return nil }
            labels.append(String(decoding: label.map(lowercasedASCII), as: UTF8.self))
        }
        guard let type = reader.word(), let queryClass = reader.word() else { return nil }
        let question = Array(bytes[12..<reader.offset])

        if additionals == 1 {
            // OPT: root name, TYPE 41, CLASS (payload size), TTL (extended flags), RDLENGTH, RDATA.
            guard reader.byte() == 0, reader.word() == typeOPT, reader.word() != nil, reader.take(4) != nil,
                let dataLength = reader.word(), reader.take(Int(dataLength)) != nil
            else { return nil }
        }
        guard reader.offset == bytes.count else { return nil }
        return DNSQuery(
            id: id, name: labels.joined(separator: "."), type: type, queryClass: queryClass,
            recursionDesired: flags & 0x0100 != 0, questionBytes: question)
    }

    /// A NOERROR response to `query` holding the `addresses` of its type: A
    /// records for IPv4 when it asked for A, AAAA for IPv6 when it asked for
    /// AAAA, none for any other type or class (a name that exists without data).
    ///
    /// Records past `maxBytes` are left out, without TC: a stub resolver
    /// needs only some of the addresses, and only those sent are pinned.
    package static func answer(_ query: DNSQuery, addresses: [IPAddress], ttl: UInt32, maxBytes: Int = classicUDPSize) -> [UInt8] {
        let wanted: [IPAddress]
        switch (query.type, query.queryClass) {
        case (typeA, classIN): wanted = addresses.filter(\.isIPv4)
        case (typeAAAA, classIN): wanted = addresses.filter { !$0.isIPv4 }
        default: wanted = []
        }
        var records: [UInt8] = []
        var count: UInt16 = 0
        for address in wanted {
            // The owner name is a pointer to the question's name, which starts at offset 12.
            var record: [UInt8] = [0xC0, 0x0C]
            record.appendWord(query.type)
            record.appendWord(classIN)
            record.appendWord(UInt16(truncatingIfNeeded: ttl >> 16))
            record.appendWord(UInt16(truncatingIfNeeded: ttl))
            record.appendWord(UInt16(address.bytes.count))
            record += address.bytes
            guard 12 + query.questionBytes.count + records.count + record.count <= maxBytes else { break }
            records += record
            count += 1
        }
        return header(query, rcode: 0, answers: count) + query.questionBytes + records
    }

    /// A response to `query` with `rcode` (3 NXDOMAIN, 5 REFUSED, 2 SERVFAIL) and no records.
    package static func failure(_ query: DNSQuery, rcode: UInt8) -> [UInt8] {
        header(query, rcode: rcode, answers: 0) + query.questionBytes
    }

    /// A FORMERR response to a message `parseQuery` refused, or nil when
    /// there is no header to answer (under 12 bytes) or the message is itself
    /// a response (answering those could loop between two servers).
    package static func formErr(for bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count >= 12, bytes[2] & 0x80 == 0 else { return nil }
        // QR, the request's opcode and RD; RA; RCODE 1. No sections: the question was not understood.
        let flags: UInt16 = 0x8000 | UInt16(bytes[2] & 0x79) << 8 | 0x0080 | 1
        var response = [bytes[0], bytes[1]]
        response.appendWord(flags)
        response += [UInt8](repeating: 0, count: 8)
        return response
    }

    private static func header(_ query: DNSQuery, rcode: UInt8, answers: UInt16) -> [UInt8] {
        var header: [UInt8] = []
        header.appendWord(query.id)
        header.appendWord(0x8000 | (query.recursionDesired ? 0x0100 : 0) | 0x0080 | UInt16(rcode & 0x0F))
        header.appendWord(1)
        header.appendWord(answers)
        header.appendWord(0)
        header.appendWord(0)
        return header
    }

    private static func lowercasedASCII(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
    }

    /// Reads big-endian fields off the front of a message; nil past its end.
    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func word() -> UInt16? {
            guard let high = byte(), let low = byte() else { return nil }
            return UInt16(high) << 8 | UInt16(low)
        }

        mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
            guard count <= bytes.count - offset else { return nil }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }
    }
}

extension [UInt8] {
    fileprivate mutating func appendWord(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(value & 0xFF))
    }
}

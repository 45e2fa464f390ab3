import SecureExec
import Testing

/// The supervisor's DNS wire codec: queries written byte by byte here parse
/// (or are refused), and the answers it writes decode back, with a decoder of
/// the test's own, to the records they should hold.
@Suite("DNS messages: queries parsed, answers written", .timeLimit(.minutes(1)))
struct DNSMessageTests {
    @Test("a query parses: id, lowercased name, type, RD, and the question as sent")
    func parsesQuery() throws {
        let bytes = query(id: 0xBEEF, name: "WwW.Example.COM", type: DNSMessage.typeAAAA)
        let parsed = try #require(DNSMessage.parseQuery(bytes))
        #expect(parsed.id == 0xBEEF)
        #expect(parsed.name == "www.example.com")
        #expect(parsed.type == 28 && parsed.queryClass == 1)
        #expect(parsed.recursionDesired)
        #expect(parsed.questionBytes == Array(bytes[12...]))
        #expect(parsed.questionBytes.contains(UInt8(ascii: "W")), "the question keeps the case it was sent in")

        let quiet = try #require(DNSMessage.parseQuery(query(id: 1, name: "a.b", recursionDesired: false)))
        #expect(!quiet.recursionDesired && quiet.name == "a.b" && quiet.type == DNSMessage.typeA)
        #expect(DNSMessage.parseQuery(query(id: 2, name: ""))?.name == "", "the root")
    }

    @Test("an EDNS OPT record in the additional section is accepted and left out of the question")
    func acceptsEDNS() throws {
        // OPT: root name, TYPE 41, payload 1232, extended RCODE/flags (DO set), an 8-byte cookie option.
        let opt: [UInt8] = [0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 12, 0, 10, 0, 8] + [1, 2, 3, 4, 5, 6, 7, 8]
        let plain = query(id: 7, name: "api.example.com")
        let bytes = query(id: 7, name: "api.example.com", additional: 1) + opt
        let parsed = try #require(DNSMessage.parseQuery(bytes))
        #expect(parsed.questionBytes == Array(plain[12...]))
        #expect(parsed.name == "api.example.com")

        // The same record cut short, or followed by more, is refused.
        #expect(DNSMessage.parseQuery(Array(bytes.dropLast())) == nil)
        #expect(DNSMessage.parseQuery(bytes + [0]) == nil)
        // An additional record that is not OPT is refused.
        var notOPT = opt
        notOPT[2] = 1
        #expect(DNSMessage.parseQuery(query(id: 7, name: "api.example.com", additional: 1) + notOPT) == nil)
        #expect(DNSMessage.parseQuery(query(id: 7, name: "api.example.com", additional: 2) + opt + opt) == nil)
    }

    @Test("an A answer holds the IPv4 addresses, pointing at the question's name, with the TTL")
    func answersA() throws {
        let asked = try #require(DNSMessage.parseQuery(query(id: 0x1234, name: "Api.Example.com")))
        let addresses = [ip("203.0.113.5"), ip("2001:db8::1"), ip("198.51.100.7")]
        let response = try Decoded(DNSMessage.answer(asked, addresses: addresses, ttl: 0x0102_0304))
        #expect(response.id == 0x1234)
        #expect(response.isResponse && response.recursionAvailable && response.recursionDesired && !response.truncated)
        #expect(response.opcode == 0 && response.rcode == 0)
        #expect(response.questionName == "Api.Example.com" && response.questionType == 1 && response.questionClass == 1)
        #expect(response.authorityCount == 0 && response.additionalCount == 0)
        #expect(response.answers.count == 2)
        for (record, expected) in zip(response.answers, [[203, 0, 113, 5], [198, 51, 100, 7]] as [[UInt8]]) {
            #expect(record.name == "Api.Example.com")
            #expect(record.type == 1 && record.recordClass == 1 && record.ttl == 0x0102_0304)
            #expect(record.data == expected)
        }
    }

    @Test("an AAAA answer holds only the IPv6 addresses")
    func answersAAAA() throws {
        let bytes = query(id: 9, name: "v6.example.com", type: DNSMessage.typeAAAA, recursionDesired: false)
        let asked = try #require(DNSMessage.parseQuery(bytes))
        let response = try Decoded(
            DNSMessage.answer(asked, addresses: [ip("192.0.2.1"), ip("2001:db8::1"), ip("2606:4700::1111")], ttl: 60))
        #expect(!response.recursionDesired, "RD is echoed")
        #expect(response.rcode == 0 && response.questionType == 28)
        #expect(response.answers.map(\.type) == [28, 28])
        #expect(response.answers.map(\.data) == [ip("2001:db8::1").bytes, ip("2606:4700::1111").bytes])
        #expect(response.answers.allSatisfy { $0.name == "v6.example.com" && $0.ttl == 60 })
    }

    @Test("other types and classes get NOERROR with no answers", arguments: [(UInt16(65), UInt16(1)), (15, 1), (16, 1), (1, 3), (28, 255)])
    func answersOtherTypesEmpty(type: UInt16, queryClass: UInt16) throws {
        let asked = try #require(DNSMessage.parseQuery(query(id: 3, name: "x.example.com", type: type, queryClass: queryClass)))
        let response = try Decoded(DNSMessage.answer(asked, addresses: [ip("192.0.2.1"), ip("2001:db8::1")], ttl: 60))
        #expect(response.rcode == 0 && response.answers.isEmpty)
        #expect(response.questionType == type && response.questionClass == queryClass)
    }

    @Test("an answer stays within 512 bytes by leaving out the records that do not fit")
    func answerFitsClassicUDP() throws {
        let name = Array(repeating: String(repeating: "a", count: 60), count: 4).joined(separator: ".")
        let asked = try #require(DNSMessage.parseQuery(query(id: 4, name: name, type: DNSMessage.typeAAAA)))
        let many = (1...20).map { ip("2001:db8::\($0)") }
        let bytes = DNSMessage.answer(asked, addresses: many, ttl: 60)
        #expect(bytes.count <= 512)
        let response = try Decoded(bytes)
        // 12 header + 249 question leaves 251 bytes: 8 records of 28.
        #expect(response.answers.count == 8)
        #expect(response.answers.map(\.data) == many.prefix(8).map(\.bytes))
        #expect(try Decoded(DNSMessage.answer(asked, addresses: many, ttl: 60, maxBytes: 65535)).answers.count == 20)
    }

    @Test("failures carry their rcode, the question and no records", arguments: [UInt8(3), 5, 2])
    func failure(rcode: UInt8) throws {
        let asked = try #require(DNSMessage.parseQuery(query(id: 0xAB, name: "nope.example.com")))
        let response = try Decoded(DNSMessage.failure(asked, rcode: rcode))
        #expect(response.id == 0xAB && response.isResponse && response.recursionDesired)
        #expect(response.rcode == rcode)
        #expect(response.questionName == "nope.example.com")
        #expect(response.answers.isEmpty && response.authorityCount == 0 && response.additionalCount == 0)
    }

    @Test("FORMERR answers anything with a header that is not itself a response")
    func formErr() throws {
        var garbage: [UInt8] = [0x12, 0x34, 0x01, 0x00] + [UInt8](repeating: 0xFF, count: 20)
        let response = try #require(DNSMessage.formErr(for: garbage))
        #expect(response == [0x12, 0x34, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(DNSMessage.formErr(for: Array(garbage.prefix(11))) == nil)
        garbage[2] |= 0x80
        #expect(DNSMessage.formErr(for: garbage) == nil, "never answer a response")
    }

    @Test("every truncation of a valid query is refused")
    func truncated() {
        let bytes = query(id: 5, name: "api.example.com")
        #expect(DNSMessage.parseQuery(bytes) != nil)
        for length in 0..<bytes.count {
            #expect(DNSMessage.parseQuery(Array(bytes.prefix(length))) == nil, "\(length) bytes")
        }
    }

    @Test("malformed or unsupported messages are refused")
    func refused() {
        let good = query(id: 6, name: "api.example.com")
        func changed(_ index: Int, _ value: UInt8) -> [UInt8] {
            var bytes = good
            bytes[index] = value
            return bytes
        }
        let label = String(repeating: "a", count: 63)
        let refused: [(String, [UInt8])] = [
            ("garbage", [UInt8](repeating: 0xFF, count: 40)),
            ("a response", changed(2, good[2] | 0x80)),
            ("opcode IQUERY", changed(2, good[2] | 0x08)),
            ("opcode STATUS", changed(2, good[2] | 0x10)),
            ("no question", changed(5, 0)),
            ("two questions", changed(5, 2)),
            ("an answer record", changed(7, 1)),
            ("an authority record", changed(9, 1)),
            ("trailing bytes", good + [0]),
            ("a compression pointer", header(id: 6, additional: 0) + [3] + Array("api".utf8) + [0xC0, 0x0C, 0, 1, 0, 1]),
            ("a name that is only a pointer", header(id: 6, additional: 0) + [0xC0, 0x0C, 0, 1, 0, 1]),
            // Read as a length, 0xC0 would be a 192-byte label of printable bytes: only the pointer bits refuse it.
            ("a pointer to offset 0x61", header(id: 6, additional: 0) + [0xC0] + letters(192) + [0, 0, 1, 0, 1]),
            ("an extended label type", header(id: 6, additional: 0) + [0x41] + letters(65) + [0, 0, 1, 0, 1]),
            ("a 64-byte label", header(id: 6, additional: 0) + [64] + letters(64) + [0, 0, 1, 0, 1]),
            ("a label with a dot", header(id: 6, additional: 0) + [3] + Array("a.b".utf8) + [0, 0, 1, 0, 1]),
            ("a label with a space", header(id: 6, additional: 0) + [3] + Array("a b".utf8) + [0, 0, 1, 0, 1]),
            ("a label with NUL", header(id: 6, additional: 0) + [3, 0x61, 0, 0x62, 0, 0, 1, 0, 1]),
            ("a label with a high byte", header(id: 6, additional: 0) + [2, 0xC3, 0xA9, 0, 0, 1, 0, 1]),
            ("a name of 255 characters", query(id: 6, name: [String](repeating: label, count: 4).joined(separator: "."))),
        ]
        for (what, bytes) in refused {
            #expect(DNSMessage.parseQuery(bytes) == nil, "\(what)")
        }
        let longest = [label, label, label, String(repeating: "b", count: 61)].joined(separator: ".")
        #expect(DNSMessage.parseQuery(query(id: 6, name: longest))?.name == longest, "253 characters is the limit, not past it")
    }
}

// MARK: Writing queries by hand

/// A header with one question, no answers or authorities, `additional` additional records.
private func header(id: UInt16, recursionDesired: Bool = true, additional: UInt16) -> [UInt8] {
    let flags: UInt8 = recursionDesired ? 0x01 : 0x00
    return [UInt8(id >> 8), UInt8(id & 0xFF), flags, 0x00, 0, 1, 0, 0, 0, 0, UInt8(additional >> 8), UInt8(additional & 0xFF)]
}

/// A standard query for `name`, byte by byte as a stub resolver sends it.
private func query(
    id: UInt16, name: String, type: UInt16 = 1, queryClass: UInt16 = 1, recursionDesired: Bool = true, additional: UInt16 = 0
) -> [UInt8] {
    var bytes = header(id: id, recursionDesired: recursionDesired, additional: additional)
    for label in name.split(separator: ".") {
        bytes.append(UInt8(label.utf8.count))
        bytes += Array(label.utf8)
    }
    bytes.append(0)
    bytes += [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(queryClass >> 8), UInt8(queryClass & 0xFF)]
    return bytes
}

/// `count` bytes of the letter a.
private func letters(_ count: Int) -> [UInt8] {
    [UInt8](repeating: UInt8(ascii: "a"), count: count)
}

private func ip(_ text: String) -> IPAddress {
    guard let address = IPAddress(text) else {
        Issue.record("\(text) is not an IP literal")
        return IPAddress(bytes: [0, 0, 0, 0])!
    }
    return address
}

// MARK: Reading responses back

/// A response decoded by the test's own reader, following compression pointers.
private struct Decoded {
    struct Record {
        var name: String
        var type: UInt16
        var recordClass: UInt16
        var ttl: UInt32
        var data: [UInt8]
    }

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    var id: UInt16
    var isResponse: Bool
    var opcode: UInt8
    var truncated: Bool
    var recursionDesired: Bool
    var recursionAvailable: Bool
    var rcode: UInt8
    var questionName: String
    var questionType: UInt16
    var questionClass: UInt16
    var authorityCount: Int
    var additionalCount: Int
    var answers: [Record]

    init(_ bytes: [UInt8]) throws {
        var offset = 0
        func byte() throws -> UInt8 {
            guard offset < bytes.count else { throw Malformed(description: "ends at \(offset)") }
            defer { offset += 1 }
            return bytes[offset]
        }
        func word() throws -> UInt16 { UInt16(try byte()) << 8 | UInt16(try byte()) }
        func name() throws -> String {
            var labels: [String] = []
            var position = offset
            var jumped = false
            for _ in 0..<128 {
                guard position < bytes.count else { throw Malformed(description: "name runs past the end") }
                let length = Int(bytes[position])
                if length == 0 {
                    if !jumped { offset = position + 1 }
                    return labels.joined(separator: ".")
                }
                if length & 0xC0 == 0xC0 {
                    guard position + 1 < bytes.count else { throw Malformed(description: "pointer runs past the end") }
                    if !jumped { offset = position + 2 }
                    jumped = true
                    position = (length & 0x3F) << 8 | Int(bytes[position + 1])
                    continue
                }
                guard position + 1 + length <= bytes.count else { throw Malformed(description: "label runs past the end") }
                labels.append(String(decoding: bytes[(position + 1)...(position + length)], as: UTF8.self))
                position += 1 + length
            }
            throw Malformed(description: "pointer loop")
        }

        id = try word()
        let flags = try word()
        isResponse = flags & 0x8000 != 0
        opcode = UInt8((flags >> 11) & 0xF)
        truncated = flags & 0x0200 != 0
        recursionDesired = flags & 0x0100 != 0
        recursionAvailable = flags & 0x0080 != 0
        rcode = UInt8(flags & 0xF)
        let questionCount = try word()
        let answerCount = Int(try word())
        authorityCount = Int(try word())
        additionalCount = Int(try word())
        guard questionCount == 1 else { throw Malformed(description: "\(questionCount) questions") }
        questionName = try name()
        questionType = try word()
        questionClass = try word()
        answers = []
        for _ in 0..<answerCount {
            let owner = try name()
            let type = try word()
            let recordClass = try word()
            let ttl = UInt32(try word()) << 16 | UInt32(try word())
            let length = Int(try word())
            guard offset + length <= bytes.count else { throw Malformed(description: "rdata runs past the end") }
            let data = Array(bytes[offset..<offset + length])
            answers.append(Record(name: owner, type: type, recordClass: recordClass, ttl: ttl, data: data))
            offset += length
        }
        guard offset == bytes.count else { throw Malformed(description: "\(bytes.count - offset) bytes after the records") }
    }
}

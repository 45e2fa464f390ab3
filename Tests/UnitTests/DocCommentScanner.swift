/// Finds the public declarations in Swift source that have no doc comment.
///
/// A small lexer and a brace-depth walk, not a parser: enough for the
/// package's own sources, with no dependency. What counts as a public
/// declaration:
/// - a declaration whose modifiers include `public` or `open` (on the line
///   where it starts; a multi-line signature is one declaration);
/// - a `case` line in a public enum (several cases on one line share one
///   comment, so a one-line `enum { case a, b }` needs only the enum's);
/// - a member with no access modifier of a `public extension` or a
///   `public protocol` (such members are public by default).
///
/// `public extension` itself needs none: DocC has no page for an extension
/// of the module's own type, its members are what a reader sees.
///
/// "Documented" means the lines right above the declaration are `///` lines
/// (or a `/** ... */` block), with only attribute lines (`@discardableResult`,
/// `@available(...)`, over several lines too) in between; a blank line or a
/// plain `//` comment in between does not count. Strings (multi-line and raw,
/// with interpolation) and comments are skipped, so braces and the word
/// `public` inside them change nothing.
enum DocCommentScanner {
    /// One declaration that lacks its doc comment.
    struct Finding: Equatable, CustomStringConvertible {
        /// 1-based line number where the declaration starts.
        var line: Int
        /// The declaration's first line, trimmed.
        var text: String
        var description: String { "\(line): \(text)" }
    }

    /// The undocumented public declarations of one file's text, in order.
    static func undocumentedPublicDeclarations(in source: String) -> [Finding] {
        let lines = lex(source)
        let rawLines = source.split(separator: "\n", omittingEmptySubsequences: false)
        var findings: [Finding] = []
        var documented = false
        var attributeParens = 0  // an attribute whose parentheses span lines
        var contexts: [Context] = []
        var pending: Context?  // the type whose header was read and whose `{` has not come yet

        for (index, line) in lines.enumerated() {
            let code = line.code.trimmingWhitespace()
            if line.isDocComment {
                documented = true
                continue
            }
            if code.isEmpty {
                // A line of a multi-line string or a plain comment breaks the link.
                if !line.continuesDocBlock { documented = false }
                continue
            }
            if attributeParens > 0 {
                attributeParens += parenBalance(code)
                continue
            }
            let (rest, openParens) = strippingAttributes(code)
            if rest.isEmpty {
                attributeParens = openParens
                continue  // attribute-only line: the comment above still applies
            }
            // Declarations start a line or follow a `{`, `}` or `;` on it; only
            // the first can have a comment above it.
            var segment = ""
            var segmentIndex = 0
            func evaluate() {
                defer { segment = ""; segmentIndex += 1 }
                if segmentIndex == 0 && line.startsInsideLiteral { return }
                let (text, _) = strippingAttributes(segment.trimmingWhitespace())
                guard let declaration = Declaration(text) else { return }
                let parent = contexts.last ?? .topLevel
                let isPublic = declaration.isPublic(in: parent)
                // Several cases on one line share a comment: the line's own, or the enum's.
                let exempt = declaration.keyword == "extension" || (declaration.keyword == "case" && segmentIndex > 0)
                if isPublic && !exempt && !(documented && segmentIndex == 0) {
                    findings.append(Finding(line: index + 1, text: String(rawLines[index].trimmingWhitespace())))
                }
                if let kind = declaration.scopeKind { pending = Context(kind: kind, isPublic: isPublic) }
            }
            for character in line.code {
                switch character {
                case "{":
                    evaluate()
                    contexts.append(pending ?? .body)
                    pending = nil
                case "}":
                    evaluate()
                    _ = contexts.popLast()
                case ";":
                    evaluate()
                default:
                    segment.append(character)
                }
            }
            evaluate()
            documented = false
        }
        return findings
    }

    // MARK: - Declarations

    struct Context {
        enum Kind { case topLevel, type, enumeration, protocolBody, extensionBody, body }
        var kind: Kind
        var isPublic: Bool
        static let topLevel = Context(kind: .topLevel, isPublic: false)
        static let body = Context(kind: .body, isPublic: false)
    }

    static let accessWords: Set<String> = ["public", "open", "package", "internal", "fileprivate", "private"]
    static let modifierWords: Set<String> = accessWords.union([
        "final", "static", "override", "required", "convenience", "mutating", "nonmutating", "lazy", "weak",
        "unowned", "dynamic", "indirect", "nonisolated", "isolated", "distributed", "optional", "prefix", "postfix",
        "infix", "consuming", "borrowing", "__consuming",
    ])
    static let declarationWords: Set<String> = [
        "func", "var", "let", "init", "subscript", "typealias", "associatedtype", "enum", "struct", "class", "actor",
        "protocol", "extension", "case", "macro", "operator", "precedencegroup", "deinit",
    ]

    /// The modifiers and keyword a line starts with, when it starts a declaration.
    struct Declaration {
        /// The modifiers' leading words (`private(set)` reads as `private`).
        var modifiers: [String]
        /// The declaration's own access level, when written (`private(set)` is not one).
        var explicitAccess: String?
        var keyword: String

        init?(_ text: Substring) {
            let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
            var modifiers: [String] = []
            var access: String?
            for (position, token) in tokens.enumerated() {
                let word = DocCommentScanner.leadingIdentifier(token)
                let setterOnly = token.dropFirst(word.count).hasPrefix("(set)")
                let next = position + 1 < tokens.count ? DocCommentScanner.leadingIdentifier(tokens[position + 1]) : ""
                // `class func` / `class var`: `class` as a modifier.
                let classModifier =
                    word == "class" && (DocCommentScanner.modifierWords.contains(next) || ["func", "var", "let", "subscript"].contains(next))
                if DocCommentScanner.modifierWords.contains(word) || classModifier {
                    modifiers.append(word)
                    if DocCommentScanner.accessWords.contains(word) && !setterOnly { access = access ?? word }
                    continue
                }
                guard DocCommentScanner.declarationWords.contains(word) else { return nil }
                self.modifiers = modifiers
                self.explicitAccess = access
                self.keyword = word
                return
            }
            return nil
        }

        /// Public by its own modifier, as an enum case of a public enum, or
        /// by default as a member of a public extension or protocol.
        func isPublic(in parent: Context) -> Bool {
            if explicitAccess == "public" || explicitAccess == "open" { return true }
            if parent.kind == .body { return false }
            if keyword == "case" { return parent.kind == .enumeration && parent.isPublic }
            if explicitAccess == nil && parent.isPublic {
                return parent.kind == .extensionBody || parent.kind == .protocolBody
            }
            return false
        }

        /// What the next `{` opens, for declarations whose members matter.
        var scopeKind: Context.Kind? {
            switch keyword {
            case "enum": .enumeration
            case "struct", "class", "actor": .type
            case "protocol": .protocolBody
            case "extension": .extensionBody
            default: nil
            }
        }
    }

    static func leadingIdentifier(_ token: Substring) -> String {
        String(token.prefix(while: { $0.isLetter || $0.isNumber || $0 == "_" }))
    }

    /// The line without its leading attributes, and how many parentheses an
    /// unfinished attribute left open.
    static func strippingAttributes(_ code: Substring) -> (Substring, Int) {
        var rest = code
        while rest.first == "@" {
            rest = rest.dropFirst().drop(while: { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." })
            if rest.first == "(" {
                var depth = 0
                var index = rest.startIndex
                while index < rest.endIndex {
                    if rest[index] == "(" { depth += 1 }
                    if rest[index] == ")" { depth -= 1 }
                    index = rest.index(after: index)
                    if depth == 0 { break }
                }
                if depth > 0 { return ("", depth) }
                rest = rest[index...]
            }
            rest = rest.trimmingWhitespace()
        }
        return (rest, 0)
    }

    static func parenBalance(_ code: Substring) -> Int {
        code.reduce(0) { $0 + ($1 == "(" ? 1 : $1 == ")" ? -1 : 0) }
    }

    // MARK: - Lexing

    /// One source line with strings and comments removed.
    struct Line {
        /// The code on the line, outside strings and comments.
        var code = ""
        /// A `///` line, or the last line of a `/** ... */` block with nothing after it.
        var isDocComment = false
        /// A line inside a `/** ... */` block (which keeps the link to the declaration below).
        var continuesDocBlock = false
        /// The line began inside a string or comment.
        var startsInsideLiteral = false
    }

    private enum Mode {
        case code
        case blockComment(depth: Int, isDoc: Bool)
        case string(hashes: Int, multiline: Bool)
        case interpolation(parens: Int)
    }

    static func lex(_ source: String) -> [Line] {
        let characters = Array(source)
        var lines: [Line] = []
        var line = Line()
        var stack: [Mode] = [.code]
        var index = 0

        func at(_ offset: Int) -> Character? {
            index + offset < characters.count ? characters[index + offset] : nil
        }
        func matches(_ text: String, from offset: Int = 0) -> Bool {
            for (position, character) in text.enumerated() where at(offset + position) != character { return false }
            return true
        }
        func hashes(from offset: Int) -> Int {
            var count = 0
            while at(offset + count) == "#" { count += 1 }
            return count
        }
        func isDocCommentLine() -> Bool {
            // `///` as the first thing on a line that began in code (not `////`).
            line.code.allSatisfy { $0 == " " || $0 == "\t" } && matches("///") && !matches("////")
        }

        while index < characters.count {
            let character = characters[index]
            if character == "\n" {
                if case .string(_, false) = stack.last { stack.removeLast() }  // unterminated: recover
                lines.append(line)
                line = Line()
                switch stack.last {
                case .code?: break
                case .blockComment(_, let isDoc)?:
                    line.startsInsideLiteral = true
                    line.continuesDocBlock = isDoc
                default: line.startsInsideLiteral = true
                }
                index += 1
                continue
            }
            switch stack.last ?? .code {
            case .code, .interpolation:
                if matches("//") {
                    if case .code = stack.last, !line.startsInsideLiteral, isDocCommentLine() { line.isDocComment = true }
                    while index < characters.count && characters[index] != "\n" { index += 1 }
                    continue
                }
                if matches("/*") {
                    let isDoc = matches("/**") && !matches("/**/") && line.code.allSatisfy { $0 == " " || $0 == "\t" }
                    stack.append(.blockComment(depth: 1, isDoc: isDoc))
                    if isDoc { line.continuesDocBlock = true }
                    index += 2
                    continue
                }
                let hashCount = hashes(from: 0)
                if at(hashCount) == "\"" {
                    let multiline = matches("\"\"\"", from: hashCount)
                    stack.append(.string(hashes: hashCount, multiline: multiline))
                    index += hashCount + (multiline ? 3 : 1)
                    continue
                }
                if case .interpolation(let parens) = stack.last {
                    if character == "(" { stack[stack.count - 1] = .interpolation(parens: parens + 1) }
                    if character == ")" {
                        if parens == 0 { stack.removeLast() } else { stack[stack.count - 1] = .interpolation(parens: parens - 1) }
                    }
                } else {
                    line.code.append(character)
                }
                index += 1
            case .blockComment(let depth, let isDoc):
                if matches("/*") {
                    stack[stack.count - 1] = .blockComment(depth: depth + 1, isDoc: isDoc)
                    index += 2
                } else if matches("*/") {
                    stack.removeLast()
                    if depth > 1 { stack.append(.blockComment(depth: depth - 1, isDoc: isDoc)) }
                    index += 2
                    if depth == 1 && isDoc {
                        // The block ends here: it documents what follows if nothing else is on the line.
                        var rest = index
                        while rest < characters.count && (characters[rest] == " " || characters[rest] == "\t") { rest += 1 }
                        if rest >= characters.count || characters[rest] == "\n" { line.isDocComment = true }
                    }
                } else {
                    index += 1
                }
            case .string(let hashCount, let multiline):
                if character == "\\" && hashes(from: 1) >= hashCount {
                    let after = 1 + hashCount
                    if at(after) == "(" {
                        stack.append(.interpolation(parens: 0))
                        index += after + 1
                    } else {
                        index += after + (at(after) == "\n" ? 0 : 1)  // escaped character (a line break stays one)
                    }
                    continue
                }
                let quotes = multiline ? "\"\"\"" : "\""
                if matches(quotes) && hashes(from: quotes.count) >= hashCount {
                    stack.removeLast()
                    index += quotes.count + hashCount
                    continue
                }
                index += 1
            }
        }
        lines.append(line)
        return lines
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> Substring { self[...].trimmingWhitespace() }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        let text = self
        guard let first = text.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return text[text.endIndex...] }
        let last = text.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return text[first...last]
    }
}

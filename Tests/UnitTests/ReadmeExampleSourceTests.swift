import Foundation
import TestSupport
import Testing

/// The README's "Uploading a project" and "Run to completion" examples are
/// the files in Examples/, verbatim (SecureExecTests runs those programs and
/// checks what they print): so the documentation cannot rot.
@Suite("README examples are the Examples/ files")
struct ReadmeExampleSourceTests {
    static func source(_ relative: String) throws -> String {
        try String(contentsOf: URL(fileURLWithPath: PackagePaths.root).appendingPathComponent(relative), encoding: .utf8)
    }

    @Test("every README example is an Examples/ file, verbatim", arguments: [
        "Examples/UploadProject/main.swift", "Examples/RunToCompletion/main.swift",
    ])
    func readmeQuotesExample(_ file: String) throws {
        let readme = try Self.source("README.md")
        let example = try Self.source(file)
        #expect(readme.contains("```swift\n" + example + "```"), "README.md must quote \(file) whole")
    }
}

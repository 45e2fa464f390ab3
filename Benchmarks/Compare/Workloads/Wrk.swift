import Foundation

/// wrk's numbers for one bounded run against a loopback URL.
public struct WrkResult: Sendable {
    public var requestsPerSecond: Double
    /// Median latency in ms.
    public var latencyP50: Double
    public var errors: Int
}

public enum Wrk {
    /// Runs `wrk -t<threads> -c<connections> -d<seconds>s --latency url` and parses its report.
    public static func run(url: String, threads: Int = 2, connections: Int = 32, seconds: Int = 5) throws -> WrkResult {
        guard let wrk = NodeHost.findExecutable("wrk") else { throw BenchmarkFailure("wrk is not installed (make bench-deps)") }
        let process = try HostProcess(
            [wrk, "-t\(threads)", "-c\(connections)", "-d\(seconds)s", "--latency", url],
            environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"])
        try process.readToEnd(timeout: .seconds(seconds + 30))
        process.wait()
        let report = process.stdout
        guard process.succeeded, let rate = field(report, after: "Requests/sec:").flatMap(Double.init) else {
            throw BenchmarkFailure("wrk failed against \(url): \(report) \(process.stderr)")
        }
        var errors = 0
        if let line = report.split(separator: "\n").first(where: { $0.contains("Non-2xx") || $0.contains("Socket errors") }) {
            errors = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }.reduce(0, +)
        }
        let p50 = field(report, after: "50%").map(parseLatency) ?? .nan
        return WrkResult(requestsPerSecond: rate, latencyP50: p50, errors: errors)
    }

    private static func field(_ report: String, after label: String) -> String? {
        for line in report.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix(label) {
                return trimmed.dropFirst(label.count).split(separator: " ").first.map(String.init)
            }
        }
        return nil
    }

    /// "512.00us", "1.20ms", "1.01s" -> ms.
    private static func parseLatency(_ text: String) -> Double {
        for (suffix, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] where text.hasSuffix(suffix) {
            return (Double(text.dropLast(suffix.count)) ?? .nan) * scale
        }
        return .nan
    }
}

import BenchmarkWorkloads
import Foundation

/// Which way is better for a row's unit.
enum Better {
    case lower, higher
}

/// One line of the side-by-side table: medians per contender.
struct ComparisonRow {
    var workload: String
    var unit: String
    var better: Better
    var bare: Samples?
    var bwrap: Samples?
    var secureExec: Samples?
    /// How each column was measured, when the workload alone does not say.
    var note: String = ""

    var bareValue: Double? { bare.flatMap { $0.isEmpty ? nil : $0.median } }
    var bwrapValue: Double? { bwrap.flatMap { $0.isEmpty ? nil : $0.median } }
    var secureExecValue: Double? { secureExec.flatMap { $0.isEmpty ? nil : $0.median } }

    func ratio(_ value: Double?) -> Double? {
        guard let value, let bareValue, bareValue != 0 else { return nil }
        return value / bareValue
    }
}

/// One line of a free-form table (phases, memory, churn).
struct TableRow {
    var cells: [String]
}

/// A goal from issue 5 and whether this run met it.
struct GoalOutcome {
    var goal: String
    var holds: Bool?
    var evidence: String
}

enum Format {
    /// The columns of the root-image table.
    static let rootHeader = ["", ".standard (ms)", ".minimal (ms)", "difference (ms)"]

    static func number(_ value: Double?, digits: Int = 2) -> String {
        guard let value, value.isFinite else { return "n/a" }
        if abs(value) >= 1000 { return String(format: "%.0f", value) }
        return String(format: "%.\(digits)f", value)
    }

    /// "64 KiB", "16 MiB".
    static func size(_ bytes: Int) -> String {
        bytes >= 1 << 20 && bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : bytes >= 1 << 10 ? "\(bytes >> 10) KiB" : "\(bytes) B"
    }

    static func ratio(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "n/a" }
        return String(format: "%.2f×", value)
    }

    static func markdownTable(header: [String], rows: [[String]]) -> String {
        var lines = ["| " + header.joined(separator: " | ") + " |"]
        lines.append("|" + header.map { _ in " --- " }.joined(separator: "|") + "|")
        for row in rows { lines.append("| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |") }
        return lines.joined(separator: "\n")
    }

    /// A plain-text table for the terminal.
    static func textTable(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
            + rows.map(line)).joined(separator: "\n")
    }

    static let comparisonHeader = ["workload", "unit", "bare node", "bwrap", "SecureExec", "SecureExec / bare", "bwrap / bare"]

    static func comparisonCells(_ row: ComparisonRow) -> [String] {
        let digits = row.unit == "µs" || row.unit == "req/s" || row.unit == "/s" ? 0 : 2
        return [
            row.workload, row.unit, number(row.bareValue, digits: digits), number(row.bwrapValue, digits: digits),
            number(row.secureExecValue, digits: digits), ratio(row.ratio(row.secureExecValue)),
            ratio(row.ratio(row.bwrapValue)),
        ]
    }
}

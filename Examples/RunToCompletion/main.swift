// Run to completion: exec collects output and how the process ended; run
// decodes the value the guest hands back with __return(value).
import SecureExec

struct Stats: Decodable {
    var count: Int
    var mean: Double
}

try await withNodeRuntime { runtime in
    let result = try await runtime.exec(
        """
        console.log("to stdout");
        console.error("to stderr");
        process.exit(2);
        """, timeout: .seconds(10))
    print(result.termination, result.stdoutText, result.stderrText, separator: " | ", terminator: "")
    // exited with code 2 | to stdout
    //  | to stderr

    let stats = try await runtime.run(
        """
        const values = [3, 5, 10];
        __return({ count: values.length, mean: values.reduce((a, b) => a + b) / values.length });
        """, as: Stats.self)
    print("count \(stats.count), mean \(stats.mean)")  // count 3, mean 6.0
}

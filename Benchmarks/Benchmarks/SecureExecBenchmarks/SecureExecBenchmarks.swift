// SecureExec's package-benchmark suite: `swift package --package-path Benchmarks benchmark`.
//
// SecureExec alone, with package-benchmark's statistics and metrics; the
// side-by-side comparison with bare node and bwrap is `secure-exec-compare`.
// With SECURE_EXEC_BENCH_SMOKE=1 every benchmark runs once (for a quick check
// that they still work: run the built executable directly); any failure then
// exits non-zero.
import Benchmark
import BenchmarkWorkloads
import Foundation
import SecureExec

let smoke = ProcessInfo.processInfo.environment["SECURE_EXEC_BENCH_SMOKE"] != nil

/// What a benchmark's setup made, for its closure and its teardown.
final class Fixture: @unchecked Sendable {
    private let lock = NSLock()
    private var runtimes: [NodeRuntime] = []
    private var exposure: ExposedPort?
    private var client: RawHTTPClient?

    var runtime: NodeRuntime { lock.withLock { runtimes[0] } }
    var exposedClient: RawHTTPClient { lock.withLock { client! } }

    func add(_ runtime: NodeRuntime) { lock.withLock { runtimes.append(runtime) } }

    func expose(_ port: ExposedPort, client: RawHTTPClient) {
        lock.withLock {
            exposure = port
            self.client = client
        }
    }

    func tearDown() async {
        let (runtimes, exposure) = lock.withLock {
            defer {
                self.runtimes = []
                self.exposure = nil
                self.client = nil
            }
            return (self.runtimes, self.exposure)
        }
        await exposure?.close()
        for runtime in runtimes { await runtime.dispose() }
    }
}

/// Records `error` as the benchmark's failure; in a smoke run, exits at once with it.
func report(_ error: any Error, in benchmark: Benchmark) {
    if smoke {
        FileHandle.standardError.write(Data("\(benchmark.name) failed: \(error)\n".utf8))
        exit(1)
    }
    benchmark.error("\(error)")
}

func configuration(
    _ metrics: [BenchmarkMetric] = [.wallClock, .cpuTotal, .throughput], maxIterations: Int = 30,
    maxDuration: Duration = .seconds(5), timeUnits: BenchmarkTimeUnits = .milliseconds
) -> Benchmark.Configuration {
    .init(
        metrics: metrics, timeUnits: timeUnits, warmupIterations: smoke ? 0 : 1, maxDuration: smoke ? .seconds(30) : maxDuration,
        maxIterations: smoke ? 1 : maxIterations)
}

let benchmarks: @Sendable () -> Void = {
    Benchmark("Cold start: create + spawn (exits at once) + wait + dispose", configuration: configuration()) { benchmark in
        do {
            for _ in benchmark.scaledIterations { blackHole(try await SecureExecRuns.coldStart()) }
        } catch {
            report(error, in: benchmark)
        }
    }

    let firstByte = Fixture()
    Benchmark(
        "Spawn to first stdout byte (existing runtime)", configuration: configuration(),
        closure: { benchmark in
            do {
                for _ in benchmark.scaledIterations { blackHole(try await SecureExecRuns.firstByte(in: firstByte.runtime)) }
            } catch {
                report(error, in: benchmark)
            }
        },
        setup: { firstByte.add(try await NodeRuntime.create()) },
        teardown: { await firstByte.tearDown() })

    let listener = Fixture()
    Benchmark(
        "Spawn dev server to waitForListener (existing runtime)", configuration: configuration(),
        closure: { benchmark in
            do {
                for _ in benchmark.scaledIterations { blackHole(try await SecureExecRuns.listen(in: listener.runtime)) }
            } catch {
                report(error, in: benchmark)
            }
        },
        setup: { listener.add(try await NodeRuntime.create(permissions: .init(network: .allow))) },
        teardown: { await listener.tearDown() })

    let fetching = Fixture()
    Benchmark(
        "fetch GET /health (kept alive, one runtime)",
        configuration: configuration(maxIterations: 5000, timeUnits: .microseconds),
        closure: { benchmark in
            do {
                for _ in benchmark.scaledIterations {
                    let response = try await fetching.runtime.fetch(3000, path: "/health")
                    guard response.status == 200 else { throw BenchmarkFailure("fetch answered \(response.status)") }
                }
            } catch {
                report(error, in: benchmark)
            }
        },
        setup: { fetching.add(try await SecureExecRuns.serving().0) },
        teardown: { await fetching.tearDown() })

    let exposing = Fixture()
    Benchmark(
        "expose: GET / through the exposed port (one kept-alive connection)",
        configuration: configuration(maxIterations: 5000, timeUnits: .microseconds),
        closure: { benchmark in
            do {
                let client = exposing.exposedClient
                for _ in benchmark.scaledIterations {
                    guard try client.get("/") == 200 else { throw BenchmarkFailure("the exposed server did not answer 200") }
                }
            } catch {
                report(error, in: benchmark)
            }
        },
        setup: {
            let (runtime, _) = try await SecureExecRuns.serving()
            exposing.add(runtime)
            let exposed = try await runtime.expose(3000)
            exposing.expose(exposed, client: RawHTTPClient(socket: try LoopbackDialer.connect(port: exposed.port)))
        },
        teardown: { await exposing.tearDown() })

    Benchmark("Churn: create + dispose (no guest)", configuration: configuration(maxIterations: 200)) { benchmark in
        do {
            for _ in benchmark.scaledIterations { await (try await NodeRuntime.create()).dispose() }
        } catch {
            report(error, in: benchmark)
        }
    }

    // Custom metrics, in KiB per sandbox: measured on 10 idle dev-server sandboxes at once.
    let initMetric = BenchmarkMetric.custom("init PSS per sandbox (KiB)", polarity: .prefersSmaller, useScalingFactor: false)
    let supervisorMetric = BenchmarkMetric.custom(
        "supervisor RSS growth per sandbox (KiB)", polarity: .prefersSmaller, useScalingFactor: false)
    Benchmark(
        "Idle dev-server sandboxes: SecureExec's own memory",
        configuration: configuration([initMetric, supervisorMetric, .wallClock], maxIterations: 3, maxDuration: .seconds(60))
    ) { benchmark in
        let count = smoke ? 2 : 10
        let initsBefore = Set(HostCensus.sandboxInits())
        let residentBefore = HostCensus.statusField("VmRSS", of: getpid()) ?? 0
        var runtimes: [NodeRuntime] = []
        do {
            for _ in 0..<count { runtimes.append(try await SecureExecRuns.serving().0) }
            let residentAfter = HostCensus.statusField("VmRSS", of: getpid()) ?? 0
            let inits = HostCensus.sandboxInits().filter { !initsBefore.contains($0) }
            let initKiB = inits.compactMap(HostCensus.proportionalKiB).reduce(0, +) / max(1, inits.count)
            benchmark.measurement(initMetric, initKiB)
            benchmark.measurement(supervisorMetric, max(0, residentAfter - residentBefore) / count)
        } catch {
            for runtime in runtimes { await runtime.dispose() }
            report(error, in: benchmark)
            return
        }
        for runtime in runtimes { await runtime.dispose() }
    }
}

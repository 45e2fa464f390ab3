// swift-tools-version: 6.1
// SecureExec's benchmarks: a package of its own, so package-benchmark and its
// dependencies stay out of the library's graph. `make bench` runs both parts.
import PackageDescription

let package = Package(
    name: "SecureExecBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "SecureExec", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // The workloads, shared by the package-benchmark suite and the comparison harness.
        .target(
            name: "BenchmarkWorkloads",
            dependencies: [
                "CPhases",
                .product(name: "SecureExec", package: "SecureExec"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Compare/Workloads"
        ),
        // The kernel steps of a sandbox's creation, timed one by one (clone3, id maps, mounts).
        .target(name: "CPhases", path: "Compare/CPhases"),
        // bare node vs bwrap vs SecureExec, interleaved; writes ../BENCHMARKS.md.
        .executableTarget(
            name: "secure-exec-compare",
            dependencies: ["BenchmarkWorkloads"],
            path: "Compare/Harness"
        ),
        .executableTarget(
            name: "SecureExecBenchmarks",
            dependencies: [
                "BenchmarkWorkloads",
                .product(name: "SecureExec", package: "SecureExec"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/SecureExecBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

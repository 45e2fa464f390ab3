// swift-tools-version: 6.2
import PackageDescription

// Warnings are errors in our own targets (not in dependencies).
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]
let strictC: [CSetting] = [.unsafeFlags(["-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"])]

let package = Package(
    name: "SecureExec",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SecureExec", targets: ["SecureExec"]),
        .executable(name: "secure-exec-init", targets: ["secure-exec-init"]),
        .executable(name: "dev-server-example", targets: ["DevServerExample"]),
        .executable(name: "secure-exec", targets: ["secure-exec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.4"),
    ],
    targets: [
        // Only the syscalls Swift cannot make safely: clone3 + exec, setns, SCM_RIGHTS, pidfd.
        .target(
            name: "CNamespaces",
            path: "Sources/CNamespaces",
            cSettings: strictC
        ),
        // Egress by allow-list, in the guest's network namespace: the supervisor's
        // listeners, the nftables redirect to them (libnftnl) and the routes (libmnl).
        .target(
            name: "CEgress",
            dependencies: ["CNamespaces"],
            path: "Sources/CEgress",
            cSettings: strictC,
            linkerSettings: [.linkedLibrary("nftnl"), .linkedLibrary("mnl")]
        ),
        // PID 1 of every sandbox. A small, single-threaded C program.
        .executableTarget(
            name: "secure-exec-init",
            dependencies: ["CNamespaces"],
            path: "Sources/secure-exec-init",
            cSettings: strictC,
            linkerSettings: [.linkedLibrary("seccomp"), .linkedLibrary("cap")]
        ),
        // The supervisor (Sources/SecureExec/Supervisor) and the public API over it
        // (Sources/SecureExec/API), one module so the public types are the ones the
        // supervisor uses; the API folder is the only place that declares `public`.
        .target(
            name: "SecureExec",
            dependencies: [
                "CNamespaces",
                "CEgress",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
            ],
            path: "Sources/SecureExec",
            swiftSettings: strict
        ),
        // The ops CLI, over the public API only.
        .executableTarget(
            name: "secure-exec",
            dependencies: [
                "SecureExec",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/secure-exec",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "DevServerExample",
            dependencies: ["SecureExec"],
            path: "Examples/DevServer",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "UploadProjectExample",
            dependencies: ["SecureExec"],
            path: "Examples/UploadProject",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "RunToCompletionExample",
            dependencies: ["SecureExec"],
            path: "Examples/RunToCompletion",
            swiftSettings: strict
        ),
        // What the test targets share: runtimes disposed on every path, output
        // collectors, host programs, /proc readings, host files, the root gate.
        .target(
            name: "TestSupport",
            dependencies: ["SecureExec", "CEgress"],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        // Tests that need neither root nor a sandbox (input rules, parsers, the
        // ELF reader): `swift test --filter SecureExecUnitTests` runs them anywhere.
        // The supervisor's `package` declarations are visible here; CNamespaces
        // is for tests of the init protocol's encoding.
        .testTarget(
            name: "SecureExecUnitTests",
            dependencies: ["SecureExec", "CNamespaces", "TestSupport"],
            path: "Tests/UnitTests",
            swiftSettings: strict
        ),
        // What a package that depends on SecureExec sees: only `import SecureExec`,
        // with MemberImportVisibility on, reading SecureExecError's members. No root.
        .testTarget(
            name: "SecureExecImportTests",
            dependencies: ["SecureExec"],
            path: "Tests/ImportTests",
            swiftSettings: strict + [.enableUpcomingFeature("MemberImportVisibility")]
        ),
        // Real sandboxes, so root (suites marked `.needsRoot`).
        .testTarget(
            name: "SecureExecTests",
            dependencies: ["SecureExec", "CNamespaces", "CEgress", "TestSupport"],
            path: "Tests/SecureExecTests",
            swiftSettings: strict
        ),
        // Process-wide resource counts (fds, threads, mounts): run alone with `swift test --filter SecureExecLeakTests`.
        .testTarget(
            name: "SecureExecLeakTests", dependencies: ["SecureExec", "TestSupport"], path: "Tests/LeakTests", swiftSettings: strict),
        // A host that owns a sandbox and can be SIGKILLed by the leak tests.
        .executableTarget(name: "secure-exec-test-host", dependencies: ["SecureExec"], path: "Tests/TestHost", swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)

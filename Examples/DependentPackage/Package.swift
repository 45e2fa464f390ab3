// swift-tools-version: 6.2
// A package of a hosting platform's own that depends on SecureExec by path,
// as README's "Using SecureExec from your own package" describes. Build it
// with init beside the program:
//
//   swift build --product secure-exec-init && swift build
//   sudo .build/debug/host-app
import PackageDescription

let package = Package(
    name: "HostApp",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "SecureExec", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "host-app",
            dependencies: [.product(name: "SecureExec", package: "SecureExec")],
            path: "Sources/HostApp"
        ),
    ],
    swiftLanguageModes: [.v6]
)

import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Helpers only the native-addon suite (NativeAddonTests.swift) needs: N-API
// addons compiled on the host with `cc` against node's headers, and the guest
// program that loads one. Names start with `NativeAddon` so other suites'
// helpers never collide with these.

/// What a loaded addon reports, or how loading it failed.
struct NativeAddonReport: Decodable, Equatable, CustomStringConvertible {
    /// `zlibVersion()` of the libz the loader loaded for the addon.
    var zlibVersion: String?
    /// Where that libz was loaded from (`dladdr`), as the loader opened it.
    var zlibPath: String?
    /// For the bundled-library addon: what its library returned.
    var bundled: Int?
    /// When `require` threw: its message and code.
    var error: String?
    var code: String?

    var description: String {
        error.map { "failed (\(code ?? "no code")): \($0)" }
            ?? "libz \(zlibVersion ?? "-") from \(zlibPath ?? "-"), bundled \(bundled.map(String.init) ?? "-")"
    }
}

/// C sources of the addons and how they are built.
enum NativeAddon {
    static let compiler = "/usr/bin/cc"
    static let nodeHeaders = "/usr/include/node"

    /// Exports the version and the path of the libz the loader loaded for it.
    ///
    /// Asked of libz's own handle (`RTLD_NOLOAD`: only a libz already loaded
    /// as the addon's dependency answers), because node may export zlib's
    /// symbols itself and would answer a plain `zlibVersion()` call.
    static let zlibSource = """
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <node_api.h>
        #include <zlib.h>

        NAPI_MODULE_INIT() {
            /* The direct call keeps libz.so.1 a DT_NEEDED of this addon. */
            const char *version = zlibVersion();
            const char *path = "";
            void *libz = dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD);
            if (libz) {
                const char *(*own)(void) = (const char *(*)(void))dlsym(libz, "zlibVersion");
                Dl_info where;
                if (own) version = own();
                if (own && dladdr((void *)own, &where) && where.dli_fname) path = where.dli_fname;
            }
            napi_value value, file;
            napi_create_string_utf8(env, version, NAPI_AUTO_LENGTH, &value);
            napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &file);
            napi_set_named_property(env, exports, "zlibVersion", value);
            napi_set_named_property(env, exports, "zlibPath", file);
            return exports;
        }
        """

    /// Calls `libraryFunction()` from a library of the test's own and exports what it returned as `bundled`.
    static func callerSource(of libraryFunction: String) -> String {
        """
        #include <node_api.h>

        int \(libraryFunction)(void);

        NAPI_MODULE_INIT() {
            napi_value value;
            napi_create_int32(env, \(libraryFunction)(), &value);
            napi_set_named_property(env, exports, "bundled", value);
            return exports;
        }
        """
    }

    /// A shared library whose `function()` returns 42, with soname `soname`.
    static func librarySource(function: String) -> String { "int \(function)(void) { return 42; }\n" }

    /// Checks that the compiler and node's headers exist; throws saying how to get them.
    static func requireToolchain() throws {
        guard access(compiler, X_OK) == 0 else {
            throw TestFailure("\(compiler) is missing: the native-addon tests compile addons on the host (apt-get install gcc)")
        }
        guard access(nodeHeaders + "/node_api.h", R_OK) == 0 else {
            throw TestFailure("\(nodeHeaders)/node_api.h is missing: run `make deps` (node's headers, libnode-dev on Debian's nodejs)")
        }
        guard access("/usr/include/zlib.h", R_OK) == 0 else {
            throw TestFailure("/usr/include/zlib.h is missing: run `make deps` (zlib1g-dev)")
        }
    }

    /// Compiles C `source` into the shared object `output` (`cc -shared -fPIC`,
    /// node's headers on the include path) with `flags` after the source (libraries, rpath).
    static func compile(_ source: String, into output: String, flags: [String] = []) async throws {
        try requireToolchain()
        let sourcePath = output + ".c"
        try HostFiles.write(sourcePath, source)
        defer { unlink(sourcePath) }
        let arguments = ["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", nodeHeaders, "-o", output, sourcePath] + flags
        let cc = try HostProgram(compiler, arguments: arguments)
        defer { cc.stop() }
        let ended = try await cc.waitForExit(timeout: .seconds(60))
        guard ended.reason == .exit, ended.status == 0 else {
            throw TestFailure("cc \(arguments.joined(separator: " ")) failed: \(cc.stderr.text)")
        }
    }

    /// Compiles the libz addon to `directory/addon.node`; returns its path.
    @discardableResult
    static func buildZlibAddon(in directory: String) async throws -> String {
        let output = directory + "/addon.node"
        try await compile(zlibSource, into: output, flags: ["-lz"])
        return output
    }

    /// `strings` as a JavaScript array literal.
    static func jsArray(_ strings: [String]) -> String {
        "[" + strings.map(GuestPrograms.jsString).joined(separator: ", ") + "]"
    }

    /// A guest that requires `path` and prints what it exports, or its error, as one JSON line.
    static func loader(_ path: String) -> String {
        """
        let report;
        try { report = { ...require(\(GuestPrograms.jsString(path))) }; }
        catch (error) { report = { error: error.message, code: error.code }; }
        console.log(JSON.stringify(report));
        """
    }

    /// Loads `path` in `runtime` and returns its report.
    static func load(_ path: String, in runtime: NodeRuntime) async throws -> NativeAddonReport {
        let result = try await runtime.exec(loader(path), timeout: .seconds(30))
        guard result.termination == .exited(0),
            let report = try? JSONDecoder().decode(NativeAddonReport.self, from: Data(result.stdout))
        else {
            throw TestFailure("the loader guest \(result.termination): \(result.stdoutText) \(result.stderrText)")
        }
        return report
    }

    /// Loads `path` with the host's own node, outside any sandbox: what the guest must match.
    static func loadOnHost(_ path: String) async throws -> NativeAddonReport {
        let node = try HostProgram("/usr/bin/node", arguments: ["-e", loader(path)])
        defer { node.stop() }
        try await node.waitForExit(timeout: .seconds(30))
        return try JSONDecoder().decode(NativeAddonReport.self, from: Data(node.stdout.bytes))
    }
}

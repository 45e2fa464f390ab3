#if canImport(Glibc)
import Glibc
#endif

/// One file the sandbox must bind read-only: where it is on the host and where the guest's loader will look for it.
///
/// `guestPath` is the literal string ld.so will `open()` (it may contain `..` from `$ORIGIN/../lib`, or go
/// through a host symlink such as `/lib -> usr/lib`); the binder must create it as written. `hostPath` is
/// the realpath of the same file on the host, the bind source.
struct RuntimeFile: Hashable, Sendable {
    var hostPath: String
    var guestPath: String
}

/// Finds the ELF interpreter and every shared library an executable needs, the way glibc's ld.so would.
///
/// Plain file reads (open/pread/glob/realpath), no subprocesses; it blocks, so keep it off the event loop.
/// It assumes the guest has no LD_LIBRARY_PATH and every returned file is bound at its `guestPath`.
/// Dirs from /etc/ld.so.conf are searched where ld.so would consult /etc/ld.so.cache: a library found only
/// there (e.g. under /usr/local/lib) is found by the guest's ld.so only if the guest has that cache too.
enum SharedLibraryResolver {
    private static let step = "resolve shared libraries"

    #if arch(x86_64)
    private static let host: (machine: UInt16, multiarch: String)? = (62, "x86_64-linux-gnu")  // EM_X86_64
    #elseif arch(arm64)
    private static let host: (machine: UInt16, multiarch: String)? = (183, "aarch64-linux-gnu")  // EM_AARCH64
    #else
    private static let host: (machine: UInt16, multiarch: String)? = nil
    #endif

    /// Returns the interpreter and the transitive DT_NEEDED closure of the ELF executable at `executable`.
    ///
    /// The interpreter comes first (its `guestPath` is PT_INTERP verbatim), then libraries in ld.so's
    /// breadth-first load order, unique by `guestPath`. The executable itself is not included. A static
    /// executable yields `[]`. Throws `.unsupportedHost` naming the file when the executable, its
    /// interpreter or a needed library is missing, or is not a 64-bit little-endian ELF for this machine.
    static func runtimeFiles(forExecutable executable: String) throws(SecureExecError) -> [RuntimeFile] {
        var exe = try load(executable)
        if let host, exe.elf.machine != host.machine {
            throw SecureExecError(.unsupportedHost, "\(executable) is for ELF machine \(exe.elf.machine), not this host's \(host.machine)", step: step)
        }
        // ld.so takes the executable's $ORIGIN from /proc/self/exe, which is already symlink-free.
        exe.origin = directory(of: exe.hostPath)
        exe.rpathChain = ownRpath(of: exe)

        var result: [RuntimeFile] = []
        var seenGuestPaths: Set<String> = []
        // ld.so answers a DT_NEEDED name from the objects already loaded before searching: by a name that
        // loaded one, the path it was found at, or its DT_SONAME. That is how node's
        // `NEEDED ld-linux-x86-64.so.2` becomes the interpreter rather than a second copy from /lib/<multiarch>.
        var loadedNames: Set<String> = []
        func record(_ object: LoadedObject, requestedAs name: String? = nil) {
            if seenGuestPaths.insert(object.guestPath).inserted {
                result.append(RuntimeFile(hostPath: object.hostPath, guestPath: object.guestPath))
            }
            for case let known? in [name, object.guestPath, object.elf.soname] { loadedNames.insert(known) }
        }

        if let interp = exe.elf.interpreter {
            record(try load(interp, machine: exe.elf.machine))
        }

        let searchDirs = configuredDirs() + defaultDirs()
        var walkedHostPaths: Set<String> = [exe.hostPath]
        var queue = [exe]  // breadth-first, like ld.so, so "first found wins" picks the same copy it would
        while !queue.isEmpty {
            let requester = queue.removeFirst()
            for name in requester.elf.needed where !loadedNames.contains(name) {
                guard let found = find(name, for: requester, machine: exe.elf.machine, searchDirs: searchDirs) else {
                    throw SecureExecError(.unsupportedHost, "cannot find \(name), needed by \(requester.guestPath)", step: step)
                }
                record(found, requestedAs: name)
                // The same file reached by another path (/lib/... vs /usr/lib/...): ld.so opens that path, then
                // notices the inode is already loaded. So the path is bound, but its deps are already walked.
                if walkedHostPaths.insert(found.hostPath).inserted { queue.append(found) }
            }
        }
        return result
    }

    // MARK: - Search

    /// One ELF object as ld.so holds it: the path it opened, what it read there, and the RPATHs it inherits.
    private struct LoadedObject {
        var guestPath: String
        var hostPath: String
        var elf: ElfInfo
        /// What $ORIGIN expands to: the directory of the path the object was opened by (not realpath'd).
        var origin: String
        /// This object's DT_RPATH followed by its loader's chain: when an object has no DT_RUNPATH, ld.so
        /// searches the RPATHs of every object up the chain that caused it to be loaded, ending at the executable.
        var rpathChain: [String] = []
    }

    private static func find(_ name: String, for requester: LoadedObject, machine: UInt16, searchDirs: [String]) -> LoadedObject? {
        let candidates: [String]
        if name.contains("/") {
            candidates = [expandOrigin(name, origin: requester.origin)]
        } else {
            var dirs = requester.elf.runpath == nil ? requester.rpathChain : []
            dirs += splitPath(requester.elf.runpath, origin: requester.origin)
            if !requester.elf.noDefaultLib { dirs += searchDirs }
            candidates = dirs.map { $0 + "/" + name }
        }
        // A candidate that is missing, not ELF, or of another class/machine is skipped. (ld.so stops hard on a
        // non-ELF file, but the guest never sees one: we don't bind it, so there it is a plain ENOENT.)
        for path in candidates {
            guard var object = try? load(path, machine: machine) else { continue }
            object.rpathChain = ownRpath(of: object) + requester.rpathChain
            return object
        }
        return nil
    }

    /// An object's DT_RPATH dirs; a DT_RUNPATH on the same object switches its DT_RPATH off entirely.
    private static func ownRpath(of object: LoadedObject) -> [String] {
        object.elf.runpath == nil ? splitPath(object.elf.rpath, origin: object.origin) : []
    }

    /// Splits an RPATH/RUNPATH on ':' and expands $ORIGIN.
    ///
    /// Empty entries (which ld.so reads as its cwd) are dropped: the guest's cwd is not a library dir we bind.
    private static func splitPath(_ list: String?, origin: String) -> [String] {
        guard let list else { return [] }
        return list.split(separator: ":").map { trimTrailingSlashes(expandOrigin(String($0), origin: origin)) }
    }

    /// $LIB and $PLATFORM are left as they are: rare in practice, and such a path just never matches.
    private static func expandOrigin(_ text: String, origin: String) -> String {
        text.replacing("${ORIGIN}", with: origin).replacing("$ORIGIN", with: origin)
    }

    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func trimTrailingSlashes(_ dir: String) -> String {
        var dir = dir
        while dir.count > 1, dir.hasSuffix("/") { dir.removeLast() }
        return dir
    }

    /// Every directory ld.so searches by name: those of /etc/ld.so.conf (which it reaches through
    /// ld.so.cache), then its compiled-in ones; each once, in that order, as written (not realpath'd).
    static func loaderDirectories() -> [String] {
        var seen: Set<String> = []
        return (configuredDirs() + defaultDirs()).filter { seen.insert($0).inserted }
    }

    /// ld.so's compiled-in system dirs, as the union of the Debian (multiarch) and Fedora (lib64) layouts.
    private static func defaultDirs() -> [String] {
        let arch = host.map { ["/lib/\($0.multiarch)", "/usr/lib/\($0.multiarch)"] } ?? []
        return arch + ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    }

    /// The directories named in /etc/ld.so.conf and its includes, in file order.
    ///
    /// Stands in for the ld.so.cache that ldconfig builds from them; unreadable files contribute nothing.
    private static func configuredDirs(_ file: String = "/etc/ld.so.conf", depth: Int = 0) -> [String] {
        guard depth < 8, let text = readTextFile(file) else { return [] }  // depth bounds include cycles
        var dirs: [String] = []
        for rawLine in text.split(separator: "\n") {
            let words = rawLine.prefix { $0 != "#" }.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let keyword = words.first, keyword != "hwcap" else { continue }  // hwcap: obsolete, ldconfig ignores it
            guard keyword == "include" else { dirs.append(trimTrailingSlashes(String(keyword))); continue }
            for patternWord in words.dropFirst() {
                // ldconfig resolves a relative pattern against the including file's directory.
                let pattern = patternWord.hasPrefix("/") ? String(patternWord) : directory(of: file) + "/" + patternWord
                var matches = glob_t()
                defer { globfree(&matches) }
                guard glob(pattern, 0, nil, &matches) == 0 else { continue }
                for i in 0..<Int(matches.gl_pathc) {
                    if let match = matches.gl_pathv[i] { dirs += configuredDirs(String(cString: match), depth: depth + 1) }
                }
            }
        }
        return dirs
    }

    // MARK: - ELF

    /// What ld.so reads from an object's headers.
    private struct ElfInfo {
        var machine: UInt16
        var interpreter: String?
        var needed: [String] = []
        var rpath: String?, runpath: String?, soname: String?
        /// DF_1_NODEFLIB: this object's dependencies skip the cache and the default dirs.
        var noDefaultLib = false
    }

    /// Opens and parses `path` as a 64-bit little-endian ELF whose e_machine is `machine` (any, when nil).
    private static func load(_ path: String, machine: UInt16? = nil) throws(SecureExecError) -> LoadedObject {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { let err = errno; throw SecureExecError(.unsupportedHost, "cannot open \(path)", step: step, errno: err) }
        defer { close(fd) }
        let elf = try parse(fd, path: path, machine: machine)
        guard let real = realpath(path, nil) else {
            let err = errno
            throw SecureExecError(.unsupportedHost, "cannot resolve \(path)", step: step, errno: err)
        }
        defer { free(real) }
        return LoadedObject(guestPath: path, hostPath: String(cString: real), elf: elf, origin: directory(of: path))
    }

    private static func parse(_ fd: Int32, path: String, machine: UInt16?) throws(SecureExecError) -> ElfInfo {
        func bad(_ why: String) -> SecureExecError { SecureExecError(.unsupportedHost, "\(path) \(why)", step: step) }

        // e_ident: "\x7fELF", ELFCLASS64 (2), ELFDATA2LSB (1).
        guard let eh = read(fd, at: 0, count: 64), eh[0..<4] == [0x7f, 0x45, 0x4c, 0x46], eh[4] == 2, eh[5] == 1 else {
            throw bad("is not a 64-bit little-endian ELF file")
        }
        guard case 2...3 = le(eh, 16, 2) else { throw bad("is not an ELF executable or shared object") }  // ET_EXEC, ET_DYN
        var elf = ElfInfo(machine: UInt16(le(eh, 18, 2)))
        if let machine, elf.machine != machine { throw bad("is for ELF machine \(elf.machine), not \(machine)") }
        let phoff = le(eh, 32, 8), phentsize = le(eh, 54, 2), phnum = Int(le(eh, 56, 2))
        guard phentsize == 56, let ph = read(fd, at: phoff, count: phnum * 56) else { throw bad("has unreadable program headers") }

        var loads: [(vaddr: UInt64, offset: UInt64, filesz: UInt64)] = []
        var dynamic: [UInt8]?
        for h in stride(from: 0, to: ph.count, by: 56) {
            let offset = le(ph, h + 8, 8), filesz = le(ph, h + 32, 8)
            switch le(ph, h, 4) {
            case 1: loads.append((le(ph, h + 16, 8), offset, filesz))  // PT_LOAD
            case 2:                                                     // PT_DYNAMIC
                guard filesz <= 1 << 20, let bytes = read(fd, at: offset, count: Int(filesz)) else { throw bad("has an unreadable dynamic section") }
                dynamic = bytes
            case 3:                                                     // PT_INTERP
                guard let interp = readCString(fd, at: offset, limit: filesz) else { throw bad("has an unreadable PT_INTERP") }
                elf.interpreter = interp
            default: break
            }
        }
        guard let dynamic else { return elf }  // static: needs nothing

        // Strings are offsets into DT_STRTAB, which may come after them, so collect offsets first.
        var strtab: UInt64?, strsz: UInt64 = 0, needed: [UInt64] = []
        var rpath: UInt64?, runpath: UInt64?, soname: UInt64?
        for e in stride(from: 0, to: dynamic.count - 15, by: 16) {
            let tag = le(dynamic, e, 8), value = le(dynamic, e + 8, 8)
            if tag == 0 { break }  // DT_NULL
            switch tag {
            case 1: needed.append(value)  // DT_NEEDED
            case 5: strtab = value        // DT_STRTAB
            case 10: strsz = value        // DT_STRSZ
            case 14: soname = value       // DT_SONAME
            case 15: rpath = value        // DT_RPATH
            case 29: runpath = value      // DT_RUNPATH
            case 0x6fff_fffb: elf.noDefaultLib = value & 0x800 != 0  // DT_FLAGS_1 & DF_1_NODEFLIB
            default: break
            }
        }
        // DT_STRTAB is a virtual address; the PT_LOAD segment that maps it says where it sits in the file.
        guard let strtab, let seg = loads.first(where: { strtab >= $0.vaddr && strtab - $0.vaddr < $0.filesz }) else {
            if needed.isEmpty && rpath == nil && runpath == nil { return elf }
            throw bad("has a dynamic section but no string table inside a PT_LOAD segment")
        }
        let base = strtab - seg.vaddr + seg.offset
        func string(_ offset: UInt64) throws(SecureExecError) -> String {
            guard offset < strsz, let text = readCString(fd, at: base + offset, limit: strsz - offset) else {
                throw bad("has a dynamic string outside its string table")
            }
            return text
        }
        elf.needed = try needed.map(string)
        elf.rpath = try rpath.map(string)
        elf.runpath = try runpath.map(string)
        elf.soname = try soname.map(string)
        return elf
    }

    /// The little-endian unsigned integer of `size` bytes at `at`; callers have already bounded `bytes`.
    private static func le(_ bytes: [UInt8], _ at: Int, _ size: Int) -> UInt64 {
        (0..<size).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * $1) }
    }

    /// `count` bytes at `offset`; nil on error, or on end of file unless `allowShort`.
    private static func read(_ fd: Int32, at offset: UInt64, count: Int, allowShort: Bool = false) -> [UInt8]? {
        guard offset <= UInt64(Int64.max) - UInt64(count) else { return nil }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { return allowShort ? Array(bytes[..<done]) : nil }
            done += n
        }
        return bytes
    }

    /// The NUL-terminated string at `offset`, within `limit` bytes and 64 KiB (node's .dynstr is megabytes;
    /// we want a few names, not the whole table).
    private static func readCString(_ fd: Int32, at offset: UInt64, limit: UInt64) -> String? {
        guard let bytes = read(fd, at: offset, count: Int(min(limit, 1 << 16)), allowShort: true),
              let nul = bytes.firstIndex(of: 0) else { return nil }
        return String(decoding: bytes[..<nul], as: UTF8.self)
    }

    private static func readTextFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let bytes = read(fd, at: 0, count: 1 << 16, allowShort: true) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

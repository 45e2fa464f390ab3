import CNamespaces

/// One `key=value` record of a request to init.
///
/// The keys are the `SE_KEY_*` constants of `se_protocol.h`, which init's C
/// parser uses too, so the two sides cannot drift apart (ARCHITECTURE.md,
/// "The init protocol").
enum InitRecord {
    static func make(_ key: String, _ value: some CustomStringConvertible) -> String {
        "\(key)=\(value)"
    }
}

/// A key in a configuration (or settings file) that no setting has. Thrown by
/// ``Swift/Decoder/rejectUnknownKeys(_:)`` from a type's `init(from:)`, so a misspelt key is an error that
/// names it — and the closest known key — instead of a setting silently left at its default.
package struct UnknownKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where the key is: the path of keys down to it, the unknown key last.
    package var path: [String]
    /// The closest known key at that level, when one is close enough to be a likely misspelling.
    package var suggestion: String?
    /// Every key allowed at that level.
    package var known: [String]

    package var key: String { path.last ?? "" }
    package var dottedPath: String { path.joined(separator: ".") }

    package var description: String {
        var text = "unknown key '\(dottedPath)'"
        if let suggestion { text += " (did you mean '\(suggestion)'?)" }
        return text + "; allowed here: " + known.sorted().joined(separator: ", ")
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// Throws ``UnknownKeyError`` for the first key of this mapping that `Keys` does not have.
    package func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_: Keys.Type) throws {
        let present = try container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        let known = Keys.allCases.map(\.stringValue)
        for key in present.sorted() where Keys(stringValue: key) == nil {
            throw UnknownKeyError(path: codingPath.map(\.stringValue) + [key],
                                  suggestion: EditDistance.closest(to: key, among: known), known: known)
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
package enum EditDistance {
    package static func between(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased()), b = Array(b.lowercased())
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count), current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    /// The candidate nearest to `word`, if within a third of its length (at least 2 edits allowed), or
    /// the shortest candidate that `word` begins (a key written without its unit, `histogram_noise`).
    package static func closest(to word: String, among candidates: [String]) -> String? {
        let extended = candidates.filter { $0.count > word.count && $0.lowercased().hasPrefix(word.lowercased()) }
        if let shortest = extended.min(by: { $0.count < $1.count }) { return shortest }
        let scored = candidates.map { ($0, between(word, $0)) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        guard let (best, distance) = scored, distance <= max(2, word.count / 3) else { return nil }
        return best
    }
}

import FedModel
import Foundation

/// The category vocabulary every agent shares: platform category id → model index.
///
/// The `categories − 1` largest categories (by distinct items, ties by smaller id) get indices
/// 0, 1, …; every other category — including ones first seen after the catalog was built — maps to
/// the last index, out of vocabulary. Built from catalog data (items per category), not from any
/// shopper's behaviour, so sharing it reveals nothing about users.
package struct CategoryCatalog: Sendable, Equatable {
    /// Model output classes, including the out-of-vocabulary one.
    package let categories: Int
    private let index: [UInt64: Int32]
    /// Category ids in index order, with their distinct item counts.
    package let entries: [(category: UInt64, items: Int)]

    package var outOfVocabulary: Int32 { Int32(categories - 1) }

    /// Ranks categories by distinct items (ties: smaller id first) and keeps the largest.
    package init(itemsPerCategory: [UInt64: Int], categories: Int) {
        let ranked = itemsPerCategory.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(categories - 1)
        self.init(ranked: ranked.map { ($0.key, $0.value) }, categories: categories)
    }

    /// Uses `ranked` as the index order (as read from a catalog file).
    init(ranked: [(category: UInt64, items: Int)], categories: Int) {
        precondition(categories >= 2, "a catalog needs at least one category and the out-of-vocabulary class")
        precondition(ranked.count < categories, "more ranked categories than model classes")
        entries = ranked
        index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.category, Int32($0)) })
        self.categories = categories
    }

    /// Counts distinct items per category in `events`.
    package static func itemsPerCategory(_ events: some Sequence<BehaviorEvent>,
                                         into counts: inout [UInt64: Set<UInt64>]) {
        for event in events { counts[event.category, default: []].insert(event.item) }
    }

    /// The model index of a platform category.
    package func modelIndex(of category: UInt64) -> Int32 { index[category] ?? outOfVocabulary }

    /// The platform category of a model index; nil for the out-of-vocabulary index (every other category).
    package func category(atModelIndex index: UInt64) -> UInt64? {
        index < UInt64(entries.count) ? entries[Int(index)].category : nil
    }

    package static func == (lhs: CategoryCatalog, rhs: CategoryCatalog) -> Bool {
        lhs.categories == rhs.categories && lhs.entries.elementsEqual(rhs.entries) { $0 == $1 }
    }

    // MARK: - File

    package enum FileError: Error, Equatable, CustomStringConvertible {
        case unreadable(path: String)
        case malformed(path: String, line: Int, reason: String)
        package var description: String {
            switch self {
            case let .unreadable(path): "cannot read catalog \(path): build one with `aggregator catalog build`"
            case let .malformed(path, line, reason): "catalog \(path), line \(line): \(reason)"
            }
        }
    }

    /// Text: a header `# feddrift-catalog v1 categories=C`, then `category<TAB>index<TAB>items` lines.
    package func text() -> String {
        var lines = ["# feddrift-catalog v1 categories=\(categories)",
                     "# category_id\tmodel_index\tdistinct_items (unlisted categories map to \(outOfVocabulary))"]
        for (position, entry) in entries.enumerated() { lines.append("\(entry.category)\t\(position)\t\(entry.items)") }
        return lines.joined(separator: "\n") + "\n"
    }

    package init(text: String, path: String = "catalog") throws(FileError) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().makeIterator()
        guard let header = lines.next()?.element, header.hasPrefix("# feddrift-catalog v1 categories="),
              let categories = Int(header.dropFirst("# feddrift-catalog v1 categories=".count)), categories >= 2 else {
            throw .malformed(path: path, line: 1, reason: "not a FedDrift catalog (expected its header line)")
        }
        var ranked: [(category: UInt64, items: Int)] = []
        var seen = Set<UInt64>()
        while let (number, line) = lines.next() {
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: "\t")
            guard fields.count == 3, let category = UInt64(fields[0]), let position = Int(fields[1]),
                  let items = Int(fields[2]), position == ranked.count, position < categories - 1 else {
                throw .malformed(path: path, line: number + 1,
                                 reason: "expected 'category<TAB>\(ranked.count)<TAB>items' (indices in order, below \(categories - 1))")
            }
            guard seen.insert(category).inserted else {
                throw .malformed(path: path, line: number + 1, reason: "category \(category) listed twice")
            }
            ranked.append((category, items))
        }
        self.init(ranked: ranked, categories: categories)
    }

    package static func read(from path: String) throws(FileError) -> CategoryCatalog {
        // A regular file of sane size only: a FIFO or /dev/zero named by mistake would hang the reader.
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              attributes[.type] as? FileAttributeType == .typeRegular, let size = attributes[.size] as? Int,
              size > 0, size <= 1 << 30, let data = FileManager.default.contents(atPath: path),
              let text = String(validating: data, as: UTF8.self) else { throw .unreadable(path: path) }
        return try CategoryCatalog(text: text, path: path)
    }
}

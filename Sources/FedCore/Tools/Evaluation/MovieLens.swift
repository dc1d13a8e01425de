import FedIO
import FedLogic
import FedModel
import FedNode
import Foundation

/// MovieLens 100K in RecBole's atomic-file layout (`ml-100k.inter`, `ml-100k.item`), read as
/// next-category sequences: each rating is an event whose category is the movie's first genre.
/// A research workload for the model and the drift evaluation; not e-commerce behaviour.
package struct MovieLensDataset: Sendable {
    package struct Event: Sendable {
        package let user: Int
        package let category: Int32
        package let timestamp: Int64
    }

    /// Genre names, index = model category.
    package let genres: [String]
    /// Each user's events in time order (ties by file order), keyed by user id.
    package let sequences: [Int: [Event]]

    package enum LoadError: Error, CustomStringConvertible {
        case missing(String)
        case malformed(file: String, line: Int, reason: String)
        package var description: String {
            switch self {
            case let .missing(path): "MovieLens file \(path) is missing"
            case let .malformed(file, line, reason): "\(file), line \(line): \(reason)"
            }
        }
    }

    /// Loads `directory/ml-100k.inter` and `directory/ml-100k.item`.
    package init(directory: String) throws(LoadError) {
        let itemsPath = (directory as NSString).appendingPathComponent("ml-100k.item")
        let ratingsPath = (directory as NSString).appendingPathComponent("ml-100k.inter")
        guard let items = try? String(contentsOfFile: itemsPath, encoding: .utf8) else { throw .missing(itemsPath) }
        guard let ratings = try? String(contentsOfFile: ratingsPath, encoding: .utf8) else { throw .missing(ratingsPath) }
        var genreOfItem: [Int: String] = [:]
        for (number, line) in items.split(separator: "\n").enumerated().dropFirst() {
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard columns.count >= 4, let item = Int(columns[0]) else {
                throw .malformed(file: itemsPath, line: number + 1, reason: "expected item_id and class columns")
            }
            genreOfItem[item] = columns[3].split(separator: " ").first.map(String.init) ?? "unknown"
        }
        let genres = Array(Set(genreOfItem.values)).sorted()
        let index = Dictionary(uniqueKeysWithValues: genres.enumerated().map { ($1, Int32($0)) })
        var sequences: [Int: [Event]] = [:]
        for (number, line) in ratings.split(separator: "\n").enumerated().dropFirst() {
            let columns = line.split(separator: "\t")
            guard columns.count >= 4, let user = Int(columns[0]), let item = Int(columns[1]),
                  let time = Double(columns[3]) else {
                throw .malformed(file: ratingsPath, line: number + 1, reason: "expected user, item, rating, timestamp")
            }
            let category = genreOfItem[item].flatMap { index[$0] } ?? 0
            sequences[user, default: []].append(Event(user: user, category: category, timestamp: Int64(time)))
        }
        for user in sequences.keys {
            sequences[user] = sequences[user]?.enumerated()
                .sorted { ($0.element.timestamp, $0.offset) < ($1.element.timestamp, $1.offset) }.map(\.element)
        }
        self.genres = genres
        self.sequences = sequences
    }
}

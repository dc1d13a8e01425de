import FedIO
package import FedLogic
package import FedModel
package import FedNode
import Foundation

/// Whole user sequences for ``FederationSimulation`` and the drift evaluation, from the built-in
/// simulator, a Taobao/JSONL event file, or MovieLens 100K (genres as categories).
package struct SimulationData: Sendable {
    package var users: [EventSequence]
    package var shape: LSTMShape
    package var outOfVocabulary: Int32
    package var description: String
    /// Each user's categories over the whole vocabulary (a dense index per platform category, no
    /// out-of-vocabulary bucket), for detectors that need no model; empty when not loaded.
    package var rawUsers: [[Int32]] = []
    package var rawCategories = 0
    /// Each user's id (same order as `users`), for fold splits; empty when not loaded.
    package var userIDs: [UInt64] = []

    /// Simulated shoppers, keeping each user's last `keep` events. Two passes over the (deterministic)
    /// simulator: the catalog from item counts first, then the sequences.
    package static func simulated(users: Int, days: Int, seed: UInt64, shape: LSTMShape, keep: Int,
                                  progress: ProgressReporter = .silent) -> SimulationData {
        var parameters = ShopperSimulator.Parameters()
        parameters.users = users
        parameters.days = days
        parameters.seed = seed
        let simulator = ShopperSimulator(parameters: parameters)
        var items: [UInt64: Set<UInt64>] = [:]
        simulator.run(usersPerBatch: 5_000, progress: progress, label: "simulating shoppers (catalog)") {
            CategoryCatalog.itemsPerCategory($0.events, into: &items)
        }
        let catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: shape.categories)
        var sequences: [EventSequence] = []
        sequences.reserveCapacity(users)
        simulator.run(usersPerBatch: 5_000, progress: progress, label: "simulating shoppers (sequences)") { output in
            sequences += grouped(output.events, catalog: catalog, keep: keep)
        }
        return SimulationData(users: sequences, shape: shape, outOfVocabulary: catalog.outOfVocabulary,
                              description: "\(users) simulated shoppers over \(days) days (seed \(seed))")
    }

    /// A Taobao CSV or JSONL file: each user's events in time order, categories through a catalog
    /// built from the file's own distinct items per category.
    ///
    /// - Parameter progress: counts the bytes read, in a phase named "reading PATH".
    package static func file(path: String, format: EventFormat, shape: LSTMShape, keep: Int,
                             progress: ProgressReporter = .silent) throws -> SimulationData {
        var events: [BehaviorEvent] = []
        let summary = try EventFileReader(path: path, format: format).read(progress: progress) { events += $0 }
        var items: [UInt64: Set<UInt64>] = [:]
        CategoryCatalog.itemsPerCategory(events, into: &items)
        let catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: shape.categories)
        let sequences = grouped(events, catalog: catalog, keep: keep)
        let full = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: items.count + 1)
        var data = SimulationData(users: sequences, shape: shape, outOfVocabulary: catalog.outOfVocabulary,
                                  description: "\(path): \(summary.accepted) events, \(sequences.count) users")
        data.rawUsers = grouped(events, catalog: full, keep: keep).map(\.categories)
        data.rawCategories = full.categories
        data.userIDs = Set(events.map(\.user)).sorted()
        return data
    }

    /// MovieLens 100K (`ml-100k.inter`, `ml-100k.item`): each rating an event, its movie's first genre
    /// the category; the model's categories are the genres plus an (unused) out-of-vocabulary class.
    package static func movieLens(directory: String, keep: Int) throws -> SimulationData {
        let data = try MovieLensDataset(directory: directory)
        let shape = LSTMShape(categories: data.genres.count + 1, embedding: 16, hidden: 32)
        let sequences = data.sequences.keys.sorted().compactMap { user -> EventSequence? in
            guard let events = data.sequences[user] else { return nil }
            return EventSequence(categories: events.suffix(keep).map(\.category))
        }
        var loaded = SimulationData(users: sequences, shape: shape, outOfVocabulary: Int32(data.genres.count),
                                    description: "MovieLens 100K: \(sequences.count) users, \(data.genres.count) genres")
        loaded.rawUsers = sequences.map(\.categories)
        loaded.rawCategories = shape.categories
        loaded.userIDs = data.sequences.keys.sorted().map { UInt64($0) }
        return loaded
    }

    /// The users of fold `fold` (``DriftFitting/fold(of:)`` of their ids): their sequences and raw
    /// category sequences.
    package func fold(_ fold: Int) -> (users: [EventSequence], raw: [[Int32]]) {
        precondition(userIDs.count == users.count && rawUsers.count == users.count, "ids and raw sequences loaded")
        let indices = users.indices.filter { DriftFitting.fold(of: userIDs[$0]) == fold }
        return (indices.map { users[$0] }, indices.map { rawUsers[$0] })
    }

    /// Groups events by user (in user order), each in time order, keeping the last `keep`.
    static func grouped(_ events: [BehaviorEvent], catalog: CategoryCatalog, keep: Int) -> [EventSequence] {
        var byUser: [UInt64: [BehaviorEvent]] = [:]
        for event in events { byUser[event.user, default: []].append(event) }
        return byUser.keys.sorted().compactMap { user in
            guard let list = byUser[user] else { return nil }
            let ordered = list.enumerated().sorted { ($0.element.timestamp, $0.offset) < ($1.element.timestamp, $1.offset) }
                .map(\.element)
            return EventSequence(events: Array(ordered.suffix(keep)), catalog: catalog)
        }
    }
}

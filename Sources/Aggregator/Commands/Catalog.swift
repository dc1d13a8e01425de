import ArgumentParser
import FedIO
import FedLogic
import FedModel
import FedNode
import FedTools
import Foundation

struct Catalog: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build the category catalog all agents share.",
        subcommands: [CatalogBuild.self]
    )
}

struct CatalogBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Rank categories by distinct items and write the category → model index catalog.",
        discussion: """
            Input is the platform's item catalog, given as event files in which every item appears \
            with its category (for research data, the events themselves). Only item-category pairs \
            are used: no shopper behaviour goes into the catalog. The largest categories get model \
            indices 0…C−2; all others, and categories first seen later, share index C−1. Progress (bytes \
            read) and each file's refused rows go to stderr.
            """
    )

    @Option(name: .long, help: "Input format: taobao or jsonl.")
    var format: String = "taobao"

    @Option(name: .long, help: "Model classes C, including the out-of-vocabulary one (small preset: 1024).")
    var categories: Int = LSTMShape.small.categories

    @Option(name: .long, help: "Where to write the catalog.")
    var out: String

    @Argument(help: "Event or item files.")
    var files: [String]

    func validate() throws {
        guard EventFormat(rawValue: format) != nil else { throw ValidationError("--format must be taobao or jsonl") }
        guard categories >= 2 else { throw ValidationError("--categories must be at least 2") }
        guard !files.isEmpty else { throw ValidationError("name at least one input file") }
    }

    func run() throws {
        guard let format = EventFormat(rawValue: format) else { return }
        var items: [UInt64: Set<UInt64>] = [:]
        let progress = ProgressReporter()
        for file in files {
            let summary = try EventFileReader(path: file, format: format).read(progress: progress) {
                CategoryCatalog.itemsPerCategory($0, into: &items)
            }
            progress.note("\(file): \(summary.accepted) rows read, \(summary.rejected) refused")
            for error in summary.errors { progress.note("  \(error)") }
        }
        let catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: categories)
        try catalog.text().write(toFile: out, atomically: true, encoding: .utf8)
        let dropped = max(0, items.count - catalog.entries.count)
        print("Wrote \(out): \(catalog.entries.count) categories indexed, \(dropped) more map to the out-of-vocabulary "
              + "index \(catalog.outOfVocabulary).")
    }
}

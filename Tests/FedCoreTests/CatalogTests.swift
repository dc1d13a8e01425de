@testable import FedIO
@testable import FedLogic
@testable import FedModel
@testable import FedNode
@testable import FedTools
import Foundation
import Testing

@Suite("Category catalog")
struct CatalogTests {
    @Test("The largest categories get the first indices, ties by id; the rest are out of vocabulary")
    func ranking() {
        let catalog = CategoryCatalog(itemsPerCategory: [10: 5, 20: 9, 30: 5, 40: 1], categories: 4)
        #expect(catalog.entries.map(\.category) == [20, 10, 30])
        #expect([20, 10, 30, 40, 99].map { catalog.modelIndex(of: $0) } == [0, 1, 2, 3, 3])
        #expect(catalog.outOfVocabulary == 3)
    }

    @Test("The text file round-trips, and edited or foreign files are refused with a line number")
    func file() throws {
        let catalog = CategoryCatalog(itemsPerCategory: [7: 3, 8: 2], categories: 8)
        #expect(try CategoryCatalog(text: catalog.text()) == catalog)
        #expect(throws: CategoryCatalog.FileError.self) { try CategoryCatalog(text: "category,index\n1,0\n") }
        let swapped = catalog.text().replacingOccurrences(of: "8\t1\t2", with: "8\t5\t2")
        #expect(throws: CategoryCatalog.FileError.malformed(path: "catalog", line: 4,
                                                            reason: "expected 'category<TAB>1<TAB>items' (indices in order, below 7)")) {
            try CategoryCatalog(text: swapped)
        }
    }

    @Test("Built from the real Taobao excerpt, all 567 categories fit the small preset",
          .enabled(if: SharedData.exists("data/taobao-userbehavior/ub_head_users.csv"),
                   SharedData.absentMessage("data/taobao-userbehavior/ub_head_users.csv")))
    func realData() throws {
        var items: [UInt64: Set<UInt64>] = [:]
        try EventFileReader(path: SharedData.url("data/taobao-userbehavior/ub_head_users.csv").path, format: .taobao)
            .read { CategoryCatalog.itemsPerCategory($0, into: &items) }
        let catalog = CategoryCatalog(itemsPerCategory: items.mapValues(\.count), categories: LSTMShape.small.categories)
        #expect(catalog.entries.count == 567)
        #expect(catalog.entries.map(\.items).reduce(0, +) == 3_276)  // each item has one category
        #expect(zip(catalog.entries, catalog.entries.dropFirst()).allSatisfy { $0.items >= $1.items })
    }
}

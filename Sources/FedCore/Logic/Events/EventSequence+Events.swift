import FedModel

extension EventSequence {
    /// A user's time-ordered events as model inputs: categories through the shared catalog, action
    /// codes, and log-scaled gaps between consecutive events.
    package init(events: [BehaviorEvent], catalog: CategoryCatalog) {
        var gaps: [UInt8] = []
        gaps.reserveCapacity(events.count)
        var previous: Int64?
        for event in events {
            gaps.append(EventSequence.gapBucket(seconds: previous.map { Double(event.timestamp - $0) }))
            previous = event.timestamp
        }
        self.init(categories: events.map { catalog.modelIndex(of: $0.category) },
                  actions: events.map(\.action.rawValue), gaps: gaps)
    }
}

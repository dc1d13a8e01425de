/// A reusable, uninitialised-on-growth scratch buffer for the numerics. Not thread-safe.
final class ScalarBuffer<Scalar: ModelScalar> {
    private(set) var pointer: UnsafeMutablePointer<Scalar>
    private(set) var capacity: Int

    init(capacity: Int = 0) {
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// Ensures room for `count` elements; contents are undefined after growth.
    @discardableResult
    func reserve(_ count: Int) -> UnsafeMutablePointer<Scalar> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
        }
        return pointer
    }

    func zero(_ count: Int) { pointer.update(repeating: 0, count: count) }
}

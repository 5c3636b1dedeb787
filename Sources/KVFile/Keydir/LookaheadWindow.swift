/// Bulk keydir loading is bound by cache misses: each item is applied
/// `depth` items after it was pushed, and the caller prefetches its slot when
/// pushing, so the miss is paid while the items in between are applied.
struct LookaheadWindow<Item> {
    private var items: [Item] = []
    private var next = 0
    private let depth: Int

    init(depth: Int = 8) {
        self.depth = depth
        items.reserveCapacity(depth)
    }

    /// Adds `item`; applies the oldest one once `depth` are waiting.
    mutating func push<E: Error>(_ item: Item, apply: (Item) throws(E) -> Void) throws(E) {
        if items.count < depth {
            items.append(item)
            return
        }
        try apply(items[next])
        items[next] = item
        next = (next + 1) % depth
    }

    /// Applies what is still waiting, oldest first.
    mutating func flush<E: Error>(apply: (Item) throws(E) -> Void) throws(E) {
        for index in 0..<items.count { try apply(items[(next + index) % items.count]) }
        items.removeAll(keepingCapacity: true)
        next = 0
    }
}

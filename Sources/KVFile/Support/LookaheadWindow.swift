/// Bulk index loading is bound by cache misses: each item is applied
/// `depth` items after it was pushed. The caller prefetches the item's slot
/// when pushing it, and halfway through the window (its slot loaded by then)
/// the entries that slot points at, so both misses are paid while the items
/// in between are applied.
struct LookaheadWindow<Item> {
    private var items: [Item] = []
    private var next = 0
    private let depth: Int

    init(depth: Int = 8) {
        self.depth = depth
        items.reserveCapacity(depth)
    }

    /// Adds `item`, calls `halfway` with the item pushed `depth / 2` pushes
    /// ago, and applies the oldest one once `depth` are waiting.
    @inline(__always)
    mutating func push<E: Error>(_ item: Item, halfway: (Item) -> Void, apply: (Item) throws(E) -> Void) throws(E) {
        if items.count < depth {
            items.append(item)
            let middle = items.count - 1 - depth / 2
            if middle >= 0 { halfway(items[middle]) }
            return
        }
        try apply(items[next])
        items[next] = item
        next = (next + 1) % depth
        // The newest item sits just before `next`; the one depth / 2 older, further back.
        halfway(items[(next - 1 - depth / 2 + 2 * depth) % depth])
    }

    /// Applies what is still waiting, oldest first.
    mutating func flush<E: Error>(apply: (Item) throws(E) -> Void) throws(E) {
        for index in 0..<items.count { try apply(items[(next + index) % items.count]) }
        items.removeAll(keepingCapacity: true)
        next = 0
    }
}

/// What the segment writer needs from the store's set of segments when it
/// rolls: a fresh segment number, and a place for the new segment (where
/// the index reads keys from it). ``StoreState`` is the one; the writer
/// knows nothing else of the store.
protocol SegmentRegistry: AnyObject {
    /// A segment number no file has or will get.
    func allocateSegmentID() -> UInt32
    /// Makes `segment` one of the store's segments.
    func add(_ segment: Segment)
}

extension StoreState: SegmentRegistry {}

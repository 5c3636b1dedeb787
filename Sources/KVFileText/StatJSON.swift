import KVFile

/// A store's statistics as one JSON object (`kvfile stat --json`, `GET /v1/stat`).
public enum StatJSON {
    /// The scalar figures, in the order `kvfile stat` prints them.
    public static func fields(_ stats: StoreStats) -> [(String, String)] {
        [
            ("keys", "\(stats.keys)"),
            ("segments", "\(stats.segments)"),
            ("bytes_on_disk", "\(stats.segmentBytes + stats.hintBytes + stats.indexBytes)"),
            ("segment_bytes", "\(stats.segmentBytes)"),
            ("hint_bytes", "\(stats.hintBytes)"),
            ("live_bytes", "\(stats.liveBytes)"),
            ("dead_bytes", "\(stats.deadBytes)"),
            ("oldest_seq", "\(stats.oldestSeq)"),
            ("newest_seq", "\(stats.newestSeq)"),
            ("resume_floor", "\(stats.resumeFloor)"),
            ("format_version", "\(stats.formatVersion)"),
            ("keydir_bytes", "\(stats.keydirBytes)"),
            ("index", stats.indexIsShared ? "\"file\"" : "\"memory\""),
            ("index_bytes", "\(stats.indexBytes)"),
            ("index_slots", "\(stats.indexSlots)"),
            ("index_load", ratio(stats.indexSlots == 0 ? 0 : Double(stats.keys) / Double(stats.indexSlots))),
        ]
    }

    /// `{"keys":…,…,"segment_files":[{"id":…,"bytes":…,"live_bytes":…,"dead_ratio":…,"active":…,"compacted":…}]}` and a newline.
    public static func document(_ stats: StoreStats) -> String {
        let segmentObjects = stats.segmentDetails.map { segment in
            "{\"id\":\(segment.id),\"bytes\":\(segment.bytes),\"live_bytes\":\(segment.liveBytes),"
                + "\"dead_ratio\":\(ratio(segment.deadRatio)),\"active\":\(segment.isActive),\"compacted\":\(segment.isCompactionOutput)}"
        }
        return "{" + fields(stats).map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",")
            + ",\"segment_files\":[" + segmentObjects.joined(separator: ",") + "]}\n"
    }

    /// A ratio with three decimals ("0.250").
    static func ratio(_ value: Double) -> String {
        let thousandths = Int((value * 1000).rounded())
        let fraction = String(thousandths % 1000)
        return "\(thousandths / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}

import KVFile

/// The JSON form of a change event, one line (kvfile(1), watch): `kvfile
/// watch` prints it and `kvfile serve` sends it as the SSE `data:` field.
public enum EventJSON {
    /// `{"topic":…,"seq":…,"ts":…,"key":…,"new_value":…,"old_value":…}` and a
    /// newline. With `embedJSON`, a value that is a JSON document is embedded as JSON.
    public static func line(_ event: ChangeEvent, embedJSON: Bool) -> String {
        var fields = ["\"topic\":\"\(event.topic.rawValue)\"", "\"seq\":\(event.seq)", "\"ts\":\(event.timestamp)",
                      JSONText.bytesField("key", event.key)]
        if let value = event.newValue { fields.append(valueField("new_value", value, embedJSON: embedJSON)) }
        if let value = event.oldValue { fields.append(valueField("old_value", value, embedJSON: embedJSON)) }
        if event.expiresAt != 0 { fields.append("\"expires_at\":\(event.expiresAt)") }
        if event.expired { fields.append("\"expired\":true") }
        return "{" + fields.joined(separator: ",") + "}\n"
    }

    /// A topic by its name, with or without the `kvs_` prefix.
    public static func topic(named name: String) -> ChangeEvent.Topic? {
        ChangeEvent.Topic(rawValue: name) ?? ChangeEvent.Topic(rawValue: "kvs_" + name)
    }

    private static func valueField(_ name: String, _ value: [UInt8], embedJSON: Bool) -> String {
        if embedJSON, let json = JSONMinifier.minified(value), let text = String(validating: json, as: UTF8.self) {
            return "\"\(name)\":" + text
        }
        return JSONText.bytesField(name, value)
    }
}

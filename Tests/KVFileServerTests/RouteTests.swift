import Foundation
import Testing

@Suite struct CompatibleRouteTests {
    /// The KeyValueStore service's clients: GET /?key=, GET /all (joined as base + "/all"), PUT / with JSON.
    @Test func keyValueStoreClientRoutesWork() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let client = server.client()
        let json = ["Content-type": "application/json"]
        let html = "text/html; charset=utf-8"

        // The original's texts, byte for byte (its views return str; Flask sends text/html).
        let created = try client.put("/", #"{"key": "hello world", "value": "première"}"#, headers: json)
        #expect(created.status == 200)
        #expect(created.text == "Key: hello world Created with Value: première")
        #expect(created.header("content-type") == html)
        let updated = try client.put("/", #"{"key": "hello world", "value": "second"}"#, headers: json)
        #expect(updated.text == "Key: hello world Updated with Value: second")
        _ = try client.put("/", #"{"key": "b", "value": {"n": 1, "list": [true, null]}}"#, headers: json)
        // A number is kept exactly as its JSON text (not through a Double).
        #expect(try client.put("/", #"{"key": "big", "value": 12345678901234567890}"#, headers: json).status == 200)
        #expect(try client.get("/?key=big").text == "12345678901234567890")

        // Python's requests sends spaces as + in the query.
        let value = try client.get("/?key=hello+world")
        #expect(value.status == 200)
        #expect(value.text == "second")
        #expect(value.header("content-type") == html)
        #expect(try client.get("/?key=hello%20world").text == "second")
        #expect(try client.get("/?key=b").text == #"{"n":1,"list":[true,null]}"#)
        // Defect (new-user trial): a repeated key= gave the last one's value; Flask's request.args gives the first.
        #expect(try client.get("/?key=big&key=b").text == "12345678901234567890")

        let missing = try client.get("/?key=nope")
        #expect(missing.status == 404)
        #expect(missing.text == "Key Does Not exists")
        let noKey = try client.get("/")
        #expect(noKey.status == 400)
        #expect(noKey.text == "Error: Missing argument 'KEY'")

        // json.dumps(data, sort_keys=True, indent=4): non-ASCII as \uXXXX, no newline at the end.
        _ = try client.put("/", #"{"key": "é", "value": "Cesária 🎶"}"#, headers: json)
        let all = try client.get("//all")
        #expect(all.status == 200)
        #expect(all.header("content-type") == html)
        #expect(all.text == """
            {
                "b": "{\\"n\\":1,\\"list\\":[true,null]}",
                "big": "12345678901234567890",
                "hello world": "second",
                "\\u00e9": "Ces\\u00e1ria \\ud83c\\udfb6"
            }
            """)
        let bad = try client.put("/", "not json", headers: json)
        #expect(bad.status == 400)
        #expect(bad.json["error"] as? String == "bad_request")
        #expect(server.stop() == 0)
    }

    /// Defect: `POST /` was taken as a write with any Content-Type, so any web
    /// page could write into a local server with a form or a no-CORS fetch.
    /// The original answered 405; so does this one.
    @Test func postToTheCompatibleRouteIsRefused() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let client = server.client()
        let form = try client.request("POST", "/", headers: ["Content-Type": "text/plain"], body: Array(#"{"key":"pwned","value":"1"}"#.utf8))
        #expect(form.status == 405)
        #expect(form.header("allow") == "GET, HEAD, PUT")
        #expect(try client.get("/?key=pwned").status == 404)
        #expect(server.stop() == 0)
    }

    /// Defect: one key that is not UTF-8 made `GET /all` fail for everyone (422).
    @Test func aNonUTF8KeyDoesNotBreakAll() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        let loaded = try kvfile(["load", store], input: Array(#"{"key_base64":"/w==","value":"x"}"#.utf8) + [10] + Array(#"{"key":"ok","value":"y"}"#.utf8) + [10])
        #expect(loaded.status == 0, "\(loaded.errors)")
        let server = try ServerProcess(store: store, scratch: dir)
        let all = try server.client().get("/all")
        #expect(all.status == 200)
        #expect(all.text == "{\n    \"ok\": \"y\"\n}")
        #expect(all.header("x-kvfile-skipped-keys") == "1")
        #expect(server.stop() == 0)
    }

    @Test func allOfAnEmptyStoreIsAnEmptyObject() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        #expect(try server.client().get("/all").text == "{}")
    }
}

@Suite struct RESTRouteTests {
    /// Point reads whose pages are on disk only are answered off the request's
    /// thread (store threads); those in memory inline: both give the same bytes.
    @Test func coldAndWarmPointReadsGiveTheSameBytes() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s.kv")
        var values: [String: String] = [:]
        do {
            let server = try ServerProcess(store: path, scratch: dir)
            let client = server.client()
            for i in 0..<200 {
                let value = (0..<3_000).map { _ in Array("abcdefghijklmnopqrstuvwxyz0123456789")[Int.random(in: 0..<36)] }
                values["k\(i)"] = String(value)
                #expect(try client.request("PUT", "/v1/keys/k\(i)", headers: ["Content-Type": "text/x-\(i % 3)"], body: Array(String(value).utf8)).status == 201)
            }
            #expect(server.stop() == 0)
        }
        // Nothing maps the files now: their pages can leave the page cache.
        let enumerator = FileManager.default.enumerator(atPath: path)
        while let name = enumerator?.nextObject() as? String {
            let fd = open(path + "/" + name, O_RDONLY)
            guard fd >= 0 else { continue }
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
            close(fd)
        }
        let server = try ServerProcess(store: path, scratch: dir)
        let client = server.client()
        for round in 0..<2 {
            for i in 0..<200 {
                let got = try client.get("/v1/keys/k\(i)")
                #expect(got.status == 200 && got.text == values["k\(i)"], "round \(round) k\(i)")
                #expect(got.header("content-type") == "text/x-\(i % 3)")
                #expect(try client.get("/?key=k\(i)").text == values["k\(i)"])
            }
        }
        #expect(try client.get("/v1/keys/absent").status == 404)
        #expect(server.stop() == 0)
    }

    @Test func putGetDeleteKeepBytesAndContentType() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let client = server.client()
        let binary: [UInt8] = [0, 1, 2, 0xFF, 0xFE, 10, 13, 0]

        let created = try client.request("PUT", "/v1/keys/images%2Flogo", headers: ["Content-Type": "image/png"], body: binary)
        #expect(created.status == 201)
        #expect(created.json["result"] as? String == "created")
        let seq = created.json["seq"] as? Int
        #expect(seq == 1)

        let got = try client.get("/v1/keys/images%2Flogo")
        #expect(got.status == 200)
        #expect(got.body == binary)
        #expect(got.header("content-type") == "image/png")
        #expect(got.header("etag") == "\"1\"")
        #expect(try client.get("/v1/keys/images%2Flogo", headers: ["If-None-Match": "\"1\""]).status == 304)

        // Replaced without a type: the old type no longer applies.
        let replaced = try client.request("PUT", "/v1/keys/images%2Flogo", body: Array("text".utf8))
        #expect(replaced.status == 200)
        #expect(replaced.json["result"] as? String == "updated")
        let again = try client.get("/v1/keys/images%2Flogo")
        #expect(again.text == "text")
        #expect(again.header("content-type") == "application/octet-stream")

        // The plain tool reads what the server wrote, key and bytes exactly.
        let tool = try kvfile(["get", dir.sub("s.kv"), "images/logo"])
        #expect(tool.status == 0)
        #expect(tool.output == "text")

        #expect(try client.request("DELETE", "/v1/keys/images%2Flogo").status == 204)
        let gone = try client.get("/v1/keys/images%2Flogo")
        #expect(gone.status == 404)
        #expect(gone.json["error"] as? String == "not_found")
        #expect(try client.request("DELETE", "/v1/keys/images%2Flogo").status == 404)
        #expect(try client.request("PUT", "/v1/keys/", body: [1]).status == 400)
        #expect(try client.request("POST", "/v1/keys/x", body: [1]).status == 405)
    }

    @Test func listingStatAndErrors() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), arguments: ["--max-body", "100"], scratch: dir)
        let client = server.client()
        for key in ["user:2", "user:1", "group:1"] { _ = try client.put("/v1/keys/\(key)", "v-\(key)") }
        _ = try client.request("PUT", "/v1/keys/user:3", body: [0xFF, 0x00])

        let listing = try client.get("/v1/keys?prefix=user%3A")
        #expect(listing.status == 200)
        #expect(listing.header("content-type") == "application/x-ndjson")
        #expect(listing.text == """
            {"key":"user:1","value":"v-user:1"}
            {"key":"user:2","value":"v-user:2"}
            {"key":"user:3","value_base64":"/wA="}

            """)
        #expect(try client.get("/v1/keys").text.split(separator: "\n").count == 4)
        // Defect: a repeated prefix kept only the last one (the event stream takes them all).
        let both = try client.get("/v1/keys?prefix=user%3A2&prefix=group&prefix=user%3A")
        #expect(both.text.split(separator: "\n").map { String($0.prefix(16)) } == [
            #"{"key":"group:1""#, #"{"key":"user:1","#, #"{"key":"user:2","#, #"{"key":"user:3","#,
        ], "\(both.text)")

        let stat = try client.get("/v1/stat")
        #expect(stat.json["keys"] as? Int == 4)
        #expect(stat.json["newest_seq"] as? Int == 4)

        let tooLarge = try client.request("PUT", "/v1/keys/big", body: [UInt8](repeating: 65, count: 101))
        #expect(tooLarge.status == 413)
        #expect(tooLarge.json["error"] as? String == "too_large")
        #expect(try client.get("/v1/keys/big").status == 404)

        let unknown = try client.get("/v2/nothing")
        #expect(unknown.status == 404)
        #expect(unknown.json["error"] as? String == "no_route")
        #expect(try client.get("/v1/keys/%zz").status == 400)
        let all = try client.get("/all")
        #expect(all.status == 200)
        #expect(all.text.contains("\"user:3\": {\n        \"base64\": \"/wA=\"\n    }"))
        #expect(try client.request("PUT", "/v1/keys/%FF", body: [1]).status == 201)
        let nonUTF8Key = try client.get("/all")
        #expect(nonUTF8Key.status == 200)
        #expect(nonUTF8Key.header("x-kvfile-skipped-keys") == "1")
    }

    @Test func tokenIsRequiredOnEveryRouteWhenSet() throws {
        let dir = TemporaryDirectory()
        var environment = ProcessInfo.processInfo.environment
        environment["KVFILE_TOKEN"] = "s3cret"
        let server = try ServerProcess(store: dir.sub("s.kv"), environment: environment, scratch: dir)
        let anonymous = server.client()
        for path in ["/?key=a", "/all", "/v1/keys/a", "/v1/keys", "/v1/stat", "/v1/events"] {
            let refused = try anonymous.get(path)
            #expect(refused.status == 401, "\(path)")
            #expect(refused.header("www-authenticate")?.hasPrefix("Bearer") == true)
        }
        #expect(try anonymous.put("/v1/keys/a", "x").status == 401)
        #expect(try HTTPClient(port: server.port, token: "wrong!").get("/v1/stat").status == 401)
        let allowed = HTTPClient(port: server.port, token: "s3cret")
        #expect(try allowed.put("/v1/keys/a", "x").status == 201)
        #expect(try allowed.get("/v1/keys/a").text == "x")
        #expect(try allowed.request("GET", "/v1/stat", headers: ["Authorization": "bearer s3cret"]).status == 200)
    }

    @Test func kvfileServeRunsTheServerAndReportsUsage() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), viaKvfile: true, scratch: dir)
        #expect(try server.client().put("/v1/keys/k", "v").status == 201)
        #expect(server.stop(SIGINT) == 0)
        #expect(try kvfile(["get", dir.sub("s.kv"), "k"]).output == "v")

        let bad = try kvfile(["serve", dir.sub("s.kv"), "--durability", "sometimes"])
        #expect(bad.status == 64)
        #expect(bad.errors.contains("--durability takes none, always"))
    }

    @Test func aSecondServerOnTheSameStoreReportsTheLock() throws {
        let dir = TemporaryDirectory()
        let first = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let second = Process()
        second.executableURL = URL(fileURLWithPath: buildDirectory + "/kvfile-server")
        second.arguments = [dir.sub("s.kv"), "--port", "0", "--lock-timeout", "0"]
        let errors = Pipe()
        second.standardError = errors
        second.standardOutput = FileHandle.nullDevice
        try second.run()
        second.waitUntilExit()
        #expect(second.terminationStatus == 75)
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("locked by pid"))
        #expect(first.stop() == 0)
    }
}

import Foundation
import Testing

@Suite struct CompatibleRouteTests {
    /// The KeyValueStore service's clients: GET /?key=, GET /all (joined as base + "/all"), PUT / with JSON.
    @Test func keyValueStoreClientRoutesWork() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let client = server.client()
        let json = ["Content-type": "application/json"]

        let created = try client.put("/", #"{"key": "hello world", "value": "première"}"#, headers: json)
        #expect(created.status == 200)
        #expect(created.text.contains("Created key \"hello world\""))
        let updated = try client.put("/", #"{"key": "hello world", "value": "second"}"#, headers: json)
        #expect(updated.text.contains("Updated key"))
        _ = try client.put("/", #"{"key": "b", "value": {"n": 1, "list": [true, null]}}"#, headers: json)

        // Python's requests sends spaces as + in the query.
        let value = try client.get("/?key=hello+world")
        #expect(value.status == 200)
        #expect(value.text == "second")
        #expect(try client.get("/?key=hello%20world").text == "second")
        #expect(try client.get("/?key=b").text == #"{"list":[true,null],"n":1}"#)

        let missing = try client.get("/?key=nope")
        #expect(missing.status == 404)
        #expect(missing.text.contains("\"nope\" does not exist"))
        #expect(try client.get("/").status == 400)

        let all = try client.get("//all")
        #expect(all.status == 200)
        #expect(all.header("content-type") == "application/json")
        #expect(all.text == """
            {
                "b": "{\\"list\\":[true,null],\\"n\\":1}",
                "hello world": "second"
            }
            """)
        let bad = try client.put("/", "not json", headers: json)
        #expect(bad.status == 400)
        #expect(bad.json["error"] as? String == "bad_request")
        #expect(server.stop() == 0)
    }

    @Test func allOfAnEmptyStoreIsAnEmptyObject() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        #expect(try server.client().get("/all").text == "{}")
    }
}

@Suite struct RESTRouteTests {
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
        #expect(all.text.contains(#""user:3": {"base64": "/wA="}"#))
        #expect(try client.request("PUT", "/v1/keys/%FF", body: [1]).status == 201)
        let nonUTF8Key = try client.get("/all")
        #expect(nonUTF8Key.status == 422)
        #expect((nonUTF8Key.json["message"] as? String)?.contains("0xff") == true)
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

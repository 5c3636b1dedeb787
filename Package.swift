// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "kvfile",
    products: [
        .library(name: "KVFile", targets: ["KVFile"]),
        .executable(name: "kvfile", targets: ["KVFileCLI"]),
        .executable(name: "kvfile-bench", targets: ["KVFileBench"]),
        // The HTTP service lives in its own executable so that the library and
        // the plain tool never link SwiftNIO (kvfile serve runs it).
        .executable(name: "kvfile-server", targets: ["KVFileServerMain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // Only the server uses these; default traits off (no swift-configuration, no full Foundation).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
    ],
    targets: [
        // Debian's liblz4-dev, wrapped as a tiny system-library module.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // CRC32C (hardware where the CPU has it) and the few Linux calls Glibc does not export.
        .target(name: "CKVFileSupport"),
        .target(
            name: "KVFile",
            dependencies: ["CLZ4", "CKVFileSupport"]
        ),
        // The JSON and text forms shared by the tool and the server (events, pairs, stat).
        .target(
            name: "KVFileText",
            dependencies: ["KVFile"]
        ),
        // The options of `kvfile serve`, shared by the tool and the server executable.
        .target(
            name: "KVFileServeOptions",
            dependencies: ["KVFile", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "KVFileCLI",
            dependencies: [
                "KVFile",
                "KVFileText",
                "KVFileServeOptions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "KVFileBench",
            dependencies: ["KVFile"]
        ),
        // libFuzzer target over the decoders (scripts/fuzz); a corpus replayer when built normally.
        .executableTarget(
            name: "KVFileFuzz",
            dependencies: ["KVFile"]
        ),
        .target(
            name: "KVFileServer",
            dependencies: [
                "KVFile",
                "KVFileText",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "KVFileServerMain",
            dependencies: [
                "KVFileServer",
                "KVFileServeOptions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Writes the golden stores in Fixtures/ (scripts/write-fixtures); the fixture tests read them with its listing.
        .executableTarget(
            name: "KVFileFixtures",
            dependencies: ["KVFile"]
        ),
        .testTarget(
            name: "KVFileTests",
            dependencies: ["KVFile", "CKVFileSupport", "KVFileBench", "KVFileFixtures"]
        ),
        .testTarget(
            name: "KVFileCLITests",
            dependencies: ["KVFileCLI", "KVFileBench", "KVFile", "KVFileText", "KVFileServeOptions", "ProcessTestSupport"]
        ),
        // Running the built programs, for the process-level suites.
        .target(name: "ProcessTestSupport", path: "Tests/ProcessTestSupport"),
        // Starts the real kvfile-server on loopback and speaks HTTP to it over sockets.
        .testTarget(
            name: "KVFileServerTests",
            dependencies: ["KVFileServerMain", "KVFile", "KVFileText", "ProcessTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)

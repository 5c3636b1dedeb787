// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "kvfile",
    products: [
        .library(name: "KVFile", targets: ["KVFile"]),
        .executable(name: "kvfile", targets: ["KVFileCLI"]),
        .executable(name: "kvfile-bench", targets: ["KVFileBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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
        .executableTarget(
            name: "KVFileCLI",
            dependencies: [
                "KVFile",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "KVFileBench",
            dependencies: ["KVFile"]
        ),
        .testTarget(
            name: "KVFileTests",
            dependencies: ["KVFile", "CKVFileSupport"]
        ),
        .testTarget(
            name: "KVFileCLITests",
            dependencies: ["KVFileCLI", "KVFileBench", "KVFile"]
        ),
    ],
    swiftLanguageModes: [.v6]
)

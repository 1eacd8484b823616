// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"])]

let package = Package(
    name: "Mizar",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MizarCore", targets: ["MizarCore"]),
        .library(name: "MizarDataplane", targets: ["MizarDataplane"]),
    ],
    targets: [
        // THE shared header: every struct that crosses the kernel/user boundary.
        .target(name: "CMizarABI", path: "Sources/CMizarABI"),
        // libbpf, wrapped once (system library from Debian's libbpf-dev).
        .target(name: "CLibBPF", path: "Sources/CLibBPF", linkerSettings: [.linkedLibrary("bpf")]),
        // Pure model: addresses, VNI, CIDR, validation. No I/O.
        .target(name: "MizarCore", swiftSettings: strict),
        // Packet building and parsing (tests, fuzzing, benchmarks, event decoding).
        .target(name: "MizarPacket", dependencies: ["MizarCore"], swiftSettings: strict),
        // The only module that touches libbpf and the ABI's C types.
        .target(name: "MizarDataplane", dependencies: ["CMizarABI", "CLibBPF", "MizarCore"], swiftSettings: strict),
        // Set-up helpers for tests, benchmarks and (later) the simulated cluster.
        .target(name: "MizarTestbed", swiftSettings: strict),
        .executableTarget(
            name: "mizar-bench-dataplane",
            dependencies: ["MizarDataplane", "MizarPacket", "MizarTestbed", "CMizarABI"],
            path: "bench/DataplaneBench",
            swiftSettings: strict),
        .testTarget(name: "MizarCoreTests", dependencies: ["MizarCore"], swiftSettings: strict),
        .testTarget(name: "MizarPacketTests", dependencies: ["MizarPacket"], swiftSettings: strict),
        .testTarget(
            name: "MizarDataplaneTests",
            dependencies: ["MizarDataplane", "MizarPacket", "MizarTestbed", "CMizarABI"],
            swiftSettings: strict),
    ]
)

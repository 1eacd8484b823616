// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"])]

let package = Package(
    name: "Mizar",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MizarCore", targets: ["MizarCore"]),
        .library(name: "MizarDataplane", targets: ["MizarDataplane"]),
        .executable(name: "transitd", targets: ["transitd"]),
        .executable(name: "mizarctl", targets: ["mizarctl"]),
        .executable(name: "mizar-cni", targets: ["mizar-cni"]),
        .executable(name: "mizar-testbed", targets: ["mizar-testbed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/apple/swift-collections.git", exact: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", exact: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1.git", exact: "1.7.4"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
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
        // Network namespaces, rtnetlink and ethtool, wrapped once.
        .target(name: "CNetlink", path: "Sources/CNetlink"),
        // Namespaces, links, addresses and routes in Swift terms.
        .target(name: "MizarSystem", dependencies: ["CNetlink", "MizarCore"], swiftSettings: strict),
        // Prometheus metrics: the daemons' registries and their HTTP endpoint.
        .target(
            name: "MizarMetrics",
            dependencies: [
                "MizarCore", "MizarTLS",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict),
        // The transitd API: generated from proto/ by scripts/gen-proto.sh.
        .target(
            name: "MizarRPC",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        // The PEM files a party presents and trusts, as gRPC transport
        // security and as command-line flags: for transitd's API and for etcd.
        .target(
            name: "MizarTLS",
            dependencies: [
                "MizarCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: strict),
        // What callers of transitd need: targets, the connection pool, typed
        // provisioning calls and the API's messages in Mizar's types. No
        // libbpf, no netlink: the operator, mizarctl and the testbed use it.
        .target(
            name: "MizarTransitClient",
            dependencies: [
                "MizarCore", "MizarRPC", "MizarTLS", "MizarPolicy",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: strict),
        // The per-host daemon's logic: attachments, endpoint interfaces, the gRPC service.
        .target(
            name: "MizarTransit",
            dependencies: [
                "MizarCore", "MizarDataplane", "MizarRPC", "MizarSystem", "MizarTransitClient", "MizarTLS", "MizarPacket",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The management plane's objects (Vpc, Subnet, Endpoint, Droplet,
        // Bouncer, Divider), their validation and their JSON form.
        .target(name: "MizarAPI", dependencies: ["MizarCore"], swiftSettings: strict),
        // NetworkPolicy compiled into what the bouncers judge with. Pure.
        .target(name: "MizarPolicy", dependencies: ["MizarAPI", "MizarCore"], swiftSettings: strict),
        // The objects in etcd: create/update/delete with compare-and-swap,
        // admission against the objects they name, watches.
        .target(
            name: "MizarStore",
            dependencies: ["MizarAPI", "MizarEtcd", "MizarCore", .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: strict),
        // The management plane: informers, work queues and one controller per kind.
        .target(
            name: "MizarOperator",
            dependencies: [
                "MizarAPI", "MizarStore", "MizarEtcd", "MizarTransitClient", "MizarTLS", "MizarCore", "MizarMetrics",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // A client of etcd's v3 gRPC API (keys, transactions, watches, leases);
        // the API's messages generated from proto/etcd by scripts/gen-proto.sh.
        .target(
            name: "MizarEtcd",
            dependencies: [
                "MizarCore", "MizarTLS",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        // transitd's side of CNI: endpoints for containers, on its own socket.
        .target(
            name: "MizarCNI",
            dependencies: ["MizarTransit", "MizarStore", "MizarAPI", "MizarCore", "MizarSystem", "MizarRPC", "MizarMetrics",
                           .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strict),
        // The CNI plugin: libc only and the Swift runtime linked in, so an
        // exec per container costs about a millisecond.
        .executableTarget(
            name: "mizar-cni",
            swiftSettings: strict,
            linkerSettings: [.unsafeFlags(["-static-stdlib"])]),
        // Set-up helpers for tests and benchmarks, and the simulated cluster.
        .target(name: "MizarTestbed", dependencies: ["CNetlink", "MizarSystem", "MizarCore", "MizarTransitClient", "MizarTLS", "MizarPKI"], swiftSettings: strict),
        .executableTarget(
            name: "transitd",
            dependencies: [
                "MizarTransit", "MizarTransitClient", "MizarTLS", "MizarSystem", "MizarStore", "MizarEtcd", "MizarAPI", "MizarCNI",
                "MizarMetrics",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "mizar-operator",
            dependencies: [
                "MizarOperator", "MizarStore", "MizarEtcd", "MizarCore", "MizarTransitClient", "MizarTLS", "MizarMetrics",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The CA and every party's certificate (mizarctl pki).
        .target(
            name: "MizarPKI",
            dependencies: [
                "MizarCore", "MizarAPI",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "mizarctl",
            dependencies: [
                "MizarTransitClient", "MizarTLS", "MizarRPC", "MizarCore", "MizarAPI", "MizarStore", "MizarEtcd", "MizarPKI", "MizarPolicy",
                "MizarPacket",
                .product(name: "Yams", package: "Yams"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strict),
        // The simulated cluster: hosts in namespaces, each with a transitd.
        .executableTarget(
            name: "mizar-testbed",
            dependencies: [
                "MizarTestbed", "MizarSystem", "MizarTransitClient", "MizarTLS", "MizarCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "mizar-bench-dataplane",
            dependencies: ["MizarDataplane", "MizarPacket", "MizarTestbed", "MizarTransit", .product(name: "Logging", package: "swift-log")],
            path: "bench/DataplaneBench",
            swiftSettings: strict),
        .target(
            name: "MizarBenchSupport",
            dependencies: [
                "MizarOperator", "MizarStore", "MizarAPI", "MizarEtcd", "MizarTestbed", "MizarCore", "MizarSystem", "MizarTransitClient", "MizarTLS",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/Support",
            swiftSettings: strict),
        .executableTarget(
            name: "mizar-bench-provisioning",
            dependencies: [
                "MizarBenchSupport", "MizarOperator", "MizarStore", "MizarAPI", "MizarEtcd", "MizarTestbed", "MizarCore", "MizarSystem",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/ProvisioningBench",
            swiftSettings: strict),
        .executableTarget(
            name: "mizar-bench-policy",
            dependencies: [
                "MizarBenchSupport", "MizarOperator", "MizarStore", "MizarAPI", "MizarTestbed", "MizarCore", "MizarSystem", "MizarTransitClient",
            ],
            path: "bench/PolicyBench",
            swiftSettings: strict),
        .executableTarget(
            name: "mizar-bench-scale",
            dependencies: [
                "MizarBenchSupport", "MizarOperator", "MizarStore", "MizarAPI", "MizarEtcd", "MizarTestbed", "MizarCore", "MizarSystem",
                "MizarTransit", "MizarTransitClient", "MizarRPC", "MizarDataplane",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/ScaleSim",
            swiftSettings: strict),
        .executableTarget(
            name: "mizar-bench-cni",
            dependencies: [
                "MizarBenchSupport", "MizarStore", "MizarAPI", "MizarEtcd", "MizarTestbed", "MizarCore", "MizarSystem", "MizarCNI", "CNetlink",
            ],
            path: "bench/CNIBench",
            swiftSettings: strict),
        .testTarget(name: "MizarCoreTests", dependencies: ["MizarCore"], swiftSettings: strict),
        .testTarget(name: "MizarPKITests", dependencies: ["MizarPKI", "MizarCore", "MizarTestbed"], swiftSettings: strict),
        .testTarget(name: "MizarPacketTests", dependencies: ["MizarPacket", "MizarCore"], swiftSettings: strict),
        .testTarget(
            name: "MizarDataplaneTests",
            dependencies: ["MizarDataplane", "MizarPacket", "MizarTestbed", "CMizarABI", "MizarTransit", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // The conformance cases and the independent reachability model, for
        // the compiler's tests and the end-to-end test alike (test code).
        .target(name: "MizarPolicyConformance", dependencies: ["MizarAPI", "MizarCore"], path: "Tests/MizarPolicyConformance",
                swiftSettings: strict),
        .testTarget(
            name: "MizarPolicyTests",
            dependencies: ["MizarPolicy", "MizarPolicyConformance", "MizarAPI", "MizarCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict),
        .testTarget(
            name: "MizarAPITests",
            dependencies: ["MizarAPI", "MizarCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict),
        .testTarget(
            name: "MizarOperatorTests",
            dependencies: [
                "MizarOperator", "MizarStore", "MizarAPI", "MizarEtcd", "MizarTestbed", "MizarTransit", "MizarTransitClient", "MizarTLS",
                "MizarRPC", "MizarCore", "MizarSystem", "MizarCNI", "MizarPolicy", "MizarPolicyConformance", "MizarMetrics",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "MizarEtcdTests",
            dependencies: [
                "MizarEtcd", "MizarTestbed", "MizarSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .testTarget(name: "MizarStoreTests", dependencies: ["MizarStore", "MizarAPI", "MizarEtcd", "MizarTestbed", "MizarCore", "MizarPKI", "MizarTLS"],
                    swiftSettings: strict),
        .testTarget(
            name: "MizarTransitTests",
            dependencies: [
                "MizarTransit", "MizarTransitClient", "MizarTLS", "MizarTestbed", "MizarRPC", "MizarCore", "MizarDataplane", "MizarSystem", "MizarPKI", "MizarPacket",
                "MizarMetrics",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strict),
    ]
)

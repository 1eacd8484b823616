#!/usr/bin/env bash
# Regenerates the committed Swift code for proto/*.proto.
# Uses Debian's protoc and the two Swift plugins built in release from the
# local package mirror (about two minutes the first time; cached in
# .build-protoc/). The SwiftPM build plugin is avoided on purpose: it builds a
# C++ protoc for ten minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=$root/.build-protoc
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
build_plugin() { # repo tag product
	local src=$tools/src/$(basename "$1")
	if [ ! -x "$tools/bin/$3" ]; then
		[ -d "$src" ] || git clone -q --depth 1 --branch "$2" "https://github.com/$1" "$src"
		swift build -c release --package-path "$src" --product "$3"
		mkdir -p "$tools/bin"
		cp "$(swift build -c release --package-path "$src" --show-bin-path)/$3" "$tools/bin/"
	fi
}
build_plugin apple/swift-protobuf 1.39.0 protoc-gen-swift
build_plugin grpc/grpc-swift-protobuf 2.4.1 protoc-gen-grpc-swift-2
generate() { # output-directory proto-directory [grpc-plugin-options]
	local out=$1 dir=$2 opts=${3:-}
	mkdir -p "$out"
	rm -f "$out"/*.swift
	protoc -I "$dir" \
		--plugin=protoc-gen-swift="$tools/bin/protoc-gen-swift" \
		--plugin=protoc-gen-grpc-swift-2="$tools/bin/protoc-gen-grpc-swift-2" \
		--swift_out="$out" --swift_opt=Visibility=Public \
		--grpc-swift-2_out="$out" --grpc-swift-2_opt=Visibility=Public${opts} \
		"$dir"/*.proto
	echo "generated: $(ls "$out")"
}
generate Sources/MizarRPC/Generated proto      # Mizar's own APIs
generate Sources/MizarEtcd/Generated proto/etcd ,Server=false # the part of etcd's API we use: client only

#!/usr/bin/env bash
# Installs the Debian packages the project needs, non-interactively, and only
# those missing. Swift itself comes with the machine (/opt/swift).
set -euo pipefail
packages=(libbpf-dev libelf-dev zlib1g-dev bpftool tshark iproute2 util-linux iputils-ping etcd-server curl podman busybox-static openssl prometheus)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v clang >/dev/null || { echo "clang not found (it ships with the Swift toolchain in /opt/swift)" >&2; exit 1; }
if [ "$(id -u)" = 0 ] && ! mountpoint -q /sys/fs/bpf; then
	mount -t bpf bpffs /sys/fs/bpf
fi

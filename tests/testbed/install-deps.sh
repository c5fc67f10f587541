#!/usr/bin/env bash
# Installs the Debian packages the test bed, the tests and the demo need, when missing (as root; needs the Debian
# mirror, so it runs outside the bed's network namespace). Go and Rust come with the machine image.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "install-deps.sh must run as root (apt-get, ip netns)" >&2; exit 1; }
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v setsid >/dev/null || missing+=(util-linux)
command -v iptables >/dev/null || missing+=(iptables)
# Go (>= 1.24, for Kubernetes 1.33) and Rust come with the machine: Debian's are too old
command -v go >/dev/null || { echo "go is missing (the machine image provides Go >= 1.24)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo is missing (the machine image provides Rust)" >&2; exit 1; }
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "all needed packages present"
    exit 0
fi
echo "installing: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# The main job on a default: two local clusters (the offline test bed) meshed with `kubectl kpaas-mesh up`,
# then `kubectl kpaas-mesh check` and `status`. As root, on a fresh machine of this project's kind:
#   1. installs what is missing and builds the test bed's binaries and charts (cached; tests/testbed/build.sh)
#   2. builds kpaas-mesh and lays it out as a release does: bin/kubectl-kpaas_mesh and
#      lib/kpaas-mesh/plugins/*.so under target/kpaas-mesh/ (so kubectl finds the plugin on PATH and the host
#      finds its plugins next to itself)
#   3. starts two clusters (tests/testbed/testbed.sh up 2) in a loopback-only network namespace
#   4. runs, inside it: kubectl kpaas-mesh up / up again / check / status / verify, with the bed's local charts
# The bed stays up so you can look around:
#   tests/testbed/testbed.sh exec -- kubectl --context cluster1 get all -n linkerd-multicluster
#   tests/testbed/testbed.sh exec -- kubectl kpaas-mesh status --cluster cluster1 --cluster cluster2 ...
#   tests/testbed/testbed.sh down
# KPAAS_MESH_DEMO_DOWN=1 tears it down at the end.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
TESTBED="$REPO/tests/testbed/testbed.sh"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "dependencies and test-bed binaries"
tests/testbed/install-deps.sh
tests/testbed/build.sh

say "build kpaas-mesh (release layout in target/kpaas-mesh)"
cargo build --workspace --release
DIST="$REPO/target/kpaas-mesh"
rm -rf "$DIST"
mkdir -p "$DIST/bin" "$DIST/lib/kpaas-mesh/plugins"
install -m 0755 target/release/kubectl-kpaas_mesh "$DIST/bin/"
install -m 0644 target/release/libkpaas_mesh_*.so "$DIST/lib/kpaas-mesh/plugins/"

say "two local clusters"
if [[ -e /run/netns/${KPAAS_MESH_TESTBED_NETNS:-kpaas-mesh-tb} ]]; then
    "$TESTBED" down
fi
"$TESTBED" up 2

STATE="${KPAAS_MESH_TESTBED_STATE:-/tmp/kpaas-mesh-testbed}"
in_bed() { "$TESTBED" exec -- env PATH="$DIST/bin:$(grep '^export PATH=' "$STATE/env" | cut -d'"' -f2)" "$@"; }
FLAGS=(--cluster cluster1 --cluster cluster2 --certs-dir "$STATE/certs" --chart-dir "$(grep '^export KPAAS_MESH_CHARTS=' "$STATE/env" | cut -d'"' -f2)")

say "kubectl plugin list"
in_bed kubectl plugin list 2>/dev/null | grep kpaas || true
in_bed kubectl kpaas-mesh plugins list

say "kubectl kpaas-mesh up (the whole guide: cert, control-plane, multicluster + links, netfix none, smi, sample)"
time in_bed kubectl kpaas-mesh up "${FLAGS[@]}"

say "kubectl kpaas-mesh up, again: nothing to change"
time in_bed kubectl kpaas-mesh up "${FLAGS[@]}"

say "kubectl kpaas-mesh check"
in_bed kubectl kpaas-mesh check "${FLAGS[@]}"

say "kubectl kpaas-mesh status"
in_bed kubectl kpaas-mesh status "${FLAGS[@]}"

say "kubectl kpaas-mesh verify (SIMULATED answers on the test bed: no data plane runs here, see README)"
in_bed kubectl kpaas-mesh verify "${FLAGS[@]}" --requests 100

if [[ "${KPAAS_MESH_DEMO_DOWN:-0}" == 1 ]]; then
    say "kubectl kpaas-mesh down, and the bed"
    in_bed kubectl kpaas-mesh down "${FLAGS[@]}"
    "$TESTBED" down
else
    say "the bed stays up: tests/testbed/testbed.sh exec -- bash   (tear down: tests/testbed/testbed.sh down)"
fi

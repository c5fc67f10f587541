#!/usr/bin/env bash
# The main job on a default: two local clusters (the offline test bed) meshed with `kubectl kpaas-mesh up`,
# then `kubectl kpaas-mesh check` and `status`. As root, on a fresh machine of this project's kind:
#   1. installs what is missing and builds the test bed's binaries and charts (cached; tests/testbed/build.sh)
#   2. builds kpaas-mesh and lays it out as a release does: bin/kubectl-kpaas_mesh and
#      lib/kpaas-mesh/plugins/*.so under target/kpaas-mesh/ (so kubectl finds the plugin on PATH and the host
#      finds its plugins next to itself)
#   3. starts two clusters (tests/testbed/testbed.sh up 2) in a loopback-only network namespace
#   4. runs, inside it: kubectl kpaas-mesh up / up again / check / status / verify, with the bed's local charts.
#      Linkerd's real controllers (identity, destination, proxy-injector, sp-validator, every link's service
#      mirror) run on the bed (its pod runner), so `check` is evaluated against what they did; the demo then
#      explains every row that is not √, and fails if one is not √ for any reason but the known ones below
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
# The bed's clusters share one network (the bed's namespace: every service mirror reaches every gateway address),
# which netfix none is told with same_network.
FLAGS=(--cluster cluster1 --cluster cluster2 --certs-dir "$STATE/certs" --netfix-opt same_network=true
    --chart-dir "$(grep '^export KPAAS_MESH_CHARTS=' "$STATE/env" | cut -d'"' -f2)")

say "kubectl plugin list"
in_bed kubectl plugin list 2>/dev/null | grep kpaas || true
in_bed kubectl kpaas-mesh plugins list

say "kubectl kpaas-mesh up (the whole guide: cert, control-plane, multicluster + links, netfix none, smi, sample)"
time in_bed kubectl kpaas-mesh up "${FLAGS[@]}"

say "kubectl kpaas-mesh up, again: nothing to change"
time in_bed kubectl kpaas-mesh up "${FLAGS[@]}"

say "kubectl kpaas-mesh check (against Linkerd's real controllers on the bed)"
# The service mirror mirrors helloworld-cluster1 onto cluster2 within seconds of `up`; --wait covers that.
in_bed kubectl kpaas-mesh check "${FLAGS[@]}" --wait 2m || true

say "every check row that is not √, and why"
in_bed kubectl kpaas-mesh check "${FLAGS[@]}" -o json | python3 -c '
import json, sys
# Rows that cannot pass on the bed, and why (anything else not ok fails the demo).
why = {
    "multicluster extension proxies are healthy":
        "needs linkerd2-proxy (its metrics); no proxy runs on the bed: linkerd2-proxy is not served by any registry here",
    "multicluster extension proxies are up-to-date":
        "needs linkerd2-proxy (its version, read from the proxies); none runs on the bed",
    "multicluster extension proxies and cli versions match":
        "needs linkerd2-proxy (its version, read from the proxies); none runs on the bed",
}
doc = json.load(sys.stdin)
bad = 0
for c in doc["checks"]:
    if c["status"] == "ok":
        continue
    reason = why.get(c["name"])
    print("  %-8s %s" % (c["status"], c["name"]))
    print("           %s" % c["detail"])
    print("           why: %s" % (reason or "UNEXPECTED"))
    bad += reason is None
sys.exit(1 if bad else 0)
'

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

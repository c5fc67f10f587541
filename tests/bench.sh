#!/usr/bin/env bash
# Benchmarks kpaas-mesh against its peers on the offline test bed (inside its loopback-only network namespace) and
# prints ratios. Each measurement is the median wall time of N runs and the peak RSS of the process tree's largest
# process (GNU time's %M), on the same two clusters:
#   link      kubectl kpaas-mesh link (both directions, native objects)
#             vs  linkerd multicluster link --context=B | kubectl --context=A apply -f -   (and the other way)
#   re-up     kubectl kpaas-mesh up on an already meshed pair (the idempotent no-op)
#             vs  the guide's helm upgrade --install of linkerd-crds, linkerd-control-plane and linkerd-multicluster
#                 on both clusters with the same values (what re-running the guide by hand does)
#   check     kubectl kpaas-mesh check --only multicluster (both clusters)
#             vs  nothing comparable runs here: linkerd multicluster check waits for proxies that the bed cannot run,
#                 so only kpaas-mesh's own time is printed
# Usage (as root): tests/bench.sh [N]   (default 5). Uses its own bed (state /tmp/kpaas-mesh-bench).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
N=${1:-5}
export KPAAS_MESH_TESTBED_STATE=/tmp/kpaas-mesh-bench KPAAS_MESH_TESTBED_NETNS=kpaas-mesh-bench
TESTBED="$REPO/tests/testbed/testbed.sh"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
tests/testbed/install-deps.sh >/dev/null
tests/testbed/build.sh >/dev/null
cargo build --workspace --release --lib --bins 2>&1 | tail -1
PLUGINS=$(mktemp -d)
chmod 0755 "$PLUGINS"
install -m 0644 target/release/libkpaas_mesh_*.so "$PLUGINS/"
trap '"$TESTBED" down >/dev/null 2>&1 || true; rm -rf "$PLUGINS"' EXIT
"$TESTBED" down >/dev/null 2>&1 || true
"$TESTBED" up 2 >/dev/null
STATE=$KPAAS_MESH_TESTBED_STATE
CHARTS="$STATE/charts"
KM=("$REPO/target/release/kubectl-kpaas_mesh" --plugin-dir "$PLUGINS")
FLAGS=(--cluster cluster1 --cluster cluster2 --chart-dir "$CHARTS" --certs-dir "$STATE/certs")
bed() { "$TESTBED" exec -- "$@"; }

# measure NAME CMD...: runs CMD N times in the bed; prints "median_seconds peak_kib"
measure() {
    local name=$1 i
    shift
    local times=() rss=0
    for i in $(seq 1 "$N"); do
        local out
        if ! out=$(bed /usr/bin/time -f '%e %M' bash -c "set -o pipefail; $* >/dev/null 2>/tmp/kpaas-mesh-bench.err" 2>&1); then
            echo "bench: '$name' failed: $(tail -3 /tmp/kpaas-mesh-bench.err)" >&2
            exit 1
        fi
        out=$(tail -1 <<<"$out")
        times+=("${out% *}")
        local m=${out#* }
        ((m > rss)) && rss=$m
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-10s %8.3f s  %8d KiB   (%s)\n' "$name" "$median" "$rss" "${times[*]}" >&2
    echo "$median $rss"
}

echo "== setup: mesh cluster1 and cluster2 (kpaas-mesh up)" >&2
bed "${KM[@]}" up "${FLAGS[@]}" --only cert,control-plane,multicluster,netfix >/dev/null

echo "== link" >&2
ours_link=$(measure kpaas-mesh "${KM[*]} link ${FLAGS[*]}")
peer_link=$(measure linkerd "linkerd multicluster link --context=cluster2 --cluster-name cluster2 | kubectl --context=cluster1 apply -f - && linkerd multicluster link --context=cluster1 --cluster-name cluster1 | kubectl --context=cluster2 apply -f -")

echo "== re-up (nothing to change)" >&2
ours_up=$(measure kpaas-mesh "${KM[*]} up ${FLAGS[*]} --only cert,control-plane,multicluster,netfix")
values=$(mktemp -p "$STATE")
cat >"$values.sh" <<SCRIPT
set -e
for c in cluster1 cluster2; do
  helm upgrade --install linkerd-crds $CHARTS/linkerd-crds -n linkerd --create-namespace --kube-context \$c
  helm upgrade --install linkerd-control-plane $CHARTS/linkerd-control-plane -n linkerd --kube-context \$c \
    --set-file identityTrustAnchorsPEM=$STATE/certs/ca.crt --set-file identity.issuer.tls.crtPEM=$STATE/certs/issuer.crt \
    --set-file identity.issuer.tls.keyPEM=$STATE/certs/issuer.key
  helm upgrade --install linkerd-multicluster $CHARTS/linkerd-multicluster -n linkerd-multicluster --create-namespace --kube-context \$c
done
SCRIPT
peer_up=$(measure helm "bash $values.sh")

echo "== check" >&2
ours_check=$(measure kpaas-mesh "${KM[*]} check ${FLAGS[*]} --only multicluster")

ratio() { awk -v a="${1% *}" -v b="${2% *}" 'BEGIN { printf "%.2f", b / a }'; }
mem() { awk -v a="${1#* }" -v b="${2#* }" 'BEGIN { printf "%.2f", b / a }'; }
echo
echo "kpaas-mesh bench (median of $N, 2 clusters on the test bed)"
printf '%-34s %12s %12s %10s %10s\n' "task" "kpaas-mesh" "peer" "speedup" "mem ratio"
printf '%-34s %10.3fs %10.3fs %9sx %9sx\n' "link both ways (vs linkerd|kubectl)" "${ours_link% *}" "${peer_link% *}" "$(ratio "$ours_link" "$peer_link")" "$(mem "$ours_link" "$peer_link")"
printf '%-34s %10.3fs %10.3fs %9sx %9sx\n' "re-up, no change (vs helm x6)" "${ours_up% *}" "${peer_up% *}" "$(ratio "$ours_up" "$peer_up")" "$(mem "$ours_up" "$peer_up")"
printf '%-34s %10.3fs %12s\n' "check --only multicluster" "${ours_check% *}" "n/a"

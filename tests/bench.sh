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
#   guide     the first full `up` of the whole guide on two fresh clusters (certificates given, as the guide makes
#             them with `step` beforehand; netfix none)
#             vs  the guide scripted as written on two fresh clusters of the same bed, same charts: per cluster
#                 helm install linkerd-crds, linkerd-control-plane (--set-file the same certificates),
#                 linkerd-multicluster, linkerd-smi (each --wait, as the operator waits before the next step; the
#                 gateway's address awaited before linking), `linkerd multicluster link | kubectl apply` both ways,
#                 the sample's manifests with kubectl (the same objects: `kpaas-mesh render --only sample`) and
#                 `kubectl rollout status`. `helm repo add` is left out: the bed is offline, both read the same
#                 local charts. One run each.
#   scale     `up` (every stage, netfix none) and `link` (after `unlink`: N·(N−1) links) on fresh beds of N = 2, 4
#             and 6 clusters, lightened to fit 2 cores: 1 kwok node per cluster and no Linkerd controller run by
#             the pod runner (their pods are Ready at once through kwok; this measures kpaas-mesh, not Linkerd);
#             wall time with the ratio to N = 2, per link, and the peak RSS of `up` (kpaas-mesh's own, not its helm
#             children's). One run each.
# Usage (as root): tests/bench.sh [N] [peers|guide|scale ...]   (default 5 runs; default all sections). Uses its own
# bed (state /tmp/kpaas-mesh-bench).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
N=${1:-5}
shift || true
SECTIONS=("$@")
[[ ${#SECTIONS[@]} -gt 0 ]] || SECTIONS=(peers guide scale)
want() { [[ " ${SECTIONS[*]} " == *" $1 "* ]]; }
export KPAAS_MESH_TESTBED_STATE=/tmp/kpaas-mesh-bench KPAAS_MESH_TESTBED_NETNS=kpaas-mesh-bench
TESTBED="$REPO/tests/testbed/testbed.sh"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
tests/testbed/install-deps.sh >/dev/null
tests/testbed/build.sh >/dev/null
cargo build --workspace --release --lib --bins 2>&1 | tail -1
PLUGINS=$(mktemp -d)
chmod 0755 "$PLUGINS"
install -m 0644 target/release/libkpaas_mesh_*.so "$PLUGINS/"
WORK=$(mktemp -d)   # what outlives a bed (testbed.sh down removes its state dir)
trap '"$TESTBED" down >/dev/null 2>&1 || true; rm -rf "$PLUGINS" "$WORK"' EXIT
# fresh_bed N [VAR=VALUE ...]: a new bed of N clusters (the environment lightens it)
fresh_bed() {
    local n=$1
    shift
    "$TESTBED" down >/dev/null 2>&1 || true
    env "$@" "$TESTBED" up "$n" >/dev/null
}
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


ratio() { awk -v a="${1% *}" -v b="${2% *}" 'BEGIN { printf "%.2f", b / a }'; }
mem() { awk -v a="${1#* }" -v b="${2#* }" 'BEGIN { printf "%.2f", b / a }'; }

# once CMD...: one run of CMD in the bed; prints "seconds peak_kib"
once() {
    local out
    if ! out=$(bed /usr/bin/time -f '%e %M' bash -c "set -o pipefail; $* >/tmp/kpaas-mesh-bench.out 2>/tmp/kpaas-mesh-bench.err" 2>&1); then
        echo "bench: '$*' failed: $(tail -5 /tmp/kpaas-mesh-bench.err)" >&2
        exit 1
    fi
    tail -1 <<<"$out"
}

# own_peak CMD...: one run of a single command in the bed; prints "seconds peak_kib" where the peak is the command's
# own (its VmHWM, read every 50 ms until it ends), not that of the helm processes it starts (GNU time would report
# the largest process of the tree)
own_peak() {
    local script
    script='s=$(date +%s.%N); "$@" >/tmp/kpaas-mesh-bench.out 2>/tmp/kpaas-mesh-bench.err & pid=$!; hwm=0
        while kill -0 $pid 2>/dev/null; do
            h=$(awk "/^VmHWM/ {print \$2}" /proc/$pid/status 2>/dev/null); [ -n "$h" ] && hwm=$h; sleep 0.05
        done
        wait $pid; rc=$?; e=$(date +%s.%N); awk -v s="$s" -v e="$e" -v m="$hwm" "BEGIN { printf \"%.2f %d\n\", e - s, m }"
        exit $rc'
    if ! bed bash -c "$script" own_peak "$@"; then
        echo "bench: '$*' failed: $(tail -5 /tmp/kpaas-mesh-bench.err)" >&2
        exit 1
    fi
}

guide() {
    echo "== guide: first full up on two fresh clusters vs the guide scripted" >&2
    local certs="$WORK/guide-certs" sample="$WORK/guide-sample" script="$WORK/guide.sh"
    rm -rf "$certs" "$sample"
    "${KM[@]}" certs generate --out "$certs" >/dev/null
    fresh_bed 2
    local ours
    ours=$(once "${KM[*]} up --cluster cluster1 --cluster cluster2 --chart-dir $CHARTS --certs-dir $certs")
    # the sample's objects, for the scripted guide to apply with kubectl
    bed "${KM[@]}" render --cluster cluster1 --cluster cluster2 --chart-dir "$CHARTS" --certs-dir "$certs" \
        --only sample --out "$sample" >/dev/null
    fresh_bed 2
    cat >"$script" <<SCRIPT
set -e
for c in cluster1 cluster2; do
  helm install linkerd-crds $CHARTS/linkerd-crds -n linkerd --create-namespace --kube-context \$c
  helm install linkerd-control-plane $CHARTS/linkerd-control-plane -n linkerd --kube-context \$c --wait \
    --set-file identityTrustAnchorsPEM=$certs/ca.crt --set-file identity.issuer.tls.crtPEM=$certs/issuer.crt \
    --set-file identity.issuer.tls.keyPEM=$certs/issuer.key
  helm install linkerd-multicluster $CHARTS/linkerd-multicluster -n linkerd-multicluster --create-namespace \
    --kube-context \$c --wait
  until [ -n "\$(kubectl --context \$c -n linkerd-multicluster get svc linkerd-gateway \
      -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" ]; do sleep 0.2; done
  helm install linkerd-smi $CHARTS/linkerd-smi -n linkerd-smi --create-namespace --kube-context \$c --wait
done
linkerd multicluster link --context=cluster2 --cluster-name cluster2 | kubectl --context=cluster1 apply -f -
linkerd multicluster link --context=cluster1 --cluster-name cluster1 | kubectl --context=cluster2 apply -f -
for c in cluster1 cluster2; do
  for f in \$(find $sample/\$c -name '*.yaml' ! -path '*/secrets/*' | sort); do kubectl --context \$c apply -f \$f; done
  for d in \$(kubectl --context \$c -n sample get deploy -o name); do
    kubectl --context \$c -n sample rollout status \$d --timeout=180s
  done
done
SCRIPT
    local peer
    peer=$(once "bash $script")
    GUIDE_ROW=$(printf '%-34s %10.3fs %10.3fs %9sx %9sx' "first up of the guide (vs scripted)" "${ours% *}" \
        "${peer% *}" "$(ratio "$ours" "$peer")" "$(mem "$ours" "$peer")")
}

scale() {
    local n first_up="" first_link="" up link links
    SCALE_ROWS=()
    for n in 2 4 6; do
        echo "== scale: $n clusters (1 node each, no Linkerd controllers run)" >&2
        fresh_bed "$n" KPAAS_MESH_TESTBED_NODES=1 KPAAS_MESH_TESTBED_CONTROLLERS=none
        local flags=(--chart-dir "$CHARTS" --certs-dir "$STATE/scale-certs-$n")
        local i
        for i in $(seq 1 "$n"); do flags+=(--cluster "cluster$i"); done
        up=$(own_peak "${KM[@]}" up "${flags[@]}")
        bed "${KM[@]}" unlink "${flags[@]}" >/dev/null
        link=$(once "${KM[*]} link ${flags[*]}")
        links=$((n * (n - 1)))
        [[ -n $first_up ]] || { first_up=$up; first_link=$link; }
        SCALE_ROWS+=("$(printf '%3d %9.2fs %8sx %6d %9.2fs %8sx %10.3fs %10d' "$n" "${up% *}" \
            "$(awk -v a="${first_up% *}" -v b="${up% *}" 'BEGIN { printf "%.2f", b / a }')" "$links" "${link% *}" \
            "$(awk -v a="${first_link% *}" -v b="${link% *}" 'BEGIN { printf "%.2f", b / a }')" \
            "$(awk -v l="${link% *}" -v k="$links" 'BEGIN { printf "%.3f", l / k }')" "${up#* }")")
    done
}

peers() {
    fresh_bed 2
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

    echo
    echo "kpaas-mesh bench (median of $N, 2 clusters on the test bed)"
    printf '%-34s %12s %12s %10s %10s\n' "task" "kpaas-mesh" "peer" "speedup" "mem ratio"
    printf '%-34s %10.3fs %10.3fs %9sx %9sx\n' "link both ways (vs linkerd|kubectl)" "${ours_link% *}" "${peer_link% *}" "$(ratio "$ours_link" "$peer_link")" "$(mem "$ours_link" "$peer_link")"
    printf '%-34s %10.3fs %10.3fs %9sx %9sx\n' "re-up, no change (vs helm x6)" "${ours_up% *}" "${peer_up% *}" "$(ratio "$ours_up" "$peer_up")" "$(mem "$ours_up" "$peer_up")"
    printf '%-34s %10.3fs %12s\n' "check --only multicluster" "${ours_check% *}" "n/a"
}

PEER_ROWS=""
GUIDE_ROW=""
SCALE_ROWS=()
if want peers; then PEER_ROWS=$(peers); fi
if want guide; then guide; fi
if want scale; then scale; fi
echo
if [[ -n $PEER_ROWS ]]; then echo "$PEER_ROWS"; fi
if [[ -n $GUIDE_ROW ]]; then
    echo
    echo "the whole guide, first run on two fresh clusters (one run each)"
    printf '%-34s %12s %12s %10s %10s\n' "task" "kpaas-mesh" "scripted" "speedup" "mem ratio"
    echo "$GUIDE_ROW"
fi
if [[ ${#SCALE_ROWS[@]} -gt 0 ]]; then
    echo
    echo "scale: up and link on N clusters (1 kwok node each, no Linkerd controllers run; one run each)"
    printf '%3s %10s %9s %6s %10s %9s %11s %10s\n' "N" "up" "vs N=2" "links" "link" "vs N=2" "per link" "up KiB"
    printf '%s\n' "${SCALE_ROWS[@]}"
fi

#!/usr/bin/env bash
# Builds (or finds in the cache) every binary and chart the offline test bed needs:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, kwokctl, helm, linkerd,
# linkerd-controller (Linkerd's own controllers, run by the bed's pod runner), and the Linkerd / linkerd-smi charts;
# and for every edge release in EDGE_RELEASES, from the source snapshots in ../shared/peers (the Go module proxy
# refuses linkerd2 after 2.14.10): its source tree, linkerd-<tag>, linkerd-controller-<tag> and charts/<tag>/; for
# every one in EDGE_CHART_RELEASES (releases an upgrade only passes through): its source tree and charts/<tag>/.
# Pinned versions; cached under
#   $KPAAS_MESH_TESTBED_CACHE (default $HOME/.cache/kpaas-mesh-testbed)/<tag>/{bin,charts,src}
# A step whose stamp file exists is skipped, so a warm run takes seconds.
# Usage: tests/testbed/build.sh [--print-dir] [step ...]   (steps: etcd k8s kwok helm linkerd controller charts
#        edge krew; default all)
# Runs OUTSIDE the test bed's network namespace: it needs the Go module proxy and Debian's mirror.
set -euo pipefail

K8S_VERSION=v1.33.13          # k8s.io/kubernetes; staging modules at the matching v0.33.x
K8S_STAGING_VERSION=v0.33.13
KWOK_VERSION=v0.7.0           # defaults to Kubernetes 1.33
HELM_VERSION=v3.18.6
KREW_VERSION=v0.4.3           # sigs.k8s.io/krew: kubectl-krew and validate-krew-manifest, for the release archive's test
LINKERD_VERSION=stable-2.14.10
LINKERD_MODULE_VERSION=v0.5.1-0.20240220173600-1ea6b271718f   # github.com/linkerd/linkerd2 @ 1ea6b271718f
LINKERD_SMI_VERSION=v0.2.7
# Linkerd 2.18 and 2.20 (edge tags; `linkerd-releases.yaml` in plugin-kit says which Linkerd each is): tree, CLI,
# controller and charts; 2.15, 2.16 and 2.17, which an upgrade from 2.14.10 to 2.18 passes through, and 2.19, which
# one from 2.18 to 2.20 passes through: tree and charts
EDGE_RELEASES=(edge-25.4.4 edge-26.6.3)
EDGE_CHART_RELEASES=(edge-24.2.4 edge-24.8.2 edge-24.11.8 edge-25.10.7)
PEERS="${KPAAS_MESH_PEERS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared/peers}"
REVISION=1                    # bump to force a rebuild into a new directory

TAG="k8s-${K8S_VERSION}_l5d-${LINKERD_VERSION}_r${REVISION}"
CACHE_ROOT="${KPAAS_MESH_TESTBED_CACHE:-$HOME/.cache/kpaas-mesh-testbed}"
CACHE="$CACHE_ROOT/$TAG"
BIN="$CACHE/bin"
CHARTS="$CACHE/charts"
STAMPS="$CACHE/stamps"
SRC="$CACHE/src"

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$CACHE"
    exit 0
fi

mkdir -p "$BIN" "$CHARTS" "$STAMPS" "$SRC"
export CGO_ENABLED=0
export GOFLAGS=-buildvcs=false
export GOBIN="$BIN"
GO_P="${KPAAS_MESH_TESTBED_GO_P:-2}"   # go build -p: parallel compile/link jobs

log() { printf '[build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# outputs_present STEP: are the step's products still there? (a stamp alone does not prove it)
outputs_present() {
    local f
    case $1 in
    etcd) set -- etcd ;;
    k8s) set -- kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
    kwok) set -- kwok kwokctl ;;
    helm) set -- helm ;;
    krew) set -- kubectl-krew validate-krew-manifest ;;
    controller) set -- linkerd-controller ;;
    linkerd)
        # the CLI reads its charts from the module source at run time (built without the `prod` tag)
        [[ -d "$(go env GOMODCACHE)/github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION/charts" ]] || return 1
        set -- linkerd
        ;;
    charts)
        for f in linkerd-crds linkerd-control-plane linkerd-multicluster linkerd-multicluster-link linkerd-smi; do
            [[ -f "$CHARTS/$f/Chart.yaml" ]] || return 1
        done
        return 0
        ;;
    edge-*)
        local tag=${1#edge-} mode=full
        if [[ $tag == charts-* ]]; then tag=${tag#charts-}; mode=charts; fi
        [[ -f "$SRC/linkerd2-$tag/go.mod" ]] || return 1
        for f in linkerd-crds linkerd-control-plane linkerd-multicluster; do
            [[ -f "$CHARTS/$tag/$f/Chart.yaml" ]] || return 1
        done
        [[ $mode == full ]] || return 0
        set -- "linkerd-$tag" "linkerd-controller-$tag"
        ;;
    esac
    for f in "$@"; do
        [[ -x "$BIN/$f" ]] || return 1
    done
}

# run_step NAME FUNCTION [ARG...]: skip when stamped, else run, time and stamp it.
run_step() {
    local name=$1 fn=$2 start end
    shift 2
    if [[ -f "$STAMPS/$name" ]] && outputs_present "$name"; then
        log "$name: cached ($(cat "$STAMPS/$name"))"
        return 0
    fi
    log "$name: building"
    start=$(date +%s)
    "$fn" "$@"
    end=$(date +%s)
    echo "built $(date -u +%FT%TZ) in $((end - start))s" >"$STAMPS/$name"
    log "$name: done in $((end - start))s"
}

step_etcd() {
    if ! command -v etcd >/dev/null && [[ ! -x /usr/bin/etcd ]]; then
        log "etcd: apt-get install etcd-server"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
    fi
    ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$BIN/etcd"
    "$BIN/etcd" --version | head -1 >&2
}

step_k8s() {
    local work mod minor
    work=$(mktemp -d /tmp/kpaas-mesh-tb-k8s.XXXXXX)
    mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
    [[ -f "$mod" ]] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION"; return 1; }
    {
        echo "module kpaas-mesh-testbed/k8s"
        echo
        echo "go 1.24.0"
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        # every staging module that kubernetes requires at v0.0.0 (and replaces with ./staging/...)
        grep -E '^\s*k8s.io/\S+ v0\.0\.0$' "$mod" | awk -v v="$K8S_STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
        echo ")"
    } >"$work/go.mod"
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
        ld+=" -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    (
        cd "$work"
        GOFLAGS="$GOFLAGS -mod=mod" go get "k8s.io/kubernetes@$K8S_VERSION" >&2
        GOFLAGS="$GOFLAGS -mod=mod" go build -p "$GO_P" -trimpath -ldflags "$ld" -o "$BIN/" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler \
            k8s.io/kubernetes/cmd/kubectl
    )
    rm -rf "$work"
    "$BIN/kubectl" version --client >&2
}

step_kwok() {
    go install -p "$GO_P" -trimpath -ldflags "-s -w" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
    "$BIN/kwokctl" --version >&2
}

step_helm() {
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    go install -p "$GO_P" -trimpath -ldflags "-s -w \
        -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
        -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    "$BIN/helm" version >&2
}

# krew, as `kubectl krew` finds it (kubectl-krew on PATH), and its manifest validator: dist/package.sh validates the
# manifest with it and installs the release archive with `kubectl krew install --manifest --archive`.
step_krew() {
    go install -p "$GO_P" -trimpath -ldflags "-s -w -X sigs.k8s.io/krew/internal/version.gitTag=$KREW_VERSION" \
        "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION" "sigs.k8s.io/krew/cmd/validate-krew-manifest@$KREW_VERSION"
    mv -f "$BIN/krew" "$BIN/kubectl-krew"
    "$BIN/kubectl-krew" version 2>/dev/null | head -3 >&2 || true
}

# The linkerd2 module's source directory (downloads it). The proxy serves the pseudo-version, but the checksum
# database has no entry for it (404), so checksum verification is switched off for github.com/linkerd only.
linkerd_module_dir() {
    GONOSUMDB=github.com/linkerd go mod download -json "github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION" |
        sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'
}

# linkerd_wrapper_module DIR WORK: the throwaway module (in WORK) that requires linkerd2 with its replace lines.
linkerd_wrapper_module() {
    local dir=$1 work=$2
    {
        echo "module kpaas-mesh-testbed/linkerd"
        echo
        echo "go 1.22"
        echo
        echo "require github.com/linkerd/linkerd2 $LINKERD_MODULE_VERSION"
        echo
        grep -E '^replace ' "$dir/go.mod" || true
        # a replace block, if the module ever has one
        sed -n '/^replace (/,/^)/p' "$dir/go.mod"
    } >"$work/go.mod"
}

step_linkerd() {
    local work dir
    dir=$(linkerd_module_dir)
    [[ -d "$dir" ]] || { log "cannot download github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION"; return 1; }
    work=$(mktemp -d /tmp/kpaas-mesh-tb-linkerd.XXXXXX)
    linkerd_wrapper_module "$dir" "$work"
    # No -trimpath and no `prod` tag: the CLI then reads its charts from $dir at run time.
    # shellcheck disable=SC2030
    (
        cd "$work"
        export GONOSUMDB=github.com/linkerd GOFLAGS="$GOFLAGS -mod=mod"
        go get "github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION" >&2
        go build -p "$GO_P" -ldflags "-s -w -X github.com/linkerd/linkerd2/pkg/version.Version=$LINKERD_VERSION" \
            -o "$BIN/linkerd" github.com/linkerd/linkerd2/cli
    )
    rm -rf "$work"
    "$BIN/linkerd" version --client >&2
}

# Linkerd's controller binary of the same release (subcommands identity, destination, service-mirror,
# proxy-injector, sp-validator, heartbeat): what the images cr.l5d.io/linkerd/controller:<tag> run. The bed's pod
# runner (tests/e2e/src/bin/pods.rs) runs it for every controller container of a pod.
step_controller() {
    local work dir
    dir=$(linkerd_module_dir)
    [[ -d "$dir" ]] || { log "cannot download github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION"; return 1; }
    work=$(mktemp -d /tmp/kpaas-mesh-tb-controller.XXXXXX)
    linkerd_wrapper_module "$dir" "$work"
    # same module environment as step_linkerd (checksum database off for github.com/linkerd only)
    # shellcheck disable=SC2030,SC2031
    (
        export GONOSUMDB=github.com/linkerd GOFLAGS="$GOFLAGS -mod=mod"
        cd "$work"
        go get "github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION" >&2
        go build -p "$GO_P" -trimpath \
            -ldflags "-s -w -X github.com/linkerd/linkerd2/pkg/version.Version=$LINKERD_VERSION" \
            -o "$BIN/linkerd-controller" github.com/linkerd/linkerd2/controller/cmd
    )
    rm -rf "$work"
    "$BIN/linkerd-controller" identity -version >&2
}

# copy_chart SRC NAME: a writable copy of a chart directory under $CHARTS/NAME.
copy_chart() {
    rm -rf "${CHARTS:?}/$2"
    cp -r "$1" "$CHARTS/$2"
    chmod -R u+w "$CHARTS/$2"
}

step_charts() {
    local dir c v
    dir=$(linkerd_module_dir)
    [[ -d "$dir" ]] || { log "cannot download github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION"; return 1; }
    copy_chart "$dir/charts/partials" partials
    copy_chart "$dir/charts/linkerd-crds" linkerd-crds
    copy_chart "$dir/charts/linkerd-control-plane" linkerd-control-plane
    copy_chart "$dir/multicluster/charts/linkerd-multicluster" linkerd-multicluster
    copy_chart "$dir/multicluster/charts/linkerd-multicluster-link" linkerd-multicluster-link
    for c in linkerd-crds linkerd-control-plane linkerd-multicluster linkerd-multicluster-link; do
        # what linkerd's release script does when it packages a chart: real version instead of placeholders
        sed -i "s/linkerdVersionValue/$LINKERD_VERSION/" "$CHARTS/$c/values.yaml"
        sed -i "s/^appVersion: .*/appVersion: $LINKERD_VERSION/" "$CHARTS/$c/Chart.yaml"
        # flat layout: every chart's partials dependency is the sibling directory
        sed -i 's#repository: file://.*/partials#repository: file://../partials#' \
            "$CHARTS/$c/Chart.yaml" "$CHARTS/$c/requirements.yaml" 2>/dev/null || true
        rm -f "$CHARTS/$c/requirements.lock" "$CHARTS/$c/Chart.lock"
        if grep -qs 'partials' "$CHARTS/$c/Chart.yaml" "$CHARTS/$c/requirements.yaml"; then
            "$BIN/helm" dependency build "$CHARTS/$c" >&2
        fi
    done
    step_charts_smi
    : >"$CHARTS/VERSIONS"
    for c in "$CHARTS"/*/Chart.yaml; do
        v=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$c")
        echo "$(basename "$(dirname "$c")") $v" >>"$CHARTS/VERSIONS"
    done
    echo "# linkerd $LINKERD_VERSION (github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION)" >>"$CHARTS/VERSIONS"
    cat "$CHARTS/VERSIONS" >&2
}

# linkerd-smi: the Go module proxy refuses github.com/linkerd/linkerd-smi (403 "This module version is not
# available"), so the chart comes from its source snapshot in ../shared/peers, set up as its own bin/helm-build
# does (the adaptor's image tag `linkerdSMIVersionValue` -> v0.2.7).
step_charts_smi() {
    local tree
    tree=$(peer_tree "linkerd-smi-$LINKERD_SMI_VERSION")
    copy_chart "$tree/charts/linkerd-smi" linkerd-smi
    sed -i "s/linkerdSMIVersionValue/$LINKERD_SMI_VERSION/" "$CHARTS/linkerd-smi/values.yaml"
    rm -f "$CHARTS/MISSING"
}

# peer_tree NAME: the unpacked source snapshot ../shared/peers/NAME.tar.gz (checked against SHA256SUMS), under
# $SRC/NAME; unpacked once.
peer_tree() {
    local name=$1
    if [[ ! -f "$SRC/$name/.unpacked" ]]; then
        [[ -f "$PEERS/$name.tar.gz" ]] || { log "no source snapshot $PEERS/$name.tar.gz"; return 1; }
        (cd "$PEERS" && grep " $name.tar.gz\$" SHA256SUMS | sha256sum -c --quiet -) >&2 ||
            { log "$PEERS/$name.tar.gz does not match SHA256SUMS"; return 1; }
        rm -rf "${SRC:?}/$name"
        tar -xzf "$PEERS/$name.tar.gz" -C "$SRC"
        [[ -d "$SRC/$name" ]] || { log "$name.tar.gz did not unpack to $name/"; return 1; }
        : >"$SRC/$name/.unpacked"
    fi
    echo "$SRC/$name"
}

# edge_chart_version TAG TREE: the version Linkerd's release scripts give the charts of an edge release; the tree
# must still say which rule applies:
# - the date rule (bin/helm-bump-edge, later bin/compute-edge-version: new_version="$yyyy.$new_mm.$new_xx", e.g.
#   edge-25.4.4 -> 2025.4.4), which the release workflow runs before packaging: prints the date version;
# - up to edge-24.2.4, bin/helm-bump-edge only bumps the patch of `-edge` chart versions (1.18.2-edge ->
#   1.18.3-edge) as a development step, and the release workflow (.github/actions/helm-publish) runs
#   bin/helm-build package alone, so the charts are published with the versions committed in the tree: prints
#   "tree".
edge_chart_version() {
    local tag=$1 tree=$2 v=${1#edge-}
    if grep -qs 'new_version="$yyyy.$new_mm.$new_xx"' "$tree/bin/helm-bump-edge" "$tree/bin/compute-edge-version"
    then
        echo "20$v"
    elif grep -qsF 'new_version="$major.$minor.$((patch + 1))-edge"' "$tree/bin/helm-bump-edge" &&
        grep -qs 'bin/helm-build package' "$tree/.github/actions/helm-publish/action.yml" &&
        ! grep -qs 'helm-bump-edge' "$tree/.github/actions/helm-publish/action.yml"; then
        echo tree
    else
        log "$tree: the chart version rule changed (bin/helm-bump-edge / bin/compute-edge-version," \
            ".github/actions/helm-publish/action.yml)"
        return 1
    fi
}

# One edge release: the source tree, the CLI (no `prod` tag, no -trimpath: it reads its charts from the tree at
# run time, like the 2.14.10 CLI from the module cache), the controller binary, and the charts with the versions
# the release scripts set.
step_edge_release() {
    local tag=$1 mode=${2:-full} tree v
    tree=$(peer_tree "linkerd2-$tag")
    v=$(edge_chart_version "$tag" "$tree")
    if [[ $mode == full ]]; then step_edge_binaries "$tag" "$tree"; fi
    step_edge_charts "$tag" "$tree" "$v"
}

# The CLI and the controller binary of an edge release, from its tree.
step_edge_binaries() {
    local tag=$1 tree=$2
    # shellcheck disable=SC2031
    (
        cd "$tree"
        export GOFLAGS="$GOFLAGS -mod=mod"
        go build -p "$GO_P" -ldflags "-s -w -X github.com/linkerd/linkerd2/pkg/version.Version=$tag" \
            -o "$BIN/linkerd-$tag" ./cli
        go build -p "$GO_P" -trimpath -ldflags "-s -w -X github.com/linkerd/linkerd2/pkg/version.Version=$tag" \
            -o "$BIN/linkerd-controller-$tag" ./controller/cmd
    )
    "$BIN/linkerd-$tag" version --client >&2
}

# The charts of an edge release with the versions its release scripts set (V from edge_chart_version; "tree":
# as committed in the tree's Chart.yaml files).
step_edge_charts() {
    local tag=$1 tree=$2 v=$3 c cv
    rm -rf "${CHARTS:?}/$tag"
    mkdir -p "$CHARTS/$tag"
    for c in partials linkerd-crds linkerd-control-plane; do
        cp -r "$tree/charts/$c" "$CHARTS/$tag/$c"
    done
    cp -r "$tree/multicluster/charts/linkerd-multicluster" "$CHARTS/$tag/linkerd-multicluster"
    chmod -R u+w "$CHARTS/$tag"
    for c in linkerd-crds linkerd-control-plane linkerd-multicluster; do
        # bin/helm-bump-edge: every chart but partials/patch/multicluster-link gets the date version (the old
        # `-edge` rule: the committed version, which must then be a real one, not a 0.0.0-undefined placeholder);
        # bin/helm-build package: linkerdVersionValue -> the tag, --app-version <tag>
        if [[ $v == tree ]]; then
            cv=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHARTS/$tag/$c/Chart.yaml")
            [[ $cv =~ ^[0-9]+\.[0-9]+\.[0-9]+-edge$ ]] ||
                { log "$tag: $c: in-tree chart version '$cv' is not an -edge release version"; return 1; }
        else
            sed -i "s/^version: .*/version: $v/" "$CHARTS/$tag/$c/Chart.yaml"
        fi
        sed -i "s/linkerdVersionValue/$tag/" "$CHARTS/$tag/$c/values.yaml"
        if [[ $c != linkerd-crds ]]; then
            sed -i "s/^appVersion: .*/appVersion: $tag/" "$CHARTS/$tag/$c/Chart.yaml"
        fi
        # flat layout: the partials dependency (Chart.yaml, or requirements.yaml of apiVersion v1 charts) is the
        # sibling directory
        sed -i 's#repository: file://.*/partials#repository: file://../partials#' \
            "$CHARTS/$tag/$c/Chart.yaml" "$CHARTS/$tag/$c/requirements.yaml" 2>/dev/null || true
        rm -f "$CHARTS/$tag/$c/Chart.lock" "$CHARTS/$tag/$c/requirements.lock"
        rm -rf "$CHARTS/$tag/$c/charts"
        if grep -qs 'partials' "$CHARTS/$tag/$c/Chart.yaml" "$CHARTS/$tag/$c/requirements.yaml"; then
            "$BIN/helm" dependency build "$CHARTS/$tag/$c" >&2
        fi
    done
    for c in "$CHARTS/$tag"/*/Chart.yaml; do
        echo "$(basename "$(dirname "$c")") $(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$c")"
    done >"$CHARTS/$tag/VERSIONS"
    echo "# linkerd $tag (source snapshot linkerd2-$tag.tar.gz)" >>"$CHARTS/$tag/VERSIONS"
    cat "$CHARTS/$tag/VERSIONS" >&2
}

step_edge() {
    local tag
    for tag in "${EDGE_RELEASES[@]}"; do
        run_step "edge-$tag" step_edge_release "$tag"
    done
    for tag in "${EDGE_CHART_RELEASES[@]}"; do
        run_step "edge-charts-$tag" step_edge_release "$tag" charts
    done
}

ALL_STEPS=(etcd k8s kwok helm linkerd controller charts edge krew)
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=("${ALL_STEPS[@]}")
total_start=$(date +%s)
for s in "${steps[@]}"; do
    if [[ $s == edge ]]; then
        step_edge # one stamped step per release
    else
        run_step "$s" "step_$s"
    fi
done
log "all done in $(( $(date +%s) - total_start ))s; bin: $BIN; charts: $CHARTS"

#!/usr/bin/env bash
# Builds (or finds in the cache) every binary and chart the offline test bed needs:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, kwokctl, helm, linkerd,
# linkerd-controller (Linkerd's own controllers, run by the bed's pod runner), and the Linkerd / linkerd-smi charts. Pinned versions; cached under
#   $KPAAS_MESH_TESTBED_CACHE (default $HOME/.cache/kpaas-mesh-testbed)/<tag>/{bin,charts}
# A step whose stamp file exists is skipped, so a warm run takes seconds.
# Usage: tests/testbed/build.sh [--print-dir] [step ...]   (steps: etcd k8s kwok helm linkerd controller charts;
#        default all)
# Runs OUTSIDE the test bed's network namespace: it needs the Go module proxy and Debian's mirror.
set -euo pipefail

K8S_VERSION=v1.33.13          # k8s.io/kubernetes; staging modules at the matching v0.33.x
K8S_STAGING_VERSION=v0.33.13
KWOK_VERSION=v0.7.0           # defaults to Kubernetes 1.33
HELM_VERSION=v3.18.6
LINKERD_VERSION=stable-2.14.10
LINKERD_MODULE_VERSION=v0.5.1-0.20240220173600-1ea6b271718f   # github.com/linkerd/linkerd2 @ 1ea6b271718f
LINKERD_SMI_VERSION=v0.2.7
REVISION=1                    # bump to force a rebuild into a new directory

TAG="k8s-${K8S_VERSION}_l5d-${LINKERD_VERSION}_r${REVISION}"
CACHE_ROOT="${KPAAS_MESH_TESTBED_CACHE:-$HOME/.cache/kpaas-mesh-testbed}"
CACHE="$CACHE_ROOT/$TAG"
BIN="$CACHE/bin"
CHARTS="$CACHE/charts"
STAMPS="$CACHE/stamps"

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$CACHE"
    exit 0
fi

mkdir -p "$BIN" "$CHARTS" "$STAMPS"
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
    controller) set -- linkerd-controller ;;
    linkerd)
        # the CLI reads its charts from the module source at run time (built without the `prod` tag)
        [[ -d "$(go env GOMODCACHE)/github.com/linkerd/linkerd2@$LINKERD_MODULE_VERSION/charts" ]] || return 1
        set -- linkerd
        ;;
    charts)
        for f in linkerd-crds linkerd-control-plane linkerd-multicluster linkerd-multicluster-link; do
            [[ -f "$CHARTS/$f/Chart.yaml" ]] || return 1
        done
        return 0
        ;;
    esac
    for f in "$@"; do
        [[ -x "$BIN/$f" ]] || return 1
    done
}

# run_step NAME FUNCTION: skip when stamped, else run, time and stamp it.
run_step() {
    local name=$1 fn=$2 start end
    if [[ -f "$STAMPS/$name" ]] && outputs_present "$name"; then
        log "$name: cached ($(cat "$STAMPS/$name"))"
        return 0
    fi
    log "$name: building"
    start=$(date +%s)
    "$fn"
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
# available", for the version list and for v0.2.7). The step tries it, and otherwise leaves the chart out
# (recorded in $CHARTS/MISSING) instead of failing the whole build.
step_charts_smi() {
    local dir
    rm -f "$CHARTS/MISSING"
    if dir=$(go mod download -json "github.com/linkerd/linkerd-smi@$LINKERD_SMI_VERSION" 2>/dev/null |
        sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p') && [[ -d "$dir/charts/linkerd-smi" ]]; then
        copy_chart "$dir/charts/linkerd-smi" linkerd-smi
    else
        log "charts: github.com/linkerd/linkerd-smi@$LINKERD_SMI_VERSION is not served by the Go module proxy; linkerd-smi chart left out"
        echo "linkerd-smi $LINKERD_SMI_VERSION: github.com/linkerd/linkerd-smi not served by the Go module proxy (403)" >"$CHARTS/MISSING"
    fi
}

ALL_STEPS=(etcd k8s kwok helm linkerd controller charts)
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=("${ALL_STEPS[@]}")
total_start=$(date +%s)
for s in "${steps[@]}"; do
    run_step "$s" "step_$s"
done
log "all done in $(( $(date +%s) - total_start ))s; bin: $BIN; charts: $CHARTS"

#!/usr/bin/env bash
# The offline test bed: N real local Kubernetes clusters (etcd + kube-apiserver + kube-controller-manager +
# kube-scheduler + kwok controller, via kwokctl's binary runtime) inside a loopback-only network namespace.
#
#   testbed.sh up [N]          start N clusters (default 2): contexts cluster1..clusterN in $STATE/kubeconfig
#   testbed.sh down            stop everything and delete the namespace (idempotent; works after a crash)
#   testbed.sh exec -- CMD...  run CMD inside the namespace with the bed's environment ($STATE/env)
#   testbed.sh status          what is running
#   testbed.sh apiserver stop|start NAME
#                              stop cluster NAME's kube-apiserver (KILL: an outage), or start it again
#                              with the same command line, and its controller-manager and scheduler with it
#
# Environment: KPAAS_MESH_TESTBED_STATE (state dir, default /tmp/kpaas-mesh-testbed),
#              KPAAS_MESH_TESTBED_NETNS (namespace name, default kpaas-mesh-tb),
#              KPAAS_MESH_TESTBED_LB (the MetalLB stand-in binary; default: built from tests/e2e with cargo),
#              KPAAS_MESH_TESTBED_PODS (the pod runner binary; default: built from tests/e2e with cargo),
#              KPAAS_MESH_TESTBED_NODES (kwok nodes per cluster, default 3),
#              KPAAS_MESH_TESTBED_CONTROLLERS (`none`: no Linkerd controller is run; for the benchmark only).
# Binaries and charts come from tests/testbed/build.sh (run it first; it needs the network, the bed does not).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE="${KPAAS_MESH_TESTBED_STATE:-/tmp/kpaas-mesh-testbed}"
NETNS="${KPAAS_MESH_TESTBED_NETNS:-kpaas-mesh-tb}"
# kwok nodes per cluster (the benchmark lightens its many-cluster beds with 1)
NODES_PER_CLUSTER="${KPAAS_MESH_TESTBED_NODES:-3}"
BIN=""

log() { printf '[testbed %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cache_dir() { "$HERE/build.sh" --print-dir; }

# in_ns CMD...: run CMD inside the namespace, the bed's binaries first on PATH (kwokctl runs `kubectl` from PATH).
in_ns() { ip netns exec "$NETNS" env PATH="${BIN:+$BIN:}$PATH" "$@"; }

# wait_ready NAME: wait until the apiserver of context NAME answers /readyz (it cannot be watched before it is up).
wait_ready() {
    local deadline=$(($(date +%s) + 120))
    until in_ns "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" --context "$1" get --raw /readyz >/dev/null 2>&1; do
        [[ $(date +%s) -lt $deadline ]] || return 1
        sleep 0.5
    done
}

netns_exists() { [[ -e "/run/netns/$NETNS" ]]; }

# The private pool of cluster i, as MetalLB would hand out (RFC 1918; nothing ever dials these addresses).
lb_pool() { echo "172.$((20 + $1)).0.10-172.$((20 + $1)).0.250"; }

# e2e_binary NAME OVERRIDE: a binary of tests/e2e (OVERRIDE if set, else target/debug/NAME, built if missing).
e2e_binary() {
    if [[ -n "$2" ]]; then
        echo "$2"
        return
    fi
    local target="${CARGO_TARGET_DIR:-$REPO/target}"
    if [[ ! -x "$target/debug/$1" ]]; then
        log "building $1 (outside the namespace)"
        (cd "$REPO" && cargo build -q -p kpaas-mesh-e2e --bin "$1") >&2
    fi
    echo "$target/debug/$1"
}

# Pod IPs: kwok hands them out from each node's spec.podCIDR; kwokctl's node template numbers the nodes' /24s
# from the podCIDR parameter. A range per cluster keeps pod IPs unique across the bed (the pod runner routes them).
pod_cidr() { echo "10.$((100 + $1)).0.0/24"; }

# The address cluster i's apiserver advertises (the `kubernetes` Service's endpoint). Endpoints may not hold
# loopback addresses, and without them the cluster has no EndpointSlice at all, which `linkerd install` refuses.
# 192.0.2.0/24 is TEST-NET-1 (RFC 5737, documentation only): nothing listens there and the namespace has no
# route to it; every client uses the kubeconfig's 127.0.0.1 server.
advertise_address() { echo "192.0.2.$1"; }

# write_kwokctl_config BIN I: kwokctl's configuration for cluster I, in $STATE/kwokctl-clusterI.yaml
write_kwokctl_config() {
    local bin=$1 i=$2
    cat >"$STATE/kwokctl-cluster$i.yaml" <<EOF
# kwokctl configuration of the test bed (written by testbed.sh up)
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeVersion: $("$bin/kubectl" version --client -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p')
  etcdVersion: $("$bin/etcd" --version | sed -n 's/^etcd Version: //p')
  kubeApiserverBinary: $bin/kube-apiserver
  kubeControllerManagerBinary: $bin/kube-controller-manager
  kubeSchedulerBinary: $bin/kube-scheduler
  kwokControllerBinary: $bin/kwok
  kubectlBinary: $bin/kubectl
  etcdBinary: $bin/etcd
componentsPatches:
- name: kube-apiserver
  extraArgs:
  # Test bed only: Linkerd's webhook servers would run in pods that kwok only pretends to run, so calling
  # them can never succeed. See tests/testbed/README.md.
  - key: disable-admission-plugins
    value: MutatingAdmissionWebhook,ValidatingAdmissionWebhook
  # the namespace has no default route, so the apiserver cannot pick an address to advertise by itself
  - key: advertise-address
    value: $(advertise_address "$i")
  - key: service-cluster-ip-range
    value: 10.96.0.0/16
---
# Test bed only (there is no data plane): an exec into the sample's sleep pod runs the command here, with the
# responder's curl first on PATH; it answers like helloworld v1/v2 in the ratio written to the file
# KPAAS_MESH_RESPONDER_CONF names. See tests/testbed/responder/curl.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: kpaas-mesh-sample-sleep
spec:
  selector:
    matchNamespaces: [sample]
  execs:
  - containers: [sleep]
    local:
      envs:
      - name: PATH
        value: $REPO/tests/testbed/responder:/usr/local/bin:/usr/bin:/bin
      - name: KPAAS_MESH_RESPONDER_CONF
        value: $STATE/responder.conf
EOF
}

cmd_up() {
    local n=${1:-2} start cache bin charts lb pods controller_tag controllers c i name t0
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "up: N must be a positive number, got '$n'"
    start=$(date +%s)
    if netns_exists || [[ -e "$STATE/kubeconfig" ]]; then
        die "a test bed is already up (namespace $NETNS or $STATE exists); run '$0 down' first"
    fi
    cache=$(cache_dir)
    bin="$cache/bin"
    BIN=$bin
    charts="$cache/charts"
    for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm linkerd; do
        [[ -x "$bin/$b" ]] || die "$bin/$b missing: run tests/testbed/build.sh first"
    done
    [[ -x "$bin/linkerd-controller" ]] || die "$bin/linkerd-controller missing: run tests/testbed/build.sh first"
    lb=$(e2e_binary kpaas-mesh-testbed-lb "${KPAAS_MESH_TESTBED_LB:-}")
    [[ -x "$lb" ]] || die "MetalLB stand-in $lb missing"
    pods=$(e2e_binary kpaas-mesh-testbed-pods "${KPAAS_MESH_TESTBED_PODS:-}")
    [[ -x "$pods" ]] || die "pod runner $pods missing"
    controller_tag=$("$bin/linkerd-controller" identity -version)
    # Linkerd's controllers of every release build.sh made (edge releases: linkerd-controller-<tag>)
    controllers=(--controller "$controller_tag=$bin/linkerd-controller")
    for c in "$bin"/linkerd-controller-*; do
        if [[ -x "$c" ]]; then controllers+=(--controller "${c##*/linkerd-controller-}=$c"); fi
    done
    # KPAAS_MESH_TESTBED_CONTROLLERS=none: the pod runner runs no Linkerd controller (their pods are left to kwok,
    # Ready at once): only for the benchmark's many-cluster beds, which measure kpaas-mesh, not Linkerd
    if [[ "${KPAAS_MESH_TESTBED_CONTROLLERS:-all}" == none ]]; then controllers=(); fi

    mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/kwok"
    log "network namespace $NETNS (loopback only)"
    ip netns add "$NETNS"
    echo "$NETNS" >"$STATE/netns"
    ip -n "$NETNS" link set lo up

    cat >"$STATE/env" <<EOF
# Environment of the kpaas-mesh test bed (source it inside the namespace, or use testbed.sh exec)
export KPAAS_MESH_TESTBED="$STATE"
export KPAAS_MESH_TESTBED_NETNS="$NETNS"
export KUBECONFIG="$STATE/kubeconfig"
export KPAAS_MESH_BIN="$bin"
export KPAAS_MESH_CHARTS="$STATE/charts"
export KPAAS_MESH_RESPONDER_CONF="$STATE/responder.conf"
export KWOK_WORKDIR="$STATE/kwok"
export PATH="$bin:$PATH"
EOF
    : >"$STATE/lb-pools"
    # The charts the tool installs from (--chart-dir): the ones build.sh made (2.14.10's and linkerd-smi at the top,
    # every later release in <tag>/), all real.
    mkdir -p "$STATE/charts"
    for c in "$charts"/*/; do
        if [[ -d "$c" && ! -e "$STATE/charts/$(basename "$c")" ]]; then
            ln -s "${c%/}" "$STATE/charts/$(basename "$c")"
        fi
    done
    # The sample's simulated responder answers evenly until a test says otherwise.
    printf 'v1 50 helloworld-v1\nv2 50 helloworld-v2\n' >"$STATE/responder.conf"

    for i in $(seq 1 "$n"); do
        name="cluster$i"
        t0=$(date +%s)
        log "$name: kwokctl create cluster"
        write_kwokctl_config "$bin" "$i"
        in_ns env KWOK_WORKDIR="$STATE/kwok" "$bin/kwokctl" create cluster --name "$name" \
            --config "$STATE/kwokctl-$name.yaml" --kubeconfig "$STATE/kubeconfig" --wait 3m \
            >"$STATE/logs/kwokctl-$name.log" 2>&1 || {
            tail -30 "$STATE/logs/kwokctl-$name.log" >&2
            die "$name: kwokctl create cluster failed (log: $STATE/logs/kwokctl-$name.log)"
        }
        "$bin/kubectl" --kubeconfig "$STATE/kubeconfig" config rename-context "kwok-$name" "$name" >/dev/null
        wait_ready "$name" || {
            tail -5 "$STATE"/kwok/clusters/"$name"/logs/*.log >&2
            die "$name: the apiserver did not become ready (logs: $STATE/kwok/clusters/$name/logs)"
        }
        log "$name: $NODES_PER_CLUSTER kwok nodes"
        in_ns env KWOK_WORKDIR="$STATE/kwok" "$bin/kwokctl" scale node --name "$name" \
            --replicas "$NODES_PER_CLUSTER" --param ".podCIDR = \"$(pod_cidr "$i")\"" \
            >>"$STATE/logs/kwokctl-$name.log" 2>&1
        in_ns "$bin/kubectl" --kubeconfig "$STATE/kubeconfig" --context "$name" \
            wait --for=condition=Ready node --all --timeout=120s >/dev/null
        echo "$name $(lb_pool "$i")" >>"$STATE/lb-pools"
        # not through in_ns: a backgrounded function would be a subshell, and $! its pid instead of the LB's
        ip netns exec "$NETNS" setsid "$lb" --kubeconfig "$STATE/kubeconfig" --context "$name" \
            --pool "$(lb_pool "$i")" --netns "$NETNS" >"$STATE/logs/lb-$name.log" 2>&1 </dev/null &
        echo $! >"$STATE/pids/lb-$name.pid"
        # Linkerd's real controllers for the controller pods (tests/e2e/src/bin/pods.rs); its own session, so
        # `down` can end it and every process it started (pod network namespaces hold no other process).
        ip netns exec "$NETNS" setsid "$pods" --kubeconfig "$STATE/kubeconfig" --context "$name" --state "$STATE" \
            "${controllers[@]}" >"$STATE/logs/pods-$name.log" 2>&1 </dev/null &
        echo $! >"$STATE/pids/pods-$name.pid"
        log "$name: up in $(($(date +%s) - t0))s (LB pool $(lb_pool "$i"), pod CIDR $(pod_cidr "$i")/node)"
    done
    "$bin/kubectl" --kubeconfig "$STATE/kubeconfig" config use-context cluster1 >/dev/null
    log "test bed up: $n clusters in $(($(date +%s) - start))s; env: $STATE/env"
    echo "$STATE/kubeconfig"
}

cmd_down() {
    local start bin="" name pid pids
    start=$(date +%s)
    if [[ -d "$(cache_dir)/bin" ]]; then bin="$(cache_dir)/bin"; BIN=$bin; fi
    for f in "$STATE"/pids/*.pid; do
        [[ -e "$f" ]] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
    done
    # The pod runners stop their controller processes on TERM; whatever of their session is left (a crash), KILL.
    for f in "$STATE"/pids/pods-*.pid; do
        [[ -e "$f" ]] || continue
        pid=$(cat "$f")
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 -- "-$pid" 2>/dev/null || true
    done
    if netns_exists && [[ -d "$STATE/kwok/clusters" && -n "$bin" ]]; then
        for d in "$STATE"/kwok/clusters/*/; do
            [[ -d "$d" ]] || continue
            name=$(basename "$d")
            log "$name: kwokctl delete cluster"
            timeout 60 ip netns exec "$NETNS" env PATH="$bin:$PATH" KWOK_WORKDIR="$STATE/kwok" "$bin/kwokctl" delete cluster \
                --name "$name" --kubeconfig "$STATE/kubeconfig" >/dev/null 2>&1 || log "$name: kwokctl delete failed"
        done
    fi
    if netns_exists; then
        # whatever still runs in the namespace (after a crash, say): TERM, then KILL
        pids=$(ip netns pids "$NETNS" || true)
        if [[ -n "$pids" ]]; then
            log "stopping leftover processes in $NETNS: $(echo $pids)"
            kill $pids 2>/dev/null || true
            for _ in $(seq 1 50); do
                [[ -z "$(ip netns pids "$NETNS" || true)" ]] && break
                sleep 0.2
            done
            pids=$(ip netns pids "$NETNS" || true)
            [[ -z "$pids" ]] || kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$NETNS"
        log "network namespace $NETNS deleted"
    fi
    rm -rf "$STATE"
    log "test bed down in $(($(date +%s) - start))s"
}

cmd_exec() {
    [[ "${1:-}" == "--" ]] && shift
    [[ $# -gt 0 ]] || die "exec: no command given"
    netns_exists && [[ -f "$STATE/env" ]] || die "no test bed is up (run '$0 up' first)"
    exec ip netns exec "$NETNS" bash -c 'source "$1"; shift; exec "$@"' testbed-exec "$STATE/env" "$@"
}

cmd_status() {
    if ! netns_exists; then
        echo "test bed: down (no namespace $NETNS)"
        [[ ! -e "$STATE" ]] || echo "stale state dir: $STATE (run '$0 down')"
        return 1
    fi
    echo "test bed: namespace $NETNS, state $STATE"
    [[ -f "$STATE/env" ]] || { echo "no $STATE/env: half up; run '$0 down'"; return 1; }
    # shellcheck disable=SC1091
    source "$STATE/env"
    local rc=0 ctx ready pid
    for ctx in $(kubectl --kubeconfig "$STATE/kubeconfig" config get-contexts -o name | sort -V); do
        if ready=$(in_ns kubectl --context "$ctx" get --raw /readyz 2>/dev/null); then
            echo "$ctx: apiserver $ready, $(in_ns kubectl --context "$ctx" get nodes --no-headers 2>/dev/null |
                grep -c ' Ready ') nodes Ready, server $(kubectl config view -o \
                jsonpath="{.clusters[?(@.name=='kwok-$ctx')].cluster.server}")"
        else
            echo "$ctx: apiserver NOT ready"
            rc=1
        fi
        pid=$(cat "$STATE/pids/lb-$ctx.pid" 2>/dev/null || true)
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$ctx: LB stand-in running (pid $pid, pool $(awk -v c="$ctx" '$1 == c {print $2}' "$STATE/lb-pools"))"
        else
            echo "$ctx: LB stand-in NOT running (log: $STATE/logs/lb-$ctx.log)"
            rc=1
        fi
        pid=$(cat "$STATE/pids/pods-$ctx.pid" 2>/dev/null || true)
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$ctx: pod runner running (pid $pid; controller processes: $(pgrep -c -s "$pid" -x controller || true))"
        else
            echo "$ctx: pod runner NOT running (log: $STATE/logs/pods-$ctx.log)"
            rc=1
        fi
    done
    echo "processes in the namespace: $(ip netns pids "$NETNS" | wc -l)"
    return $rc
}

# The components `apiserver stop|start` handles, by kwokctl's pid file names. kube-controller-manager and
# kube-scheduler exit when they cannot renew their leader lease (on a real control plane the kubelet starts them
# again), so `start` restarts them too: the bed is the same afterwards however long the outage lasted.
APISERVER_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)

# respawn CWD PIDFILE LOG ARGS: start again, from CWD, the process whose command line ARGS holds (NUL-separated, as
# /proc gave it), in a session of its own as kwokctl and `up` start them; the shell writes its pid, then becomes it.
respawn() {
    (cd "$1" && xargs -0 -a "$4" ip netns exec "$NETNS" setsid --fork bash -c \
        'echo $$ >"$0"; exec "${@:2}" >>"$1" 2>&1 </dev/null' "$2" "$3")
}

# component_start DIR COMPONENT ARGS: start COMPONENT of the cluster in DIR from its saved command line ARGS.
component_start() {
    local dir=$1 comp=$2 pid=""
    respawn "$dir" "$dir/pids/$comp.pid" "$dir/logs/$comp.log" "$3"
    for _ in $(seq 1 50); do
        pid=$(cat "$dir/pids/$comp.pid")
        [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */"$comp" ]] && return 0
        sleep 0.1
    done
    die "apiserver: $comp did not start (log: $dir/logs/$comp.log)"
}

# cmd_apiserver stop|start NAME: one cluster's API server down and up again (the faults e2e stops it mid-`up`).
cmd_apiserver() {
    local verb=${1:-} name=${2:-} dir saved comp pid
    dir="$STATE/kwok/clusters/$name"
    [[ -n "$name" && -d "$dir" ]] || die "apiserver: no cluster '$name' on this bed"
    saved="$STATE/stopped-$name"
    case "$verb" in
    stop)
        [[ ! -d "$saved" ]] || die "apiserver: $name's kube-apiserver is already stopped"
        mkdir -p "$saved"
        # every component's command line (NUL-separated), to start them again as kwokctl did
        for comp in "${APISERVER_COMPONENTS[@]}"; do
            pid=$(cat "$dir/pids/$comp.pid")
            cp "/proc/$pid/cmdline" "$saved/$comp.args" || die "apiserver: $name's $comp (pid $pid) is not running"
        done
        # the bed's own processes of this cluster (LB stand-in, pod runner) end when they lose their API server
        for comp in lb pods; do
            pid=$(cat "$STATE/pids/$comp-$name.pid")
            cp "/proc/$pid/cmdline" "$saved/$comp.args" || die "apiserver: $name's $comp (pid $pid) is not running"
        done
        # KILL: an outage, not a graceful shutdown (which drains for a while and still answers)
        pid=$(cat "$dir/pids/kube-apiserver.pid")
        kill -9 "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || { log "$name: kube-apiserver stopped"; return 0; }
            sleep 0.1
        done
        die "apiserver: $name's kube-apiserver (pid $pid) did not exit on KILL"
        ;;
    start)
        [[ -d "$saved" ]] || die "apiserver: $name's kube-apiserver was not stopped with 'apiserver stop'"
        BIN="$(cache_dir)/bin"
        component_start "$dir" kube-apiserver "$saved/kube-apiserver.args"
        wait_ready "$name" || die "apiserver: $name's kube-apiserver did not become ready"
        for comp in "${APISERVER_COMPONENTS[@]:1}"; do
            pid=$(cat "$dir/pids/$comp.pid")
            if [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */"$comp" ]]; then
                kill -9 "$pid"
                while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            fi
            component_start "$dir" "$comp" "$saved/$comp.args"
        done
        for comp in lb pods; do
            pid=$(cat "$STATE/pids/$comp-$name.pid")
            if ! kill -0 "$pid" 2>/dev/null; then
                respawn "$STATE" "$STATE/pids/$comp-$name.pid" "$STATE/logs/$comp-$name.log" "$saved/$comp.args"
                log "$name: $comp started again"
            fi
        done
        rm -rf "$saved"
        log "$name: kube-apiserver started again, with its controller-manager and scheduler"
        ;;
    *) die "apiserver: say stop or start, then the cluster's name" ;;
    esac
}

[[ $(id -u) -eq 0 ]] || die "needs root (ip netns)"
case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
exec) shift; cmd_exec "$@" ;;
status) cmd_status ;;
apiserver) shift; cmd_apiserver "$@" ;;
*) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

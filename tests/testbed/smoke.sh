#!/usr/bin/env bash
# Smoke tests from the shell that prove the test bed is real (the Rust twin is tests/e2e/tests/testbed_smoke.rs):
# Ready kwok nodes, a Deployment that becomes Available, a filled ServiceAccount token Secret, `helm install` of the
# local linkerd-crds chart, the real `linkerd install --crds | kubectl apply -f -`, a LoadBalancer Service with an
# address from the MetalLB stand-in, independent clusters. Cleans up after itself, so it can run again.
# Runs inside the bed's network namespace: `tests/testbed/testbed.sh exec -- tests/testbed/smoke.sh`
# (started outside the namespace, it re-runs itself that way).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${KPAAS_MESH_TESTBED:-}" ]]; then
    exec "$HERE/testbed.sh" exec -- "$HERE/smoke.sh" "$@"
fi

TIMEOUT=90s
CRD=servers.policy.linkerd.io
mapfile -t CONTEXTS < <(kubectl config get-contexts -o name | sort -V)
FIRST=${CONTEXTS[0]}
LAST=${CONTEXTS[${#CONTEXTS[@]} - 1]}
NS="smoke-sh-$$-$(date +%s)"
RELEASE="crds-sh-$$"
failures=0
passes=0

cleanup() {
    set +e
    for ctx in "${CONTEXTS[@]}"; do
        kubectl --context "$ctx" delete namespace "$NS" --ignore-not-found --wait=true >/dev/null 2>&1
        kubectl --context "$ctx" -n default delete configmap "$NS" --ignore-not-found >/dev/null 2>&1
    done
}
trap cleanup EXIT

# check NAME FUNCTION: run one smoke check, report PASS/FAIL and its time, go on either way.
check() {
    local name=$1 t0 rc
    t0=$(date +%s)
    set +e
    (set -euo pipefail; "$2") >"/tmp/$NS-$2.log" 2>&1
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then
        echo "PASS $name ($(($(date +%s) - t0))s)"
        passes=$((passes + 1))
    else
        echo "FAIL $name ($(($(date +%s) - t0))s):"
        sed 's/^/    /' "/tmp/$NS-$2.log"
        failures=$((failures + 1))
    fi
    rm -f "/tmp/$NS-$2.log"
}

loopback_only() {
    # this shell runs inside the bed's namespace: only `lo`, no route beyond 127.0.0.0/8
    local links routes
    links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
    routes=$(ip route show; ip -6 route show | grep -v '^::1 ' || true)
    echo "links: $links"
    echo "routes: ${routes:-none}"
    [[ "$links" == "lo " ]] || { echo "the namespace has more than lo: $links"; return 1; }
    [[ -z "$routes" ]] || { echo "the namespace has routes: $routes"; return 1; }
}

nodes_ready() {
    [[ ${#CONTEXTS[@]} -ge 2 ]] || { echo "expected >= 2 contexts, got ${CONTEXTS[*]}"; return 1; }
    local ctx ready
    for ctx in "${CONTEXTS[@]}"; do
        kubectl --context "$ctx" get nodes -o wide
        ready=$(kubectl --context "$ctx" get nodes --no-headers | awk '$2 == "Ready"' | wc -l)
        [[ $ready -ge 3 ]] || { echo "$ctx: only $ready Ready nodes"; return 1; }
    done
}

namespaces() {
    local ctx
    for ctx in "${CONTEXTS[@]}"; do
        kubectl --context "$ctx" create namespace "$NS"
    done
}

deployment_available() {
    kubectl --context "$FIRST" -n "$NS" create deployment web --image=registry.invalid/web:1 --replicas=2
    kubectl --context "$FIRST" -n "$NS" wait --for=condition=Available deployment/web --timeout=$TIMEOUT
    kubectl --context "$FIRST" -n "$NS" get deployment web
}

token_secret_filled() {
    kubectl --context "$LAST" -n "$NS" create serviceaccount remote-access
    kubectl --context "$LAST" -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: remote-access-token
  annotations:
    kubernetes.io/service-account.name: remote-access
type: kubernetes.io/service-account-token
EOF
    kubectl --context "$LAST" -n "$NS" wait --for=jsonpath='{.data.token}' secret/remote-access-token \
        --timeout=$TIMEOUT
    local token
    token=$(kubectl --context "$LAST" -n "$NS" get secret remote-access-token -o jsonpath='{.data.token}' | base64 -d)
    [[ $(tr -cd . <<<"$token" | wc -c) -eq 2 ]] || { echo "token is not a JWT"; return 1; }
}

# helm on the LAST cluster, linkerd on the FIRST (the Rust tests do it the other way round); each removes its CRDs.
helm_install_crds() {
    if kubectl --context "$LAST" get crd "$CRD" >/dev/null 2>&1; then
        echo "$LAST already has $CRD (left behind by an earlier test)"
        return 1
    fi
    local rc=0
    helm install "$RELEASE" "$KPAAS_MESH_CHARTS/linkerd-crds" --kube-context "$LAST" -n "$NS" --wait || rc=1
    kubectl --context "$LAST" get crd "$CRD" || rc=1
    helm uninstall "$RELEASE" --kube-context "$LAST" -n "$NS" --wait || rc=1
    kubectl --context "$LAST" wait --for=delete crd/"$CRD" --timeout=$TIMEOUT || rc=1
    return $rc
}

linkerd_install_crds() {
    if kubectl --context "$FIRST" get crd "$CRD" >/dev/null 2>&1; then
        echo "$FIRST already has $CRD (left behind by an earlier test)"
        return 1
    fi
    local manifest rc=0
    manifest=$(linkerd install --crds --context "$FIRST")
    grep -q 'kind: CustomResourceDefinition' <<<"$manifest"
    kubectl --context "$FIRST" apply -f - <<<"$manifest" || rc=1
    kubectl --context "$FIRST" get crd "$CRD" || rc=1
    kubectl --context "$FIRST" delete --ignore-not-found -f - <<<"$manifest" || rc=1
    kubectl --context "$FIRST" wait --for=delete crd/"$CRD" --timeout=$TIMEOUT || rc=1
    return $rc
}

load_balancer_ip() {
    local ctx ip pool first last
    for ctx in "${CONTEXTS[@]}"; do
        kubectl --context "$ctx" -n "$NS" create service loadbalancer gateway --tcp=4143:4143
        kubectl --context "$ctx" -n "$NS" wait --for=jsonpath='{.status.loadBalancer.ingress[0].ip}' \
            service/gateway --timeout=$TIMEOUT
        ip=$(kubectl --context "$ctx" -n "$NS" get service gateway -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
        pool=$(awk -v c="$ctx" '$1 == c {print $2}' "$KPAAS_MESH_TESTBED/lb-pools")
        first=${pool%-*}
        last=${pool#*-}
        echo "$ctx: gateway got $ip (pool $pool)"
        [[ "${ip%.*}" == "${first%.*}" && ${ip##*.} -ge ${first##*.} && ${ip##*.} -le ${last##*.} ]] ||
            { echo "$ctx: $ip is outside the pool $pool"; return 1; }
    done
}

clusters_independent() {
    local uid1 uid2
    uid1=$(kubectl --context "$FIRST" get namespace kube-system -o jsonpath='{.metadata.uid}')
    uid2=$(kubectl --context "$LAST" get namespace kube-system -o jsonpath='{.metadata.uid}')
    [[ "$uid1" != "$uid2" ]] || { echo "both contexts reach the same cluster"; return 1; }
    kubectl --context "$FIRST" -n default create configmap "$NS" --from-literal=k=v
    kubectl --context "$FIRST" -n default get configmap "$NS"
    if kubectl --context "$LAST" -n default get configmap "$NS" 2>/dev/null; then
        echo "configmap $NS created in $FIRST shows up in $LAST"
        return 1
    fi
    kubectl --context "$FIRST" -n default delete configmap "$NS"
}

echo "smoke tests on ${CONTEXTS[*]} (namespace $NS)"
check "the namespace is loopback-only" loopback_only
check "every cluster has >= 3 Ready kwok nodes" nodes_ready
check "test namespaces created" namespaces
check "a Deployment becomes Available" deployment_available
check "a ServiceAccount token Secret is filled" token_secret_filled
check "helm install of the local linkerd-crds chart ($LAST)" helm_install_crds
check "linkerd install --crds | kubectl apply -f - ($FIRST)" linkerd_install_crds
check "a LoadBalancer Service gets an address from its cluster's pool" load_balancer_ip
check "the clusters are independent" clusters_independent
echo "smoke: $passes passed, $failures failed"
[[ $failures -eq 0 ]]

#!/bin/sh
# kpaas-mesh netfix-baremetal DNAT agent: the guide's section 3.5 (iptables DNAT on every node), kept true by a
# privileged host-network DaemonSet pod on every node of a source cluster.
#
# The mapping file is the whole truth: after a reconcile, the rules of the nat table tagged with the comment
# "kpaas-mesh netfix peer=<peer>" are exactly its lines, once each, and nothing else of the ruleset is touched.
# Mapping lines (blank lines and # comments ignored):
#     <CHAIN> <PEER> <PRIVATE-IPv4> <PUBLIC-IPv4>        e.g.  PREROUTING cluster2 172.22.0.10 203.0.113.2
# each meaning  iptables -t nat -I <CHAIN> -d <PRIVATE>/32 -m comment --comment "kpaas-mesh netfix peer=<PEER>"
#                        -j DNAT --to-destination <PUBLIC>
# An empty mapping removes every rule the agent made (what `kubectl kpaas-mesh down` rolls out before deleting it).
#
# Usage: dnat-agent.sh run      reconcile now and every $KPAAS_MESH_RESYNC seconds until TERM (the DaemonSet)
#        dnat-agent.sh once     reconcile once; exit status 0 when the rules match the mapping
#        dnat-agent.sh remove   remove every tagged rule, whatever the mapping says (manual clean-up of a node)
# Environment: KPAAS_MESH_MAPPING    mapping file            (default /etc/kpaas-mesh/mapping)
#              KPAAS_MESH_RESYNC     seconds between passes  (default 60)
#              KPAAS_MESH_READY_FILE written after a successful pass, removed after a failed one (readiness probe)
#              KPAAS_MESH_IPTABLES   iptables command to use (default: the backend that holds the node's rules)
# Idempotent: a rule is checked (-C) before it is inserted; new rules go in before stale ones are deleted, so a
# changed public address never leaves a gap. Rules are not removed when the pod stops (a restart or a rolling
# update must not cut traffic); they go only when the mapping no longer lists them.

set -u

MAPPING=${KPAAS_MESH_MAPPING:-/etc/kpaas-mesh/mapping}
RESYNC=${KPAAS_MESH_RESYNC:-60}
READY=${KPAAS_MESH_READY_FILE:-/tmp/kpaas-mesh-dnat.ready}
TAG="kpaas-mesh netfix"
CHAINS="PREROUTING OUTPUT"
WORK=$(mktemp -d 2>/dev/null || echo "/tmp/kpaas-mesh-dnat.$$")
mkdir -p "$WORK"

log() { printf '%s kpaas-mesh-dnat: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# The iptables backend (nft or legacy) that already holds the node's nat rules (kube-proxy's, the CNI's), so ours
# land next to them; on a tie, whatever `iptables` is.
pick_iptables() {
    if [ -n "${KPAAS_MESH_IPTABLES:-}" ]; then
        IPT=$KPAAS_MESH_IPTABLES
        return
    fi
    IPT=iptables
    if command -v iptables-legacy-save >/dev/null 2>&1 && command -v iptables-nft-save >/dev/null 2>&1; then
        # Reading a legacy table makes the kernel create it; look only when the node already has one.
        legacy=0
        if grep -qx nat /proc/net/ip_tables_names 2>/dev/null; then
            legacy=$(iptables-legacy-save -t nat 2>/dev/null | grep -c '^-A')
        fi
        nft=$(iptables-nft-save -t nat 2>/dev/null | grep -c '^-A')
        if [ "${legacy:-0}" -gt "${nft:-0}" ]; then
            IPT=iptables-legacy
        elif [ "${nft:-0}" -gt "${legacy:-0}" ]; then
            IPT=iptables-nft
        fi
    fi
}

is_ipv4() {
    case $1 in
    *[!0-9.]* | "" | .* | *. | *..*) return 1 ;;
    esac
    old_ifs=$IFS
    IFS=.
    # shellcheck disable=SC2086
    set -- $1
    IFS=$old_ifs
    [ $# -eq 4 ] || return 1
    for octet in "$@"; do
        [ "${#octet}" -le 3 ] && [ "$octet" -le 255 ] || return 1
    done
}

# Writes the validated mapping to $WORK/desired as "CHAIN PEER PRIVATE PUBLIC" lines (duplicates dropped);
# fails, changing nothing, on the first bad line.
read_mapping() {
    : >"$WORK/desired"
    [ "$1" = remove ] && return 0
    if [ ! -r "$MAPPING" ]; then
        log "cannot read the mapping file $MAPPING"
        return 1
    fi
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case $line in
        "" | "#"*) continue ;;
        esac
        # shellcheck disable=SC2086
        set -- $line
        if [ $# -ne 4 ]; then
            log "$MAPPING:$n: want 'CHAIN PEER PRIVATE PUBLIC', got: $line"
            return 1
        fi
        case $1 in
        PREROUTING | OUTPUT) ;;
        *)
            log "$MAPPING:$n: chain must be PREROUTING or OUTPUT, got: $1"
            return 1
            ;;
        esac
        case $2 in
        *[!a-z0-9-]* | "")
            log "$MAPPING:$n: peer must be a DNS label, got: $2"
            return 1
            ;;
        esac
        if ! is_ipv4 "$3" || ! is_ipv4 "$4"; then
            log "$MAPPING:$n: addresses must be IPv4, got: $3 $4"
            return 1
        fi
        key="$1 $2 $3 $4"
        grep -qxF -- "$key" "$WORK/desired" || printf '%s\n' "$key" >>"$WORK/desired"
    done <"$MAPPING"
}

# "CHAIN PEER PRIVATE PUBLIC" of a tagged line of `iptables -S`, or nothing when the rule is not exactly the shape
# this agent makes (then it is stale, whatever it says).
rule_key() {
    case $1 in
    *[!A-Za-z0-9_./:=\"\ -]*) return 1 ;;
    esac
    eval "set -- $1"
    [ $# -ge 2 ] && [ "$1" = -A ] || return 1
    chain=$2
    shift 2
    dst='' comment='' jump='' to=''
    while [ $# -ge 2 ]; do
        case $1 in
        -d) dst=$2 ;;
        -m) [ "$2" = comment ] || return 1 ;;
        --comment) comment=$2 ;;
        -j) jump=$2 ;;
        --to-destination) to=$2 ;;
        *) return 1 ;;
        esac
        shift 2
    done
    [ $# -eq 0 ] && [ "$jump" = DNAT ] || return 1
    case $comment in
    "$TAG peer="*) ;;
    *) return 1 ;;
    esac
    printf '%s %s %s %s\n' "$chain" "${comment#"$TAG peer="}" "${dst%/32}" "$to"
}

reconcile() {
    read_mapping "$1" || return 1
    # 1. what the mapping lists: check before insert
    while read -r chain peer private public; do
        if ! $IPT -w -t nat -C "$chain" -d "$private/32" -m comment --comment "$TAG peer=$peer" \
            -j DNAT --to-destination "$public" 2>/dev/null; then
            $IPT -w -t nat -I "$chain" -d "$private/32" -m comment --comment "$TAG peer=$peer" \
                -j DNAT --to-destination "$public" || {
                log "cannot insert $chain $private -> $public ($peer)"
                return 1
            }
            log "added $chain -d $private -j DNAT --to-destination $public (peer $peer)"
        fi
    done <"$WORK/desired"
    # 2. tagged rules the mapping does not list (or lists once, found twice): deleted, by their exact spec
    for chain in $CHAINS; do
        if ! $IPT -w -t nat -S "$chain" >"$WORK/rules" 2>"$WORK/err"; then
            log "cannot list nat $chain: $(cat "$WORK/err")"
            return 1
        fi
        : >"$WORK/kept"
        while IFS= read -r line; do
            case $line in
            *"--comment \"$TAG peer="*) ;;
            *) continue ;;
            esac
            key=$(rule_key "$line")
            if [ -n "$key" ] && grep -qxF -- "$key" "$WORK/desired" && ! grep -qxF -- "$key" "$WORK/kept"; then
                printf '%s\n' "$key" >>"$WORK/kept"
                continue
            fi
            case $line in
            *[!A-Za-z0-9_./:=\"\ -]*)
                log "not deleting a tagged rule with unexpected characters: $line"
                return 1
                ;;
            esac
            eval "set -- $line"
            shift
            $IPT -w -t nat -D "$@" || {
                log "cannot delete: $line"
                return 1
            }
            log "deleted ${key:-$line}"
        done <"$WORK/rules"
    done
}

pass() {
    if reconcile "$1"; then
        count=$(wc -l <"$WORK/desired" | tr -d ' ')
        printf '%s rules\n' "$count" >"$READY" 2>/dev/null || true
        return 0
    fi
    rm -f "$READY"
    return 1
}

cleanup() { rm -rf "$WORK"; }

pick_iptables
case ${1:-run} in
once | remove)
    pass "$1"
    rc=$?
    cleanup
    exit $rc
    ;;
run)
    trap 'log "stopping (rules stay)"; cleanup; exit 0' TERM INT
    log "using $IPT, mapping $MAPPING, resync ${RESYNC}s"
    while :; do
        pass run || log "reconcile failed; retrying in ${RESYNC}s"
        sleep "$RESYNC" &
        wait $!
    done
    ;;
*)
    echo "usage: $0 run|once|remove" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Creates (once) the cached Python virtual environments that run a REAL OpenStack Neutron and Keystone from PyPI
# for the netfix-openstack integration tests (plugins/netfix-openstack/tests/). Needs PyPI on the first run, so run
# it outside any network namespace; later runs only verify the cache and return in about a second.
#
#   tests/openstack/setup.sh            # creates $HOME/.cache/kpaas-mesh-openstack/{neutron,keystone}-<version>/
#                                       # and the cloud template (cloud.py template; rebuilt when cloud.py changes)
#   KPAAS_MESH_OPENSTACK_CACHE=DIR      # another cache directory
#
# Versions are pinned: tests/openstack/cloud.py uses Neutron internals (the WSGI module and the model metadata for
# the SQLite schema) that change between releases.
set -euo pipefail

NEUTRON_VERSION=29.0.0
KEYSTONE_VERSION=30.0.0
CACHE="${KPAAS_MESH_OPENSTACK_CACHE:-$HOME/.cache/kpaas-mesh-openstack}"
PYTHON="${PYTHON:-python3}"

log() { printf '[openstack-setup %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# venv NAME PACKAGE==VERSION IMPORT: a venv with the package, marked complete by a stamp file written last.
venv() {
    local dir="$CACHE/$1" pkg=$2 module=$3
    local stamp="$dir/.kpaas-mesh-complete"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]] && "$dir/bin/python" -c "import $module" 2>/dev/null; then
        log "$pkg: cached in $dir"
        return 0
    fi
    log "$pkg: creating $dir (needs PyPI, 1-2 minutes)"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$pkg"
    "$dir/bin/python" -c "import $module"
    echo "$pkg" >"$stamp"
    log "$pkg: ready"
}

mkdir -p "$CACHE"
t0=$(date +%s)
venv "neutron-$NEUTRON_VERSION" "neutron==$NEUTRON_VERSION" neutron &
p1=$!
venv "keystone-$KEYSTONE_VERSION" "keystone==$KEYSTONE_VERSION" keystone &
p2=$!
rc=0
wait $p1 || rc=1
wait $p2 || rc=1
if [[ $rc -ne 0 ]]; then
    log "FAILED (see above); nothing usable was left marked as complete"
    exit 1
fi
# The cloud template (bootstrapped Keystone, Neutron schema and fixtures), so each test starts in seconds.
"$CACHE/keystone-$KEYSTONE_VERSION/bin/python" "$(dirname "${BASH_SOURCE[0]}")/cloud.py" template >/dev/null
log "done in $(($(date +%s) - t0))s: $CACHE"

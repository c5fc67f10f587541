#!/usr/bin/env bash
# Builds the release archive for krew and checks it:
#   target/dist/kpaas-mesh-v<version>-linux-amd64.tar.gz   bin/kubectl-kpaas_mesh, lib/kpaas-mesh/plugins/*.so,
#                                                          LICENSE, README.md
#   target/dist/kpaas-mesh.yaml                            the krew manifest (dist/krew/kpaas-mesh.yaml.tmpl)
# The check unpacks the archive the way krew lays a plugin out (files copied into a store directory, the binary
# reached through a symlink in a bin directory on PATH) and asks that binary for its plugins: every stage plugin must
# load from ../lib/kpaas-mesh/plugins next to the real binary. Then krew itself (v0.4.3, built by
# tests/testbed/build.sh step krew; KPAAS_MESH_KREW_BIN overrides where): its validate-krew-manifest on the manifest,
# and `kubectl krew install --manifest --archive` into a temporary KREW_ROOT inside a network namespace with no
# network (unshare -n), then `kubectl kpaas-mesh version` and `plugins list` through kubectl from there.
# KPAAS_MESH_REQUIRE_KREW=1 (tests/run.sh) makes a missing krew an error instead of a note.
# Usage: dist/package.sh [--base-uri URL]   (default: the project's GitHub releases)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BASE_URI="https://github.com/K-PaaS/kpaas-mesh/releases/download"
[[ "${1:-}" == --base-uri ]] && BASE_URI=$2

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' kubectl-kpaas-mesh/Cargo.toml | head -1)
NAME="kpaas-mesh-v$VERSION-linux-amd64"
OUT="$REPO/target/dist"
cargo build --workspace --release --lib --bins
rm -rf "$OUT/$NAME" && mkdir -p "$OUT/$NAME/bin" "$OUT/$NAME/lib/kpaas-mesh/plugins"
install -m 0755 target/release/kubectl-kpaas_mesh "$OUT/$NAME/bin/"
install -m 0644 target/release/libkpaas_mesh_*.so "$OUT/$NAME/lib/kpaas-mesh/plugins/"
install -m 0644 LICENSE README.md "$OUT/$NAME/"
tar -C "$OUT/$NAME" --owner=0 --group=0 -czf "$OUT/$NAME.tar.gz" .
SHA=$(sha256sum "$OUT/$NAME.tar.gz" | cut -d' ' -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@URI@|$BASE_URI/v$VERSION/$NAME.tar.gz|" -e "s|@SHA256@|$SHA|" \
    dist/krew/kpaas-mesh.yaml.tmpl >"$OUT/kpaas-mesh.yaml"
echo "archive:  $OUT/$NAME.tar.gz ($(du -h "$OUT/$NAME.tar.gz" | cut -f1), sha256 $SHA)"
echo "manifest: $OUT/kpaas-mesh.yaml"

# The check, krew-style: store dir + symlinked binary.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
mkdir -p "$check/store/kpaas-mesh/v$VERSION" "$check/bin"
tar -C "$check/store/kpaas-mesh/v$VERSION" -xzf "$OUT/$NAME.tar.gz"
chmod 0755 "$check" "$check/store" "$check/store/kpaas-mesh" "$check/store/kpaas-mesh/v$VERSION"
ln -s "$check/store/kpaas-mesh/v$VERSION/bin/kubectl-kpaas_mesh" "$check/bin/kubectl-kpaas_mesh"
listing=$(env -u KPAAS_MESH_PLUGIN_PATH HOME="$check" "$check/bin/kubectl-kpaas_mesh" plugins list)
echo "$listing"
for p in cert control-plane multicluster netfix-none smi sample; do
    grep -q "^$p " <<<"$listing" || { echo "package check: plugin $p did not load from the archive" >&2; exit 1; }
done
echo "package check: every stage plugin loads from the unpacked archive"

# krew itself.
KREW_BIN="${KPAAS_MESH_KREW_BIN:-$(tests/testbed/build.sh --print-dir)/bin}"
if [[ ! -x "$KREW_BIN/kubectl-krew" || ! -x "$KREW_BIN/validate-krew-manifest" || ! -x "$KREW_BIN/kubectl" ]]; then
    if [[ -n "${KPAAS_MESH_REQUIRE_KREW:-}" ]]; then
        echo "package check: no krew in $KREW_BIN (run tests/testbed/build.sh krew)" >&2
        exit 1
    fi
    echo "note: krew not built (tests/testbed/build.sh krew): the manifest was not checked by krew"
    exit 0
fi
if ! "$KREW_BIN/validate-krew-manifest" -manifest "$OUT/kpaas-mesh.yaml" -skip-install 2>&1 | sed 's/^/krew: /'; then
    echo "package check: validate-krew-manifest refused the manifest" >&2
    exit 1
fi
mkdir -p "$check/krew"
in_krew() {
    unshare -n env -u KPAAS_MESH_PLUGIN_PATH HOME="$check" KREW_ROOT="$check/krew" KREW_NO_UPGRADE_CHECK=1 \
        PATH="$KREW_BIN:$check/krew/bin:/usr/bin:/bin" "$@"
}
if ! in_krew kubectl krew install --manifest="$OUT/kpaas-mesh.yaml" --archive="$OUT/$NAME.tar.gz" </dev/null 2>&1 |
    sed 's/^/krew: /'; then
    echo "package check: kubectl krew install failed" >&2
    exit 1
fi
version=$(in_krew kubectl kpaas-mesh version)
echo "$version" | sed 's/^/krew: /'
grep -q "^kubectl-kpaas_mesh $VERSION " <<<"$version" ||
    { echo "package check: kubectl kpaas-mesh version through krew printed no version $VERSION" >&2; exit 1; }
listing=$(in_krew kubectl kpaas-mesh plugins list)
for p in cert control-plane multicluster netfix-none smi sample; do
    grep -q "^$p " <<<"$listing" ||
        { echo "package check: plugin $p did not load from the krew install" >&2; exit 1; }
done
echo "package check: krew $("$KREW_BIN/kubectl-krew" version 2>/dev/null | awk '$1 == "GitTag" {print $2}') validated the manifest and installed the archive; kubectl kpaas-mesh runs from it with every stage plugin"

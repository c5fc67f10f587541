#!/usr/bin/env bash
# Builds the release archive for krew and checks it:
#   target/dist/kpaas-mesh-v<version>-linux-amd64.tar.gz   bin/kubectl-kpaas_mesh, lib/kpaas-mesh/plugins/*.so,
#                                                          LICENSE, README.md
#   target/dist/kpaas-mesh.yaml                            the krew manifest (dist/krew/kpaas-mesh.yaml.tmpl)
# The check unpacks the archive the way krew lays a plugin out (files copied into a store directory, the binary
# reached through a symlink in a bin directory on PATH) and asks that binary for its plugins: every stage plugin must
# load from ../lib/kpaas-mesh/plugins next to the real binary.
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

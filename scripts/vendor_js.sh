#!/usr/bin/env bash
# Vendor the web UI's JavaScript (htmx, its SSE extension, uPlot) from the npm registry into
# src/modeldojo/webapp/static/vendor/, so that `dojo app` pages make no external requests.
#
# Each package is pinned by version AND by the sha512 integrity of its npm tarball (below): the
# script fetches the tarball with `npm pack`, checks its sha512 against both the registry's
# reported integrity and the pinned one, and fails on any mismatch. It then copies the chosen
# files and the package's LICENSE, and writes vendor.json (package, version, source path in the
# tarball, sha256, licence, size for every file). Re-runnable: the output is rebuilt from scratch
# and is byte-identical for the same pins. tests/test_webapp_vendor.py checks the result.
#
# To upgrade: change a version, run with the old integrity, read the "got" value from the error,
# check the release, put it here, and run again.
#
# Needs: bash, npm, tar, python3 (for the JSON and hashes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/src/modeldojo/webapp/static/vendor"

# name|version|sha512 integrity of the npm tarball|licence (SPDX)|license file name|files (tarball path:dest name, comma separated)
PACKAGES=(
  "htmx.org|2.0.11|sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==|0BSD|htmx.LICENSE|dist/htmx.min.js:htmx.min.js"
  "htmx-ext-sse|2.2.4|sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ==|0BSD|htmx-ext-sse.LICENSE|dist/sse.min.js:htmx-ext-sse.min.js"
  "uplot|1.6.32|sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==|MIT|uplot.LICENSE|dist/uPlot.iife.min.js:uPlot.iife.min.js,dist/uPlot.min.css:uPlot.min.css"
)

say() { echo "vendor_js: $*"; }
die() { echo "vendor_js: ERROR: $*" >&2; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found"
command -v python3 >/dev/null 2>&1 || die "python3 not found"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/out"
mkdir -p "$STAGE"
MANIFEST="$WORK/manifest.tsv"   # package, version, integrity, licence, source, dest
: > "$MANIFEST"

sri_sha512() {  # Subresource-integrity form of a file's sha512
    python3 -c 'import base64,hashlib,sys; print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$1"
}

for entry in "${PACKAGES[@]}"; do
    IFS='|' read -r name version pinned licence licfile files <<< "$entry"
    pkgdir="$WORK/$name"
    mkdir -p "$pkgdir"
    say "fetching $name@$version"
    (cd "$pkgdir" && npm pack "$name@$version" --json --silent > pack.json) || die "npm pack $name@$version failed"
    read -r tgz reported < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))[0]; print(d["filename"], d["integrity"])' "$pkgdir/pack.json")
    got="$(sri_sha512 "$pkgdir/$tgz")"
    [ "$got" = "$reported" ] || die "$name@$version: tarball sha512 $got does not match npm's reported integrity $reported"
    [ "$got" = "$pinned" ] || die "$name@$version: tarball integrity $got does not match the pinned $pinned"
    say "  integrity ok: $got"
    mkdir -p "$pkgdir/x"
    tar -xzf "$pkgdir/$tgz" -C "$pkgdir/x"
    [ -f "$pkgdir/x/package/LICENSE" ] || die "$name@$version: no LICENSE in the tarball"
    cp "$pkgdir/x/package/LICENSE" "$STAGE/$licfile"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$version" "$got" "$licence" "package/LICENSE" "$licfile" >> "$MANIFEST"
    IFS=',' read -r -a pairs <<< "$files"
    for pair in "${pairs[@]}"; do
        src="${pair%%:*}"; dst="${pair#*:}"
        [ -f "$pkgdir/x/package/$src" ] || die "$name@$version: $src not in the tarball"
        cp "$pkgdir/x/package/$src" "$STAGE/$dst"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$version" "$got" "$licence" "package/$src" "$dst" >> "$MANIFEST"
        say "  $src -> $dst"
    done
done

python3 - "$MANIFEST" "$STAGE" <<'PY'
import hashlib, json, os, sys
manifest, stage = sys.argv[1:3]
packages, files = {}, []
for line in open(manifest, encoding="utf-8"):
    name, version, integrity, licence, source, dest = line.rstrip("\n").split("\t")
    packages[name] = {"version": version, "tarball_integrity": integrity, "license": licence}
    data = open(os.path.join(stage, dest), "rb").read()
    files.append({
        "file": dest,
        "package": name,
        "version": version,
        "source": source,
        "sha256": hashlib.sha256(data).hexdigest(),
        "license": licence,
        "kind": "license" if source.endswith("LICENSE") else "asset",
        "size": len(data),
    })
doc = {
    "generated_by": "scripts/vendor_js.sh",
    "registry": "https://registry.npmjs.org (npm pack)",
    "packages": packages,
    "files": files,
    "total_size": sum(f["size"] for f in files),
}
with open(os.path.join(stage, "vendor.json"), "w", encoding="utf-8") as fh:
    json.dump(doc, fh, indent=2)
    fh.write("\n")
PY

# Replace the folder's contents only once everything succeeded.
mkdir -p "$DEST"
find "$DEST" -mindepth 1 -maxdepth 1 -type f -delete
cp "$STAGE"/* "$DEST"/
say "wrote $(ls "$DEST" | wc -l) files to ${DEST#$ROOT/} ($(du -cb "$DEST"/* | tail -1 | cut -f1) bytes)"

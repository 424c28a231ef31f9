#!/bin/sh
# Rebuild vendor/vega/dvc_plots.html from npm: vega, vega-lite and vega-embed (pinned below) are
# `npm pack`ed and their minified builds inlined into a DVC plots HTML template, so that
# `dvc plots show/diff` pages render with no network (DVC's default page loads them from a CDN).
# The result is committed; run this only to change versions (`make vendor-vega`). Needs npm.
set -eu
VEGA=5.33.1
VEGA_LITE=5.23.0
VEGA_EMBED=6.29.0

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" >/dev/null
for tgz in *.tgz; do
    mkdir "${tgz%.tgz}"
    tar xzf "$tgz" -C "${tgz%.tgz}"
done
cp "vega-lite-$VEGA_LITE/package/LICENSE" "$here/LICENSE"
builds="vega-$VEGA/package/build/vega.min.js vega-lite-$VEGA_LITE/package/build/vega-lite.min.js
vega-embed-$VEGA_EMBED/package/build/vega-embed.min.js"
# shellcheck disable=SC2086
if grep -q '</script' $builds; then
    echo "a build contains '</script': it cannot be inlined as is" >&2
    exit 1
fi

script() {  # inline one minified build, without its source-map comment (no fetch, ever)
    printf '<script>\n'
    sed '/^\/\/# sourceMappingURL=/d' "$1"
    printf '\n</script>\n'
}

out="$here/dvc_plots.html"
{
    cat <<HEAD
<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots</title>
<!-- vega $VEGA, vega-lite $VEGA_LITE and vega-embed $VEGA_EMBED (npm), minified builds inlined so
     this page needs no network. BSD-3-Clause, (c) University of Washington Interactive Data Lab:
     see vendor/vega/LICENSE and vendor/vega/README.md. Rebuilt by vendor/vega/update.sh. -->
HEAD
    for build in $builds; do
        script "$build"
    done
    cat <<'TAIL'
<style>
    body { font-family: system-ui, "DejaVu Sans", sans-serif; }
    table { border-spacing: 15px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
TAIL
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c < "$out") bytes)"

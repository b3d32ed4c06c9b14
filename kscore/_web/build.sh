#!/bin/sh
# Rebuild the WebGL scatter bundle that kscore report inlines into its page.
# Needs Node.js and npm; the pinned versions are in package-lock.json. Run from anywhere:
#   sh kscore/_web/build.sh
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
mkdir -p vendor
npx esbuild entry.js --bundle --minify --format=iife --target=es2020 --legal-comments=none \
  --outfile=vendor/regl-scatterplot.bundle.js
# Keep the licences of everything inside the bundle beside it.
{
  for pkg in regl-scatterplot regl pub-sub-es @flekschas/utils dom-2d-camera camera-2d-simple gl-matrix earcut regl-line; do
    if [ -f "node_modules/$pkg/package.json" ]; then
      version=$(node -p "require('./node_modules/$pkg/package.json').version")
      echo "== $pkg $version =="
      cat node_modules/$pkg/LICENSE* 2>/dev/null || node -p "require('./node_modules/$pkg/package.json').license"
      echo
    fi
  done
} > vendor/THIRD_PARTY_LICENSES.txt
ls -l vendor

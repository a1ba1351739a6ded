#!/bin/sh
# openapi_lint.sh NPMDIR OPENAPI - lints the OpenAPI description with
# Redocly CLI's recommended rules, warnings counted as errors
# (recommended-strict), from the npm packages pinned in NPMDIR
# (package-lock.json; deploy/setup.sh runs `npm ci` there).  Skips (77)
# only when node is not installed.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 NPMDIR OPENAPI" >&2
    exit 2
fi
npmdir=$1
openapi=$2

if ! command -v node >/dev/null 2>&1; then
    echo "openapi_lint: no node on PATH (deploy/setup.sh installs nodejs): skipped"
    exit 77
fi
redocly=$npmdir/node_modules/.bin/redocly
if [ ! -x "$redocly" ]; then
    echo "openapi_lint: no $redocly: run \`npm ci\` in $npmdir (deploy/setup.sh does)" >&2
    exit 1
fi
exec "$redocly" lint --extends recommended-strict --format stylish "$openapi"

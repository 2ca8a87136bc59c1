# Custom::ReleaseArtifacts: copies a release's Lambda zips and state machine definition from
# <ReleaseLocation>/<Version>/ into <Version>/ in the stack's own bucket, each checked against the SHA-256
# written into the template at release time.
# scripts/release.py embeds this file, unchanged, as the inline code (Code.ZipFile) of the release template.
# Custom resource protocol: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
import hashlib
import json
import posixpath
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3

# GitHub answers a release download (github.com/<owner>/<repo>/releases/download/<tag>/<file>) with a 302 to a
# pre-signed URL on its release-asset storage: objects.githubusercontent.com, since 2025 also
# release-assets.githubusercontent.com. Those two hosts, over HTTPS, are the only redirect targets outside
# ReleaseLocation itself that a github.com location may use.
GITHUB_ASSET_HOSTS = ("objects.githubusercontent.com", "release-assets.githubusercontent.com")
REQUEST_TIMEOUT = 30  # seconds per connection attempt and per read
MAX_BYTES = 256 * 1024 * 1024  # Lambda's limit on an unzipped function is 250 MB
RESPONSE_LIMIT = 4096  # CloudFormation rejects a response body over 4,096 bytes


def allowed(location, url):
    loc, new = urllib.parse.urlsplit(location), urllib.parse.urlsplit(url)
    if (new.scheme, new.netloc) == (loc.scheme, loc.netloc):
        # Decoded first: a server resolves %2e%2e as "..".
        return posixpath.normpath(urllib.parse.unquote(new.path)).startswith(loc.path.rstrip("/") + "/")
    return loc.netloc == "github.com" and new.scheme == "https" and new.hostname in GITHUB_ASSET_HOSTS


class Redirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, location):
        super().__init__()
        self.location = location

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not allowed(self.location, newurl):
            host = urllib.parse.urlsplit(newurl).netloc
            raise ValueError(f"redirect to {host} refused: outside the release location {self.location}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(location, name, deadline):
    url = location.rstrip("/") + "/" + name
    opener = urllib.request.build_opener(Redirects(location))
    timeout = max(1.0, min(REQUEST_TIMEOUT, deadline - time.time()))
    try:
        with opener.open(url, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise ValueError(f"{name}: HTTP {e.code} from {url}") from None
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ValueError(f"{name}: cannot download {url}: {getattr(e, 'reason', e)}") from None
    if len(body) > MAX_BYTES:
        raise ValueError(f"{name}: larger than {MAX_BYTES} bytes at {url}")
    return body


def copy(props, deadline):
    bucket, version = props["BucketName"], props["Version"]
    location = props["ReleaseLocation"].rstrip("/") + "/" + version
    files = [(f["Name"], f["Sha256"].lower()) for f in props["Files"]]
    # Every file is downloaded and checked before the first PutObject: a refusal leaves the bucket as it was,
    # so nothing half copied stands in the way of the bucket's deletion on rollback.
    bodies = []
    for name, want in files:
        if time.time() > deadline:
            raise ValueError(f"{name}: out of time before the download")
        body = fetch(location, name, deadline)
        got = hashlib.sha256(body).hexdigest()
        if got != want:
            raise ValueError(f"{name}: SHA-256 {got} does not match the template's {want} (from {location})")
        bodies.append((name, body))
    s3 = boto3.client("s3")
    for name, body in bodies:
        s3.put_object(Bucket=bucket, Key=f"{version}/{name}", Body=body)
    return f"copied {len(bodies)} file(s) from {location} to s3://{bucket}/{version}/"


def respond(event, status, reason, physical_id, data):
    body = {
        "Status": status,
        "PhysicalResourceId": physical_id,
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "Data": data,
    }
    room = RESPONSE_LIMIT - len(json.dumps(dict(body, Reason="")).encode()) - 16
    body["Reason"] = reason if len(reason) <= room else reason[: max(room, 0) - 3] + "..."
    payload = json.dumps(body).encode()
    request = urllib.request.Request(event["ResponseURL"], data=payload, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(payload))})
    for attempt in range(3):  # CloudFormation waits until ServiceTimeout for an answer that never lands
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                response.read()
                return
        except OSError:
            if attempt == 2:
                raise
            time.sleep(2)


def handler(event, context):
    # Answer 15 s before the Lambda's own deadline so CloudFormation always hears back.
    left_ms = context.get_remaining_time_in_millis() if context else 300_000
    deadline = time.time() + left_ms / 1000 - 15
    props = event.get("ResourceProperties", {})
    physical_id = event.get("PhysicalResourceId") or event.get("LogicalResourceId", "ReleaseArtifacts")
    status, reason, data = "SUCCESS", "", {}
    if event.get("RequestType") == "Delete":
        # The objects stay: the stack's StackCleanup empties the bucket (this role may only PutObject).
        reason = "nothing to do on Delete"
    else:
        try:
            physical_id = f"{props['BucketName']}/{props['Version']}"
            reason = copy(props, deadline)
            data = {"BucketName": props["BucketName"]}
        except KeyError as e:
            status, reason = "FAILED", f"malformed request: property {e} missing"
        except Exception as e:  # every failure becomes a FAILED answer naming it
            status, reason = "FAILED", str(e) or type(e).__name__
    print(json.dumps({"RequestType": event.get("RequestType"), "Status": status, "Reason": reason}))
    respond(event, status, reason, physical_id, data)

"""Runs moto's server with S3 event notifications in the shape real S3 sends.

moto (pinned in infra/requirements-moto.txt, everything it pulls in pinned in
infra/constraints.txt) builds S3 event records without `userIdentity`, `requestParameters`,
`responseElements` and `s3.object.sequencer`, which real S3 always sends and which
aws_lambda_events' `S3Event` requires; and it encodes the object key with `quote_plus`, which
turns `/` into `%2F` where real S3 keeps it.

Real S3 writes the key form-encoded (application/x-www-form-urlencoded: a space becomes `+`,
"red flower.jpg" becomes "red+flower.jpg"), keeps `/`, and percent-encodes other reserved
characters and non-ASCII UTF-8 bytes (`:` -> `%3A`, `=` -> `%3D`, `(` -> `%28`, `+` -> `%2B`,
`ä` -> `%C3%A4`). This launcher wraps moto's event builder, `moto.s3.notifications._get_s3_event`
(the one place every S3 -> SQS/SNS/Lambda notification body is built, looked up by name when an
event is sent), so those records come out in the real shape, then runs moto's server exactly as
`moto_server` would. It refuses to start when that function is gone or changed shape (moto was
upgraded): re-check the patch point before changing the pin.

Usage:
    python infra/moto_launcher.py -H 127.0.0.1 -p PORT    run the server (moto_server's flags)
    python infra/moto_launcher.py --check                 verify the patch applies, then exit
"""

import base64
import inspect
import secrets
import sys
import threading
import time
from typing import Any

import moto
import moto.s3.notifications as notifications

PATCH_POINT = "moto.s3.notifications._get_s3_event"
EXPECTED_PARAMETERS = ["event_name", "bucket", "key", "notification_id"]

# Characters real S3 leaves as they are in an event's object key: ASCII letters and digits,
# the characters a form encoder leaves (`-`, `_`, `.`, `*`), and `/`.
_KEEP = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.*/"
)


def _fail(message: str) -> None:
    sys.exit(
        f"moto_launcher: {message}; moto {moto.__version__} does not match the version this "
        f"launcher was written for (infra/requirements-moto.txt). Find the function that builds "
        f"S3 event records in the installed moto and update infra/moto_launcher.py."
    )


def _check_patch_point() -> Any:
    original = getattr(notifications, "_get_s3_event", None)
    if original is None or not callable(original):
        _fail(f"{PATCH_POINT} is gone")
    parameters = list(inspect.signature(original).parameters)
    if parameters != EXPECTED_PARAMETERS:
        _fail(f"{PATCH_POINT} takes {parameters}, expected {EXPECTED_PARAMETERS}")
    send_event = getattr(notifications, "send_event", None)
    if send_event is None or "_get_s3_event" not in send_event.__code__.co_names:
        _fail(
            "moto.s3.notifications.send_event no longer builds records with _get_s3_event"
        )
    return original


def encode_key(key: str) -> str:
    """An object key as real S3 writes it in an event: form-encoded, `/` kept."""
    out = []
    for byte in key.encode("utf-8"):
        if byte in _KEEP:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


class _Sequencer:
    """Hex strings that grow with every event, as S3's `sequencer` does for one key.

    Real S3 only promises ordering for events of the same key (compare after padding to the same
    length); these are globally increasing, which satisfies that.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return f"{self._last:018X}"


_sequencer = _Sequencer()
_principal = "AWS:AIDA" + secrets.token_hex(8).upper()
_owner = "A" + secrets.token_hex(6).upper()


def _request_id() -> str:
    return secrets.token_hex(8).upper()


def _host_id() -> str:
    return base64.b64encode(secrets.token_bytes(57)).decode("ascii")


def _source_ip() -> str:
    try:
        from flask import has_request_context, request

        if has_request_context() and request.remote_addr:
            return str(request.remote_addr)
    except ImportError:
        pass
    return "127.0.0.1"


def install() -> None:
    """Replaces moto's S3 event builder with one that adds what real S3 sends."""
    original = _check_patch_point()

    def real_s3_event(
        event_name: str, bucket: Any, key: Any, notification_id: str
    ) -> dict[str, list[dict[str, Any]]]:
        event = original(event_name, bucket, key, notification_id)
        records = []
        for built in event["Records"]:
            # Real S3's field order: the request's fields before `s3`.
            record = {k: v for k, v in built.items() if k != "s3"}
            record["userIdentity"] = {"principalId": _principal}
            record["requestParameters"] = {"sourceIPAddress": _source_ip()}
            record["responseElements"] = {
                "x-amz-request-id": _request_id(),
                "x-amz-id-2": _host_id(),
            }
            s3 = record["s3"] = built["s3"]
            records.append(record)
            s3["bucket"]["ownerIdentity"] = {"principalId": _owner}
            obj = s3["object"]
            obj["key"] = encode_key(key.name)
            version_id = getattr(key, "version_id", None)
            if version_id and version_id != "null":
                obj["versionId"] = version_id
            obj["sequencer"] = _sequencer.next()
        event["Records"] = records
        return event

    real_s3_event.__wrapped__ = original  # type: ignore[attr-defined]
    notifications._get_s3_event = real_s3_event


def _self_check() -> None:
    """Builds one event through the patched builder and checks its shape."""

    class Bucket:
        name = "bucket"
        arn = "arn:aws:s3:::bucket"
        region_name = "us-east-1"

    class Key:
        name = "migrations/Sales DB/full+1 (ä).bak"
        etag = '"d41d8cd98f00b204e9800998ecf8427e"'
        size = 0
        version_id = "null"

    event = notifications._get_s3_event("s3:ObjectCreated:Put", Bucket(), Key(), "id")
    record = event["Records"][0]
    for field in ("userIdentity", "requestParameters", "responseElements", "eventTime"):
        if field not in record:
            _fail(f"the patched event has no {field}")
    obj = record["s3"]["object"]
    expected = "migrations/Sales+DB/full%2B1+%28%C3%A4%29.bak"
    if obj["key"] != expected or "sequencer" not in obj:
        _fail(f"the patched event's object is {obj}, expected key {expected}")
    print(f"moto {moto.__version__}: {PATCH_POINT} patched, S3 events in the real shape")


install()

if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        _self_check()
    else:
        from moto.server import main

        print(
            f"moto_launcher: moto {moto.__version__}, {PATCH_POINT} patched",
            file=sys.stderr,
            flush=True,
        )
        main(sys.argv[1:])

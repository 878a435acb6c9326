"""Starts moto's server with S3 event notifications in the shape real S3 sends.

moto (pinned in infra/constraints.txt) builds S3 event records without `userIdentity`,
`requestParameters`, `responseElements` and `sequencer`, which real S3 always sends and
aws_lambda_events' S3Event requires, and it encodes `/` in keys as `%2F` where real S3 keeps
it (S3 form-encodes keys: a space becomes `+`). This wraps moto's event builder before the
server starts, then runs the server exactly as `moto_server` would.

Usage: python infra/moto_launcher.py -H 127.0.0.1 -p PORT
"""

import itertools
import sys
from urllib.parse import quote_plus

import moto.s3.notifications as notifications

if not hasattr(notifications, "_get_s3_event"):
    sys.exit(
        "moto_launcher: moto.s3.notifications._get_s3_event is gone; "
        "the pinned moto version changed (see infra/constraints.txt)"
    )

_original = notifications._get_s3_event
_sequence = itertools.count(0x0055AED6DCD90281E5)


def _real_s3_event(event_name, bucket, key, notification_id):
    event = _original(event_name, bucket, key, notification_id)
    for record in event.get("Records", []):
        record.setdefault("userIdentity", {"principalId": "AWS:AIDALOCALSTACKUSER"})
        record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        record.setdefault(
            "responseElements",
            {
                "x-amz-request-id": "LOCAL%016X" % next(_sequence),
                "x-amz-id-2": "bakdrop-local-moto",
            },
        )
        s3 = record.setdefault("s3", {})
        s3.setdefault("bucket", {}).setdefault(
            "ownerIdentity", {"principalId": "LOCALOWNER"}
        )
        obj = s3.setdefault("object", {})
        obj["key"] = quote_plus(key.name, safe="/")
        obj["sequencer"] = "%018X" % next(_sequence)
        version_id = getattr(key, "version_id", None)
        if version_id and version_id != "null":
            obj["versionId"] = version_id
    return event


notifications._get_s3_event = _real_s3_event

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])

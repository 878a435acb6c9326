#!/usr/bin/env python3
"""A Lambda function in Python on the Runtime API, with no runtime library in between.

The cold-start benchmark's peer: with PEER_IMPORTS=boto3 it does at init what the Python
equivalent of validate-upload would (import boto3, create the S3, SQS and DynamoDB clients),
then polls for invocations exactly as bakdrop's Rust functions do. Without it, it is a tiny
function that the local Lambda service's own tests run: it answers {"echo": event}, or reports
an error of type "Refused" when the event has "fail".
"""
import json
import os
import urllib.request

if os.environ.get("PEER_IMPORTS") == "boto3":
    import boto3

    CLIENTS = [boto3.client(name) for name in ("s3", "sqs", "dynamodb")]

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(request).close()


while True:
    with urllib.request.urlopen(API + "next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.load(response)
    if isinstance(event, dict) and event.get("fail"):
        post(API + request_id + "/error", {"errorType": "Refused", "errorMessage": str(event["fail"])})
    else:
        post(API + request_id + "/response", {"echo": event})

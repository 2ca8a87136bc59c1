"""The peer of the notify Lambda for `make bench`: the same SNS publish (subject, body, message attributes)
written the usual Python way with boto3, run through awslambdaric exactly like a python3.x Lambda runtime."""
import json
import os

import boto3

TOPIC_ARN = os.environ["TOPIC_ARN"]
sns = boto3.client("sns")


def handler(event, context):
    state = event.get("state") or {}
    task = str(state.get("replicationTaskArn", "unknown")).rsplit(":", 1)[-1]
    subject = f"[DMS {task}] Migration started"
    body = "The migration workflow has started.\n\n" + json.dumps(state, indent=2)
    sns.publish(
        TopicArn=TOPIC_ARN,
        Subject=subject,
        Message=body,
        MessageAttributes={
            "event": {"DataType": "String", "StringValue": event.get("event", "started")},
            "executionId": {"DataType": "String", "StringValue": event.get("executionId", "local")},
        },
    )
    return state

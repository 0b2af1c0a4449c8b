"""The audit trail through the real AWS CLI: `aws cloudtrail lookup-events` against Berth."""

import json

from ecrlib import ROOT_AKID, ROOT_SECRET, aws_cli, cli_error_line, cli_json


def cloudtrail_cli(server, *args, akid=ROOT_AKID, secret=ROOT_SECRET):
    return aws_cli(server, *args, akid=akid, secret=secret, service="cloudtrail")


def test_lookup_events_answers_and_validates(server):
    out = cli_json(
        cloudtrail_cli(
            server,
            "lookup-events",
            "--lookup-attributes",
            "AttributeKey=EventName,AttributeValue=NoSuchOperation",
        )
    )
    assert out == {"Events": []}
    res = cloudtrail_cli(
        server,
        "lookup-events",
        "--start-time",
        "2024-01-02T00:00:00Z",
        "--end-time",
        "2024-01-01T00:00:00Z",
    )
    assert res.returncode == 255, res
    assert cli_error_line(
        "InvalidTimeRangeException", "LookupEvents", "Start time must not be after end time."
    ) in res.stderr


def test_calls_are_looked_up_with_the_cli_across_pages(server):
    """Calls made with the AWS CLI are recorded; `aws cloudtrail lookup-events` finds them by
    attribute and time range, following NextToken page by page (--page-size 1)."""
    import datetime
    import time

    from ecrlib import unique

    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    names = [unique("audit") for _ in range(3)]
    for name in names:
        cli_json(aws_cli(server, "create-repository", "--repository-name", name))
    found = {}
    for _ in range(50):
        out = cli_json(
            cloudtrail_cli(
                server,
                "lookup-events",
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=CreateRepository",
                "--start-time",
                since,
                "--page-size",
                "1",
            )
        )
        found = {
            json.loads(e["CloudTrailEvent"])["requestParameters"]["repositoryName"]: e for e in out["Events"]
        }
        if all(n in found for n in names):
            break
        time.sleep(0.1)
    assert all(n in found for n in names), found.keys()
    e = found[names[0]]
    record = json.loads(e["CloudTrailEvent"])
    assert e["EventName"] == "CreateRepository"
    assert e["EventSource"] == "ecr.amazonaws.com"
    assert e["ReadOnly"] == "false"
    assert record["eventSource"] == "ecr.amazonaws.com"
    assert record["userAgent"].startswith("aws-cli/"), record["userAgent"]
    assert record["responseElements"]["repository"]["repositoryName"] == names[0]
    assert record["userIdentity"]["type"] == "Root"

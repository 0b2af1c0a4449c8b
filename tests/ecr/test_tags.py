"""TagResource / UntagResource / ListTagsForResource, tag limits."""

from ecrlib import (
    arn_of,
    assert_absent,
    check_error,
    client_error,
    not_found_msg,
    unique,
)


def tags_of(ecr, arn):
    resp = ecr.list_tags_for_resource(resourceArn=arn)
    assert set(resp) == {"tags", "ResponseMetadata"}
    return {t["Key"]: t["Value"] for t in resp["tags"]}, resp["tags"]


def tag_list(d):
    return [{"Key": k, "Value": v} for k, v in d.items()]


def test_list_tags_empty(ecr, repo):
    d, raw = tags_of(ecr, arn_of(repo))
    assert raw == []


def test_tag_untag_roundtrip(ecr, repo):
    arn = arn_of(repo)
    resp = ecr.tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    assert set(resp) == {"ResponseMetadata"}  # empty output structure
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    d, raw = tags_of(ecr, arn)
    assert d == {"a": "1", "b": "2"} and len(raw) == 2

    # overwrite one value, add one
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "b", "Value": "two"}, {"Key": "c", "Value": ""}])
    d, raw = tags_of(ecr, arn)
    assert d == {"a": "1", "b": "two", "c": ""} and len(raw) == 3

    # keys are case sensitive
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "A", "Value": "upper"}])
    d, _ = tags_of(ecr, arn)
    assert d == {"a": "1", "A": "upper", "b": "two", "c": ""}

    resp = ecr.untag_resource(resourceArn=arn, tagKeys=["a", "c", "not-there"])
    assert set(resp) == {"ResponseMetadata"}
    d, _ = tags_of(ecr, arn)
    assert d == {"A": "upper", "b": "two"}

    ecr.untag_resource(resourceArn=arn, tagKeys=["A", "b"])
    _, raw = tags_of(ecr, arn)
    assert raw == []


def test_create_with_tags_then_list(ecr):
    name = unique("ctags")
    tags = {"team": "platform", "cost-center": "42", "k:with/odd+chars=@.": "v a l"}
    repo = ecr.create_repository(repositoryName=name, tags=tag_list(tags))["repository"]
    d, raw = tags_of(ecr, repo["repositoryArn"])
    assert d == tags and len(raw) == 3


def test_tags_are_per_repository(ecr):
    a, b = unique("ta"), unique("tb")
    ecr.create_repository(repositoryName=a, tags=[{"Key": "owner", "Value": "a"}])
    ecr.create_repository(repositoryName=b)
    assert tags_of(ecr, arn_of(b))[1] == []
    ecr.tag_resource(resourceArn=arn_of(b), tags=[{"Key": "owner", "Value": "b"}])
    assert tags_of(ecr, arn_of(a))[0] == {"owner": "a"}
    assert tags_of(ecr, arn_of(b))[0] == {"owner": "b"}


def test_tags_gone_after_delete_and_recreate(ecr):
    name = unique("tdel")
    ecr.create_repository(repositoryName=name, tags=[{"Key": "x", "Value": "y"}])
    ecr.delete_repository(repositoryName=name)
    ecr.create_repository(repositoryName=name)
    assert tags_of(ecr, arn_of(name))[1] == []


# ------------------------------------------------------------------------------------------
# missing / malformed resources


def test_tag_resource_missing_repository(ecr):
    name = unique("notag")
    arn = arn_of(name)
    err = client_error(ecr.tag_resource, resourceArn=arn, tags=[{"Key": "a", "Value": "b"}])
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))
    err = client_error(ecr.untag_resource, resourceArn=arn, tagKeys=["a"])
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))
    err = client_error(ecr.list_tags_for_resource, resourceArn=arn)
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))
    assert_absent(ecr, name)


def test_tag_resource_nested_missing_repository(ecr):
    name = f"{unique('ns')}/missing"
    err = client_error(ecr.list_tags_for_resource, resourceArn=arn_of(name))
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_tag_resource_malformed_arn(ecr):
    for arn in ["not-an-arn", "arn:aws:s3:::bucket", "arn:aws:ecr:us-east-1:111111111111:repository"]:
        err = client_error(ecr.tag_resource, resourceArn=arn, tags=[{"Key": "a", "Value": "b"}])
        check_error(err, "InvalidParameterException")
        err = client_error(ecr.list_tags_for_resource, resourceArn=arn)
        check_error(err, "InvalidParameterException")


# ------------------------------------------------------------------------------------------
# limits: 50 tags, key <= 128, value <= 256


def test_create_with_50_tags_ok_51_too_many(ecr):
    ok = unique("t50")
    tags = [{"Key": f"k{i}", "Value": f"v{i}"} for i in range(50)]
    repo = ecr.create_repository(repositoryName=ok, tags=tags)["repository"]
    assert len(tags_of(ecr, repo["repositoryArn"])[1]) == 50

    bad = unique("t51")
    err = client_error(
        ecr.create_repository,
        repositoryName=bad,
        tags=[{"Key": f"k{i}", "Value": f"v{i}"} for i in range(51)],
    )
    check_error(err, "TooManyTagsException")
    assert_absent(ecr, bad)


def test_tag_resource_over_50_total(ecr, repo):
    arn = arn_of(repo)
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(30)])
    err = client_error(
        ecr.tag_resource, resourceArn=arn, tags=[{"Key": f"n{i}", "Value": "v"} for i in range(21)]
    )
    check_error(err, "TooManyTagsException")
    d, raw = tags_of(ecr, arn)
    assert len(raw) == 30 and set(d) == {f"k{i}" for i in range(30)}  # nothing applied
    # reaching exactly 50 is fine, and overwriting existing keys does not count twice
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"n{i}", "Value": "v"} for i in range(20)])
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "w"} for i in range(30)])
    d, raw = tags_of(ecr, arn)
    assert len(raw) == 50 and d["k0"] == "w"
    err = client_error(ecr.tag_resource, resourceArn=arn, tags=[{"Key": "one-more", "Value": "v"}])
    check_error(err, "TooManyTagsException")
    assert len(tags_of(ecr, arn)[1]) == 50


def test_tag_key_and_value_lengths(ecr, repo):
    arn = arn_of(repo)
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "k" * 128, "Value": "v" * 256}])
    assert tags_of(ecr, arn)[0] == {"k" * 128: "v" * 256}

    err = client_error(ecr.tag_resource, resourceArn=arn, tags=[{"Key": "k" * 129, "Value": "v"}])
    check_error(err, "InvalidTagParameterException")
    err = client_error(ecr.tag_resource, resourceArn=arn, tags=[{"Key": "k", "Value": "v" * 257}])
    check_error(err, "InvalidTagParameterException")
    assert tags_of(ecr, arn)[0] == {"k" * 128: "v" * 256}


def test_create_with_invalid_tag(ecr):
    for tags in ([{"Key": "k" * 129, "Value": "v"}], [{"Key": "k", "Value": "v" * 257}]):
        name = unique("badtag")
        err = client_error(ecr.create_repository, repositoryName=name, tags=tags)
        check_error(err, "InvalidTagParameterException")
        assert_absent(ecr, name)

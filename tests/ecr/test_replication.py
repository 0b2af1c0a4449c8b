"""Replication within one deployment (issue 14): PutReplicationConfiguration / DescribeRegistry /
DescribeImageReplicationStatus through boto3, and images copied across the regions and accounts
the session server hosts (us-east-1 and eu-west-1; accounts of their own, so the other test
files' pushes never replicate).

Expected shapes and constraints come from botocore's model (ecr/2015-09-21/service-2.json) and
the ECR user guide's replication pages (only pushes after the configuration replicate; an image
replicates once per push, never onward; cross-account needs the destination's registry policy).
"""

import json
import time

import pytest
from botocore.exceptions import ClientError

from ecrlib import OTHER_REGION, REGION, make_client, unique
from imagelib import api_image, artifact, index_of, oci_image, put, upload_blobs

SRC = "515151515151"
DST = "525252525252"
LOOP = "535353535353"


def clients(server, account, region):
    akid, secret = server.account(account)
    return make_client(server, region=region, akid=akid, secret=secret)


@pytest.fixture(scope="module")
def src(server):
    return clients(server, SRC, REGION)


@pytest.fixture(scope="module")
def src_eu(server):
    return clients(server, SRC, OTHER_REGION)


@pytest.fixture(scope="module")
def dst(server):
    return clients(server, DST, REGION)


def dest(region, account):
    return {"region": region, "registryId": account}


def wait_status(client, repo, digest, want, timeout=60):
    """The replication statuses of an image once none is IN_PROGRESS (and `want` of them)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = client.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": digest})
        st = last["replicationStatuses"]
        if len(st) >= want and all(s["status"] != "IN_PROGRESS" for s in st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"replication of {repo}@{digest} did not finish: {last}")


def manifest_of(client, repo, digest):
    r = client.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": digest}],
                               acceptedMediaTypes=["application/vnd.oci.image.manifest.v1+json",
                                                   "application/vnd.oci.image.index.v1+json"])
    assert r["failures"] == [], r
    return r["images"][0]["imageManifest"]


def configure(client, rules):
    out = client.put_replication_configuration(replicationConfiguration={"rules": rules})
    assert out["replicationConfiguration"] == {"rules": rules}
    return out


def test_describe_registry_before_any_configuration(server):
    c = clients(server, LOOP, REGION)
    out = c.describe_registry()
    assert out["registryId"] == LOOP
    assert out["replicationConfiguration"] == {"rules": []}


def test_configuration_round_trips(server):
    c = clients(server, "545454545454", REGION)
    rules = [
        {"destinations": [dest(OTHER_REGION, "545454545454")],
         "repositoryFilters": [{"filter": "prod", "filterType": "PREFIX_MATCH"}]},
        {"destinations": [dest(OTHER_REGION, DST), dest(REGION, DST)]},
    ]
    configure(c, rules)
    assert c.describe_registry()["replicationConfiguration"] == {"rules": rules}
    # An empty rule list turns replication off.
    configure(c, [])
    assert c.describe_registry()["replicationConfiguration"] == {"rules": []}
    # Each region of the deployment has its own configuration.
    assert clients(server, "545454545454", OTHER_REGION).describe_registry()["replicationConfiguration"] == {"rules": []}


def server_error(client, rules):
    with pytest.raises(ClientError) as e:
        client.put_replication_configuration(replicationConfiguration={"rules": rules})
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_invalid_configurations_are_refused_as_ecr_does(server):
    akid, secret = server.account("545454545454")
    c = make_client(server, akid=akid, secret=secret, validate=False)
    one = [dest(OTHER_REGION, DST)]
    code, msg = server_error(c, [{"destinations": one}] * 11)
    assert code == "ValidationException", msg
    assert "less than or equal to 10" in msg
    code, msg = server_error(c, [{"destinations": [dest("EU_WEST", DST)]}])
    assert code == "ValidationException" and "[0-9a-z-]{2,25}" in msg, msg
    code, msg = server_error(c, [{"destinations": [dest(OTHER_REGION, "12345")]}])
    assert code == "ValidationException" and "[0-9]{12}" in msg, msg
    code, msg = server_error(
        c, [{"destinations": one, "repositoryFilters": [{"filter": "prod", "filterType": "WILDCARD"}]}]
    )
    assert code == "ValidationException" and "PREFIX_MATCH" in msg, msg
    code, msg = server_error(
        c, [{"destinations": one, "repositoryFilters": [{"filter": "Prod/*", "filterType": "PREFIX_MATCH"}]}]
    )
    assert code == "ValidationException", msg
    code, msg = server_error(c, [{"destinations": one, "repositoryFilters": []}])
    assert code == "ValidationException", msg
    code, msg = server_error(c, [{"destinations": []}])
    assert code == "InvalidParameterException", msg
    # The source registry itself is no destination.
    code, msg = server_error(c, [{"destinations": [dest(REGION, "545454545454")]}])
    assert code == "InvalidParameterException" and "source registry" in msg, msg
    # A region neither this deployment nor a peer hosts.
    code, msg = server_error(c, [{"destinations": [dest("ap-south-2", DST)]}])
    assert code == "InvalidParameterException" and "ap-south-2" in msg, msg
    # At most 25 unique destinations across all rules.
    many = [dest(OTHER_REGION, f"{700000000000 + i}") for i in range(26)]
    code, msg = server_error(c, [{"destinations": many[:13]}, {"destinations": many[13:]}])
    assert code == "InvalidParameterException" and "25" in msg, msg
    # Nothing of the refused ones was stored.
    assert c.describe_registry()["replicationConfiguration"] == {"rules": []}


def test_status_of_a_missing_image_or_repository(src):
    with pytest.raises(ClientError) as e:
        src.describe_image_replication_status(repositoryName=unique("nope"), imageId={"imageTag": "v1"})
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    repo = unique("rep/miss")
    src.create_repository(repositoryName=repo)
    with pytest.raises(ClientError) as e:
        src.describe_image_replication_status(repositoryName=repo, imageId={"imageTag": "v1"})
    assert e.value.response["Error"]["Code"] == "ImageNotFoundException"


def test_images_replicate_across_regions_with_prefix_filters(src, src_eu):
    configure(src, [{"destinations": [dest(OTHER_REGION, SRC)],
                     "repositoryFilters": [{"filter": "rep/prod", "filterType": "PREFIX_MATCH"}]}])
    prod, dev = unique("rep/prod"), unique("rep/dev")
    for r in (prod, dev):
        src.create_repository(repositoryName=r, imageTagMutability="IMMUTABLE",
                              imageScanningConfiguration={"scanOnPush": True})
    built = api_image(src, prod, tag="v1")
    other = api_image(src, dev, tag="v1")
    st = wait_status(src, prod, built.digest, 1)
    assert st == [{"region": OTHER_REGION, "registryId": SRC, "status": "COMPLETE"}]
    # The repository was created in the destination with the source's settings.
    repo = src_eu.describe_repositories(repositoryNames=[prod])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["repositoryArn"] == f"arn:aws:ecr:{OTHER_REGION}:{SRC}:repository/{prod}"
    # The same bytes under the same digest and tag, every blob available.
    assert manifest_of(src_eu, prod, built.digest) == built.manifest
    tags = src_eu.describe_images(repositoryName=prod)["imageDetails"][0]["imageTags"]
    assert tags == ["v1"]
    layers = [x["digest"] for x in json.loads(built.manifest)["layers"]]
    avail = src_eu.batch_check_layer_availability(repositoryName=prod, layerDigests=layers)["layers"]
    assert {a["layerAvailability"] for a in avail} == {"AVAILABLE"}
    # The filtered-out repository is not replicated.
    assert src.describe_image_replication_status(repositoryName=dev, imageId={"imageTag": "v1"})[
        "replicationStatuses"] == []
    with pytest.raises(ClientError) as e:
        src_eu.describe_repositories(repositoryNames=[dev])
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    del other


def test_pushes_before_the_configuration_do_not_replicate(server):
    acct = "555555555556"
    c = clients(server, acct, REGION)
    repo = unique("rep/before")
    c.create_repository(repositoryName=repo)
    before = api_image(c, repo, tag="old")
    time.sleep(0.05)
    configure(c, [{"destinations": [dest(OTHER_REGION, acct)]}])
    after = api_image(c, repo, tag="new")
    wait_status(c, repo, after.digest, 1)
    assert c.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": before.digest})[
        "replicationStatuses"] == []
    eu = clients(server, acct, OTHER_REGION)
    digests = {d["imageDigest"] for d in eu.describe_images(repositoryName=repo)["imageDetails"]}
    assert digests == {after.digest}


def test_tag_moves_replicate(src, src_eu):
    configure(src, [{"destinations": [dest(OTHER_REGION, SRC)],
                     "repositoryFilters": [{"filter": "rep/", "filterType": "PREFIX_MATCH"}]}])
    repo = unique("rep/moves")
    src.create_repository(repositoryName=repo)
    a = api_image(src, repo, tag="latest")
    wait_status(src, repo, a.digest, 1)
    b = api_image(src, repo, tag="latest")
    wait_status(src, repo, b.digest, 1)
    by_tag = src_eu.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])["images"][0]
    assert by_tag["imageId"]["imageDigest"] == b.digest
    # Moving the tag back to an image the destination holds replicates the move alone.
    put(src, repo, a, tag="latest")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = src_eu.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])["images"][0]
        if got["imageId"]["imageDigest"] == a.digest:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the tag move did not replicate")


def test_an_index_with_its_children_and_a_signature_replicates_whole(src, src_eu):
    configure(src, [{"destinations": [dest(OTHER_REGION, SRC)],
                     "repositoryFilters": [{"filter": "rep/", "filterType": "PREFIX_MATCH"}]}])
    repo = unique("rep/multi")
    src.create_repository(repositoryName=repo)
    kids = [oci_image(1), oci_image(1)]
    for k in kids:
        upload_blobs(src, repo, k)
        put(src, repo, k)
    idx = index_of(kids)
    put(src, repo, idx, tag="v1")
    sig = artifact(idx, "application/vnd.dev.cosign.artifact.sig.v1+json")
    upload_blobs(src, repo, sig)
    put(src, repo, sig)
    wait_status(src, repo, idx.digest, 1)
    wait_status(src, repo, sig.digest, 1)
    for k in kids:
        assert manifest_of(src_eu, repo, k.digest) == k.manifest
    assert manifest_of(src_eu, repo, idx.digest) == idx.manifest
    assert manifest_of(src_eu, repo, sig.digest) == sig.manifest


def test_cross_account_needs_the_destination_registry_policy(server, src, dst):
    configure(src, [{"destinations": [dest(REGION, DST)],
                     "repositoryFilters": [{"filter": "xacct/", "filterType": "PREFIX_MATCH"}]}])
    repo = unique("xacct/app")
    src.create_repository(repositoryName=repo)
    first = api_image(src, repo, tag="v1")
    st = wait_status(src, repo, first.digest, 1)
    assert st == [{"region": REGION, "registryId": DST, "status": "FAILED", "failureCode": "ACCESS_DENIED"}]

    def policy(actions):
        return json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "ReplicationAccessCrossAccount", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{SRC}:root"}, "Action": actions,
            "Resource": [f"arn:aws:ecr:{REGION}:{DST}:repository/*"]}]})

    # ReplicateImage alone: the repository must already exist in the destination.
    dst.put_registry_policy(policyText=policy(["ecr:ReplicateImage"]))
    second = api_image(src, repo, tag="v2")
    st = wait_status(src, repo, second.digest, 1)
    assert st == [{"region": REGION, "registryId": DST, "status": "FAILED", "failureCode": "REPOSITORY_NOT_FOUND"}]
    dst.put_registry_policy(policyText=policy(["ecr:ReplicateImage", "ecr:CreateRepository"]))
    third = api_image(src, repo, tag="v3")
    st = wait_status(src, repo, third.digest, 1)
    assert st == [{"region": REGION, "registryId": DST, "status": "COMPLETE"}]
    assert manifest_of(dst, repo, third.digest) == third.manifest
    dst.delete_registry_policy()


def test_replicated_images_are_not_replicated_onward(server):
    # us-east-1 -> eu-west-1 of the same account, and eu-west-1 -> another account: a push to
    # us-east-1 reaches eu-west-1 only (ECR replicates once per push).
    a, b = "565656565656", "575757575757"
    us, eu = clients(server, a, REGION), clients(server, a, OTHER_REGION)
    other = clients(server, b, OTHER_REGION)
    other.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{a}:root"},
        "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"],
        "Resource": f"arn:aws:ecr:{OTHER_REGION}:{b}:repository/*"}]}))
    configure(us, [{"destinations": [dest(OTHER_REGION, a)]}])
    configure(eu, [{"destinations": [dest(OTHER_REGION, b)]}])
    repo = unique("rep/chain")
    us.create_repository(repositoryName=repo)
    img = api_image(us, repo, tag="v1")
    wait_status(us, repo, img.digest, 1)
    assert manifest_of(eu, repo, img.digest) == img.manifest
    time.sleep(1.5)
    assert eu.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": img.digest})[
        "replicationStatuses"] == []
    with pytest.raises(ClientError) as e:
        other.describe_repositories(repositoryNames=[repo])
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    # A push made in eu-west-1 itself does replicate from there.
    own = api_image(eu, repo, tag="eu")
    st = wait_status(eu, repo, own.digest, 1)
    assert st == [{"region": OTHER_REGION, "registryId": b, "status": "COMPLETE"}]
    assert manifest_of(other, repo, own.digest) == own.manifest


def test_the_destination_replication_template_applies(server):
    acct = "585858585858"
    us, eu = clients(server, acct, REGION), clients(server, acct, OTHER_REGION)
    eu.create_repository_creation_template(
        prefix="tpl", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "team", "Value": "platform"}],
        lifecyclePolicy=json.dumps({"rules": [{"rulePriority": 1, "selection": {
            "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5},
            "action": {"type": "expire"}}]}))
    configure(us, [{"destinations": [dest(OTHER_REGION, acct)]}])
    templated, plain = unique("tpl/app"), unique("other/app")
    for r in (templated, plain):
        us.create_repository(repositoryName=r)
        img = api_image(us, r, tag="v1")
        assert wait_status(us, r, img.digest, 1)[0]["status"] == "COMPLETE"
    repo = eu.describe_repositories(repositoryNames=[templated])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    tags = eu.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert tags == [{"Key": "team", "Value": "platform"}]
    assert eu.get_lifecycle_policy(repositoryName=templated)["lifecyclePolicyText"]
    # No template applies: the source's settings.
    other = eu.describe_repositories(repositoryNames=[plain])["repositories"][0]
    assert other["imageTagMutability"] == "MUTABLE"

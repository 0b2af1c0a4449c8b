"""Repository creation templates through boto3 (and the AWS CLI example of the README):
Create/Describe/Update/DeleteRepositoryCreationTemplate with the botocore model's shapes and
ECR's validation errors, pages and the `prefixes` filter, IAM, and CREATE_ON_PUSH: a push to a
missing repository creates it from the template that applies (settings, encryption, resource
tags, repository and lifecycle policies), `BERTH_CREATE_ON_PUSH` being a built-in ROOT template.

Templates are per registry: every test works in an account of its own, so that a ROOT template
never makes another test's push to a missing repository succeed.

Texts ECR does not document (the messages of TemplateAlreadyExistsException,
TemplateNotFoundException and LimitExceededException) are Berth's, worded like ECR's others.
"""

import datetime
import json
import random
import threading

import requests

from ecrlib import (
    aws_cli,
    basic_auth_header,
    check_error,
    cli_json,
    client_error,
    create_iam_user,
    deny_message,
    make_client,
    push_image,
    start_berth,
    stop_berth,
)

PREFIX_PATTERN = r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$"
KMS_KEY_PATTERN = r"^$|arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key\/[a-z0-9-]+"

LIFECYCLE = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "keep ten",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10},
                "action": {"type": "expire"},
            }
        ]
    }
)


def repo_policy(account):
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "pull",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                }
            ],
        }
    )


def invalid(field, rule):
    return f"Invalid parameter at '{field}' failed to satisfy constraint: '{rule}'"


class Account:
    """A fresh account of the session's server with boto3 clients (`ecr`, and `raw` without
    botocore's client-side checks)."""

    def __init__(self, server):
        self.server = server
        self.id = "5" + "".join(random.choice("0123456789") for _ in range(11))
        self.akid, self.secret = server.account(self.id)
        self.ecr = make_client(server, akid=self.akid, secret=self.secret)
        self.raw = make_client(server, akid=self.akid, secret=self.secret, validate=False)

    def exists_msg(self, prefix):
        return f"The repository creation template with prefix '{prefix}' already exists in the registry with id '{self.id}'"

    def not_found_msg(self, prefix):
        return f"The repository creation template with prefix '{prefix}' does not exist in the registry with id '{self.id}'"


def new_account(server):
    return Account(server)


def oci_error(r):
    body = r.json()
    return body["errors"][0]["code"], body["errors"][0]["message"]


def push_status(server, client, name):
    """Status and body of the first push request (an upload session) to `name`."""
    r = requests.post(
        f"{server.url}/v2/{name}/blobs/uploads/", headers={"Authorization": basic_auth_header(client)}, timeout=30
    )
    return r


def assert_not_created(server, acct, name):
    r = push_status(server, acct.ecr, name)
    assert r.status_code == 404, (r.status_code, r.text)
    assert oci_error(r) == (
        "NAME_UNKNOWN",
        f"The repository with name '{name}' does not exist in the registry with id '{acct.id}'",
    ), r.text
    err = client_error(acct.ecr.describe_repositories, repositoryNames=[name])
    check_error(err, "RepositoryNotFoundException")


# ---- create / describe / update / delete ---------------------------------------------------


def test_create_describe_update_delete(server):
    a = new_account(server)
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    out = a.ecr.create_repository_creation_template(
        prefix="prod",
        description="production repositories",
        encryptionConfiguration={"encryptionType": "AES256"},
        resourceTags=[{"Key": "team", "Value": "core"}, {"Key": "env", "Value": "prod"}],
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
        repositoryPolicy=repo_policy(a.id),
        lifecyclePolicy=LIFECYCLE,
        appliedFor=["CREATE_ON_PUSH", "REPLICATION"],
        customRoleArn=f"arn:aws:iam::{a.id}:role/ecr-templates",
    )
    assert out["registryId"] == a.id
    t = out["repositoryCreationTemplate"]
    assert t["prefix"] == "prod"
    assert t["description"] == "production repositories"
    assert t["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert t["resourceTags"] == [{"Key": "team", "Value": "core"}, {"Key": "env", "Value": "prod"}]
    assert t["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert t["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest"}]
    assert t["repositoryPolicy"] == repo_policy(a.id)
    assert t["lifecyclePolicy"] == LIFECYCLE
    assert t["appliedFor"] == ["CREATE_ON_PUSH", "REPLICATION"]
    assert t["customRoleArn"] == f"arn:aws:iam::{a.id}:role/ecr-templates"
    assert before < t["createdAt"] == t["updatedAt"]

    got = a.ecr.describe_repository_creation_templates()
    assert got["registryId"] == a.id
    assert got["repositoryCreationTemplates"] == [t]
    assert "nextToken" not in got

    # A minimal template takes ECR's defaults.
    m = a.ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["PULL_THROUGH_CACHE"])
    m = m["repositoryCreationTemplate"]
    assert m["imageTagMutability"] == "MUTABLE"
    assert m["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert m["resourceTags"] == []
    for absent in ["description", "repositoryPolicy", "lifecyclePolicy", "customRoleArn",
                   "imageTagMutabilityExclusionFilters"]:
        assert absent not in m, absent

    # Update: the fields given change, the others stay; an empty text clears a field.
    u = a.ecr.update_repository_creation_template(prefix="prod", description="", imageTagMutability="MUTABLE")
    assert u["registryId"] == a.id
    u = u["repositoryCreationTemplate"]
    assert "description" not in u
    assert u["imageTagMutability"] == "MUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in u, "the filters go with a mutability that takes none"
    assert u["resourceTags"] == t["resourceTags"] and u["lifecyclePolicy"] == LIFECYCLE
    assert u["appliedFor"] == ["CREATE_ON_PUSH", "REPLICATION"]
    assert u["createdAt"] == t["createdAt"] and u["updatedAt"] >= t["updatedAt"]
    u = a.ecr.update_repository_creation_template(
        prefix="prod/",  # the same template
        appliedFor=["REPLICATION"],
        resourceTags=[],
        lifecyclePolicy="",
        repositoryPolicy="",
        customRoleArn="",
        encryptionConfiguration={"encryptionType": "KMS"},
    )["repositoryCreationTemplate"]
    assert u["prefix"] == "prod", "the prefix stays as created"
    assert u["appliedFor"] == ["REPLICATION"] and u["resourceTags"] == []
    assert u["encryptionConfiguration"] == {"encryptionType": "KMS"}
    for absent in ["lifecyclePolicy", "repositoryPolicy", "customRoleArn"]:
        assert absent not in u, absent
    assert a.ecr.describe_repository_creation_templates(prefixes=["prod"])["repositoryCreationTemplates"] == [u]

    d = a.ecr.delete_repository_creation_template(prefix="prod")
    assert d["registryId"] == a.id and d["repositoryCreationTemplate"] == u
    remaining = a.ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [x["prefix"] for x in remaining] == ["ROOT"]
    a.ecr.delete_repository_creation_template(prefix="ROOT")
    assert a.ecr.describe_repository_creation_templates()["repositoryCreationTemplates"] == []


def test_not_found_and_already_exists(server):
    a = new_account(server)
    a.ecr.create_repository_creation_template(prefix="team/a", appliedFor=["REPLICATION"])
    for p in ["team/a", "team/a/"]:
        err = client_error(a.ecr.create_repository_creation_template, prefix=p, appliedFor=["CREATE_ON_PUSH"])
        check_error(err, "TemplateAlreadyExistsException", a.exists_msg(p))
    err = client_error(a.ecr.update_repository_creation_template, prefix="team", description="x")
    check_error(err, "TemplateNotFoundException", a.not_found_msg("team"))
    err = client_error(a.ecr.delete_repository_creation_template, prefix="team/b")
    check_error(err, "TemplateNotFoundException", a.not_found_msg("team/b"))
    a.ecr.delete_repository_creation_template(prefix="team/a/")
    err = client_error(a.ecr.delete_repository_creation_template, prefix="team/a")
    check_error(err, "TemplateNotFoundException", a.not_found_msg("team/a"))
    # Templates are per region.
    eu = make_client(server, region="eu-west-1", akid=a.akid, secret=a.secret)
    eu.create_repository_creation_template(prefix="ROOT", appliedFor=["REPLICATION"])
    assert a.ecr.describe_repository_creation_templates()["repositoryCreationTemplates"] == []
    assert [t["prefix"] for t in eu.describe_repository_creation_templates()["repositoryCreationTemplates"]] == ["ROOT"]


def test_validation_errors(server):
    a = new_account(server)
    ok = {"prefix": "p", "appliedFor": ["CREATE_ON_PUSH"]}

    def refused(message=None, *, starts=None, code="InvalidParameterException", op=None, **kw):
        args = {**ok, **kw}
        args = {k: v for k, v in args.items() if v is not None}
        err = client_error(op or a.raw.create_repository_creation_template, **args)
        return check_error(err, code, message, prefix=starts)

    pattern = invalid("prefix", f"Member must satisfy regular expression pattern: {PREFIX_PATTERN}")
    for bad in ["Prod", "-a", "a-", "a//b", "a..b", "ROOT/", "a b", "/"]:
        refused(pattern, prefix=bad)
    refused(invalid("prefix", "Member must have length greater than or equal to 1"), prefix="")
    refused(invalid("prefix", "Member must have length less than or equal to 256"), prefix="a" * 257)
    refused(invalid("appliedFor", "Member must not be null"), appliedFor=None)
    refused(invalid("appliedFor", "Member must have length greater than or equal to 1"), appliedFor=[])
    refused(
        invalid(
            "appliedFor",
            "Member must satisfy constraint: [Member must satisfy enum value set: "
            "[REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH]]",
        ),
        appliedFor=["CREATE_ON_PUSH", "PUSH"],
    )
    refused(invalid("description", "Member must have length less than or equal to 256"), description="d" * 257)
    refused(
        invalid(
            "encryptionConfiguration",
            "encryptionType KMS_DSSE (dual-layer encryption) is not supported by this registry; use KMS or AES256",
        ),
        encryptionConfiguration={"encryptionType": "KMS_DSSE"},
    )
    refused(
        invalid("encryptionConfiguration", "kmsKey can only be specified with KMS or KMS_DSSE encryption"),
        encryptionConfiguration={
            "encryptionType": "AES256",
            "kmsKey": f"arn:aws:kms:us-east-1:{a.id}:key/0123abcd-0000-0000-0000-000000000000",
        },
    )
    refused(
        invalid("encryptionConfiguration.encryptionType", "Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]"),
        encryptionConfiguration={"encryptionType": "DES"},
    )
    refused(
        invalid("encryptionConfiguration.kmsKey", f"Member must satisfy regular expression pattern: {KMS_KEY_PATTERN}"),
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "alias/aws/ecr"},
    )
    refused(
        invalid("resourceTags", "Member must have length less than or equal to 50"),
        resourceTags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)],
    )
    refused(
        invalid("resourceTags.member.Key", "Tag keys must be between 1 and 128 characters long"),
        resourceTags=[{"Key": "k" * 129, "Value": "v"}],
    )
    refused(
        invalid("resourceTags.member.Value", "Tag values must be at most 256 characters long"),
        resourceTags=[{"Key": "k", "Value": "v" * 257}],
    )
    refused(
        invalid(
            "imageTagMutability",
            "Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]",
        ),
        imageTagMutability="FROZEN",
    )
    refused(
        invalid(
            "imageTagMutabilityExclusionFilters",
            "must be specified when imageTagMutability is IMMUTABLE_WITH_EXCLUSION",
        ),
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
    )
    refused(
        invalid("imageTagMutabilityExclusionFilters", "cannot be specified when imageTagMutability is MUTABLE"),
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "x*"}],
    )
    refused(
        invalid("repositoryPolicy", "Invalid repository policy provided"), repositoryPolicy='{"Statement": 7}'
    )
    refused(
        invalid("repositoryPolicy", "Member must have length less than or equal to 10240"),
        repositoryPolicy=" " * 10241,
    )
    refused(
        invalid("lifecyclePolicy", "Member must have length greater than or equal to 100"),
        lifecyclePolicy='{"rules": []}',
    )
    refused(
        starts=invalid("lifecyclePolicy", "Lifecycle policy validation failure: ")[:-1],
        lifecyclePolicy=json.dumps({"rules": [{"rulePriority": 0, "selection": {}, "action": {"type": "x"}}], "pad": "x" * 100}),
    )
    role = invalid("customRoleArn", "Invalid ARN: must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    for bad in ["role", f"arn:aws:iam::{a.id}:user/u", f"arn:aws:s3:::{a.id}", f"arn:aws:iam::{a.id}:role/"]:
        refused(role, customRoleArn=bad)
    refused(
        invalid("customRoleArn", f"The role must be in the same account as the registry ({a.id})"),
        customRoleArn="arn:aws:iam::123456789012:role/r",
    )
    # The same checks on update (of an existing template), and the result as a whole.
    a.ecr.create_repository_creation_template(prefix="p", appliedFor=["CREATE_ON_PUSH"])
    refused(
        invalid("appliedFor", "Member must have length greater than or equal to 1"),
        op=a.raw.update_repository_creation_template,
        appliedFor=[],
    )
    refused(
        invalid(
            "imageTagMutabilityExclusionFilters",
            "must be specified when imageTagMutability is MUTABLE_WITH_EXCLUSION",
        ),
        op=a.raw.update_repository_creation_template,
        appliedFor=None,
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
    )
    refused(pattern, op=a.raw.update_repository_creation_template, appliedFor=None, prefix="P")
    refused(pattern, op=a.raw.delete_repository_creation_template, appliedFor=None, prefix="P")
    # Nothing refused was stored or changed.
    ts = a.ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [(t["prefix"], t["appliedFor"], t["imageTagMutability"]) for t in ts] == [
        ("p", ["CREATE_ON_PUSH"], "MUTABLE")
    ]


def test_limit_per_registry(server):
    a = new_account(server)
    for i in range(100):
        a.ecr.create_repository_creation_template(prefix=f"t{i:03}", appliedFor=["REPLICATION"])
    err = client_error(a.ecr.create_repository_creation_template, prefix="t100", appliedFor=["REPLICATION"])
    check_error(
        err,
        "LimitExceededException",
        "The maximum number of repository creation templates (100) in the registry with id "
        f"'{a.id}' has been reached",
    )
    a.ecr.delete_repository_creation_template(prefix="t000")
    a.ecr.create_repository_creation_template(prefix="t100", appliedFor=["REPLICATION"])
    pages = list(a.ecr.get_paginator("describe_repository_creation_templates").paginate())
    assert len(pages) == 1 and len(pages[0]["repositoryCreationTemplates"]) == 100, "100 per page by default"


def test_pages_and_prefixes_filter(server):
    a = new_account(server)
    prefixes = ["b", "a/x", "ROOT", "a-b", "a", "c/d/e"]
    for p in prefixes:
        a.ecr.create_repository_creation_template(prefix=p, appliedFor=["REPLICATION"])
    order = ["ROOT", "a", "a-b", "a/x", "b", "c/d/e"]  # bytewise
    seen, pages = [], 0
    for page in a.ecr.get_paginator("describe_repository_creation_templates").paginate(
        PaginationConfig={"PageSize": 2}
    ):
        assert page["registryId"] == a.id
        seen += [t["prefix"] for t in page["repositoryCreationTemplates"]]
        pages += 1
    assert (seen, pages) == (order, 3)
    first = a.ecr.describe_repository_creation_templates(maxResults=4)
    assert [t["prefix"] for t in first["repositoryCreationTemplates"]] == order[:4]
    rest = a.ecr.describe_repository_creation_templates(maxResults=4, nextToken=first["nextToken"])
    assert [t["prefix"] for t in rest["repositoryCreationTemplates"]] == order[4:]
    assert "nextToken" not in rest
    # The filter: only the prefixes named that have a template (a trailing '/' names the same).
    got = a.ecr.describe_repository_creation_templates(prefixes=["c/d/e/", "missing", "a", "ROOT"])
    assert [t["prefix"] for t in got["repositoryCreationTemplates"]] == ["ROOT", "a", "c/d/e"]
    got = a.ecr.describe_repository_creation_templates(prefixes=["c/d/e", "a", "ROOT"], maxResults=2)
    assert [t["prefix"] for t in got["repositoryCreationTemplates"]] == ["ROOT", "a"]
    got = a.ecr.describe_repository_creation_templates(
        prefixes=["c/d/e", "a", "ROOT"], maxResults=2, nextToken=got["nextToken"]
    )
    assert [t["prefix"] for t in got["repositoryCreationTemplates"]] == ["c/d/e"] and "nextToken" not in got
    assert a.ecr.describe_repository_creation_templates(prefixes=["zz"])["repositoryCreationTemplates"] == []
    # Errors.
    for n, rule in [(0, "greater than or equal to 1"), (1001, "less than or equal to 1000")]:
        err = client_error(a.raw.describe_repository_creation_templates, maxResults=n)
        check_error(err, "InvalidParameterException", invalid("maxResults", f"Member must have value {rule}"))
    err = client_error(a.raw.describe_repository_creation_templates, nextToken="not-hex")
    check_error(err, "InvalidParameterException", invalid("nextToken", "Invalid token"))
    err = client_error(a.raw.describe_repository_creation_templates, prefixes=["Bad"])
    check_error(
        err,
        "InvalidParameterException",
        invalid("prefixes", f"Member must satisfy regular expression pattern: {PREFIX_PATTERN}"),
    )


def test_iam_actions(server):
    a = new_account(server)
    a.ecr.create_repository_creation_template(prefix="seen", appliedFor=["REPLICATION"])
    reader = create_iam_user(
        server,
        "tmpl-reader",
        inline={
            "read": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "ecr:DescribeRepositoryCreationTemplates", "Resource": "*"}],
            }
        },
        root=(a.akid, a.secret),
    )
    c = reader.ecr()
    assert [t["prefix"] for t in c.describe_repository_creation_templates()["repositoryCreationTemplates"]] == ["seen"]
    for op, action, kw in [
        (c.create_repository_creation_template, "CreateRepositoryCreationTemplate",
         {"prefix": "x", "appliedFor": ["REPLICATION"]}),
        (c.update_repository_creation_template, "UpdateRepositoryCreationTemplate", {"prefix": "seen"}),
        (c.delete_repository_creation_template, "DeleteRepositoryCreationTemplate", {"prefix": "seen"}),
    ]:
        err = client_error(op, **kw)
        check_error(err, "AccessDeniedException", deny_message(reader.arn, f"ecr:{action}", "*", "identity"))
    nobody = create_iam_user(server, "tmpl-nobody", root=(a.akid, a.secret))
    err = client_error(nobody.ecr().describe_repository_creation_templates)
    check_error(
        err,
        "AccessDeniedException",
        deny_message(nobody.arn, "ecr:DescribeRepositoryCreationTemplates", "*", "identity"),
    )
    assert [t["prefix"] for t in a.ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]] == [
        "seen"
    ]


def test_aws_cli_example(server):
    """The README's example, through the AWS CLI."""
    a = new_account(server)
    res = aws_cli(
        server,
        "create-repository-creation-template",
        "--prefix", "team",
        "--applied-for", "CREATE_ON_PUSH",
        "--image-tag-mutability", "IMMUTABLE",
        "--resource-tags", "Key=owner,Value=team",
        "--description", "repositories pushed under team/",
        akid=a.akid,
        secret=a.secret,
    )
    t = cli_json(res)["repositoryCreationTemplate"]
    assert (t["prefix"], t["appliedFor"], t["imageTagMutability"]) == ("team", ["CREATE_ON_PUSH"], "IMMUTABLE")
    res = aws_cli(server, "describe-repository-creation-templates", akid=a.akid, secret=a.secret)
    assert [x["prefix"] for x in cli_json(res)["repositoryCreationTemplates"]] == ["team"]


# ---- create on push --------------------------------------------------------------------------


def test_push_creates_the_repository_from_the_template_that_applies(server):
    a = new_account(server)
    kms = __import__("boto3").client(
        "kms",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=a.akid,
        aws_secret_access_key=a.secret,
    )
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    a.ecr.create_repository_creation_template(
        prefix="team",
        appliedFor=["CREATE_ON_PUSH"],
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key_arn},
        resourceTags=[{"Key": "owner", "Value": "team"}, {"Key": "cost", "Value": "42"}],
        repositoryPolicy=repo_policy(a.id),
        lifecyclePolicy=LIFECYCLE,
    )
    # A more specific template wins for its names; ROOT only for what no prefix matches.
    a.ecr.create_repository_creation_template(prefix="team/special", appliedFor=["CREATE_ON_PUSH"])
    a.ecr.create_repository_creation_template(
        prefix="ROOT", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE"
    )

    push_image(server, a.ecr, "team/app/api", tag="v1")
    repo = a.ecr.describe_repositories(repositoryNames=["team/app/api"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert repo["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "dev-*"}]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key_arn}
    policy = a.ecr.get_repository_policy(repositoryName="team/app/api")["policyText"]
    assert json.loads(policy) == json.loads(repo_policy(a.id))
    assert policy.startswith('{\n  "Version" : "2012-10-17"'), "stored normalized as SetRepositoryPolicy does"
    assert a.ecr.get_lifecycle_policy(repositoryName="team/app/api")["lifecyclePolicyText"] == LIFECYCLE
    tags = a.ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("cost", "42"), ("owner", "team")]
    images = a.ecr.describe_images(repositoryName="team/app/api")["imageDetails"]
    assert [i.get("imageTags") for i in images] == [["v1"]]

    push_image(server, a.ecr, "team/special/x")
    r = a.ecr.describe_repositories(repositoryNames=["team/special/x"])["repositories"][0]
    assert (r["imageTagMutability"], r["encryptionConfiguration"]) == ("MUTABLE", {"encryptionType": "AES256"})
    err = client_error(a.ecr.get_repository_policy, repositoryName="team/special/x")
    check_error(err, "RepositoryPolicyNotFoundException")
    # `team` names team/..., not `team` itself nor `teams/...`: those get ROOT.
    for name in ["team", "teams/app"]:
        push_image(server, a.ecr, name)
        r = a.ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        assert r["imageTagMutability"] == "IMMUTABLE", name
    # A template changes repositories created later only.
    a.ecr.update_repository_creation_template(prefix="ROOT", imageTagMutability="MUTABLE")
    assert a.ecr.describe_repositories(repositoryNames=["team"])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
    push_image(server, a.ecr, "later")
    assert a.ecr.describe_repositories(repositoryNames=["later"])["repositories"][0]["imageTagMutability"] == "MUTABLE"


def test_templates_without_create_on_push_do_not_create(server):
    a = new_account(server)
    a.ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["REPLICATION", "PULL_THROUGH_CACHE"])
    a.ecr.create_repository_creation_template(prefix="app", appliedFor=["REPLICATION"])
    assert_not_created(server, a, "app/web")
    assert_not_created(server, a, "other")
    # Listing CREATE_ON_PUSH is what makes a push create, and only under its prefix.
    a.ecr.update_repository_creation_template(prefix="app", appliedFor=["REPLICATION", "CREATE_ON_PUSH"])
    push_image(server, a.ecr, "app/web")
    assert_not_created(server, a, "other")
    a.ecr.delete_repository_creation_template(prefix="app")
    assert_not_created(server, a, "app/api")


def test_a_template_kms_key_is_resolved_when_a_repository_is_created(server):
    a = new_account(server)
    missing = f"arn:aws:kms:us-east-1:{a.id}:key/00000000-0000-0000-0000-000000000000"
    a.ecr.create_repository_creation_template(
        prefix="enc",
        appliedFor=["CREATE_ON_PUSH"],
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": missing},
    )
    r = push_status(server, a.ecr, "enc/app")
    assert r.status_code == 403, (r.status_code, r.text)
    assert r.json()["errors"][0]["code"] == "DENIED", r.text
    assert missing in r.json()["errors"][0]["message"], r.text
    err = client_error(a.ecr.describe_repositories, repositoryNames=["enc/app"])
    check_error(err, "RepositoryNotFoundException")
    # The AWS managed key (no kmsKey) is created on first use.
    a.ecr.update_repository_creation_template(prefix="enc", encryptionConfiguration={"encryptionType": "KMS"})
    push_image(server, a.ecr, "enc/app")
    enc = a.ecr.describe_repositories(repositoryNames=["enc/app"])["repositories"][0]["encryptionConfiguration"]
    assert enc["encryptionType"] == "KMS" and enc["kmsKey"].startswith(f"arn:aws:kms:us-east-1:{a.id}:key/")


def test_a_push_that_creates_needs_create_repository(server):
    a = new_account(server)
    a.ecr.create_repository_creation_template(prefix="ci", appliedFor=["CREATE_ON_PUSH"])
    push_actions = [
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
    ]
    pusher = create_iam_user(
        server,
        "tmpl-pusher",
        inline={"push": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": push_actions, "Resource": "*"}]}},
        root=(a.akid, a.secret),
    )
    r = push_status(server, pusher.ecr(), "ci/app")
    assert r.status_code == 403, (r.status_code, r.text)
    arn = f"arn:aws:ecr:us-east-1:{a.id}:repository/ci/app"
    assert oci_error(r) == ("DENIED", deny_message(pusher.arn, "ecr:CreateRepository", arn, "identity")), r.text
    err = client_error(a.ecr.describe_repositories, repositoryNames=["ci/app"])
    check_error(err, "RepositoryNotFoundException")


def test_concurrent_first_pushes_all_succeed(server):
    a = new_account(server)
    a.ecr.create_repository_creation_template(
        prefix="race", appliedFor=["CREATE_ON_PUSH"], resourceTags=[{"Key": "k", "Value": "v"}],
        lifecyclePolicy=LIFECYCLE,
    )
    errors = []

    def push(i):
        try:
            push_image(server, a.ecr, "race/app", tag=f"t{i}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    tags = sorted(t for i in a.ecr.describe_images(repositoryName="race/app")["imageDetails"] for t in i["imageTags"])
    assert tags == [f"t{i}" for i in range(8)]
    arn = a.ecr.describe_repositories(repositoryNames=["race/app"])["repositories"][0]["repositoryArn"]
    assert a.ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "k", "Value": "v"}]
    assert a.ecr.get_lifecycle_policy(repositoryName="race/app")["lifecyclePolicyText"] == LIFECYCLE


def test_berth_create_on_push_is_a_builtin_root_template():
    srv = start_berth({"BERTH_CREATE_ON_PUSH": "true"})
    try:
        a = new_account(srv)
        # No template: the built-in one, default settings.
        push_image(srv, a.ecr, "plain/app")
        r = a.ecr.describe_repositories(repositoryNames=["plain/app"])["repositories"][0]
        assert (r["imageTagMutability"], r["encryptionConfiguration"]) == ("MUTABLE", {"encryptionType": "AES256"})
        assert a.ecr.list_tags_for_resource(resourceArn=r["repositoryArn"])["tags"] == []
        assert a.ecr.describe_repository_creation_templates()["repositoryCreationTemplates"] == [], "not stored"
        # A stored template that applies wins; one that does not list CREATE_ON_PUSH does not.
        a.ecr.create_repository_creation_template(prefix="frozen", appliedFor=["CREATE_ON_PUSH"],
                                                  imageTagMutability="IMMUTABLE")
        a.ecr.create_repository_creation_template(prefix="repl", appliedFor=["REPLICATION"],
                                                  imageTagMutability="IMMUTABLE")
        push_image(srv, a.ecr, "frozen/app")
        push_image(srv, a.ecr, "repl/app")
        got = {n: a.ecr.describe_repositories(repositoryNames=[n])["repositories"][0]["imageTagMutability"]
               for n in ["frozen/app", "repl/app"]}
        assert got == {"frozen/app": "IMMUTABLE", "repl/app": "MUTABLE"}
        # A stored ROOT template replaces the built-in one.
        a.ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["CREATE_ON_PUSH"],
                                                  resourceTags=[{"Key": "from", "Value": "root"}])
        push_image(srv, a.ecr, "other")
        arn = a.ecr.describe_repositories(repositoryNames=["other"])["repositories"][0]["repositoryArn"]
        assert a.ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "from", "Value": "root"}]
    finally:
        stop_berth(srv)


def test_without_templates_a_push_to_a_missing_repository_is_name_unknown(server):
    a = new_account(server)
    assert_not_created(server, a, "nothing/here")
    # Blob uploads with a digest (monolithic) are refused the same way.
    auth = basic_auth_header(a.ecr)
    r = requests.post(
        f"{server.url}/v2/nothing/here/blobs/uploads/?digest=sha256:" + "0" * 64,
        headers={"Authorization": auth},
        data=b"",
        timeout=30,
    )
    assert r.status_code == 404 and oci_error(r)[0] == "NAME_UNKNOWN", r.text

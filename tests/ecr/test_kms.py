"""KMS keys (issue 13) through the real clients: boto3's `kms` client and the AWS CLI against
`berth serve`, with the exact exception names and HTTP statuses of AWS KMS.

Keys of account 111111111111 accumulate over the session; tests that count keys or aliases use
an account of their own. Time-based deletion is tested by moving a key's deletion date into the
past in the metadata database itself (SQLite, or PostgreSQL with BERTH_TEST_BACKEND=postgres),
then moving the authorization epoch as every KMS write does.
"""

import base64
import datetime
import json
import sqlite3
import subprocess
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from ecrlib import (
    ACCOUNT_ID,
    NO_RETRY,
    REGION,
    ROOT_AKID,
    ROOT_SECRET,
    aws_cmd,
    check_error,
    cli_error_line,
    cli_json,
    create_iam_user,
    deny_message,
    make_iam,
    parse_json_output,
    unique,
)


def make_kms(server, akid=ROOT_AKID, secret=ROOT_SECRET, region=REGION, validate=True):
    return boto3.client(
        "kms",
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(retries=NO_RETRY, parameter_validation=validate, connect_timeout=10, read_timeout=60),
    )


@pytest.fixture(scope="module")
def kms(server):
    return make_kms(server)


@pytest.fixture(scope="module")
def kms_raw(server):
    """Without botocore's client-side checks, to reach the server's."""
    return make_kms(server, validate=False)


def err(callable_, *args, **kwargs):
    """The ClientError the call raises (AssertionError when it succeeds, so `eventually` retries)."""
    try:
        callable_(*args, **kwargs)
    except ClientError as e:
        return e
    raise AssertionError(f"{callable_.__name__} succeeded; an error was expected")


def new_key(kms, **kw):
    return kms.create_key(**kw)["KeyMetadata"]


def key_arn(key_id, account=ACCOUNT_ID, region=REGION):
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def kms_cli(server, *args, **kw):
    return aws_cmd(server, "kms", *args, **kw)


def own_account(server):
    """A fresh account (its own keys and aliases) and a kms client of its root."""
    acct = "4" + uuid.uuid4().int.__str__()[:11]
    akid, secret = server.account(acct)
    return acct, make_kms(server, akid, secret)


def db_exec(server, statements):
    """Run SQL statements on the server's metadata database (SQLite or PostgreSQL)."""
    url = server.env.get("BERTH_METADATA")
    if url:
        for s in statements:
            subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", s], check=True)
        return
    con = sqlite3.connect(server.data_dir / "berth.db", timeout=30)
    try:
        for s in statements:
            con.execute(s)
        con.commit()
    finally:
        con.close()


def db_count(server, sql):
    url = server.env.get("BERTH_METADATA")
    if url:
        out = subprocess.run(["psql", url, "-t", "-A", "-c", sql], check=True, capture_output=True, text=True)
        return int(out.stdout.strip())
    con = sqlite3.connect(server.data_dir / "berth.db", timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def wait_for(predicate, timeout=5.0, what="the condition"):
    """Poll `predicate` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.1)


def eventually(check, timeout=5.0):
    """Retry `check` (an assertion) until it passes or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# Keys


def test_create_key_and_describe_by_every_kind_of_reference(kms):
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    md = new_key(kms, Description="app data", Tags=[{"TagKey": "team", "TagValue": "core"}])
    assert set(md) == {
        "AWSAccountId", "KeyId", "Arn", "CreationDate", "Enabled", "Description", "KeyUsage", "KeyState",
        "Origin", "KeyManager", "CustomerMasterKeySpec", "KeySpec", "EncryptionAlgorithms", "MultiRegion",
        "CurrentKeyMaterialId",
    }, md
    uuid.UUID(md["KeyId"])
    assert md["Arn"] == key_arn(md["KeyId"])
    assert md["AWSAccountId"] == ACCOUNT_ID
    assert before <= md["CreationDate"] <= before + datetime.timedelta(minutes=1)
    assert (md["Enabled"], md["KeyState"], md["Description"]) == (True, "Enabled", "app data")
    assert (md["KeyUsage"], md["Origin"], md["KeyManager"]) == ("ENCRYPT_DECRYPT", "AWS_KMS", "CUSTOMER")
    assert (md["KeySpec"], md["CustomerMasterKeySpec"]) == ("SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT")
    assert md["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert md["MultiRegion"] is False
    assert len(md["CurrentKeyMaterialId"]) == 64
    alias = f"alias/{unique('desc')}"
    kms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
    alias_arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:{alias}"
    for ref in [md["KeyId"], md["Arn"], alias, alias_arn]:
        assert kms.describe_key(KeyId=ref)["KeyMetadata"] == md, ref
    assert kms.list_resource_tags(KeyId=md["KeyId"])["Tags"] == [{"TagKey": "team", "TagValue": "core"}]


def test_key_references_that_name_nothing(kms):
    missing = str(uuid.uuid4())
    e = err(kms.describe_key, KeyId=missing)
    check_error(e, "NotFoundException", f"Key '{key_arn(missing)}' does not exist")
    check_error(err(kms.describe_key, KeyId="not-a-key"), "NotFoundException", "Invalid keyId not-a-key")
    check_error(err(kms.describe_key, KeyId="arn:aws:kms:us-east-1:123:key/x"), "InvalidArnException")
    check_error(
        err(kms.describe_key, KeyId="alias/no-such-alias"),
        "NotFoundException",
        f"Alias arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/no-such-alias is not found.",
    )
    # Management operations take a key id or key ARN, not an alias.
    k = new_key(kms)
    alias = f"alias/{unique('ref')}"
    kms.create_alias(AliasName=alias, TargetKeyId=k["Arn"])
    check_error(err(kms.disable_key, KeyId=alias), "NotFoundException", f"Invalid keyId {alias}")
    # Another region's key is not found here.
    other = key_arn(k["KeyId"], region="eu-west-1")
    check_error(err(kms.describe_key, KeyId=other), "NotFoundException")


def test_create_key_refuses_what_berth_does_not_support(kms, kms_raw):
    cases = [
        (dict(KeySpec="RSA_2048"), "UnsupportedOperationException"),
        (dict(CustomerMasterKeySpec="HMAC_256"), "UnsupportedOperationException"),
        (dict(KeyUsage="SIGN_VERIFY"), "ValidationException"),
        (dict(Origin="EXTERNAL"), "UnsupportedOperationException"),
        (dict(MultiRegion=True), "UnsupportedOperationException"),
        (dict(CustomKeyStoreId="cks-1234567890abcdef0"), "UnsupportedOperationException"),
        (dict(XksKeyId="ext-1"), "UnsupportedOperationException"),
        (dict(KeySpec="SYMMETRIC_DEFAULT", CustomerMasterKeySpec="SYMMETRIC_DEFAULT"), "ValidationException"),
        (dict(Policy="{not json"), "MalformedPolicyDocumentException"),
        (dict(Tags=[{"TagKey": "aws:x", "TagValue": "v"}]), "TagException"),
        (dict(Tags=[{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)]), "LimitExceededException"),
    ]
    for kw, code in cases:
        check_error(err(kms.create_key, **kw), code)
    check_error(err(kms_raw.create_key, KeySpec="AES_999"), "ValidationException")
    # Supported values, spelled out, are accepted.
    md = new_key(kms, KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT", Origin="AWS_KMS", MultiRegion=False)
    assert md["KeyState"] == "Enabled"


def test_list_keys_pages_with_limit_and_marker(server):
    acct, kms = own_account(server)
    created = sorted(new_key(kms)["KeyId"] for _ in range(5))
    page = kms.list_keys(Limit=2)
    assert page["Truncated"] is True and page["NextMarker"]
    assert [k["KeyId"] for k in page["Keys"]] == created[:2]
    assert page["Keys"][0]["KeyArn"] == key_arn(created[0], account=acct)
    seen = [k["KeyId"] for k in page["Keys"]]
    while page["Truncated"]:
        page = kms.list_keys(Limit=2, Marker=page["NextMarker"])
        seen += [k["KeyId"] for k in page["Keys"]]
    assert seen == created
    assert "NextMarker" not in page
    all_keys = [k["KeyId"] for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 3})
                for k in p["Keys"]]
    assert all_keys == created
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == created
    check_error(err(kms.list_keys, Marker="not-a-marker"), "InvalidMarkerException")
    raw = make_kms(server, *server.account(acct), validate=False)
    check_error(err(raw.list_keys, Limit=0), "ValidationException")
    check_error(err(raw.list_keys, Limit=1001), "ValidationException")


def test_update_key_description(kms):
    k = new_key(kms, Description="old")
    kms.update_key_description(KeyId=k["Arn"], Description="new")
    assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["Description"] == "new"
    kms.update_key_description(KeyId=k["KeyId"], Description="")
    assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["Description"] == ""


# ------------------------------------------------------------------------------------------------
# Aliases


def test_aliases_create_update_list_delete(server):
    acct, kms = own_account(server)
    a, b = new_key(kms), new_key(kms)
    kms.create_alias(AliasName="alias/app", TargetKeyId=a["KeyId"])
    kms.create_alias(AliasName="alias/app-old", TargetKeyId=a["Arn"])
    kms.create_alias(AliasName="alias/zeta", TargetKeyId=b["KeyId"])
    arn = f"arn:aws:kms:{REGION}:{acct}:alias/app"
    check_error(
        err(kms.create_alias, AliasName="alias/app", TargetKeyId=b["KeyId"]),
        "AlreadyExistsException",
        f"An alias with the name {arn} already exists",
    )
    check_error(err(kms.create_alias, AliasName="app", TargetKeyId=a["KeyId"]), "InvalidAliasNameException")
    check_error(err(kms.create_alias, AliasName="alias/aws/mine", TargetKeyId=a["KeyId"]), "InvalidAliasNameException")
    check_error(err(kms.create_alias, AliasName="alias/x", TargetKeyId=str(uuid.uuid4())), "NotFoundException")
    aliases = kms.list_aliases()["Aliases"]
    assert [x["AliasName"] for x in aliases] == ["alias/app", "alias/app-old", "alias/zeta"]
    first = aliases[0]
    assert set(first) == {"AliasName", "AliasArn", "TargetKeyId", "CreationDate", "LastUpdatedDate"}
    assert (first["AliasArn"], first["TargetKeyId"]) == (arn, a["KeyId"])
    assert [x["AliasName"] for x in kms.list_aliases(KeyId=a["Arn"])["Aliases"]] == ["alias/app", "alias/app-old"]
    check_error(err(kms.list_aliases, KeyId=str(uuid.uuid4())), "NotFoundException")
    page = kms.list_aliases(Limit=2)
    assert page["Truncated"] is True and len(page["Aliases"]) == 2
    rest = kms.list_aliases(Limit=2, Marker=page["NextMarker"])
    assert [x["AliasName"] for x in rest["Aliases"]] == ["alias/zeta"] and rest["Truncated"] is False
    kms.update_alias(AliasName="alias/app", TargetKeyId=b["KeyId"])
    assert kms.describe_key(KeyId="alias/app")["KeyMetadata"]["KeyId"] == b["KeyId"]
    check_error(err(kms.update_alias, AliasName="alias/none", TargetKeyId=b["KeyId"]), "NotFoundException")
    kms.delete_alias(AliasName="alias/app-old")
    check_error(
        err(kms.delete_alias, AliasName="alias/app-old"),
        "NotFoundException",
        f"Alias arn:aws:kms:{REGION}:{acct}:alias/app-old is not found.",
    )
    # A key pending deletion takes no new alias.
    kms.schedule_key_deletion(KeyId=a["KeyId"], PendingWindowInDays=7)
    check_error(err(kms.create_alias, AliasName="alias/late", TargetKeyId=a["KeyId"]), "KMSInvalidStateException")


# ------------------------------------------------------------------------------------------------
# Cryptography


def test_encrypt_decrypt_with_encryption_context(kms, kms_raw):
    k = new_key(kms)
    alias = f"alias/{unique('enc')}"
    kms.create_alias(AliasName=alias, TargetKeyId=k["KeyId"])
    ctx = {"repository": "app", "purpose": "test"}
    out = kms.encrypt(KeyId=alias, Plaintext=b"top secret", EncryptionContext=ctx)
    assert out["KeyId"] == k["Arn"] and out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = out["CiphertextBlob"]
    assert b"top secret" not in blob
    back = kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
    assert (back["Plaintext"], back["KeyId"], back["EncryptionAlgorithm"]) == (b"top secret", k["Arn"], "SYMMETRIC_DEFAULT")
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=alias)["Plaintext"] == b"top secret"
    check_error(err(kms.decrypt, CiphertextBlob=blob), "InvalidCiphertextException")
    check_error(err(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"repository": "other"}), "InvalidCiphertextException")
    check_error(err(kms.decrypt, CiphertextBlob=b"garbage" * 10), "InvalidCiphertextException")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    check_error(err(kms.decrypt, CiphertextBlob=bytes(tampered), EncryptionContext=ctx), "InvalidCiphertextException")
    other = new_key(kms)
    check_error(
        err(kms.decrypt, CiphertextBlob=blob, EncryptionContext=ctx, KeyId=other["KeyId"]),
        "IncorrectKeyException",
        "The key ID in the request does not identify a CMK that can perform this operation.",
    )
    check_error(err(kms_raw.encrypt, KeyId=k["KeyId"], Plaintext=b"x" * 4097), "ValidationException")
    check_error(err(kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256"),
                "InvalidKeyUsageException")
    e = err(kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x", DryRun=True)
    check_error(e, "DryRunOperationException", status=412)


def test_generate_data_key_and_random(kms, kms_raw):
    k = new_key(kms)
    ctx = {"blob": "sha256:abc"}
    dk = kms.generate_data_key(KeyId=k["KeyId"], KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32 and dk["KeyId"] == k["Arn"] and len(dk["KeyMaterialId"]) == 64
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
    assert len(kms.generate_data_key(KeyId=k["Arn"], KeySpec="AES_128")["Plaintext"]) == 16
    assert len(kms.generate_data_key(KeyId=k["Arn"], NumberOfBytes=100)["Plaintext"]) == 100
    wo = kms.generate_data_key_without_plaintext(KeyId=k["KeyId"], KeySpec="AES_256")
    assert "Plaintext" not in wo and wo["KeyId"] == k["Arn"]
    assert len(kms.decrypt(CiphertextBlob=wo["CiphertextBlob"])["Plaintext"]) == 32
    check_error(err(kms.generate_data_key, KeyId=k["KeyId"]), "ValidationException",
                "Please specify either number of bytes or key spec.")
    check_error(err(kms.generate_data_key, KeyId=k["KeyId"], KeySpec="AES_256", NumberOfBytes=32), "ValidationException")
    check_error(err(kms_raw.generate_data_key, KeyId=k["KeyId"], NumberOfBytes=1025), "ValidationException")
    r = kms.generate_random(NumberOfBytes=1024)["Plaintext"]
    assert len(r) == 1024 and r != kms.generate_random(NumberOfBytes=1024)["Plaintext"]
    check_error(err(kms_raw.generate_random, NumberOfBytes=0), "ValidationException")
    check_error(err(kms_raw.generate_random, NumberOfBytes=1025), "ValidationException")


# ------------------------------------------------------------------------------------------------
# Key states


def test_disable_key_stops_cryptography_and_enable_restores_it(kms):
    k = new_key(kms)
    blob = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"data")["CiphertextBlob"]
    kms.disable_key(KeyId=k["KeyId"])
    md = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
    assert (md["Enabled"], md["KeyState"]) == (False, "Disabled")
    msg = f"{k['Arn']} is disabled."
    check_error(err(kms.encrypt, KeyId=k["KeyId"], Plaintext=b"data"), "DisabledException", msg)
    check_error(err(kms.decrypt, CiphertextBlob=blob), "DisabledException", msg)
    check_error(err(kms.generate_data_key, KeyId=k["KeyId"], KeySpec="AES_256"), "DisabledException", msg)
    check_error(err(kms.enable_key_rotation, KeyId=k["KeyId"]), "DisabledException", msg)
    kms.disable_key(KeyId=k["KeyId"])  # idempotent
    kms.enable_key(KeyId=k["Arn"])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"data"
    assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_schedule_and_cancel_key_deletion(kms, kms_raw):
    k = new_key(kms)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = kms.schedule_key_deletion(KeyId=k["KeyId"])
    assert (out["KeyId"], out["KeyState"], out["PendingWindowInDays"]) == (k["Arn"], "PendingDeletion", 30)
    assert abs(out["DeletionDate"] - (now + datetime.timedelta(days=30))) < datetime.timedelta(minutes=1)
    md = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
    assert (md["KeyState"], md["Enabled"], md["PendingDeletionWindowInDays"]) == ("PendingDeletion", False, 30)
    assert md["DeletionDate"] == out["DeletionDate"]
    pending = f"{k['Arn']} is pending deletion."
    check_error(err(kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x"), "KMSInvalidStateException", pending)
    check_error(err(kms.enable_key, KeyId=k["KeyId"]), "KMSInvalidStateException", pending)
    check_error(err(kms.disable_key, KeyId=k["KeyId"]), "KMSInvalidStateException", pending)
    check_error(err(kms.schedule_key_deletion, KeyId=k["KeyId"]), "KMSInvalidStateException", pending)
    check_error(err(kms.update_key_description, KeyId=k["KeyId"], Description="x"), "KMSInvalidStateException")
    kms.get_key_policy(KeyId=k["KeyId"], PolicyName="default")  # still readable
    assert kms.cancel_key_deletion(KeyId=k["KeyId"])["KeyId"] == k["Arn"]
    md = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
    assert (md["KeyState"], md["Enabled"]) == ("Disabled", False)
    assert "DeletionDate" not in md and "PendingDeletionWindowInDays" not in md
    check_error(err(kms.cancel_key_deletion, KeyId=k["KeyId"]), "KMSInvalidStateException",
                f"{k['Arn']} is not pending deletion.")
    for days in (6, 31):
        e = err(kms_raw.schedule_key_deletion, KeyId=k["KeyId"], PendingWindowInDays=days)
        check_error(e, "ValidationException", prefix=f"1 validation error detected: Value '{days}' at 'pendingWindowInDays'")
    assert kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=7)["PendingWindowInDays"] == 7


def test_keys_past_their_deletion_date_are_deleted(server, kms):
    k = new_key(kms)
    alias = f"alias/{unique('gone')}"
    kms.create_alias(AliasName=alias, TargetKeyId=k["KeyId"])
    blob = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=7)
    # The waiting period passes (the date moves back; the epoch move tells the server's cache).
    db_exec(server, [
        f"UPDATE kms_keys SET deletion_date = 1000 WHERE key_id = '{k['KeyId']}'",
        "UPDATE auth_epoch SET epoch = epoch + 1 WHERE id = 1",
    ])

    def gone():
        check_error(err(kms.describe_key, KeyId=k["KeyId"]), "NotFoundException", f"Key '{k['Arn']}' does not exist")

    eventually(gone)
    assert db_count(server, f"SELECT COUNT(*) FROM kms_key_material WHERE key_id = '{k['KeyId']}'") == 0
    check_error(err(kms.describe_key, KeyId=alias), "NotFoundException")
    check_error(err(kms.decrypt, CiphertextBlob=blob), "InvalidCiphertextException")
    assert k["KeyId"] not in [x["KeyId"] for p in kms.get_paginator("list_keys").paginate() for x in p["Keys"]]


def test_the_periodic_sweep_deletes_keys_nobody_looks_at(server, kms):
    k = new_key(kms)
    kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=7)
    db_exec(server, [f"UPDATE kms_keys SET deletion_date = 1000 WHERE key_id = '{k['KeyId']}'"])
    res = server.admin("enqueue-job", "--kind", "kms-sweep", "--key", unique("sweep"))
    assert res.returncode == 0, res.stderr
    wait_for(lambda: db_count(server, f"SELECT COUNT(*) FROM kms_keys WHERE key_id = '{k['KeyId']}'") == 0,
             timeout=15, what="the sweep")
    assert db_count(server, f"SELECT COUNT(*) FROM kms_key_material WHERE key_id = '{k['KeyId']}'") == 0


# ------------------------------------------------------------------------------------------------
# Rotation


def test_rotation_automatic_settings_and_on_demand(kms, kms_raw):
    k = new_key(kms)
    st = kms.get_key_rotation_status(KeyId=k["KeyId"])
    assert (st["KeyRotationEnabled"], st["KeyId"]) == (False, k["Arn"]) and "RotationPeriodInDays" not in st
    now = datetime.datetime.now(datetime.timezone.utc)
    kms.enable_key_rotation(KeyId=k["KeyId"])
    st = kms.get_key_rotation_status(KeyId=k["Arn"])
    assert (st["KeyRotationEnabled"], st["RotationPeriodInDays"]) == (True, 365)
    assert abs(st["NextRotationDate"] - (now + datetime.timedelta(days=365))) < datetime.timedelta(minutes=1)
    kms.enable_key_rotation(KeyId=k["KeyId"], RotationPeriodInDays=90)
    assert kms.get_key_rotation_status(KeyId=k["KeyId"])["RotationPeriodInDays"] == 90
    for days in (89, 2561):
        check_error(err(kms_raw.enable_key_rotation, KeyId=k["KeyId"], RotationPeriodInDays=days), "ValidationException")
    kms.disable_key_rotation(KeyId=k["KeyId"])
    assert kms.get_key_rotation_status(KeyId=k["KeyId"])["KeyRotationEnabled"] is False

    old = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"before")["CiphertextBlob"]
    material_before = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    assert kms.list_key_rotations(KeyId=k["KeyId"])["Rotations"] == []
    assert kms.rotate_key_on_demand(KeyId=k["KeyId"])["KeyId"] == k["KeyId"]
    material_after = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    assert material_after != material_before
    rot = kms.list_key_rotations(KeyId=k["KeyId"])["Rotations"]
    assert len(rot) == 1 and rot[0]["RotationType"] == "ON_DEMAND" and rot[0]["KeyMaterialId"] == material_after
    assert abs(rot[0]["RotationDate"] - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(minutes=1)
    every = kms.list_key_rotations(KeyId=k["KeyId"], IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    assert [r["KeyMaterialState"] for r in every] == ["NON_CURRENT", "CURRENT"]
    # What the old material encrypted still decrypts; new ciphertexts use the new material.
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before"
    new = kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=k["KeyId"], Plaintext=b"after")["CiphertextBlob"])
    assert (new["Plaintext"], new["KeyMaterialId"]) == (b"after", material_after)
    kms.disable_key(KeyId=k["KeyId"])
    check_error(err(kms.rotate_key_on_demand, KeyId=k["KeyId"]), "DisabledException")


# ------------------------------------------------------------------------------------------------
# Key policies and tags


def test_key_policy_get_put_and_lockout_check(kms):
    k = new_key(kms)
    got = kms.get_key_policy(KeyId=k["KeyId"], PolicyName="default")
    assert got["PolicyName"] == "default"
    doc = json.loads(got["Policy"])
    assert doc["Statement"][0]["Sid"] == "Enable IAM User Permissions"
    assert doc["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    assert doc["Statement"][0]["Action"] == "kms:*"
    assert kms.list_key_policies(KeyId=k["KeyId"])["PolicyNames"] == ["default"]
    check_error(err(kms.get_key_policy, KeyId=k["KeyId"], PolicyName="other"), "NotFoundException")
    policy = json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "root", "Effect": "Allow", "Principal": {"AWS": ACCOUNT_ID}, "Action": "kms:*",
                       "Resource": "*"}],
    })
    kms.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy=policy)
    assert kms.get_key_policy(KeyId=k["KeyId"], PolicyName="default")["Policy"] == policy
    check_error(err(kms.put_key_policy, KeyId=k["KeyId"], PolicyName="default", Policy='{"Statement": 1}'),
                "MalformedPolicyDocumentException")
    # A policy that would lock the caller out is refused unless the check is bypassed.
    lockout = json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ID}, "Action": "kms:Encrypt", "Resource": "*"}],
    })
    check_error(err(kms.put_key_policy, KeyId=k["KeyId"], PolicyName="default", Policy=lockout),
                "MalformedPolicyDocumentException",
                "The new key policy will not allow you to update the key policy in the future.")
    check_error(err(kms.create_key, Policy=lockout), "MalformedPolicyDocumentException")
    kms.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy=lockout, BypassPolicyLockoutSafetyCheck=True)
    kms.encrypt(KeyId=k["KeyId"], Plaintext=b"still usable")
    check_error(err(kms.get_key_policy, KeyId=k["KeyId"], PolicyName="default"), "AccessDeniedException")


def test_tags(kms):
    k = new_key(kms)
    kms.tag_resource(KeyId=k["KeyId"], Tags=[{"TagKey": "b", "TagValue": "1"}, {"TagKey": "a", "TagValue": "2"}])
    kms.tag_resource(KeyId=k["Arn"], Tags=[{"TagKey": "b", "TagValue": "3"}])
    assert kms.list_resource_tags(KeyId=k["KeyId"])["Tags"] == [
        {"TagKey": "a", "TagValue": "2"}, {"TagKey": "b", "TagValue": "3"}]
    page = kms.list_resource_tags(KeyId=k["KeyId"], Limit=1)
    assert page["Truncated"] is True and page["Tags"] == [{"TagKey": "a", "TagValue": "2"}]
    rest = kms.list_resource_tags(KeyId=k["KeyId"], Limit=1, Marker=page["NextMarker"])
    assert rest["Tags"] == [{"TagKey": "b", "TagValue": "3"}] and rest["Truncated"] is False
    kms.untag_resource(KeyId=k["KeyId"], TagKeys=["a", "absent"])
    assert kms.list_resource_tags(KeyId=k["KeyId"])["Tags"] == [{"TagKey": "b", "TagValue": "3"}]
    check_error(err(kms.tag_resource, KeyId=k["KeyId"], Tags=[{"TagKey": "aws:x", "TagValue": "v"}]), "TagException")
    many = [{"TagKey": f"t{i}", "TagValue": "v"} for i in range(50)]
    check_error(err(kms.tag_resource, KeyId=k["KeyId"], Tags=many), "LimitExceededException")
    assert len(kms.list_resource_tags(KeyId=k["KeyId"])["Tags"]) == 1, "a refused tagging changes nothing"


# ------------------------------------------------------------------------------------------------
# Authorization


ENCRYPT_DECRYPT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}],
}


def test_iam_users_need_kms_permissions(server, kms):
    k = new_key(kms)
    blob = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    nobody = create_iam_user(server, unique("nokms"))
    c = make_kms(server, nobody.akid, nobody.secret)
    e = err(c.encrypt, KeyId=k["KeyId"], Plaintext=b"x")
    check_error(e, "AccessDeniedException", deny_message(nobody.arn, "kms:Encrypt", k["Arn"], "identity"))
    check_error(err(c.create_key), "AccessDeniedException", deny_message(nobody.arn, "kms:CreateKey", "*", "identity"))
    check_error(err(c.list_keys), "AccessDeniedException")
    user = create_iam_user(server, unique("kmsuser"), inline={"kms": ENCRYPT_DECRYPT})
    c = make_kms(server, user.akid, user.secret)
    assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    c.encrypt(KeyId=k["Arn"], Plaintext=b"y")
    check_error(err(c.disable_key, KeyId=k["KeyId"]), "AccessDeniedException",
                deny_message(user.arn, "kms:DisableKey", k["Arn"], "identity"))


def test_a_key_policy_without_the_account_makes_iam_insufficient(server, kms):
    named = create_iam_user(server, unique("named"))  # no IAM policy at all
    other = create_iam_user(server, unique("iamall"), inline={"all": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}})
    policy = json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": named.arn},
                       "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}],
    })
    k = new_key(kms, Policy=policy, BypassPolicyLockoutSafetyCheck=True)
    # The user the key policy names needs no IAM policy.
    named_kms = make_kms(server, named.akid, named.secret)
    blob = named_kms.encrypt(KeyId=k["KeyId"], Plaintext=b"v")["CiphertextBlob"]
    assert named_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"v"
    # IAM allows kms:* to the other user, but the key policy does not name the account.
    other_kms = make_kms(server, other.akid, other.secret)
    check_error(err(other_kms.encrypt, KeyId=k["KeyId"], Plaintext=b"v"), "AccessDeniedException",
                deny_message(other.arn, "kms:Encrypt", k["Arn"], "resource"))
    # Not even the account's root.
    check_error(err(kms.decrypt, CiphertextBlob=blob), "AccessDeniedException")
    other_kms.create_key()  # on `*`, IAM alone decides


def test_an_explicit_deny_wins(server, kms):
    k = new_key(kms)
    denied = create_iam_user(server, unique("denied"), inline={"p": {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": k["Arn"]},
        ]}})
    c = make_kms(server, denied.akid, denied.secret)
    blob = c.encrypt(KeyId=k["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    check_error(err(c.decrypt, CiphertextBlob=blob), "AccessDeniedException",
                deny_message(denied.arn, "kms:Decrypt", k["Arn"], "identity-deny"))
    # A Deny in the key policy beats an IAM Allow (and the root's own rights).
    allowed = create_iam_user(server, unique("allowed"), inline={"kms": ENCRYPT_DECRYPT})
    policy = json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": allowed.arn}, "Action": "kms:Encrypt", "Resource": "*"},
        ],
    })
    kms.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy=policy)
    a = make_kms(server, allowed.akid, allowed.secret)
    check_error(err(a.encrypt, KeyId=k["KeyId"], Plaintext=b"x"), "AccessDeniedException",
                deny_message(allowed.arn, "kms:Encrypt", k["Arn"], "resource-deny"))
    assert a.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_encryption_context_conditions(server, kms):
    k = new_key(kms)
    user = create_iam_user(server, unique("ctx"), inline={"p": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
                       "Condition": {"StringEquals": {"kms:EncryptionContext:team": "core"}}}]}})
    c = make_kms(server, user.akid, user.secret)
    c.encrypt(KeyId=k["KeyId"], Plaintext=b"x", EncryptionContext={"team": "core"})
    check_error(err(c.encrypt, KeyId=k["KeyId"], Plaintext=b"x", EncryptionContext={"team": "other"}),
                "AccessDeniedException")


# ------------------------------------------------------------------------------------------------
# The AWS managed key of ECR


def test_the_aws_managed_ecr_key(server):
    acct, kms = own_account(server)
    assert kms.list_aliases()["Aliases"] == [] and kms.list_keys()["Keys"] == []
    md = kms.describe_key(KeyId="alias/aws/ecr")["KeyMetadata"]  # created on first use, as KMS
    assert (md["KeyManager"], md["KeyState"], md["AWSAccountId"]) == ("AWS", "Enabled", acct)
    assert md["Description"] == "Default key that protects my ECR data when no other key is defined"
    assert kms.describe_key(KeyId="alias/aws/ecr")["KeyMetadata"] == md, "once per account and region"
    aliases = kms.list_aliases()["Aliases"]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in aliases] == [("alias/aws/ecr", md["KeyId"])]
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [md["KeyId"]]
    assert kms.get_key_rotation_status(KeyId=md["KeyId"])["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"])
    assert any("kms:Encrypt" in s["Action"] for s in policy["Statement"])
    blob = kms.encrypt(KeyId="alias/aws/ecr", Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    # Its key policy lets no one manage it.
    for call, kw in [
        (kms.disable_key, {}),
        (kms.schedule_key_deletion, {}),
        (kms.put_key_policy, {"PolicyName": "default", "Policy": kms.get_key_policy(KeyId=md["KeyId"])["Policy"]}),
        (kms.tag_resource, {"Tags": [{"TagKey": "a", "TagValue": "b"}]}),
        (kms.rotate_key_on_demand, {}),
    ]:
        check_error(err(call, KeyId=md["KeyId"], **kw), "AccessDeniedException")
    check_error(err(kms.create_alias, AliasName="alias/mine", TargetKeyId=md["KeyId"]), "AccessDeniedException")
    check_error(err(kms.delete_alias, AliasName="alias/aws/ecr"), "InvalidAliasNameException")
    # Nor the operator.
    res = server.admin("kms", "disable-key", "--account-id", acct, "--key-id", md["KeyId"])
    assert res.returncode != 0 and "AWS managed key" in res.stderr, res


# ------------------------------------------------------------------------------------------------
# The AWS CLI, the operator's commands, the API's edges


def test_the_aws_cli_creates_describes_lists_and_round_trips_files(server, tmp_path):
    md = cli_json(kms_cli(server, "create-key", "--description", "cli key"))["KeyMetadata"]
    assert md["Description"] == "cli key" and md["KeyState"] == "Enabled"
    alias = f"alias/{unique('cli')}"
    assert kms_cli(server, "create-alias", "--alias-name", alias, "--target-key-id", md["KeyId"]).returncode == 0
    assert cli_json(kms_cli(server, "describe-key", "--key-id", alias))["KeyMetadata"]["Arn"] == md["Arn"]
    listed = cli_json(kms_cli(server, "list-aliases", "--key-id", md["KeyId"]))["Aliases"]
    assert [a["AliasName"] for a in listed] == [alias]
    data = bytes(range(256)) * 4
    (tmp_path / "plain.bin").write_bytes(data)
    res = kms_cli(server, "encrypt", "--key-id", alias, "--plaintext", f"fileb://{tmp_path / 'plain.bin'}",
                  "--encryption-context", "purpose=cli", "--query", "CiphertextBlob", "--output", "text")
    assert res.returncode == 0, res.stderr
    (tmp_path / "cipher.bin").write_bytes(base64.b64decode(res.stdout.strip()))
    res = kms_cli(server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher.bin'}",
                  "--encryption-context", "purpose=cli", "--query", "Plaintext", "--output", "text")
    assert res.returncode == 0, res.stderr
    assert base64.b64decode(res.stdout.strip()) == data
    res = kms_cli(server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher.bin'}")
    assert res.returncode == 254 or res.returncode == 255, res
    assert "(InvalidCiphertextException) when calling the Decrypt operation" in res.stderr
    res = kms_cli(server, "describe-key", "--key-id", "alias/none")
    assert cli_error_line("NotFoundException", "DescribeKey",
                          f"Alias arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/none is not found.") in res.stderr


def test_admin_commands_and_other_nodes_see_changes_within_seconds(server, kms):
    res = server.admin("kms", "create-key", "--description", "by the operator", "--tag", "owner=ops")
    assert res.returncode == 0, res.stderr
    md = parse_json_output(res.stdout)["KeyMetadata"]
    assert kms.describe_key(KeyId=md["Arn"])["KeyMetadata"]["Description"] == "by the operator"
    assert kms.list_resource_tags(KeyId=md["KeyId"])["Tags"] == [{"TagKey": "owner", "TagValue": "ops"}]
    alias = f"alias/{unique('ops')}"
    assert server.admin("kms", "create-alias", "--alias-name", alias, "--target-key-id", md["KeyId"]).returncode == 0
    kms.encrypt(KeyId=alias, Plaintext=b"x")  # the server has the key cached now
    # The admin command is another process (another node, as far as caches go).
    assert server.admin("kms", "disable-key", "--key-id", md["KeyId"]).returncode == 0
    started = time.monotonic()
    eventually(lambda: check_error(err(kms.encrypt, KeyId=alias, Plaintext=b"x"), "DisabledException"), timeout=3)
    assert time.monotonic() - started < 3
    assert server.admin("kms", "enable-key", "--key-id", md["KeyId"]).returncode == 0
    eventually(lambda: kms.encrypt(KeyId=alias, Plaintext=b"x"), timeout=3)
    out = parse_json_output(server.admin("kms", "schedule-key-deletion", "--key-id", md["KeyId"],
                                         "--pending-window-in-days", "7").stdout)
    assert (out["KeyState"], out["PendingWindowInDays"]) == ("PendingDeletion", 7)
    out = parse_json_output(server.admin("kms", "cancel-key-deletion", "--key-id", md["KeyId"]).stdout)
    assert out["KeyId"] == md["Arn"]
    assert server.admin("kms", "enable-key", "--key-id", md["KeyId"]).returncode == 0
    assert server.admin("kms", "enable-key-rotation", "--key-id", md["KeyId"],
                        "--rotation-period-in-days", "180").returncode == 0
    assert parse_json_output(server.admin("kms", "rotate-key", "--key-id", md["KeyId"]).stdout)["KeyId"] == md["KeyId"]
    listed = parse_json_output(server.admin("kms", "list-keys").stdout)["Keys"]
    assert md["KeyId"] in [k["KeyId"] for k in listed]
    described = parse_json_output(server.admin("kms", "describe-key", "--key-id", alias).stdout)["KeyMetadata"]
    assert described["KeyState"] == "Enabled"
    assert len(kms.list_key_rotations(KeyId=md["KeyId"])["Rotations"]) == 1
    res = server.admin("kms", "schedule-key-deletion", "--key-id", md["KeyId"], "--pending-window-in-days", "3")
    assert res.returncode != 0 and "pendingWindowInDays" in res.stderr


def test_unsupported_and_unknown_operations(server):
    from ecrlib import raw_call

    r = raw_call(server, None, {}, service="kms", target="TrentService.Sign")
    assert (r.status, r.error_type) == (400, "UnsupportedOperationException"), r
    r = raw_call(server, None, {}, service="kms", target="TrentService.NoSuchThing")
    assert (r.status, r.error_type) == (400, "UnknownOperationException"), r
    # Signed for another service: refused before anything else.
    r = raw_call(server, None, {}, service="ecr", target="TrentService.ListKeys")
    assert (r.status, r.error_type) == (400, "InvalidSignatureException"), r
    assert "Credential should be scoped to correct service: 'kms'" in r.message, r


def test_kms_calls_are_audited_without_secrets(server, kms):
    k = new_key(kms, Description="audited")
    kms.encrypt(KeyId=k["KeyId"], Plaintext=b"very-secret-plaintext")
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    ct = boto3.client("cloudtrail", endpoint_url=server.url, region_name=REGION, aws_access_key_id=ROOT_AKID,
                      aws_secret_access_key=ROOT_SECRET, config=Config(retries=NO_RETRY))

    def found(name):
        events = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}],
                                  StartTime=since)["Events"]
        records = [json.loads(e["CloudTrailEvent"]) for e in events]
        mine = [r for r in records if (r.get("requestParameters") or {}).get("KeyId") == k["KeyId"]
                or ((r.get("responseElements") or {}).get("KeyMetadata") or {}).get("KeyId") == k["KeyId"]]
        assert mine, records
        return mine[0]

    enc = eventually(lambda: found("Encrypt"))
    assert enc["eventSource"] == "kms.amazonaws.com"
    text = json.dumps(enc)
    assert "Plaintext" not in text and "CiphertextBlob" not in text
    assert base64.b64encode(b"very-secret-plaintext").decode() not in text
    created = eventually(lambda: found("CreateKey"))
    assert created["responseElements"]["KeyMetadata"]["Description"] == "audited"

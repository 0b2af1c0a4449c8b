//! The KMS API (a subset of AWS KMS, issue 13): `POST /` with `X-Amz-Target:
//! TrentService.<Op>`, AWS JSON 1.1 bodies, SigV4-signed for service `kms` (region from the
//! credential scope), authorized by IAM as `kms:<Op>` on the key ARN (and the key policy), or on
//! `*` for CreateKey, ListKeys, ListAliases and GenerateRandom. The domain is
//! [`berth_registry::kms`]; this module parses, calls it and shapes the answers as KMS does.
//!
//! Errors are `{"__type": "<Exception>", "message": "..."}`, mapped once ([`KmsError`]): the
//! registry's `Error::Kms` as the KMS exception it names (HTTP 400; `DryRunOperationException`
//! 412), AccessDenied as `AccessDeniedException`, unavailable backends as
//! `DependencyTimeoutException` (503), anything else as `KMSInternalException` (500).
//! Symmetric encryption keys only: asymmetric and HMAC key specs, imported or external key
//! material, custom key stores, multi-Region keys, grants and Nitro enclave recipients are refused
//! with `UnsupportedOperationException`.

use crate::AppState;
use crate::ecr::{self, EcrError, SignedError};
use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use berth_meta::Namespace;
use berth_registry::kms::{KmsPage, NewKey, data_key_len, key_metadata};
use berth_registry::{Caller, Error, Registry};
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Prefix of every KMS `X-Amz-Target`.
pub const TARGET_PREFIX: &str = "TrentService.";

/// Largest request body: a key policy (32 KiB, escaped) or a 4 KiB plaintext in base64 fits.
const BODY_LIMIT: u64 = 256 * 1024;

/// The KMS operations served.
const OPERATIONS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "UpdateKeyDescription",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "GetKeyPolicy",
    "PutKeyPolicy",
    "ListKeyPolicies",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
];

/// Operations of AWS KMS that Berth does not have (`UnsupportedOperationException`).
const UNSUPPORTED: &[&str] = &[
    "ConnectCustomKeyStore",
    "CreateCustomKeyStore",
    "CreateGrant",
    "DeleteCustomKeyStore",
    "DeleteImportedKeyMaterial",
    "DeriveSharedSecret",
    "DescribeCustomKeyStores",
    "DisconnectCustomKeyStore",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "GetKeyLastUsage",
    "GetParametersForImport",
    "GetPublicKey",
    "ImportKeyMaterial",
    "ListGrants",
    "ListRetirableGrants",
    "ReEncrypt",
    "ReplicateKey",
    "RetireGrant",
    "RevokeGrant",
    "Sign",
    "UpdateCustomKeyStore",
    "UpdatePrimaryRegion",
    "Verify",
    "VerifyMac",
];

/// Whether the request is for KMS (by its `X-Amz-Target`).
pub(crate) fn is_target(parts: &Parts) -> bool {
    parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// A KMS error response: the AWS JSON error shape of ECR's with KMS's names.
struct KmsError(EcrError);

fn err(kind: &'static str, message: impl Into<String>) -> KmsError {
    KmsError(EcrError::new(kind, message))
}

fn validation(message: impl Into<String>) -> KmsError {
    err("ValidationException", message)
}

fn unsupported(message: impl Into<String>) -> KmsError {
    err("UnsupportedOperationException", message)
}

/// The one mapping of registry errors to KMS exceptions.
impl From<Error> for KmsError {
    fn from(e: Error) -> KmsError {
        let msg = e.to_string();
        let status = |kind, message: String, status| KmsError(EcrError { kind, message, status, kms_error: None });
        match e {
            Error::Kms { code: "DryRunOperationException", message } => {
                status("DryRunOperationException", message, StatusCode::PRECONDITION_FAILED)
            }
            Error::Kms { code, message } => err(code, message),
            Error::Denied(_) => err("AccessDeniedException", msg),
            Error::Unauthenticated | Error::TokenExpired => {
                err("UnrecognizedClientException", "The security token included in the request is invalid.")
            }
            Error::CredentialsExpired => err("ExpiredTokenException", msg),
            Error::AccountUnknown(_) => err("NotFoundException", msg),
            Error::Unavailable(_) | Error::StorageFull(_) => {
                status("DependencyTimeoutException", msg, StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                status("KMSInternalException", "An internal error occurred.".into(), StatusCode::INTERNAL_SERVER_ERROR)
            }
            other => {
                tracing::error!(error = %other, "unexpected registry error on the KMS API");
                status("KMSInternalException", "An internal error occurred.".into(), StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

impl From<SignedError> for KmsError {
    fn from(e: SignedError) -> KmsError {
        match e {
            SignedError::Sig(e) => KmsError(EcrError::from(e)),
            SignedError::Registry(e) => KmsError::from(e),
        }
    }
}

impl From<EcrError> for KmsError {
    fn from(e: EcrError) -> KmsError {
        KmsError(e)
    }
}

/// Serve one KMS request.
pub async fn handle(state: &AppState, mut parts: Parts, mut body: Body) -> Response {
    let request_id = crate::obs::request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    crate::obs::note(|f| f.api = "kms");
    match serve(state, &mut parts, &mut body).await {
        Ok(v) => {
            crate::obs::note(|f| {
                if !f.operation.as_deref().is_some_and(crate::obs::read_only) {
                    f.response_elements = crate::obs::scrub(&v);
                }
            });
            let mut r = Response::new(Body::from(v.to_string()));
            ecr::set_headers(&mut r, &request_id);
            r
        }
        Err(KmsError(e)) => {
            crate::obs::note_error(e.kind, &e.message);
            e.into_response(&request_id)
        }
    }
}

/// What an operation knows about its caller.
struct Ctx<'a> {
    reg: &'a Registry,
    caller: Caller<'a>,
    /// The caller's account in the request's region.
    ns: Namespace,
}

/// The signature's header part, then the bounded body, then the signature, then the operation.
async fn serve(state: &AppState, parts: &mut Parts, body: &mut Body) -> Result<Value, KmsError> {
    let reg = &*state.registry;
    let auth = ecr::authenticate_headers(reg, parts, "kms", reg.regions()).await?;
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let op = target.strip_prefix(TARGET_PREFIX).unwrap_or("").to_string();
    crate::obs::note(|f| f.operation = Some(op.chars().filter(|c| !c.is_control()).take(64).collect()));
    let too_large = || {
        EcrError::new(
            "SerializationException",
            format!("The request body is larger than the {BODY_LIMIT} bytes allowed."),
        )
    };
    // Kept whole: it holds the body's share of the in-flight budget until the answer.
    let req = ecr::read_json(auth, parts, body, BODY_LIMIT, too_large).await?;
    let input = req.input.clone();
    if let Some(field) = ecr::control_char_field(&input, "") {
        return Err(validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must not contain control characters"
        )));
    }
    crate::obs::note(|f| f.request_parameters = crate::obs::scrub(&input));
    let origin = crate::origin(state.trust_forwarded, parts);
    let ctx = Ctx {
        reg,
        caller: Caller { identity: Some(&req.identity), source_ip: origin.ip, secure_transport: origin.secure },
        ns: reg.namespace(&req.identity.account_id, &req.verified.region),
    };
    if OPERATIONS.contains(&op.as_str()) {
        crate::obs::note(|f| f.known_operation = true);
    }
    dispatch(&ctx, &op, input).await
}

async fn dispatch(ctx: &Ctx<'_>, op: &str, input: Value) -> Result<Value, KmsError> {
    let (reg, caller, ns) = (ctx.reg, Some(&ctx.caller), &ctx.ns);
    match op {
        "CreateKey" => create_key(ctx, parse(input)?).await,
        "DescribeKey" => {
            let i: KeyIn = parse(input)?;
            no_grant_tokens(&i.grant_tokens)?;
            Ok(json!({"KeyMetadata": key_metadata(&reg.kms_describe_key(caller, ns, &i.key_id).await?)}))
        }
        "ListKeys" => {
            let i: ListIn = parse(input)?;
            let p = reg.kms_list_keys(caller, ns, i.limit, i.marker.as_deref()).await?;
            Ok(listing(&p, "Keys", |k| json!({"KeyId": k.key_id, "KeyArn": k.arn()})))
        }
        "UpdateKeyDescription" => {
            let i: UpdateKeyDescriptionIn = parse(input)?;
            reg.kms_update_key_description(caller, ns, &i.key_id, &i.description).await?;
            Ok(json!({}))
        }
        "EnableKey" => {
            let i: KeyIn = parse(input)?;
            reg.kms_enable_key(caller, ns, &i.key_id).await?;
            Ok(json!({}))
        }
        "DisableKey" => {
            let i: KeyIn = parse(input)?;
            reg.kms_disable_key(caller, ns, &i.key_id).await?;
            Ok(json!({}))
        }
        "ScheduleKeyDeletion" => {
            let i: ScheduleKeyDeletionIn = parse(input)?;
            let k = reg.kms_schedule_key_deletion(caller, ns, &i.key_id, i.pending_window_in_days).await?;
            Ok(json!({
                "KeyId": k.arn(),
                "DeletionDate": secs(k.deletion_date.unwrap_or_default()),
                "KeyState": k.state,
                "PendingWindowInDays": k.pending_window_days,
            }))
        }
        "CancelKeyDeletion" => {
            let i: KeyIn = parse(input)?;
            Ok(json!({"KeyId": reg.kms_cancel_key_deletion(caller, ns, &i.key_id).await?}))
        }
        "EnableKeyRotation" => {
            let i: EnableKeyRotationIn = parse(input)?;
            reg.kms_enable_key_rotation(caller, ns, &i.key_id, i.rotation_period_in_days).await?;
            Ok(json!({}))
        }
        "DisableKeyRotation" => {
            let i: KeyIn = parse(input)?;
            reg.kms_disable_key_rotation(caller, ns, &i.key_id).await?;
            Ok(json!({}))
        }
        "GetKeyRotationStatus" => {
            let i: KeyIn = parse(input)?;
            let s = reg.kms_key_rotation_status(caller, ns, &i.key_id).await?;
            let mut v = json!({"KeyRotationEnabled": s.enabled, "KeyId": s.key_arn});
            if let (Some(p), Some(n)) = (s.period_days, s.next_rotation_at) {
                v["RotationPeriodInDays"] = json!(p);
                v["NextRotationDate"] = json!(secs(n));
            }
            Ok(v)
        }
        "RotateKeyOnDemand" => {
            let i: KeyIn = parse(input)?;
            Ok(json!({"KeyId": reg.kms_rotate_key_on_demand(caller, ns, &i.key_id).await?}))
        }
        "ListKeyRotations" => {
            let i: ListKeyRotationsIn = parse(input)?;
            let all = match i.include_key_material.as_deref() {
                None | Some("ROTATIONS_ONLY") => false,
                Some("ALL_KEY_MATERIAL") => true,
                Some(other) => {
                    return Err(enum_error("includeKeyMaterial", other, "[ALL_KEY_MATERIAL, ROTATIONS_ONLY]"));
                }
            };
            let p = reg.kms_list_key_rotations(caller, ns, &i.key_id, all, i.limit, i.marker.as_deref()).await?;
            Ok(listing(&p, "Rotations", |r| {
                let mut v = json!({
                    "KeyId": r.key_id,
                    "KeyMaterialId": r.material_id,
                    "KeyMaterialState": if r.current { "CURRENT" } else { "NON_CURRENT" },
                    "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
                });
                if let Some(t) = &r.rotation_type {
                    v["RotationDate"] = json!(secs(r.created_at));
                    v["RotationType"] = json!(t);
                }
                v
            }))
        }
        "CreateAlias" | "UpdateAlias" => {
            let i: AliasIn = parse(input)?;
            let target = i.target_key_id.ok_or_else(|| missing("targetKeyId"))?;
            if op == "CreateAlias" {
                reg.kms_create_alias(caller, ns, &i.alias_name, &target).await?;
            } else {
                reg.kms_update_alias(caller, ns, &i.alias_name, &target).await?;
            }
            Ok(json!({}))
        }
        "DeleteAlias" => {
            let i: AliasIn = parse(input)?;
            reg.kms_delete_alias(caller, ns, &i.alias_name).await?;
            Ok(json!({}))
        }
        "ListAliases" => {
            let i: ListAliasesIn = parse(input)?;
            let p = reg.kms_list_aliases(caller, ns, i.key_id.as_deref(), i.limit, i.marker.as_deref()).await?;
            Ok(listing(&p, "Aliases", |a| {
                json!({
                    "AliasName": a.name,
                    "AliasArn": a.arn(),
                    "TargetKeyId": a.target_key_id,
                    "CreationDate": secs(a.created_at),
                    "LastUpdatedDate": secs(a.updated_at),
                })
            }))
        }
        "GetKeyPolicy" => {
            let i: KeyPolicyIn = parse(input)?;
            let policy = reg.kms_key_policy(caller, ns, &i.key_id, i.policy_name.as_deref()).await?;
            Ok(json!({"Policy": policy, "PolicyName": "default"}))
        }
        "PutKeyPolicy" => {
            let i: KeyPolicyIn = parse(input)?;
            let policy = i.policy.ok_or_else(|| missing("policy"))?;
            let bypass = i.bypass_policy_lockout_safety_check.unwrap_or(false);
            reg.kms_put_key_policy(caller, ns, &i.key_id, i.policy_name.as_deref(), &policy, bypass).await?;
            Ok(json!({}))
        }
        "ListKeyPolicies" => {
            let i: ListKeyPoliciesIn = parse(input)?;
            let names = reg.kms_list_key_policies(caller, ns, &i.key_id).await?;
            Ok(json!({"PolicyNames": names, "Truncated": false}))
        }
        "TagResource" => {
            let i: TagResourceIn = parse(input)?;
            reg.kms_tag_key(caller, ns, &i.key_id, &tag_pairs(i.tags)).await?;
            Ok(json!({}))
        }
        "UntagResource" => {
            let i: UntagResourceIn = parse(input)?;
            reg.kms_untag_key(caller, ns, &i.key_id, &i.tag_keys).await?;
            Ok(json!({}))
        }
        "ListResourceTags" => {
            let i: ListTagsIn = parse(input)?;
            let p = reg.kms_list_key_tags(caller, ns, &i.key_id, i.limit, i.marker.as_deref()).await?;
            Ok(listing(&p, "Tags", |(k, v)| json!({"TagKey": k, "TagValue": v})))
        }
        "Encrypt" => {
            let i: EncryptIn = parse(input)?;
            check_algorithm(i.encryption_algorithm.as_deref())?;
            no_grant_tokens(&i.grant_tokens)?;
            let plaintext = blob("plaintext", &i.plaintext)?;
            let context = i.encryption_context.unwrap_or_default();
            let dry = i.dry_run.unwrap_or(false);
            let out = reg.kms_encrypt(caller, ns, &i.key_id, &plaintext, &context, dry).await?;
            Ok(json!({
                "CiphertextBlob": B64.encode(&out.ciphertext),
                "KeyId": out.key_arn,
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }))
        }
        "Decrypt" => {
            let i: DecryptIn = parse(input)?;
            check_algorithm(i.encryption_algorithm.as_deref())?;
            no_grant_tokens(&i.grant_tokens)?;
            no_recipient(&i.recipient)?;
            let ciphertext = blob("ciphertextBlob", &i.ciphertext_blob.ok_or_else(|| missing("ciphertextBlob"))?)?;
            let context = i.encryption_context.unwrap_or_default();
            let dry = i.dry_run.unwrap_or(false);
            let out = reg.kms_decrypt(caller, ns, &ciphertext, &context, i.key_id.as_deref(), dry).await?;
            Ok(json!({
                "KeyId": out.key_arn,
                "Plaintext": B64.encode(out.plaintext.as_deref().map(Vec::as_slice).unwrap_or_default()),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "KeyMaterialId": out.material_id,
            }))
        }
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            let i: GenerateDataKeyIn = parse(input)?;
            no_grant_tokens(&i.grant_tokens)?;
            no_recipient(&i.recipient)?;
            let len = data_key_len(i.key_spec.as_deref(), i.number_of_bytes)?;
            let context = i.encryption_context.unwrap_or_default();
            let with_plaintext = op == "GenerateDataKey";
            let dry = i.dry_run.unwrap_or(false);
            let out = reg.kms_generate_data_key(caller, ns, &i.key_id, len, &context, with_plaintext, dry).await?;
            let mut v = json!({
                "CiphertextBlob": B64.encode(&out.ciphertext),
                "KeyId": out.key_arn,
                "KeyMaterialId": out.material_id,
            });
            if let Some(p) = &out.plaintext {
                v["Plaintext"] = json!(B64.encode(p.as_slice()));
            }
            Ok(v)
        }
        "GenerateRandom" => {
            let i: GenerateRandomIn = parse(input)?;
            if i.custom_key_store_id.is_some() {
                return Err(unsupported("Berth has no custom key stores."));
            }
            no_recipient(&i.recipient)?;
            let bytes = reg.kms_generate_random(caller, i.number_of_bytes).await?;
            Ok(json!({"Plaintext": B64.encode(bytes.as_slice())}))
        }
        other if UNSUPPORTED.contains(&other) => {
            Err(unsupported(format!("Berth's KMS does not support {other} (symmetric encryption keys only).")))
        }
        other => Err(err(
            "UnknownOperationException",
            format!(
                "Berth does not implement kms:{}",
                other.chars().filter(|c| !c.is_control()).take(200).collect::<String>()
            ),
        )),
    }
}

/// Epoch seconds (a JSON number, as AWS JSON timestamps) of epoch milliseconds.
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A page as KMS lists: the items under `field`, `Truncated`, and `NextMarker` when truncated.
fn listing<T>(p: &KmsPage<T>, field: &str, item: impl Fn(&T) -> Value) -> Value {
    let mut v = json!({ field: p.items.iter().map(item).collect::<Vec<_>>(), "Truncated": p.next_marker.is_some() });
    if let Some(m) = &p.next_marker {
        v["NextMarker"] = json!(m);
    }
    v
}

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, KmsError> {
    serde_json::from_value(v).map_err(|e| err("SerializationException", e.to_string()))
}

fn missing(field: &str) -> KmsError {
    validation(format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

fn enum_error(field: &str, value: &str, set: &str) -> KmsError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: {set}"
    ))
}

/// A base64 blob member.
fn blob(field: &str, b64: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, KmsError> {
    B64.decode(b64)
        .map(zeroize::Zeroizing::new)
        .map_err(|_| err("SerializationException", format!("'{field}' is not valid base64")))
}

/// `EncryptionAlgorithm`: only `SYMMETRIC_DEFAULT` (the others are for asymmetric keys).
fn check_algorithm(a: Option<&str>) -> Result<(), KmsError> {
    match a {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some("RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE") => Err(err(
            "InvalidKeyUsageException",
            "The encryption algorithm is for asymmetric keys; Berth's keys use SYMMETRIC_DEFAULT.",
        )),
        Some(other) => Err(enum_error(
            "encryptionAlgorithm",
            other,
            "[SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
        )),
    }
}

fn no_grant_tokens(tokens: &Option<Vec<String>>) -> Result<(), KmsError> {
    match tokens {
        Some(t) if !t.is_empty() => Err(unsupported("Berth's KMS has no grants: GrantTokens cannot be used.")),
        _ => Ok(()),
    }
}

fn no_recipient(r: &Option<Value>) -> Result<(), KmsError> {
    match r {
        Some(v) if !v.is_null() => Err(unsupported("Berth's KMS does not support Nitro Enclaves recipients.")),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    tag_key: String,
    #[serde(default)]
    tag_value: String,
}

fn tag_pairs(tags: Vec<Tag>) -> Vec<(String, String)> {
    tags.into_iter().map(|t| (t.tag_key, t.tag_value)).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyIn {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    customer_master_key_spec: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    tags: Option<Vec<Tag>>,
    multi_region: Option<bool>,
    xks_key_id: Option<String>,
}

const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS25519",
];

async fn create_key(ctx: &Ctx<'_>, i: CreateKeyIn) -> Result<Value, KmsError> {
    if i.key_spec.is_some() && i.customer_master_key_spec.is_some() {
        return Err(validation(
            "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec parameter is deprecated. Use KeySpec parameter instead.",
        ));
    }
    let (field, spec) = match (&i.key_spec, &i.customer_master_key_spec) {
        (Some(s), _) => ("keySpec", s.as_str()),
        (None, Some(s)) => ("customerMasterKeySpec", s.as_str()),
        (None, None) => ("keySpec", "SYMMETRIC_DEFAULT"),
    };
    if !KEY_SPECS.contains(&spec) {
        return Err(enum_error(field, spec, &format!("[{}]", KEY_SPECS.join(", "))));
    }
    if let Some(u) = &i.key_usage
        && !["SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"].contains(&u.as_str())
    {
        return Err(enum_error("keyUsage", u, "[SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT]"));
    }
    if let Some(o) = &i.origin
        && !["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"].contains(&o.as_str())
    {
        return Err(enum_error("origin", o, "[AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]"));
    }
    if spec != "SYMMETRIC_DEFAULT" {
        return Err(unsupported(format!(
            "KeySpec {spec} is not supported: Berth's KMS has symmetric encryption keys only (SYMMETRIC_DEFAULT)."
        )));
    }
    if let Some(u) = i.key_usage.as_deref().filter(|u| *u != "ENCRYPT_DECRYPT") {
        return Err(validation(format!("KeyUsage {u} is not compatible with KeySpec SYMMETRIC_DEFAULT")));
    }
    if let Some(o) = i.origin.as_deref().filter(|o| *o != "AWS_KMS") {
        return Err(unsupported(format!(
            "Origin {o} is not supported: Berth's KMS keys have key material it generates (AWS_KMS)."
        )));
    }
    if i.multi_region == Some(true) {
        return Err(unsupported("Berth's KMS has no multi-Region keys."));
    }
    if i.custom_key_store_id.is_some() || i.xks_key_id.is_some() {
        return Err(unsupported("Berth's KMS has no custom key stores."));
    }
    let new = NewKey {
        description: i.description.as_deref(),
        policy: i.policy.as_deref(),
        bypass_policy_lockout_safety_check: i.bypass_policy_lockout_safety_check.unwrap_or(false),
        tags: tag_pairs(i.tags.unwrap_or_default()),
    };
    let key = ctx.reg.kms_create_key(Some(&ctx.caller), &ctx.ns, new).await?;
    Ok(json!({"KeyMetadata": key_metadata(&key)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIn {
    key_id: String,
    grant_tokens: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListIn {
    limit: Option<i64>,
    marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateKeyDescriptionIn {
    key_id: String,
    description: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleKeyDeletionIn {
    key_id: String,
    pending_window_in_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnableKeyRotationIn {
    key_id: String,
    rotation_period_in_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyRotationsIn {
    key_id: String,
    include_key_material: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasIn {
    alias_name: String,
    target_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAliasesIn {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPolicyIn {
    key_id: String,
    policy_name: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyPoliciesIn {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceIn {
    key_id: String,
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagResourceIn {
    key_id: String,
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsIn {
    key_id: String,
    limit: Option<i64>,
    marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptIn {
    key_id: String,
    plaintext: String,
    encryption_context: Option<BTreeMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptIn {
    ciphertext_blob: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<Value>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyIn {
    key_id: String,
    encryption_context: Option<BTreeMap<String, String>>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<Value>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateRandomIn {
    number_of_bytes: Option<i64>,
    custom_key_store_id: Option<String>,
    recipient: Option<Value>,
}

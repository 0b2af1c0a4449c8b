//! KMS keys (issue 13): a subset of AWS KMS for symmetric encryption keys, per account and region,
//! with KMS's ARNs, aliases, key states, key policies, rotation, tags and errors.
//!
//! # Keys and material
//! A key (`arn:aws:kms:<region>:<account>:key/<uuid>`) has one or more versions of 32-byte
//! material: created with [`berth_kms::random_material`], stored only sealed under the master key
//! ([`crate::Keys::master`]) with the key ARN and version as context. Rotation (automatic, by the
//! periodic sweep, or on demand) adds a version; old versions stay to decrypt what they encrypted.
//! Ciphertext blobs ([`berth_kms::encrypt`]) name the key and the version, so Decrypt needs no key
//! id.
//!
//! # States
//! `Enabled` keys encrypt and decrypt; `Disabled` ones refuse with `DisabledException`; keys
//! `PendingDeletion` refuse with `KMSInvalidStateException` and are deleted (material, aliases
//! and tags with them) once their deletion date has passed: when next looked at, or by the
//! periodic sweep ([`Registry::kms_sweep`]). CancelKeyDeletion leaves a key `Disabled`, as KMS.
//!
//! # Authorization
//! A call by an API caller is authorized against IAM and the key policy
//! ([`Registry::authorize_on_key`]): KMS's default key policy ("Enable IAM User Permissions")
//! delegates to IAM; a policy that does not name the account makes IAM policies insufficient.
//! Operations with no key (CreateKey, ListKeys, ListAliases, GenerateRandom) are authorized on
//! `*`. Calls by the operator (`berth admin`, `caller` `None`) are not authorized. Alias
//! operations also need the IAM permission on the alias ARN, as KMS.
//!
//! # The AWS managed key of ECR
//! `alias/aws/ecr` names an AWS managed key (KeyManager `AWS`) created on first use per account
//! and region (DescribeKey of the alias, or a repository encrypted with KMS without a key).
//! Its key policy lets principals of the account use it as far as their IAM policies allow
//! (AWS's also requires the call to come through ECR, `kms:ViaService`; Berth does not check
//! that), and lets the account read its metadata; no one may disable, delete, rotate on
//! demand, re-policy, tag or alias it.
//!
//! # Caching
//! Keys are cached per node with their parsed policy, tags and opened material versions, for at
//! most [`KEY_CACHE_MS`]. Every KMS write moves the authorization epoch: this node drops its
//! cache at once, others within [`crate::EPOCH_CHECK_MS`].

use crate::authz::KeyTarget;
use crate::{Caller, Error, Registry, Result, Target};
use berth_kms::Material;
use berth_meta::kms::{KEY_DISABLED, KEY_ENABLED, KEY_PENDING_DELETION};
use berth_meta::{KmsAlias, KmsKey, KmsMaterial, Namespace};
use berth_policy::{Policy, PolicyKind};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

/// How long (ms) a node keeps a key (and its opened material) without reading it again, when
/// the authorization epoch does not move before.
pub const KEY_CACHE_MS: i64 = 60_000;
/// Default, least and greatest waiting period of ScheduleKeyDeletion (days).
pub const DEFAULT_PENDING_WINDOW_DAYS: i64 = 30;
const MIN_PENDING_WINDOW_DAYS: i64 = 7;
const MAX_PENDING_WINDOW_DAYS: i64 = 30;
/// Default, least and greatest automatic rotation period (days).
pub const DEFAULT_ROTATION_PERIOD_DAYS: i64 = 365;
const MIN_ROTATION_PERIOD_DAYS: i64 = 90;
const MAX_ROTATION_PERIOD_DAYS: i64 = 2560;
/// On-demand rotations per key at most (KMS's quota).
pub const MAX_ON_DEMAND_ROTATIONS: usize = 25;
/// Tags per key at most.
pub const MAX_KEY_TAGS: usize = 50;
/// Aliases per key at most.
pub const MAX_ALIASES_PER_KEY: usize = 50;
/// Largest key policy (bytes), KMS's quota.
pub const MAX_KEY_POLICY_BYTES: usize = 32 * 1024;
/// Largest description (characters).
const MAX_DESCRIPTION: usize = 8192;
/// Largest Encrypt plaintext (bytes).
pub const MAX_PLAINTEXT: usize = 4096;
/// Largest ciphertext blob (bytes).
pub const MAX_CIPHERTEXT: usize = 6144;
/// The alias of the AWS managed key of ECR.
pub const AWS_ECR_ALIAS: &str = "alias/aws/ecr";
/// The description of the AWS managed key of ECR, as AWS's managed keys say.
pub const AWS_ECR_DESCRIPTION: &str = "Default key that protects my ECR data when no other key is defined";
/// `KeyManager` of keys customers create, and of AWS managed keys.
pub const CUSTOMER: &str = "CUSTOMER";
pub const AWS: &str = "AWS";
/// Kind of the periodic job that deletes keys past their deletion date and rotates keys whose
/// automatic rotation is due ([`Registry::kms_sweep`]).
pub const KMS_SWEEP_JOB: &str = "kms-sweep";
const DAY_MS: i64 = 86_400_000;

fn kms(code: &'static str, message: impl Into<String>) -> Error {
    Error::Kms { code, message: message.into() }
}

/// KMS's `ValidationException` for a parameter outside its constraint.
fn validation(field: &str, value: impl std::fmt::Display, constraint: &str) -> Error {
    kms(
        "ValidationException",
        format!("1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"),
    )
}

fn check_range(field: &str, v: i64, min: i64, max: i64) -> Result<()> {
    if v < min {
        return Err(validation(field, v, &format!("Member must have value greater than or equal to {min}")));
    }
    if v > max {
        return Err(validation(field, v, &format!("Member must have value less than or equal to {max}")));
    }
    Ok(())
}

fn key_not_found(arn: &str) -> Error {
    kms("NotFoundException", format!("Key '{arn}' does not exist"))
}

fn invalid_key_id(given: &str) -> Error {
    kms("NotFoundException", format!("Invalid keyId {given}"))
}

fn alias_not_found(arn: &str) -> Error {
    kms("NotFoundException", format!("Alias {arn} is not found."))
}

fn disabled(arn: &str) -> Error {
    kms("DisabledException", format!("{arn} is disabled."))
}

fn pending_deletion(arn: &str) -> Error {
    kms("KMSInvalidStateException", format!("{arn} is pending deletion."))
}

fn aws_managed(arn: &str) -> Error {
    kms(
        "UnsupportedOperationException",
        format!("{arn} is an AWS managed key: its state, policy, rotation, tags and aliases cannot be changed."),
    )
}

fn invalid_marker() -> Error {
    kms("InvalidMarkerException", "The marker is not valid: pass the NextMarker of the previous response.")
}

/// The context a key's material version is sealed with: its ARN and version.
fn seal_context(arn: &str, version: i64) -> Vec<u8> {
    format!("{arn}#{version}").into_bytes()
}

/// Open the stored (base64, sealed by the master key) material of version `version` of key `arn`.
pub(crate) fn open_material(
    master: &berth_kms::MasterKey,
    arn: &str,
    version: i64,
    sealed_b64: &str,
) -> Result<Material> {
    let sealed = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sealed_b64)
        .map_err(|_| Error::Internal(format!("the sealed material of {arn} v{version} is not base64")))?;
    master.open_material(&seal_context(arn, version), &sealed).map_err(|err| {
        Error::Internal(format!("opening the material of {arn} v{version}: {err} (another master key?)"))
    })
}

/// The public id of version `version` of key `arn`'s material (KMS's `KeyMaterialId`, 64 hex
/// digits): a digest of the ARN and version, never of the material.
pub fn key_material_id(arn: &str, version: i64) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &seal_context(arn, version));
    hex::encode(d.as_ref())
}

/// KMS's `KeyMetadata` of a key, as DescribeKey and CreateKey answer it (timestamps in epoch
/// seconds): for the API and for `berth admin kms`.
pub fn key_metadata(k: &KmsKey) -> serde_json::Value {
    let arn = k.arn();
    let secs = |ms: i64| ms as f64 / 1000.0;
    let mut v = serde_json::json!({
        "AWSAccountId": k.account_id,
        "KeyId": k.key_id,
        "Arn": arn,
        "CreationDate": secs(k.created_at),
        "Enabled": k.state == KEY_ENABLED,
        "Description": k.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": k.state,
        "Origin": "AWS_KMS",
        "KeyManager": k.key_manager,
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
        "CurrentKeyMaterialId": key_material_id(&arn, k.current_version),
    });
    if k.state == KEY_PENDING_DELETION {
        if let Some(d) = k.deletion_date {
            v["DeletionDate"] = serde_json::json!(secs(d));
        }
        if let Some(w) = k.pending_window_days {
            v["PendingDeletionWindowInDays"] = serde_json::json!(w);
        }
    }
    v
}

/// KMS's default key policy: the account's root may do everything, which delegates the key's
/// use to IAM policies ("Enable IAM User Permissions").
pub fn default_key_policy(account_id: &str) -> String {
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : \"arn:aws:iam::{account_id}:root\"\n    }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
    )
}

/// The key policy of the AWS managed key of ECR: principals of the account may use the key as
/// far as their IAM policies allow, and the account may read its metadata. (AWS's also requires
/// `kms:ViaService` = ECR; Berth does not check where a call comes from.)
pub fn aws_ecr_key_policy(account_id: &str) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "Version": "2012-10-17",
        "Id": "auto-ecr-1",
        "Statement": [
            {
                "Sid": "Allow access through Amazon ECR for all principals in the account that are authorized to use Amazon ECR",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": account_id}}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
                "Resource": "*"
            }
        ]
    }))
    .unwrap_or_default()
}

/// Parse a key policy as KMS validates it: at most [`MAX_KEY_POLICY_BYTES`]
/// (`LimitExceededException`), a resource policy with principals
/// (`MalformedPolicyDocumentException`).
pub fn parse_key_policy(document: &str) -> Result<Policy> {
    if document.len() > MAX_KEY_POLICY_BYTES {
        return Err(kms(
            "LimitExceededException",
            format!("The key policy is larger than the {MAX_KEY_POLICY_BYTES} bytes a key policy may have."),
        ));
    }
    Policy::parse(document, PolicyKind::Resource).map_err(|e| kms("MalformedPolicyDocumentException", e.to_string()))
}

/// A key as a node caches it: the key, its parsed policy and tags, and the material versions
/// opened so far (zeroized when dropped).
pub(crate) struct KeyEntry {
    pub(crate) key: KmsKey,
    pub(crate) arn: String,
    /// `None` when the stored policy no longer parses (every request is then denied).
    policy: Option<Policy>,
    tags: Vec<(String, String)>,
    loaded_at: i64,
    materials: RwLock<HashMap<i64, Material>>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry").field("arn", &self.arn).field("state", &self.key.state).finish_non_exhaustive()
    }
}

impl KeyEntry {
    fn target(&self) -> KeyTarget<'_> {
        KeyTarget { arn: &self.arn, account_id: &self.key.account_id, policy: self.policy.as_ref(), tags: &self.tags }
    }

    fn is_aws_managed(&self) -> bool {
        self.key.key_manager == AWS
    }

    /// `Ok` when the key may encrypt and decrypt: `DisabledException` or
    /// `KMSInvalidStateException` otherwise.
    fn check_usable(&self) -> Result<()> {
        match self.key.state.as_str() {
            KEY_ENABLED => Ok(()),
            KEY_DISABLED => Err(disabled(&self.arn)),
            _ => Err(pending_deletion(&self.arn)),
        }
    }

    /// `KMSInvalidStateException` for a key pending deletion.
    fn check_not_pending(&self) -> Result<()> {
        if self.key.state == KEY_PENDING_DELETION { Err(pending_deletion(&self.arn)) } else { Ok(()) }
    }

    /// `UnsupportedOperationException` for an AWS managed key.
    fn check_customer_managed(&self) -> Result<()> {
        if self.is_aws_managed() { Err(aws_managed(&self.arn)) } else { Ok(()) }
    }
}

/// A KMS key ready to wrap data keys: its ARN, uuid bytes, current material version and
/// material. `Debug` does not show the material.
pub struct UsableKey {
    pub arn: String,
    pub uuid: [u8; 16],
    pub version: u32,
    pub material: Material,
}

impl std::fmt::Debug for UsableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsableKey").field("arn", &self.arn).field("version", &self.version).finish_non_exhaustive()
    }
}

/// What CreateKey is given.
#[derive(Debug, Clone, Default)]
pub struct NewKey<'a> {
    pub description: Option<&'a str>,
    /// The key policy; `None`: KMS's default ([`default_key_policy`]).
    pub policy: Option<&'a str>,
    /// Skip the check that the caller could still change the policy afterwards.
    pub bypass_policy_lockout_safety_check: bool,
    pub tags: Vec<(String, String)>,
}

/// One page of a KMS listing.
#[derive(Debug, Clone)]
pub struct KmsPage<T> {
    pub items: Vec<T>,
    /// The `NextMarker` when more follow (`Truncated`).
    pub next_marker: Option<String>,
}

/// One version of a key's material, as ListKeyRotations shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The key's id.
    pub key_id: String,
    pub version: i64,
    /// When the version was made (epoch ms).
    pub created_at: i64,
    /// `None` for the key's first material, `AUTOMATIC` or `ON_DEMAND`.
    pub rotation_type: Option<String>,
    pub material_id: String,
    /// Whether it is the version that encrypts.
    pub current: bool,
}

/// Automatic rotation settings of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationStatus {
    pub key_arn: String,
    pub enabled: bool,
    pub period_days: Option<i64>,
    /// Epoch ms.
    pub next_rotation_at: Option<i64>,
}

/// What Encrypt, Decrypt and GenerateDataKey give back. `Debug` does not show the plaintext.
pub struct CryptoOutput {
    pub key_arn: String,
    /// The ciphertext blob (Encrypt, GenerateDataKey*).
    pub ciphertext: Vec<u8>,
    /// The plaintext (Decrypt) or data key (GenerateDataKey).
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    /// `KeyMaterialId` of the material version used.
    pub material_id: String,
}

impl std::fmt::Debug for CryptoOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoOutput").field("key_arn", &self.key_arn).finish_non_exhaustive()
    }
}

/// How a request names a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyRef {
    /// A key id (UUID).
    Id(String),
    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    KeyArn { region: String, account: String, id: String },
    /// `alias/<name>`.
    Alias(String),
    /// `arn:aws:kms:<region>:<account>:alias/<name>`.
    AliasArn { region: String, account: String, name: String },
}

fn parse_key_ref(s: &str) -> Result<KeyRef> {
    if s.is_empty() || s.chars().count() > 2048 {
        return Err(validation("keyId", s, "Member must have length between 1 and 2048"));
    }
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let bad_arn = || kms("InvalidArnException", format!("Invalid arn {s}"));
        let [partition, service, region, account, resource] = parts[..] else { return Err(bad_arn()) };
        if partition != "aws" || service != "kms" || region.is_empty() || !crate::valid_account_id(account) {
            return Err(bad_arn());
        }
        let (region, account) = (region.to_string(), account.to_string());
        if let Some(id) = resource.strip_prefix("key/") {
            return Ok(KeyRef::KeyArn { region, account, id: id.to_string() });
        }
        if resource.starts_with("alias/") && resource.len() > "alias/".len() {
            return Ok(KeyRef::AliasArn { region, account, name: resource.to_string() });
        }
        return Err(bad_arn());
    }
    if s.starts_with("alias/") {
        return Ok(KeyRef::Alias(s.to_string()));
    }
    Ok(KeyRef::Id(s.to_string()))
}

/// Which references an operation accepts, as KMS: alias names and alias ARNs only for
/// DescribeKey and the cryptographic operations, another account's keys (by ARN) only for those
/// too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refs {
    /// Key id or key ARN of the caller's account.
    KeyOnly,
    /// Key id or key ARN, another account's by ARN.
    KeyCrossAccount,
    /// Any reference, another account's by ARN.
    Any,
}

/// The UUID a key id must be (lower-case canonical form), or `None`.
fn canonical_key_id(id: &str) -> Option<String> {
    let u = uuid::Uuid::parse_str(id).ok()?;
    let canonical = u.hyphenated().to_string();
    (canonical == id).then_some(canonical)
}

/// Validate an alias name as KMS: the pattern (`ValidationException`), the `alias/` prefix
/// (`InvalidAliasNameException`), and, for names customers create, update or delete, the
/// reserved `alias/aws/` prefix.
fn check_alias_name(name: &str, customer: bool) -> Result<()> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err(validation("aliasName", name, "Member must have length between 1 and 256"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || ":/_-".contains(c)) {
        return Err(validation(
            "aliasName",
            name,
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    if !name.starts_with("alias/") || name.len() == "alias/".len() {
        return Err(kms(
            "InvalidAliasNameException",
            "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
        ));
    }
    if customer && name.starts_with("alias/aws/") {
        return Err(kms(
            "InvalidAliasNameException",
            "Alias names that begin with \"alias/aws/\" are reserved for AWS managed keys.",
        ));
    }
    Ok(())
}

/// Validate tags as KMS: key 1..=128 and value 0..=256 characters, no `aws:` key prefix
/// (`TagException`), at most [`MAX_KEY_TAGS`] (`LimitExceededException`).
fn check_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_KEY_TAGS {
        return Err(kms("LimitExceededException", format!("A key may have at most {MAX_KEY_TAGS} tags.")));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(kms("TagException", format!("Tag key '{k}' must be 1 to 128 characters long.")));
        }
        if v.chars().count() > 256 {
            return Err(kms("TagException", format!("The value of tag '{k}' must be at most 256 characters long.")));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(kms("TagException", "Tags beginning with aws: are reserved"));
        }
    }
    Ok(())
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(validation(
            "description",
            "...",
            &format!("Member must have length less than or equal to {MAX_DESCRIPTION}"),
        ));
    }
    Ok(())
}

fn check_limit(limit: Option<i64>, max: i64, default: i64) -> Result<u32> {
    match limit {
        None => Ok(default as u32),
        Some(n) => check_range("limit", n, 1, max).map(|()| n as u32),
    }
}

fn decode_marker(marker: Option<&str>) -> Result<String> {
    match marker {
        None => Ok(String::new()),
        Some(m) => hex::decode(m).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid_marker),
    }
}

fn page<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> KmsPage<T> {
    let next_marker = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|t| hex::encode(key(t)))
    } else {
        None
    };
    KmsPage { items, next_marker }
}

/// Encryption context condition keys (`kms:EncryptionContext:<k>`, `kms:EncryptionContextKeys`).
fn context_keys(context: &BTreeMap<String, String>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> =
        context.iter().map(|(k, v)| (format!("kms:EncryptionContext:{k}"), vec![v.clone()])).collect();
    out.push(("kms:EncryptionContextKeys".into(), context.keys().cloned().collect()));
    out
}

fn dry_run_refusal() -> Error {
    kms("DryRunOperationException", "The request would have succeeded, but the DryRun option is set.")
}

impl Registry {
    // ---- keys, cached ------------------------------------------------------------------------

    /// The key with id `key_id` (cached; see the module documentation), `None` when it does not
    /// exist. A key pending deletion whose deletion date has passed is deleted now and is
    /// `None`.
    async fn kms_entry(&self, key_id: &str) -> Result<Option<Arc<KeyEntry>>> {
        self.sync_auth_epoch().await?;
        let now = self.now();
        let cached = self.authz.kms_keys.read().unwrap().get(key_id).cloned();
        let entry = match cached {
            Some(e) if now - e.loaded_at < KEY_CACHE_MS => e,
            _ => {
                let generation = self.authz.generation.load(Ordering::SeqCst);
                let Some(key) = self.meta.kms_key(key_id).await? else { return Ok(None) };
                let arn = key.arn();
                let policy = match Policy::parse(&key.policy, PolicyKind::Resource) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(%arn, error = %e, "stored key policy does not parse; denying");
                        None
                    }
                };
                let tags = self.meta.kms_key_tags(key_id).await?;
                let e = Arc::new(KeyEntry { key, arn, policy, tags, loaded_at: now, materials: RwLock::default() });
                if self.authz.generation.load(Ordering::SeqCst) == generation {
                    let mut m = self.authz.kms_keys.write().unwrap();
                    if m.len() >= 10_000 {
                        m.clear();
                    }
                    m.insert(key_id.to_string(), e.clone());
                }
                e
            }
        };
        if entry.key.state == KEY_PENDING_DELETION && entry.key.deletion_date.is_some_and(|d| d <= now) {
            if self.meta.delete_kms_key(key_id, now).await? {
                tracing::info!(arn = %entry.arn, "deleted a KMS key at the end of its waiting period");
            }
            self.authz.invalidate();
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Material version `version` of a cached key, opened with the master key.
    async fn kms_material(&self, e: &KeyEntry, version: i64) -> Result<Option<Material>> {
        if let Some(m) = e.materials.read().unwrap().get(&version) {
            return Ok(Some(m.clone()));
        }
        let Some(row) = self.meta.kms_material(&e.key.key_id, version).await? else { return Ok(None) };
        let material = open_material(self.keys.master(), &e.arn, version, &row.sealed)?;
        e.materials.write().unwrap().insert(version, material.clone());
        Ok(Some(material))
    }

    /// New material version `version` of key `arn`, sealed for storage.
    fn new_material(&self, arn: &str, version: i64, rotation_type: Option<&str>) -> Result<KmsMaterial> {
        let material = berth_kms::random_material().map_err(|e| Error::Internal(e.to_string()))?;
        let sealed = self
            .keys
            .master()
            .seal(&seal_context(arn, version), material.as_slice())
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(KmsMaterial {
            version,
            sealed: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sealed),
            created_at: self.now(),
            rotation_type: rotation_type.map(str::to_string),
        })
    }

    /// The key a request names in namespace `ns` (the caller's account, the request's region),
    /// with KMS's errors: `NotFoundException` (no such key or alias, or a reference the
    /// operation does not take), `InvalidArnException` (a malformed ARN). `alias/aws/ecr` is
    /// created on first use when `create_aws` is set (DescribeKey, as KMS does for AWS aliases).
    async fn kms_resolve(&self, ns: &Namespace, given: &str, refs: Refs, create_aws: bool) -> Result<Arc<KeyEntry>> {
        let r = parse_key_ref(given)?;
        let (account, region, id) = match r {
            KeyRef::Id(id) => {
                let id = canonical_key_id(&id).ok_or_else(|| invalid_key_id(given))?;
                (ns.account_id.clone(), ns.region.clone(), id)
            }
            KeyRef::KeyArn { region, account, id } => {
                let id = canonical_key_id(&id).ok_or_else(|| invalid_key_id(given))?;
                if region != ns.region || (account != ns.account_id && refs == Refs::KeyOnly) {
                    return Err(key_not_found(given));
                }
                (account, region, id)
            }
            KeyRef::Alias(_) | KeyRef::AliasArn { .. } if refs != Refs::Any => return Err(invalid_key_id(given)),
            KeyRef::Alias(name) => {
                if create_aws && name == AWS_ECR_ALIAS {
                    return self.aws_ecr_key(ns).await;
                }
                let arn = format!("arn:aws:kms:{}:{}:{name}", ns.region, ns.account_id);
                let a = self.meta.kms_alias(&ns.account_id, &ns.region, &name).await?;
                let a = a.ok_or_else(|| alias_not_found(&arn))?;
                (ns.account_id.clone(), ns.region.clone(), a.target_key_id)
            }
            KeyRef::AliasArn { region, account, name } => {
                if region != ns.region {
                    return Err(alias_not_found(given));
                }
                let a = self.meta.kms_alias(&account, &region, &name).await?;
                let a = a.ok_or_else(|| alias_not_found(given))?;
                (account, region, a.target_key_id)
            }
        };
        let arn = format!("arn:aws:kms:{region}:{account}:key/{id}");
        match self.kms_entry(&id).await? {
            Some(e) if e.key.account_id == account && e.key.region == region => Ok(e),
            _ => Err(key_not_found(&arn)),
        }
    }

    /// The AWS managed key of ECR in `ns`, created (with its alias) on first use.
    async fn aws_ecr_key(&self, ns: &Namespace) -> Result<Arc<KeyEntry>> {
        for _ in 0..3 {
            if let Some(a) = self.meta.kms_alias(&ns.account_id, &ns.region, AWS_ECR_ALIAS).await? {
                if let Some(e) = self.kms_entry(&a.target_key_id).await? {
                    return Ok(e);
                }
                continue;
            }
            if !self.meta.account_exists(&ns.account_id).await? {
                return Err(Error::AccountUnknown(ns.account_id.clone()));
            }
            let now = self.now();
            let key = KmsKey {
                key_id: uuid::Uuid::new_v4().to_string(),
                account_id: ns.account_id.clone(),
                region: ns.region.clone(),
                description: AWS_ECR_DESCRIPTION.into(),
                key_manager: AWS.into(),
                state: KEY_ENABLED.into(),
                policy: aws_ecr_key_policy(&ns.account_id),
                created_at: now,
                deletion_date: None,
                pending_window_days: None,
                rotation_period_days: Some(DEFAULT_ROTATION_PERIOD_DAYS),
                next_rotation_at: Some(now + DEFAULT_ROTATION_PERIOD_DAYS * DAY_MS),
                current_version: 1,
            };
            let material = self.new_material(&key.arn(), 1, None)?;
            // Another node may create it at the same time: the alias decides which key stays.
            if self.meta.create_kms_key(&key, &material, &[], Some(AWS_ECR_ALIAS)).await? {
                tracing::info!(arn = %key.arn(), "created the AWS managed key alias/aws/ecr");
                self.authz.invalidate();
            }
        }
        Err(Error::Internal(format!("the AWS managed key of ECR in {}/{} kept vanishing", ns.account_id, ns.region)))
    }

    /// Authorize `action` on a key for an API caller (`None`: the operator, always allowed).
    async fn kms_authorize(
        &self,
        caller: Option<&Caller<'_>>,
        action: &str,
        e: &KeyEntry,
        mut extra: Vec<(String, Vec<String>)>,
    ) -> Result<()> {
        let Some(c) = caller else { return Ok(()) };
        extra.push(("kms:KeyOrigin".into(), vec!["AWS_KMS".into()]));
        extra.push(("kms:KeySpec".into(), vec!["SYMMETRIC_DEFAULT".into()]));
        extra.push(("kms:KeyUsage".into(), vec!["ENCRYPT_DECRYPT".into()]));
        extra.push(("kms:MultiRegion".into(), vec!["false".into()]));
        self.authorize_on_key(c, action, &e.target(), &extra).await
    }

    /// Authorize an action without a key (on `*`) for an API caller.
    async fn kms_authorize_account(&self, caller: Option<&Caller<'_>>, action: &str) -> Result<()> {
        match caller {
            Some(c) => self.authorize(c, action, Target::Account).await,
            None => Ok(()),
        }
    }

    /// Write `key` (a changed copy of `e.key`) if the stored state is still `e`'s; a concurrent
    /// change is reported as `KMSInvalidStateException` (the caller may retry).
    async fn kms_update(&self, e: &KeyEntry, key: &KmsKey) -> Result<()> {
        let ok = self.meta.update_kms_key(key, &e.key.state).await?;
        self.authz.invalidate();
        if !ok {
            return Err(kms(
                "KMSInvalidStateException",
                format!("{} changed state while the request ran; retry", e.arn),
            ));
        }
        Ok(())
    }

    // ---- the API of repository encryption -----------------------------------------------------

    /// Resolve a repository's `kmsKey` (key id, key ARN, alias name or alias ARN; `None`: the AWS
    /// managed key `aws/ecr`, created on first use) in (`account_id`, `region`) to the key ARN,
    /// checking that the key exists (`NotFoundException`) and is usable: `DisabledException`
    /// when disabled, `KMSInvalidStateException` when pending deletion. Only keys of the
    /// repository's own account and region. Not authorized here (CreateRepository is).
    pub async fn kms_key_for_repository(
        &self,
        account_id: &str,
        region: &str,
        key_ref: Option<&str>,
    ) -> Result<String> {
        let ns = Namespace { account_id: account_id.to_string(), region: region.to_string() };
        let e = match key_ref {
            None => self.aws_ecr_key(&ns).await?,
            Some(r) => {
                // Aliases yes; another account's keys no (nothing authorizes their use here).
                let e = self.kms_resolve(&ns, r, Refs::Any, true).await?;
                if e.key.account_id != ns.account_id {
                    return Err(key_not_found(r));
                }
                e
            }
        };
        e.check_usable()?;
        Ok(e.arn.clone())
    }

    /// The current material of key `arn` for wrapping, when the key is `Enabled`
    /// (`NotFoundException`, `DisabledException`, `KMSInvalidStateException` otherwise).
    pub async fn kms_key_for_encrypt(&self, arn: &str) -> Result<UsableKey> {
        let e = self.kms_by_arn(arn).await?;
        e.check_usable()?;
        let version = e.key.current_version;
        let material = self
            .kms_material(&e, version)
            .await?
            .ok_or_else(|| Error::Internal(format!("{arn} has no material version {version}")))?;
        let uuid = uuid::Uuid::parse_str(&e.key.key_id).map_err(|_| key_not_found(arn))?;
        Ok(UsableKey { arn: e.arn.clone(), uuid: *uuid.as_bytes(), version: version as u32, material })
    }

    /// The material of version `version` of key `arn` for unwrapping, when the key is `Enabled`
    /// (`NotFoundException`, `DisabledException`, `KMSInvalidStateException` otherwise;
    /// `InvalidCiphertextException` for a version the key does not have).
    pub async fn kms_material_for_decrypt(&self, arn: &str, version: u32) -> Result<Material> {
        let e = self.kms_by_arn(arn).await?;
        e.check_usable()?;
        self.kms_material(&e, version as i64)
            .await?
            .ok_or_else(|| kms("InvalidCiphertextException", format!("{arn} has no key material version {version}")))
    }

    /// A key by its ARN (any account and region), `NotFoundException` when absent.
    async fn kms_by_arn(&self, arn: &str) -> Result<Arc<KeyEntry>> {
        let Ok(KeyRef::KeyArn { region, account, id }) = parse_key_ref(arn) else {
            return Err(key_not_found(arn));
        };
        match self.kms_entry(&id).await? {
            Some(e) if e.key.account_id == account && e.key.region == region => Ok(e),
            _ => Err(key_not_found(arn)),
        }
    }

    // ---- keys ------------------------------------------------------------------------------

    /// CreateKey: a symmetric encryption key of the caller's account in `ns`, Enabled, with its
    /// first material. A given policy is validated ([`parse_key_policy`]) and, unless
    /// `bypass_policy_lockout_safety_check`, must let the caller change it later
    /// (`MalformedPolicyDocumentException`, as KMS's lockout safety check).
    pub async fn kms_create_key(&self, caller: Option<&Caller<'_>>, ns: &Namespace, new: NewKey<'_>) -> Result<KmsKey> {
        let description = new.description.unwrap_or("");
        check_description(description)?;
        check_tags(&new.tags)?;
        let mut sorted: Vec<&str> = new.tags.iter().map(|(k, _)| k.as_str()).collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(kms("TagException", "Duplicate tag keys"));
        }
        let policy_text = match new.policy {
            Some(p) => {
                parse_key_policy(p)?;
                p.to_string()
            }
            None => default_key_policy(&ns.account_id),
        };
        self.kms_authorize_account(caller, "kms:CreateKey").await?;
        if !self.meta.account_exists(&ns.account_id).await? {
            return Err(Error::AccountUnknown(ns.account_id.clone()));
        }
        let now = self.now();
        let key = KmsKey {
            key_id: uuid::Uuid::new_v4().to_string(),
            account_id: ns.account_id.clone(),
            region: ns.region.clone(),
            description: description.to_string(),
            key_manager: CUSTOMER.into(),
            state: KEY_ENABLED.into(),
            policy: policy_text,
            created_at: now,
            deletion_date: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation_at: None,
            current_version: 1,
        };
        if let (Some(c), Some(_), false) = (caller, new.policy, new.bypass_policy_lockout_safety_check) {
            self.check_lockout(c, &key, &new.tags).await?;
        }
        let material = self.new_material(&key.arn(), 1, None)?;
        self.meta.create_kms_key(&key, &material, &new.tags, None).await?;
        self.authz.invalidate();
        Ok(key)
    }

    /// KMS's policy lockout safety check: the policy of `key` must let `caller` call
    /// PutKeyPolicy on it.
    async fn check_lockout(&self, caller: &Caller<'_>, key: &KmsKey, tags: &[(String, String)]) -> Result<()> {
        let policy = parse_key_policy(&key.policy)?;
        let arn = key.arn();
        let target = KeyTarget { arn: &arn, account_id: &key.account_id, policy: Some(&policy), tags };
        match self.authorize_on_key(caller, "kms:PutKeyPolicy", &target, &[]).await {
            Err(Error::Denied(_)) => Err(kms(
                "MalformedPolicyDocumentException",
                "The new key policy will not allow you to update the key policy in the future.",
            )),
            other => other,
        }
    }

    /// DescribeKey (any reference; `alias/aws/ecr` creates the AWS managed key on first use).
    pub async fn kms_describe_key(&self, caller: Option<&Caller<'_>>, ns: &Namespace, key: &str) -> Result<KmsKey> {
        let e = self.kms_resolve(ns, key, Refs::Any, true).await?;
        self.kms_authorize(caller, "kms:DescribeKey", &e, Vec::new()).await?;
        Ok(e.key.clone())
    }

    /// ListKeys: the keys of `ns` by id, `limit` (1..=1000, default 100) from `marker`.
    pub async fn kms_list_keys(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<KmsPage<KmsKey>> {
        let limit = check_limit(limit, 1000, 100)?;
        let after = decode_marker(marker)?;
        self.kms_authorize_account(caller, "kms:ListKeys").await?;
        let now = self.now();
        let mut keys = Vec::new();
        let mut from = after;
        // Keys past their deletion date are deleted as they are met, and not listed.
        loop {
            let batch = self.meta.list_kms_keys(&ns.account_id, &ns.region, &from, limit + 1).await?;
            let exhausted = batch.len() <= limit as usize;
            for k in batch {
                from = k.key_id.clone();
                if k.state == KEY_PENDING_DELETION && k.deletion_date.is_some_and(|d| d <= now) {
                    self.kms_entry(&k.key_id).await?;
                    continue;
                }
                keys.push(k);
            }
            if exhausted || keys.len() > limit as usize {
                break;
            }
        }
        Ok(page(keys, limit, |k| k.key_id.clone()))
    }

    /// UpdateKeyDescription (key id or ARN).
    pub async fn kms_update_key_description(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        description: &str,
    ) -> Result<()> {
        check_description(description)?;
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:UpdateKeyDescription", &e, Vec::new()).await?;
        e.check_customer_managed()?;
        e.check_not_pending()?;
        let k = KmsKey { description: description.to_string(), ..e.key.clone() };
        self.kms_update(&e, &k).await
    }

    /// EnableKey: a disabled key becomes Enabled (an enabled one stays so);
    /// `KMSInvalidStateException` for a key pending deletion.
    pub async fn kms_enable_key(&self, caller: Option<&Caller<'_>>, ns: &Namespace, key: &str) -> Result<()> {
        self.kms_set_enabled(caller, ns, key, true).await
    }

    /// DisableKey: the key refuses cryptographic operations (`DisabledException`) until enabled
    /// again, on every node within [`crate::EPOCH_CHECK_MS`], on this one at once.
    pub async fn kms_disable_key(&self, caller: Option<&Caller<'_>>, ns: &Namespace, key: &str) -> Result<()> {
        self.kms_set_enabled(caller, ns, key, false).await
    }

    async fn kms_set_enabled(&self, caller: Option<&Caller<'_>>, ns: &Namespace, key: &str, on: bool) -> Result<()> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        let action = if on { "kms:EnableKey" } else { "kms:DisableKey" };
        self.kms_authorize(caller, action, &e, Vec::new()).await?;
        e.check_customer_managed()?;
        e.check_not_pending()?;
        let state = if on { KEY_ENABLED } else { KEY_DISABLED };
        if e.key.state == state {
            return Ok(());
        }
        let k = KmsKey { state: state.into(), ..e.key.clone() };
        self.kms_update(&e, &k).await
    }

    /// ScheduleKeyDeletion: the key becomes PendingDeletion for `days` (7..=30, default 30)
    /// and is then deleted with its material. Returns the key as changed.
    pub async fn kms_schedule_key_deletion(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        days: Option<i64>,
    ) -> Result<KmsKey> {
        let days = days.unwrap_or(DEFAULT_PENDING_WINDOW_DAYS);
        check_range("pendingWindowInDays", days, MIN_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS)?;
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        let extra = vec![("kms:ScheduleKeyDeletionPendingWindowInDays".into(), vec![days.to_string()])];
        self.kms_authorize(caller, "kms:ScheduleKeyDeletion", &e, extra).await?;
        e.check_customer_managed()?;
        e.check_not_pending()?;
        let k = KmsKey {
            state: KEY_PENDING_DELETION.into(),
            deletion_date: Some(self.now() + days * DAY_MS),
            pending_window_days: Some(days),
            ..e.key.clone()
        };
        self.kms_update(&e, &k).await?;
        Ok(k)
    }

    /// CancelKeyDeletion: a key pending deletion becomes Disabled (as KMS);
    /// `KMSInvalidStateException` for a key not pending deletion. Returns the key's ARN.
    pub async fn kms_cancel_key_deletion(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
    ) -> Result<String> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:CancelKeyDeletion", &e, Vec::new()).await?;
        e.check_customer_managed()?;
        if e.key.state != KEY_PENDING_DELETION {
            return Err(kms("KMSInvalidStateException", format!("{} is not pending deletion.", e.arn)));
        }
        let k = KmsKey { state: KEY_DISABLED.into(), deletion_date: None, pending_window_days: None, ..e.key.clone() };
        self.kms_update(&e, &k).await?;
        Ok(e.arn.clone())
    }

    // ---- rotation --------------------------------------------------------------------------

    /// EnableKeyRotation: rotate automatically every `period_days` (90..=2560, default 365),
    /// the first time that long from now. `DisabledException` for a disabled key.
    pub async fn kms_enable_key_rotation(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        period_days: Option<i64>,
    ) -> Result<()> {
        let period = period_days.unwrap_or(DEFAULT_ROTATION_PERIOD_DAYS);
        check_range("rotationPeriodInDays", period, MIN_ROTATION_PERIOD_DAYS, MAX_ROTATION_PERIOD_DAYS)?;
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        let extra = vec![("kms:RotationPeriodInDays".into(), vec![period.to_string()])];
        self.kms_authorize(caller, "kms:EnableKeyRotation", &e, extra).await?;
        e.check_customer_managed()?;
        e.check_usable()?;
        let k = KmsKey {
            rotation_period_days: Some(period),
            next_rotation_at: Some(self.now() + period * DAY_MS),
            ..e.key.clone()
        };
        self.kms_update(&e, &k).await
    }

    /// DisableKeyRotation. `DisabledException` for a disabled key.
    pub async fn kms_disable_key_rotation(&self, caller: Option<&Caller<'_>>, ns: &Namespace, key: &str) -> Result<()> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:DisableKeyRotation", &e, Vec::new()).await?;
        e.check_customer_managed()?;
        e.check_usable()?;
        let k = KmsKey { rotation_period_days: None, next_rotation_at: None, ..e.key.clone() };
        self.kms_update(&e, &k).await
    }

    /// GetKeyRotationStatus (key id or ARN; another account's by ARN).
    pub async fn kms_key_rotation_status(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
    ) -> Result<RotationStatus> {
        let e = self.kms_resolve(ns, key, Refs::KeyCrossAccount, false).await?;
        self.kms_authorize(caller, "kms:GetKeyRotationStatus", &e, Vec::new()).await?;
        e.check_not_pending()?;
        Ok(RotationStatus {
            key_arn: e.arn.clone(),
            enabled: e.key.rotation_period_days.is_some(),
            period_days: e.key.rotation_period_days,
            next_rotation_at: e.key.next_rotation_at,
        })
    }

    /// RotateKeyOnDemand: a new material version becomes current at once (the automatic
    /// schedule is unchanged). At most [`MAX_ON_DEMAND_ROTATIONS`] per key
    /// (`LimitExceededException`). Returns the key id.
    pub async fn kms_rotate_key_on_demand(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
    ) -> Result<String> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:RotateKeyOnDemand", &e, Vec::new()).await?;
        e.check_customer_managed()?;
        e.check_usable()?;
        let on_demand = self
            .meta
            .kms_materials(&e.key.key_id)
            .await?
            .iter()
            .filter(|m| m.rotation_type.as_deref() == Some("ON_DEMAND"))
            .count();
        if on_demand >= MAX_ON_DEMAND_ROTATIONS {
            return Err(kms(
                "LimitExceededException",
                format!("{} has been rotated on demand {MAX_ON_DEMAND_ROTATIONS} times, the most a key may be.", e.arn),
            ));
        }
        self.kms_rotate(&e, "ON_DEMAND", e.key.next_rotation_at).await?;
        Ok(e.key.key_id.clone())
    }

    /// Add a material version to a key and make it current.
    async fn kms_rotate(&self, e: &KeyEntry, rotation_type: &str, next_rotation_at: Option<i64>) -> Result<()> {
        let version = e.key.current_version + 1;
        let m = self.new_material(&e.arn, version, Some(rotation_type))?;
        let ok = self.meta.add_kms_material(&e.key.key_id, &m, next_rotation_at).await?;
        self.authz.invalidate();
        if !ok {
            return Err(kms("ConflictException", format!("{} is being rotated by another request; retry", e.arn)));
        }
        // The data keys it wraps move to the new material (the blobs are not touched).
        let material = open_material(self.keys.master(), &e.arn, version, &m.sealed)?;
        let rewrapped = self.rewrap_blob_keys(&e.arn, version as u32, &material).await?;
        if rewrapped > 0 {
            tracing::info!(key = %e.arn, rewrapped, "re-wrapped data keys under the rotated key material");
        }
        Ok(())
    }

    /// ListKeyRotations: the key's rotations (material versions after the first), or with
    /// `all_material` every version, oldest first; `limit` (1..=1000, default 100) from `marker`.
    pub async fn kms_list_key_rotations(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        all_material: bool,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<KmsPage<Rotation>> {
        let limit = check_limit(limit, 1000, 100)?;
        let after: i64 = match decode_marker(marker)? {
            a if a.is_empty() => 0,
            a => a.parse().map_err(|_| invalid_marker())?,
        };
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:ListKeyRotations", &e, Vec::new()).await?;
        e.check_customer_managed()?;
        let items: Vec<Rotation> = self
            .meta
            .kms_materials(&e.key.key_id)
            .await?
            .into_iter()
            .filter(|m| m.version > after && (all_material || m.version > 1))
            .map(|m| Rotation {
                key_id: e.key.key_id.clone(),
                material_id: key_material_id(&e.arn, m.version),
                current: m.version == e.key.current_version,
                version: m.version,
                created_at: m.created_at,
                rotation_type: m.rotation_type,
            })
            .take(limit as usize + 1)
            .collect();
        Ok(page(items, limit, |r| r.version.to_string()))
    }

    // ---- policies and tags --------------------------------------------------------------

    /// GetKeyPolicy: the policy named `default` (the only one; `NotFoundException` for other
    /// names).
    pub async fn kms_key_policy(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        name: Option<&str>,
    ) -> Result<String> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:GetKeyPolicy", &e, Vec::new()).await?;
        check_policy_name(name)?;
        Ok(e.key.policy.clone())
    }

    /// ListKeyPolicies: the names of a key's policies (`default`, the only one).
    pub async fn kms_list_key_policies(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
    ) -> Result<Vec<String>> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:ListKeyPolicies", &e, Vec::new()).await?;
        Ok(vec!["default".to_string()])
    }

    /// PutKeyPolicy: replace the key policy (`default`), validated as at CreateKey, with the
    /// lockout safety check unless bypassed.
    pub async fn kms_put_key_policy(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        name: Option<&str>,
        policy: &str,
        bypass_lockout_check: bool,
    ) -> Result<()> {
        parse_key_policy(policy)?;
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:PutKeyPolicy", &e, Vec::new()).await?;
        check_policy_name(name)?;
        e.check_customer_managed()?;
        let k = KmsKey { policy: policy.to_string(), ..e.key.clone() };
        if let (Some(c), false) = (caller, bypass_lockout_check) {
            self.check_lockout(c, &k, &e.tags).await?;
        }
        self.kms_update(&e, &k).await
    }

    /// TagResource: add or overwrite tags (at most [`MAX_KEY_TAGS`] in all).
    pub async fn kms_tag_key(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        tags: &[(String, String)],
    ) -> Result<()> {
        check_tags(tags)?;
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        let mut extra: Vec<(String, Vec<String>)> =
            tags.iter().map(|(k, v)| (format!("aws:RequestTag/{k}"), vec![v.clone()])).collect();
        extra.push(("aws:TagKeys".into(), tags.iter().map(|(k, _)| k.clone()).collect()));
        self.kms_authorize(caller, "kms:TagResource", &e, extra).await?;
        e.check_customer_managed()?;
        e.check_not_pending()?;
        let ok = self.meta.tag_kms_key(&e.key.key_id, tags, MAX_KEY_TAGS).await?;
        self.authz.invalidate();
        if !ok {
            return Err(kms("LimitExceededException", format!("A key may have at most {MAX_KEY_TAGS} tags.")));
        }
        Ok(())
    }

    /// UntagResource: remove tags by key (absent ones are ignored).
    pub async fn kms_untag_key(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        keys: &[String],
    ) -> Result<()> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        let extra = vec![("aws:TagKeys".to_string(), keys.to_vec())];
        self.kms_authorize(caller, "kms:UntagResource", &e, extra).await?;
        e.check_customer_managed()?;
        e.check_not_pending()?;
        self.meta.untag_kms_key(&e.key.key_id, keys).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// ListResourceTags: a key's tags by key, `limit` (1..=50, default 50) from `marker`.
    pub async fn kms_list_key_tags(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<KmsPage<(String, String)>> {
        let limit = check_limit(limit, 50, 50)?;
        let after = decode_marker(marker)?;
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, "kms:ListResourceTags", &e, Vec::new()).await?;
        let tags: Vec<(String, String)> =
            e.tags.iter().filter(|(k, _)| k.as_str() > after.as_str()).take(limit as usize + 1).cloned().collect();
        Ok(page(tags, limit, |(k, _)| k.clone()))
    }

    // ---- aliases ---------------------------------------------------------------------------

    /// The ARN of alias `name` in `ns`.
    fn alias_arn(ns: &Namespace, name: &str) -> String {
        format!("arn:aws:kms:{}:{}:{name}", ns.region, ns.account_id)
    }

    /// A customer managed key that may take an alias (not pending deletion), with
    /// `kms:<action>` authorized on it.
    async fn alias_target(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        action: &str,
    ) -> Result<Arc<KeyEntry>> {
        let e = self.kms_resolve(ns, key, Refs::KeyOnly, false).await?;
        self.kms_authorize(caller, action, &e, Vec::new()).await?;
        e.check_customer_managed()?;
        e.check_not_pending()?;
        Ok(e)
    }

    /// Authorize `action` on an alias ARN with the caller's IAM policies (as KMS: aliases have
    /// no policy of their own).
    async fn authorize_alias(&self, caller: Option<&Caller<'_>>, action: &str, arn: &str) -> Result<()> {
        match caller {
            Some(c) => self.authorize(c, action, Target::Iam(arn)).await,
            None => Ok(()),
        }
    }

    /// CreateAlias: `name` (`alias/...`, not `alias/aws/...`) for a customer managed key of the
    /// account (key id or ARN). `AlreadyExistsException` when taken.
    pub async fn kms_create_alias(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        name: &str,
        target: &str,
    ) -> Result<()> {
        check_alias_name(name, true)?;
        let arn = Self::alias_arn(ns, name);
        self.authorize_alias(caller, "kms:CreateAlias", &arn).await?;
        let e = self.alias_target(caller, ns, target, "kms:CreateAlias").await?;
        let count = self.meta.list_kms_aliases(&ns.account_id, &ns.region, Some(&e.key.key_id), "", 1000).await?.len();
        if count >= MAX_ALIASES_PER_KEY {
            return Err(kms(
                "LimitExceededException",
                format!("A key may have at most {MAX_ALIASES_PER_KEY} aliases."),
            ));
        }
        let now = self.now();
        let a = KmsAlias {
            account_id: ns.account_id.clone(),
            region: ns.region.clone(),
            name: name.to_string(),
            target_key_id: e.key.key_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let created = self.meta.create_kms_alias(&a).await?;
        self.authz.invalidate();
        if !created {
            return Err(kms("AlreadyExistsException", format!("An alias with the name {arn} already exists")));
        }
        Ok(())
    }

    /// UpdateAlias: point an existing customer alias at another customer managed key.
    pub async fn kms_update_alias(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        name: &str,
        target: &str,
    ) -> Result<()> {
        check_alias_name(name, true)?;
        let arn = Self::alias_arn(ns, name);
        self.authorize_alias(caller, "kms:UpdateAlias", &arn).await?;
        let old = self.meta.kms_alias(&ns.account_id, &ns.region, name).await?.ok_or_else(|| alias_not_found(&arn))?;
        if let Some(e) = self.kms_entry(&old.target_key_id).await? {
            self.kms_authorize(caller, "kms:UpdateAlias", &e, Vec::new()).await?;
        }
        let e = self.alias_target(caller, ns, target, "kms:UpdateAlias").await?;
        let count = self.meta.list_kms_aliases(&ns.account_id, &ns.region, Some(&e.key.key_id), "", 1000).await?.len();
        if e.key.key_id != old.target_key_id && count >= MAX_ALIASES_PER_KEY {
            return Err(kms(
                "LimitExceededException",
                format!("A key may have at most {MAX_ALIASES_PER_KEY} aliases."),
            ));
        }
        let ok = self.meta.update_kms_alias(&ns.account_id, &ns.region, name, &e.key.key_id, self.now()).await?;
        self.authz.invalidate();
        if !ok {
            return Err(alias_not_found(&arn));
        }
        Ok(())
    }

    /// DeleteAlias (not of AWS managed keys).
    pub async fn kms_delete_alias(&self, caller: Option<&Caller<'_>>, ns: &Namespace, name: &str) -> Result<()> {
        check_alias_name(name, true)?;
        let arn = Self::alias_arn(ns, name);
        self.authorize_alias(caller, "kms:DeleteAlias", &arn).await?;
        let a = self.meta.kms_alias(&ns.account_id, &ns.region, name).await?.ok_or_else(|| alias_not_found(&arn))?;
        if let Some(e) = self.kms_entry(&a.target_key_id).await? {
            self.kms_authorize(caller, "kms:DeleteAlias", &e, Vec::new()).await?;
        }
        let ok = self.meta.delete_kms_alias(&ns.account_id, &ns.region, name).await?;
        self.authz.invalidate();
        if !ok {
            return Err(alias_not_found(&arn));
        }
        Ok(())
    }

    /// ListAliases: the aliases of `ns` by name (only those of `key`, a key id or ARN, when
    /// given), `limit` (1..=1000, default 100) from `marker`.
    pub async fn kms_list_aliases(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<KmsPage<KmsAlias>> {
        let limit = check_limit(limit, 1000, 100)?;
        let after = decode_marker(marker)?;
        self.kms_authorize_account(caller, "kms:ListAliases").await?;
        let target = match key {
            Some(k) => Some(self.kms_resolve(ns, k, Refs::KeyOnly, false).await?.key.key_id.clone()),
            None => None,
        };
        let items =
            self.meta.list_kms_aliases(&ns.account_id, &ns.region, target.as_deref(), &after, limit + 1).await?;
        Ok(page(items, limit, |a| a.name.clone()))
    }

    // ---- cryptography ------------------------------------------------------------------------

    /// Encrypt `plaintext` (1..=4096 bytes) under the current material of a key (any
    /// reference), bound to `context`. With `dry_run`, only checks and authorizes
    /// (`DryRunOperationException`).
    pub async fn kms_encrypt(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
        dry_run: bool,
    ) -> Result<CryptoOutput> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(validation(
                "plaintext",
                "[SENSITIVE]",
                &format!("Member must have length between 1 and {MAX_PLAINTEXT}"),
            ));
        }
        let e = self.kms_resolve(ns, key, Refs::Any, false).await?;
        let mut extra = context_keys(context);
        extra.push(("kms:EncryptionAlgorithm".into(), vec!["SYMMETRIC_DEFAULT".into()]));
        self.kms_authorize(caller, "kms:Encrypt", &e, extra).await?;
        e.check_usable()?;
        if dry_run {
            return Err(dry_run_refusal());
        }
        self.kms_seal(&e, plaintext, context, None).await
    }

    /// Encrypt with the current material of a usable key.
    async fn kms_seal(
        &self,
        e: &KeyEntry,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
        keep_plaintext: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<CryptoOutput> {
        let version = e.key.current_version;
        let material = self
            .kms_material(e, version)
            .await?
            .ok_or_else(|| Error::Internal(format!("{} has no material version {version}", e.arn)))?;
        let uuid = uuid::Uuid::parse_str(&e.key.key_id).map_err(|_| key_not_found(&e.arn))?;
        let blob = berth_kms::encrypt(*uuid.as_bytes(), version as u32, &material, plaintext, context)
            .map_err(|err| Error::Internal(err.to_string()))?;
        Ok(CryptoOutput {
            key_arn: e.arn.clone(),
            ciphertext: blob,
            plaintext: keep_plaintext,
            material_id: key_material_id(&e.arn, version),
        })
    }

    /// Decrypt a ciphertext blob this registry made, with the key and material version it names,
    /// under the same `context` (`InvalidCiphertextException` otherwise). With `key`, that
    /// reference must name the same key (`IncorrectKeyException`).
    pub async fn kms_decrypt(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        blob: &[u8],
        context: &BTreeMap<String, String>,
        key: Option<&str>,
        dry_run: bool,
    ) -> Result<CryptoOutput> {
        if blob.is_empty() || blob.len() > MAX_CIPHERTEXT {
            return Err(validation(
                "ciphertextBlob",
                "[SENSITIVE]",
                &format!("Member must have length between 1 and {MAX_CIPHERTEXT}"),
            ));
        }
        let invalid =
            || kms("InvalidCiphertextException", "The ciphertext is invalid, or was not made for this context.");
        let (uuid, version) = berth_kms::blob_key(blob).map_err(|_| invalid())?;
        let key_id = uuid::Uuid::from_bytes(uuid).hyphenated().to_string();
        let named = match key {
            Some(k) => Some(self.kms_resolve(ns, k, Refs::Any, false).await?),
            None => None,
        };
        let e = match self.kms_entry(&key_id).await? {
            Some(e) if e.key.region == ns.region => e,
            _ => return Err(invalid()),
        };
        if named.as_ref().is_some_and(|n| n.key.key_id != e.key.key_id) {
            return Err(kms(
                "IncorrectKeyException",
                "The key ID in the request does not identify a CMK that can perform this operation.",
            ));
        }
        let mut extra = context_keys(context);
        extra.push(("kms:EncryptionAlgorithm".into(), vec!["SYMMETRIC_DEFAULT".into()]));
        self.kms_authorize(caller, "kms:Decrypt", &e, extra).await?;
        e.check_usable()?;
        if dry_run {
            return Err(dry_run_refusal());
        }
        let material = self.kms_material(&e, version as i64).await?.ok_or_else(invalid)?;
        let plaintext = berth_kms::decrypt(&material, blob, context).map_err(|_| invalid())?;
        Ok(CryptoOutput {
            key_arn: e.arn.clone(),
            ciphertext: Vec::new(),
            plaintext: Some(plaintext),
            material_id: key_material_id(&e.arn, version as i64),
        })
    }

    /// GenerateDataKey (`with_plaintext`) or GenerateDataKeyWithoutPlaintext: `len` random bytes
    /// (from KeySpec `AES_256`/`AES_128` or NumberOfBytes 1..=1024, validated by the caller of
    /// [`data_key_len`]) encrypted under a key (any reference), bound to `context`.
    #[allow(clippy::too_many_arguments)]
    pub async fn kms_generate_data_key(
        &self,
        caller: Option<&Caller<'_>>,
        ns: &Namespace,
        key: &str,
        len: usize,
        context: &BTreeMap<String, String>,
        with_plaintext: bool,
        dry_run: bool,
    ) -> Result<CryptoOutput> {
        let e = self.kms_resolve(ns, key, Refs::Any, false).await?;
        let action = if with_plaintext { "kms:GenerateDataKey" } else { "kms:GenerateDataKeyWithoutPlaintext" };
        self.kms_authorize(caller, action, &e, context_keys(context)).await?;
        e.check_usable()?;
        if dry_run {
            return Err(dry_run_refusal());
        }
        let data_key = berth_kms::random_bytes(len).map_err(|err| Error::Internal(err.to_string()))?;
        let mut out = self.kms_seal(&e, &data_key, context, None).await?;
        if with_plaintext {
            out.plaintext = Some(data_key);
        }
        Ok(out)
    }

    /// GenerateRandom: `n` (1..=1024) random bytes.
    pub async fn kms_generate_random(&self, caller: Option<&Caller<'_>>, n: Option<i64>) -> Result<Zeroizing<Vec<u8>>> {
        let n = n.ok_or_else(|| kms("ValidationException", "NumberOfBytes is required."))?;
        check_range("numberOfBytes", n, 1, 1024)?;
        self.kms_authorize_account(caller, "kms:GenerateRandom").await?;
        berth_kms::random_bytes(n as usize).map_err(|e| Error::Internal(e.to_string()))
    }

    // ---- the sweep ---------------------------------------------------------------------------

    /// Delete the keys whose deletion date has passed and rotate the enabled keys whose
    /// automatic rotation is due (the next rotation one period later); returns how many of
    /// each. Idempotent: run by the periodic [`KMS_SWEEP_JOB`].
    pub async fn kms_sweep(&self) -> Result<(usize, usize)> {
        let now = self.now();
        let mut deleted = 0;
        for id in self.meta.kms_keys_due_for_deletion(now, 1000).await? {
            if self.meta.delete_kms_key(&id, now).await? {
                tracing::info!(key_id = %id, "deleted a KMS key at the end of its waiting period");
                deleted += 1;
            }
        }
        let mut rotated = 0;
        for id in self.meta.kms_keys_due_for_rotation(now, 1000).await? {
            let Some(e) = self.kms_entry(&id).await? else { continue };
            let (Some(period), Some(due)) = (e.key.rotation_period_days, e.key.next_rotation_at) else { continue };
            if e.key.state != KEY_ENABLED || due > now {
                continue;
            }
            // The next rotation one period after this one was due (and after now).
            let mut next = due + period * DAY_MS;
            while next <= now {
                next += period * DAY_MS;
            }
            match self.kms_rotate(&e, "AUTOMATIC", Some(next)).await {
                Ok(()) => rotated += 1,
                Err(Error::Kms { .. }) => {} // another node rotated it
                Err(err) => return Err(err),
            }
        }
        if deleted > 0 {
            self.authz.invalidate();
        }
        Ok((deleted, rotated))
    }
}

fn check_policy_name(name: Option<&str>) -> Result<()> {
    match name {
        None | Some("default") => Ok(()),
        Some(n) if n.is_empty() || n.len() > 128 || !n.chars().all(|c| c.is_alphanumeric() || c == '_') => {
            Err(validation("policyName", n, "Member must satisfy regular expression pattern: [\\w]+"))
        }
        Some(_) => Err(kms("NotFoundException", "No such policy exists")),
    }
}

/// The data key length of GenerateDataKey*: KeySpec `AES_256` (32) or `AES_128` (16), or
/// NumberOfBytes 1..=1024; exactly one of them (`ValidationException`).
pub fn data_key_len(key_spec: Option<&str>, number_of_bytes: Option<i64>) -> Result<usize> {
    match (key_spec, number_of_bytes) {
        (Some(_), Some(_)) | (None, None) => {
            Err(kms("ValidationException", "Please specify either number of bytes or key spec."))
        }
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(other), None) => {
            Err(validation("keySpec", other, "Member must satisfy enum value set: [AES_256, AES_128]"))
        }
        (None, Some(n)) => check_range("numberOfBytes", n, 1, 1024).map(|()| n as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::Clock;

    /// A clock the test moves.
    struct TestClock(std::sync::atomic::AtomicI64);

    impl crate::Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A registry over the metadata database in `dir` (two calls: two nodes sharing it).
    async fn node(dir: &std::path::Path, clock: Arc<TestClock>) -> Registry {
        let meta = berth_meta::sqlite::SqliteStore::open(&dir.join("meta.db")).await.unwrap();
        let blobs = berth_storage::fs::FsStore::open(dir.join("blobs")).unwrap();
        let settings = crate::Settings {
            namespace: ns(),
            upload_ttl: std::time::Duration::from_secs(3600),
            regions: vec!["us-east-1".into()],
            create_on_push: true,
            registry_domain: None,
            blob_redirect_ttl: None,
            min_free_bytes: 0,
            gc_lease: std::time::Duration::from_secs(120),
            scan_interval: std::time::Duration::from_secs(86_400),
            scan_sbom_referrers: false,
            encrypt_at_rest: true,
        };
        let reg =
            Registry::new(Arc::new(meta), Arc::new(blobs), clock, settings, crate::Keys::from_server_key(&[7; 32]));
        // The first node creates the account; the second finds it.
        reg.meta.create_account("111111111111", 0).await.unwrap();
        reg
    }

    fn ns() -> Namespace {
        Namespace { account_id: "111111111111".into(), region: "us-east-1".into() }
    }

    fn code(r: Result<impl std::fmt::Debug>) -> &'static str {
        match r {
            Err(Error::Kms { code, .. }) => code,
            other => panic!("expected a KMS error, got {other:?}"),
        }
    }

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[tokio::test]
    async fn keys_encrypt_rotate_and_are_deleted_after_their_window() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(std::sync::atomic::AtomicI64::new(1_000_000)));
        let reg = node(dir.path(), clock.clone()).await;
        let key =
            reg.kms_create_key(None, &ns(), NewKey { description: Some("d"), ..Default::default() }).await.unwrap();
        let arn = key.arn();
        reg.kms_create_alias(None, &ns(), "alias/app", &key.key_id).await.unwrap();
        let c = ctx(&[("repo", "a")]);
        let blob = reg.kms_encrypt(None, &ns(), "alias/app", b"secret", &c, false).await.unwrap();
        assert_eq!(blob.key_arn, arn);
        let out = reg.kms_decrypt(None, &ns(), &blob.ciphertext, &c, None, false).await.unwrap();
        assert_eq!(out.plaintext.as_deref().map(Vec::as_slice), Some(&b"secret"[..]));
        assert_eq!(
            code(reg.kms_decrypt(None, &ns(), &blob.ciphertext, &ctx(&[]), None, false).await),
            "InvalidCiphertextException"
        );
        let other = reg.kms_create_key(None, &ns(), NewKey::default()).await.unwrap();
        assert_eq!(
            code(reg.kms_decrypt(None, &ns(), &blob.ciphertext, &c, Some(&other.key_id), false).await),
            "IncorrectKeyException"
        );

        // Automatic rotation: due after its period; old ciphertexts still decrypt.
        reg.kms_enable_key_rotation(None, &ns(), &key.key_id, Some(90)).await.unwrap();
        assert_eq!(reg.kms_sweep().await.unwrap(), (0, 0));
        clock.0.fetch_add(90 * DAY_MS, Ordering::SeqCst);
        assert_eq!(reg.kms_sweep().await.unwrap(), (0, 1));
        assert_eq!(reg.kms_sweep().await.unwrap(), (0, 0), "the next rotation is a period later");
        let status = reg.kms_key_rotation_status(None, &ns(), &arn).await.unwrap();
        assert_eq!(status.next_rotation_at, Some(1_000_000 + 180 * DAY_MS));
        let usable = reg.kms_key_for_encrypt(&arn).await.unwrap();
        assert_eq!(usable.version, 2);
        assert_eq!(usable.uuid, *uuid::Uuid::parse_str(&key.key_id).unwrap().as_bytes());
        let again = reg.kms_decrypt(None, &ns(), &blob.ciphertext, &c, Some(&arn), false).await.unwrap();
        assert_eq!(again.plaintext.as_deref().map(Vec::as_slice), Some(&b"secret"[..]));
        reg.kms_rotate_key_on_demand(None, &ns(), &key.key_id).await.unwrap();
        let rotations = reg.kms_list_key_rotations(None, &ns(), &key.key_id, false, None, None).await.unwrap();
        let kinds: Vec<_> =
            rotations.items.iter().map(|r| (r.version, r.rotation_type.as_deref(), r.current)).collect();
        assert_eq!(kinds, [(2, Some("AUTOMATIC"), false), (3, Some("ON_DEMAND"), true)]);
        let material = reg.kms_material_for_decrypt(&arn, 1).await.unwrap();
        assert_eq!(berth_kms::decrypt(&material, &blob.ciphertext, &c).unwrap().as_slice(), b"secret");
        assert_eq!(code(reg.kms_material_for_decrypt(&arn, 9).await), "InvalidCiphertextException");

        // Deletion: refused while pending, gone after the window, with its aliases.
        let k = reg.kms_schedule_key_deletion(None, &ns(), &arn, Some(7)).await.unwrap();
        assert_eq!(k.deletion_date, Some(clock.now_ms() + 7 * DAY_MS));
        assert_eq!(code(reg.kms_key_for_encrypt(&arn).await), "KMSInvalidStateException");
        assert_eq!(code(reg.kms_enable_key(None, &ns(), &arn).await), "KMSInvalidStateException");
        assert_eq!(code(reg.kms_schedule_key_deletion(None, &ns(), &arn, Some(6)).await), "ValidationException");
        assert_eq!(reg.kms_cancel_key_deletion(None, &ns(), &key.key_id).await.unwrap(), arn);
        assert_eq!(reg.kms_describe_key(None, &ns(), &arn).await.unwrap().state, KEY_DISABLED, "cancelled: disabled");
        assert_eq!(code(reg.kms_key_for_encrypt(&arn).await), "DisabledException");
        reg.kms_schedule_key_deletion(None, &ns(), &arn, None).await.unwrap();
        clock.0.fetch_add(30 * DAY_MS - 1, Ordering::SeqCst);
        assert_eq!(reg.kms_describe_key(None, &ns(), "alias/app").await.unwrap().state, KEY_PENDING_DELETION);
        clock.0.fetch_add(1, Ordering::SeqCst);
        assert_eq!(code(reg.kms_describe_key(None, &ns(), &arn).await), "NotFoundException");
        assert_eq!(code(reg.kms_describe_key(None, &ns(), "alias/app").await), "NotFoundException");
        assert_eq!(code(reg.kms_material_for_decrypt(&arn, 1).await), "NotFoundException");
        assert!(reg.meta.kms_materials(&key.key_id).await.unwrap().is_empty(), "the material is destroyed");
        let listed = reg.kms_list_keys(None, &ns(), None, None).await.unwrap();
        assert_eq!(listed.items.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), [other.key_id.as_str()]);
    }

    #[tokio::test]
    async fn a_disabled_key_stops_on_this_node_at_once_and_on_others_within_the_epoch_check() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(std::sync::atomic::AtomicI64::new(5_000_000)));
        let a = node(dir.path(), clock.clone()).await;
        let b = node(dir.path(), clock.clone()).await;
        let arn = a.kms_key_for_repository("111111111111", "us-east-1", None).await.unwrap();
        let key = a.kms_create_key(None, &ns(), NewKey::default()).await.unwrap();
        let repo_key = b.kms_key_for_repository("111111111111", "us-east-1", Some(&key.key_id)).await.unwrap();
        assert_eq!(repo_key, key.arn());
        assert_eq!(b.kms_key_for_repository("111111111111", "us-east-1", Some("alias/aws/ecr")).await.unwrap(), arn);
        assert_eq!(b.kms_key_for_repository("111111111111", "us-east-1", None).await.unwrap(), arn, "one per account");
        assert_eq!(
            code(b.kms_key_for_repository("111111111111", "us-east-1", Some("alias/none")).await),
            "NotFoundException"
        );
        b.kms_key_for_encrypt(&repo_key).await.unwrap();
        a.kms_disable_key(None, &ns(), &key.key_id).await.unwrap();
        assert_eq!(code(a.kms_key_for_encrypt(&repo_key).await), "DisabledException", "this node: at once");
        assert!(b.kms_key_for_encrypt(&repo_key).await.is_ok(), "another node: within the epoch check");
        clock.0.fetch_add(crate::EPOCH_CHECK_MS, Ordering::SeqCst);
        assert_eq!(code(b.kms_key_for_encrypt(&repo_key).await), "DisabledException");
        assert_eq!(code(b.kms_material_for_decrypt(&repo_key, 1).await), "DisabledException");
        assert_eq!(
            code(b.kms_key_for_repository("111111111111", "us-east-1", Some(&key.key_id)).await),
            "DisabledException"
        );
        a.kms_enable_key(None, &ns(), &key.key_id).await.unwrap();
        clock.0.fetch_add(crate::EPOCH_CHECK_MS, Ordering::SeqCst);
        b.kms_key_for_encrypt(&repo_key).await.unwrap();

        // The AWS managed key cannot be managed.
        let aws = b.kms_describe_key(None, &ns(), "alias/aws/ecr").await.unwrap();
        assert_eq!((aws.key_manager.as_str(), aws.description.as_str()), (AWS, AWS_ECR_DESCRIPTION));
        assert_eq!(code(b.kms_disable_key(None, &ns(), &aws.key_id).await), "UnsupportedOperationException");
        assert_eq!(
            code(b.kms_schedule_key_deletion(None, &ns(), &aws.key_id, None).await),
            "UnsupportedOperationException"
        );
        assert_eq!(
            code(b.kms_create_alias(None, &ns(), "alias/mine", &aws.key_id).await),
            "UnsupportedOperationException"
        );
        assert_eq!(
            code(b.kms_create_alias(None, &ns(), "alias/aws/mine", &key.key_id).await),
            "InvalidAliasNameException"
        );
        assert_eq!(code(b.kms_delete_alias(None, &ns(), "alias/aws/ecr").await), "InvalidAliasNameException");
        assert!(b.kms_key_rotation_status(None, &ns(), &aws.key_id).await.unwrap().enabled);
    }

    #[test]
    fn key_references_parse_as_kms_names_them() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(parse_key_ref(id).unwrap(), KeyRef::Id(id.into()));
        assert_eq!(
            parse_key_ref(&format!("arn:aws:kms:us-east-1:111122223333:key/{id}")).unwrap(),
            KeyRef::KeyArn { region: "us-east-1".into(), account: "111122223333".into(), id: id.into() }
        );
        assert_eq!(parse_key_ref("alias/app").unwrap(), KeyRef::Alias("alias/app".into()));
        assert_eq!(
            parse_key_ref("arn:aws:kms:eu-west-1:111122223333:alias/app/x").unwrap(),
            KeyRef::AliasArn { region: "eu-west-1".into(), account: "111122223333".into(), name: "alias/app/x".into() }
        );
        for bad in ["arn:aws:kms:us-east-1:1:key/x", "arn:aws:s3:::b", "arn:aws:kms:us-east-1:111122223333:foo/x"] {
            assert!(matches!(parse_key_ref(bad), Err(Error::Kms { code: "InvalidArnException", .. })), "{bad}");
        }
        assert_eq!(canonical_key_id(id).as_deref(), Some(id));
        assert_eq!(canonical_key_id(&id.to_uppercase()), None);
        assert_eq!(canonical_key_id("mrk-1"), None);
    }

    #[test]
    fn alias_names_follow_kms_rules() {
        assert!(check_alias_name("alias/app-1/x_y:z", true).is_ok());
        assert!(check_alias_name("alias/aws/ecr", false).is_ok());
        let code = |n: &str| match check_alias_name(n, true) {
            Err(Error::Kms { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code("alias/aws/ecr"), "InvalidAliasNameException");
        assert_eq!(code("app"), "InvalidAliasNameException");
        assert_eq!(code("alias/"), "InvalidAliasNameException");
        assert_eq!(code("alias/a b"), "ValidationException");
        assert_eq!(code(&format!("alias/{}", "a".repeat(251))), "ValidationException");
    }

    #[test]
    fn data_key_lengths() {
        assert_eq!(data_key_len(Some("AES_256"), None).unwrap(), 32);
        assert_eq!(data_key_len(Some("AES_128"), None).unwrap(), 16);
        assert_eq!(data_key_len(None, Some(1024)).unwrap(), 1024);
        for (spec, n) in
            [(None, None), (Some("AES_256"), Some(3)), (None, Some(0)), (None, Some(1025)), (Some("RSA"), None)]
        {
            assert!(matches!(data_key_len(spec, n), Err(Error::Kms { code: "ValidationException", .. })));
        }
    }

    #[test]
    fn policies_and_material_ids() {
        assert!(parse_key_policy(&default_key_policy("111122223333")).is_ok());
        assert!(parse_key_policy(&aws_ecr_key_policy("111122223333")).is_ok());
        let big =
            format!("{{\"Version\":\"2012-10-17\",\"Statement\":[],\"x\":\"{}\"}}", "a".repeat(MAX_KEY_POLICY_BYTES));
        assert!(matches!(parse_key_policy(&big), Err(Error::Kms { code: "LimitExceededException", .. })));
        assert!(matches!(parse_key_policy("{}"), Err(Error::Kms { code: "MalformedPolicyDocumentException", .. })));
        let a = key_material_id("arn:aws:kms:r:1:key/x", 1);
        assert_eq!(a.len(), 64);
        assert_ne!(a, key_material_id("arn:aws:kms:r:1:key/x", 2));
    }

    #[test]
    fn pages_and_markers() {
        let p = page(vec!["a".to_string(), "b".into(), "c".into()], 2, |s| s.clone());
        assert_eq!(p.items, ["a", "b"]);
        assert_eq!(decode_marker(p.next_marker.as_deref()).unwrap(), "b");
        assert!(page(vec!["a".to_string()], 1, |s| s.clone()).next_marker.is_none());
        assert!(matches!(decode_marker(Some("zz")), Err(Error::Kms { code: "InvalidMarkerException", .. })));
        assert!(matches!(check_limit(Some(0), 1000, 100), Err(Error::Kms { code: "ValidationException", .. })));
    }
}

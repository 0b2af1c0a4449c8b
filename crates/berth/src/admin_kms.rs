//! `berth admin kms` subcommands: the KMS key operations for the operator, without the AWS CLI
//! and without authorization (the operator holds the data). Each works on one account
//! (`--account-id`, the default account when omitted) in one region (`--region`, the first
//! configured region when omitted) and prints what the AWS CLI prints for the same operation
//! (`{"KeyMetadata": {...}}`, `{"Keys": [...]}`, ...), or nothing when KMS answers nothing.

use berth_meta::Namespace;
use berth_registry::Registry;
use berth_registry::kms::{KmsPage, NewKey, key_metadata};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where a command acts.
#[derive(Args, Debug, Clone)]
pub struct Scope {
    /// Account (the default account when omitted).
    #[arg(long)]
    account_id: Option<String>,
    /// Region (the first configured region when omitted).
    #[arg(long)]
    region: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum KmsCommand {
    /// Create a symmetric encryption key; prints {"KeyMetadata": ...}.
    CreateKey {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        description: Option<String>,
        /// The key policy JSON, or `file://PATH` (KMS's default policy when omitted).
        #[arg(long)]
        policy: Option<String>,
        /// A tag as KEY=VALUE (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Print a key as {"KeyMetadata": ...} (key id, key ARN, alias name or alias ARN;
    /// `alias/aws/ecr` creates the AWS managed key of ECR on first use).
    DescribeKey {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        key_id: String,
    },
    /// List the keys as {"Keys": [...]}.
    ListKeys {
        #[command(flatten)]
        scope: Scope,
    },
    /// Create an alias (`alias/...`) of a key.
    CreateAlias {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        alias_name: String,
        #[arg(long)]
        target_key_id: String,
    },
    /// Enable a disabled key.
    EnableKey {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        key_id: String,
    },
    /// Disable a key: it refuses to encrypt and decrypt until enabled again.
    DisableKey {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        key_id: String,
    },
    /// Schedule a key's deletion (7 to 30 days, 30 by default); prints what KMS prints.
    ScheduleKeyDeletion {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        pending_window_in_days: Option<i64>,
    },
    /// Cancel a key's scheduled deletion (the key is left disabled, as KMS does).
    CancelKeyDeletion {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        key_id: String,
    },
    /// Rotate a key automatically every N days (90 to 2560, 365 by default).
    EnableKeyRotation {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        rotation_period_in_days: Option<i64>,
    },
    /// Rotate a key's material now (RotateKeyOnDemand).
    RotateKey {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        key_id: String,
    },
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Run one `berth admin kms` command; `None` when there is nothing to print.
pub async fn run(reg: &Registry, command: KmsCommand) -> anyhow::Result<Option<Value>> {
    let err = |e: berth_registry::Error| anyhow::anyhow!("{e}");
    let ns = |s: &Scope| -> Namespace {
        reg.namespace(
            s.account_id.as_deref().unwrap_or(reg.default_account()),
            s.region.as_deref().unwrap_or(&reg.regions()[0]),
        )
    };
    Ok(match command {
        KmsCommand::CreateKey { scope, description, policy, tags } => {
            let policy = match policy {
                Some(p) => Some(match p.strip_prefix("file://") {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("reading the policy from {path}: {e}"))?,
                    None => p,
                }),
                None => None,
            };
            let tags = tags
                .iter()
                .map(|t| {
                    t.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--tag must be KEY=VALUE, not '{t}'"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let new = NewKey {
                description: description.as_deref(),
                policy: policy.as_deref(),
                bypass_policy_lockout_safety_check: true,
                tags,
            };
            let key = reg.kms_create_key(None, &ns(&scope), new).await.map_err(err)?;
            Some(json!({ "KeyMetadata": key_metadata(&key) }))
        }
        KmsCommand::DescribeKey { scope, key_id } => {
            let key = reg.kms_describe_key(None, &ns(&scope), &key_id).await.map_err(err)?;
            Some(json!({ "KeyMetadata": key_metadata(&key) }))
        }
        KmsCommand::ListKeys { scope } => {
            let ns = ns(&scope);
            let mut keys = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let KmsPage { items, next_marker } =
                    reg.kms_list_keys(None, &ns, Some(1000), marker.as_deref()).await.map_err(err)?;
                keys.extend(items.iter().map(|k| json!({"KeyId": k.key_id, "KeyArn": k.arn()})));
                match next_marker {
                    Some(m) => marker = Some(m),
                    None => break,
                }
            }
            Some(json!({ "Keys": keys }))
        }
        KmsCommand::CreateAlias { scope, alias_name, target_key_id } => {
            reg.kms_create_alias(None, &ns(&scope), &alias_name, &target_key_id).await.map_err(err)?;
            None
        }
        KmsCommand::EnableKey { scope, key_id } => {
            reg.kms_enable_key(None, &ns(&scope), &key_id).await.map_err(err)?;
            None
        }
        KmsCommand::DisableKey { scope, key_id } => {
            reg.kms_disable_key(None, &ns(&scope), &key_id).await.map_err(err)?;
            None
        }
        KmsCommand::ScheduleKeyDeletion { scope, key_id, pending_window_in_days } => {
            let k =
                reg.kms_schedule_key_deletion(None, &ns(&scope), &key_id, pending_window_in_days).await.map_err(err)?;
            Some(json!({
                "KeyId": k.arn(),
                "DeletionDate": secs(k.deletion_date.unwrap_or_default()),
                "KeyState": k.state,
                "PendingWindowInDays": k.pending_window_days,
            }))
        }
        KmsCommand::CancelKeyDeletion { scope, key_id } => {
            let arn = reg.kms_cancel_key_deletion(None, &ns(&scope), &key_id).await.map_err(err)?;
            Some(json!({ "KeyId": arn }))
        }
        KmsCommand::EnableKeyRotation { scope, key_id, rotation_period_in_days } => {
            reg.kms_enable_key_rotation(None, &ns(&scope), &key_id, rotation_period_in_days).await.map_err(err)?;
            None
        }
        KmsCommand::RotateKey { scope, key_id } => {
            let id = reg.kms_rotate_key_on_demand(None, &ns(&scope), &key_id).await.map_err(err)?;
            Some(json!({ "KeyId": id }))
        }
    })
}

//! The `berth` binary: `berth serve`, the admin subcommands, and the client-side credential
//! helpers (`berth credential-helper`, alias `docker-credential-berth`; `berth
//! kubelet-credential-provider`).

mod admin_iam;
mod admin_kms;
mod config;
mod gc;
mod lifecycle;

use anyhow::Context;
use berth_events::{audit, webhooks};
use berth_meta::{AppliedMigration, Job, MetadataStore, NewJob, SchemaMode};
use berth_registry::jobs::{self, JobRunner, RunnerConfig};
use berth_registry::{Clock, Registry, Settings, SystemClock};
use clap::{Parser, Subcommand};
use config::Config;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Berth: a self-hosted, ECR-compatible OCI container registry.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Unknown keys are an error.
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding all registry data (blobs, metadata database, upload areas).
    #[arg(long, global = true, env = "BERTH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry server (OCI distribution API).
    Serve {
        /// Address to listen on (`127.0.0.1:5000` by default; port 0 picks a free port).
        #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR")]
        listen: Option<String>,
        /// Do not apply schema migrations at start; refuse to start unless the schema is
        /// current (apply them with `berth migrate`).
        #[arg(long, env = "BERTH_NO_MIGRATE", value_parser = clap::builder::FalseyValueParser::new())]
        no_migrate: bool,
        /// Serve `/metrics`, `/healthz` and `/readyz` on this address instead of the main one.
        #[arg(long, value_name = "ADDR")]
        admin_listen: Option<String>,
        /// Serve TLS with this PEM certificate chain (with --tls-key); re-read when it changes.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<std::path::PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "FILE")]
        tls_key: Option<std::path::PathBuf>,
        /// Serve TLS with a certificate of a CA Berth makes in <data-dir>/tls/ (ca.pem is what
        /// clients trust).
        #[arg(long)]
        tls_self_signed: bool,
    },
    /// Apply pending schema migrations to the configured metadata database, print them, exit.
    Migrate,
    /// Print the effective configuration (after file, environment and flags) as TOML.
    Config,
    /// Remove expired upload sessions and orphaned upload areas now (safe while a server runs).
    ExpireUploads,
    /// The audit trail: look records up as CloudTrail's LookupEvents does (the default), or
    /// verify its hash chains (`berth audit verify`). Works while a server runs.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        #[command(flatten)]
        lookup: LookupArgs,
    },
    /// Garbage collection: one pass now (safe while servers run): removes repository links no
    /// manifest references, then deletes the blobs found unlinked at least a grace period ago.
    Gc {
        /// Print what a pass would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Links this old, and blobs found unlinked this long ago, go (e.g. 0, 90s, 30m, 24h;
        /// `gc_grace_secs` by default).
        #[arg(long, value_name = "DURATION")]
        grace_period: Option<String>,
        /// Also list the whole store and delete bytes older than the grace period that no
        /// metadata knows (crash leftovers; the periodic sweep runs every
        /// `gc_sweep_interval_secs`).
        #[arg(long)]
        sweep: bool,
        /// `text` (default) or `json`.
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Lifecycle policies: `berth lifecycle run` applies them now (safe while servers run).
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCommand,
    },
    /// Vulnerability data for image scanning: `berth vulndb import PATH...` loads OSV advisories
    /// (JSON files, directories, osv.dev `all.zip`s); `berth vulndb status` shows what is loaded.
    Vulndb {
        #[command(subcommand)]
        command: VulndbCommand,
    },
    /// Administration (works while a server runs on the same data).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Docker credential helper (`get`, `store`, `erase`, `list`, `version`): prints a registry
    /// password from ECR GetAuthorizationToken, with AWS credentials from the environment,
    /// web identity or ~/.aws. Also runs as `docker-credential-berth` (a symlink to `berth`).
    CredentialHelper {
        /// get, store, erase, list or version.
        action: String,
    },
    /// Kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1): reads a
    /// CredentialProviderRequest on stdin, prints a CredentialProviderResponse.
    KubeletCredentialProvider,
}

#[derive(Subcommand, Debug)]
enum VulndbCommand {
    /// Import OSV advisories (safe while servers run; an advisory imported again replaces the
    /// earlier version). Progress on a terminal.
    Import {
        /// OSV JSON files, directories of them, or osv.dev `all.zip` downloads.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show the imports and how many advisories and packages are loaded.
    Status {
        /// `text` (default) or `json`.
        #[arg(long, default_value = "text")]
        output: String,
    },
}

#[derive(Subcommand, Debug)]
enum LifecycleCommand {
    /// Apply every repository's lifecycle policy now (or one repository's), as the periodic
    /// job does; prints what was expired and a summary.
    Run {
        /// Only this repository (of --account-id and --region).
        #[arg(long)]
        repository: Option<String>,
        /// Account of --repository (the default account when omitted).
        #[arg(long)]
        account_id: Option<String>,
        /// Region of --repository (the first configured region when omitted).
        #[arg(long)]
        region: Option<String>,
        /// Evaluate and print, expire nothing.
        #[arg(long)]
        dry_run: bool,
        /// `text` (default) or `json`.
        #[arg(long, default_value = "text")]
        output: String,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Walk every node's hash chain: recompute each record's hash and check seq continuity and
    /// the links. Prints each chain's head (seq and hash; keep it: removing a chain's newest
    /// records is detectable only against a head saved earlier). Exits non-zero naming the
    /// first broken record (chain, seq, eventID) of each broken chain.
    Verify {
        /// `text` (default) or `json`.
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Look records up, newest first, as `aws cloudtrail lookup-events` does; prints its JSON.
    Lookup(LookupArgs),
}

/// The options of `aws cloudtrail lookup-events`.
#[derive(clap::Args, Debug, Default)]
struct LookupArgs {
    /// `AttributeKey=<key>,AttributeValue=<value>` (one), key one of EventId, EventName,
    /// ReadOnly, Username, ResourceType, ResourceName, EventSource, AccessKeyId.
    #[arg(long)]
    lookup_attributes: Option<String>,
    /// Events at or after this time: epoch seconds or `YYYY-MM-DDTHH:MM:SSZ`.
    #[arg(long)]
    start_time: Option<String>,
    /// Events at or before this time: epoch seconds or `YYYY-MM-DDTHH:MM:SSZ`.
    #[arg(long)]
    end_time: Option<String>,
    /// 1 to 50 (default 50).
    #[arg(long)]
    max_results: Option<i64>,
    /// The `NextToken` of the previous page (same attribute and times).
    #[arg(long)]
    next_token: Option<String>,
    /// Whose records (the default account when omitted).
    #[arg(long)]
    account_id: Option<String>,
    /// Only `json`.
    #[arg(long, default_value = "json")]
    output: String,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create an account and its root access key; prints the credentials as JSON.
    CreateAccount {
        /// 12-digit account id (random when omitted).
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Create another root access key for an account (the default account when --account-id is
    /// omitted); prints the credentials as JSON. With --user-name, a key of that IAM user,
    /// printed as {"AccessKey": ...}.
    CreateAccessKey {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: Option<String>,
    },
    /// Print a registry password for an account's root (as `aws ecr get-login-password` does).
    GetLoginPassword {
        /// Account (the default account when omitted).
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Create a repository in the default account and region; prints it as JSON.
    CreateRepository {
        #[arg(long)]
        repository_name: String,
        /// MUTABLE (default), IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION.
        #[arg(long, default_value = "MUTABLE")]
        image_tag_mutability: String,
        /// Wildcard exclusion filters for the *_WITH_EXCLUSION settings (repeatable).
        #[arg(long = "exclusion-filter")]
        exclusion_filters: Vec<String>,
    },
    /// Set a repository's pull gate (Berth's own): pulls of images whose last scan has findings
    /// at or above --severity, or that were not scanned (unless --allow-unscanned), are refused
    /// (403 DENIED) except for callers allowed `berth:BypassPullGate`. --off removes it. Prints
    /// the gate as JSON.
    SetPullGate {
        #[arg(long)]
        repository_name: String,
        /// Account of the repository (the default account when omitted).
        #[arg(long)]
        account_id: Option<String>,
        /// Region of the repository (the first configured region when omitted).
        #[arg(long)]
        region: Option<String>,
        /// CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNDEFINED (any finding).
        #[arg(long, required_unless_present = "off")]
        severity: Option<String>,
        /// Let images that were never scanned through.
        #[arg(long)]
        allow_unscanned: bool,
        /// Remove the gate.
        #[arg(long, conflicts_with_all = ["severity", "allow_unscanned"])]
        off: bool,
    },
    /// List background jobs, newest first, as JSON.
    Jobs {
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Enqueue a background job of a kind the servers run; prints its id (null when a job of
    /// that kind and key is already pending or running).
    EnqueueJob {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        key: String,
        /// JSON payload handed to the job.
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
    },
    /// Subscribe a URL to the account's events (EventBridge-shaped JSON, POSTed and signed);
    /// prints the webhook with its signing secret, which is shown only this once.
    CreateWebhook {
        /// Where to POST events (http:// or https://).
        #[arg(long)]
        url: String,
        /// `all`, or a comma-separated list of detail types (e.g. "ECR Image Action").
        #[arg(long, default_value = "all")]
        events: String,
        /// Only events of repositories whose name starts with this.
        #[arg(long)]
        repository_filter: Option<String>,
        /// Account (the default account when omitted).
        #[arg(long)]
        account_id: Option<String>,
    },
    /// List an account's webhooks with their delivery counts (pending, delivered, dead-lettered).
    ListWebhooks {
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Delete a webhook and its undelivered deliveries.
    DeleteWebhook {
        #[arg(long)]
        webhook_id: String,
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Retry a webhook's dead-lettered deliveries (in their original order); prints how many.
    RedriveWebhook {
        #[arg(long)]
        webhook_id: String,
        #[arg(long)]
        account_id: Option<String>,
    },
    #[command(flatten)]
    Iam(admin_iam::IamCommand),
    /// KMS keys: create, describe, list, alias, enable, disable, schedule or cancel deletion,
    /// rotate.
    Kms {
        #[command(subcommand)]
        command: admin_kms::KmsCommand,
    },
}

fn main() -> std::process::ExitCode {
    // `docker-credential-berth ACTION` is this binary under another name.
    if let Some(code) = berth_credhelper::dispatch_argv0() {
        return code;
    }
    let cli = Cli::parse();
    // The client-side helpers need no configuration, data dir or logging.
    match &cli.command {
        Command::CredentialHelper { action } => return berth_credhelper::docker::main(action),
        Command::KubeletCredentialProvider => return berth_credhelper::kubelet::main(),
        _ => {}
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A person reads this: the message and its causes on one line, never a backtrace
        // (whatever RUST_BACKTRACE says).
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Everything Berth creates (data dir, database, keys, blobs, uploads) is for its owner only,
    // whatever umask it was started with.
    // SAFETY: umask only sets this process's file creation mask; no memory is involved.
    unsafe {
        libc::umask(0o077);
    }
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        cfg.data_dir = d;
        cfg.check_archive_storage()?;
    }
    if let Command::Serve { listen, admin_listen, tls_cert, tls_key, tls_self_signed, .. } = &cli.command {
        if tls_cert.is_some() {
            cfg.tls_cert = tls_cert.clone();
        }
        if tls_key.is_some() {
            cfg.tls_key = tls_key.clone();
        }
        cfg.tls_self_signed |= *tls_self_signed;
        if let Some(l) = listen {
            cfg.listen = l.clone();
            cfg.check_listen()?;
        }
        if let Some(a) = admin_listen {
            cfg.admin_listen = Some(a.clone());
            cfg.check_admin_listen()?;
        }
    }
    let _log_flush = init_tracing(&cfg.log, &cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve { no_migrate, .. } => rt.block_on(serve(cfg, no_migrate)),
        Command::Migrate => rt.block_on(async {
            make_data_dir(&cfg.data_dir)?;
            let (meta, applied) = Meta::open(&cfg, SchemaMode::Migrate).await?;
            meta.close().await;
            for m in &applied {
                println!("applied {:04}_{}", m.version, m.description.replace(' ', "_"));
            }
            if applied.is_empty() {
                println!("schema is current; nothing to apply");
            }
            Ok(())
        }),
        Command::Config => {
            // The effective default account: the one fixed at the first start, when there was one.
            if cfg.account_id.is_none() {
                cfg.account_id = rt.block_on(stored_default_account(&cfg));
            }
            print!("{}", toml::to_string(&cfg)?);
            Ok(())
        }
        Command::Admin { command } => {
            let out = rt.block_on(async {
                let (reg, meta) = open(&cfg, SchemaMode::Migrate).await?;
                let out = admin(&cfg, &reg, meta.store().as_ref(), command).await;
                meta.close().await;
                out
            });
            match out {
                // Commands IAM answers with nothing (delete-user, ...) print nothing.
                Ok(out) if out.is_empty() => {}
                Ok(out) => println!("{out}"),
                // One line for scripts (the message and its causes), never a backtrace.
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    std::process::exit(1);
                }
            }
            Ok(())
        }
        Command::Audit { command, lookup } => {
            let out = rt.block_on(async {
                let (reg, meta) = open(&cfg, SchemaMode::Migrate).await?;
                let out = match command {
                    Some(AuditCommand::Verify { output }) => audit_verify(meta.store().as_ref(), &output).await,
                    Some(AuditCommand::Lookup(args)) => audit_lookup(&reg, meta.store().as_ref(), args).await,
                    None => audit_lookup(&reg, meta.store().as_ref(), lookup).await,
                };
                meta.close().await;
                out
            })?;
            println!("{out}");
            Ok(())
        }
        Command::Lifecycle { command: LifecycleCommand::Run { repository, account_id, region, dry_run, output } } => {
            anyhow::ensure!(output == "text" || output == "json", "--output must be text or json");
            yield_cpu_to_servers();
            rt.block_on(async {
                let (reg, meta) = open(&cfg, SchemaMode::Migrate).await?;
                let out = lifecycle_run(&cfg, &reg, &meta, repository, account_id, region, dry_run, &output).await;
                meta.close().await;
                out
            })
        }
        Command::Vulndb { command } => rt.block_on(async {
            let (reg, meta) = open(&cfg, SchemaMode::Migrate).await?;
            let out = vulndb(&reg, command).await;
            meta.close().await;
            out
        }),
        Command::Gc { dry_run, grace_period, sweep, output } => {
            anyhow::ensure!(output == "text" || output == "json", "--output must be text or json");
            let grace = match grace_period {
                Some(g) => gc::parse_duration(&g)?,
                None => Duration::from_secs(cfg.gc_grace_secs),
            };
            yield_cpu_to_servers();
            rt.block_on(async {
                let (reg, meta) = open(&cfg, SchemaMode::Migrate).await?;
                let out = gc::run(&reg, grace, dry_run, sweep, &output).await;
                meta.close().await;
                out
            })
        }
        Command::CredentialHelper { .. } | Command::KubeletCredentialProvider => unreachable!("handled in main"),
        Command::ExpireUploads => rt.block_on(async {
            let (reg, meta) = open(&cfg, SchemaMode::Migrate).await?;
            let n = reg.expire_uploads().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("removed {n} expired upload(s)");
            meta.close().await;
            Ok(())
        }),
    }
}

/// Lower this process's scheduling priority (nice 10): a maintenance command run next to a
/// server (`berth gc`, `berth lifecycle run`) leaves the CPU to the requests it serves and takes
/// what is left.
fn yield_cpu_to_servers() {
    // SAFETY: setpriority with PRIO_PROCESS and pid 0 only changes this process's priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// `berth lifecycle run`: one pass now, printed per repository (text: one line per expired
/// image; json: the runs) and summarized.
#[allow(clippy::too_many_arguments)]
async fn lifecycle_run(
    cfg: &Config,
    reg: &Arc<Registry>,
    meta: &Meta,
    repository: Option<String>,
    account_id: Option<String>,
    region: Option<String>,
    dry_run: bool,
    output: &str,
) -> anyhow::Result<()> {
    let only = match repository {
        Some(name) => {
            let account = account_id.unwrap_or_else(|| reg.default_account().to_string());
            let region = region.unwrap_or_else(|| reg.regions()[0].clone());
            let ns = reg.namespace(&account, &region);
            Some(reg.lifecycle_repository(&ns, &name).await.map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        None => None,
    };
    // This process's own audit chain (a server's chain is its node id).
    let sink = if dry_run {
        None
    } else {
        let chain = format!("berth-lifecycle-{}", random_node_id());
        Some(
            audit::AuditSink::start(meta.store(), chain, cfg.audit_settings())
                .await
                .context("starting the audit trail")?,
        )
    };
    let verb = if dry_run { "would expire" } else { "expired" };
    let mut runs = Vec::new();
    let summary = lifecycle::apply(reg, sink.as_ref(), only, dry_run, |run| {
        if output == "json" {
            runs.push(serde_json::json!({
                "registryId": run.repository.account_id,
                "region": run.repository.region,
                "repositoryName": run.repository.name,
                "actions": run.actions.iter().map(|a| a.preview_json()).collect::<Vec<_>>(),
                "skipped": run.skipped,
            }));
            return;
        }
        for a in &run.actions {
            println!(
                "{verb} {}/{}@{} [{}] (rule {})",
                run.repository.account_id,
                run.repository.name,
                a.digest,
                a.tags.join(","),
                a.rule_priority
            );
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(sink) = &sink {
        let _ = tokio::time::timeout(Duration::from_secs(30), sink.flush()).await;
    }
    if output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dryRun": dry_run,
                "repositories": summary.repositories,
                "expired": summary.expired,
                "skipped": summary.skipped,
                "runs": runs,
            }))?
        );
    } else {
        println!(
            "lifecycle: {} repositor{} evaluated, {} image(s) {verb}{}",
            summary.repositories,
            if summary.repositories == 1 { "y" } else { "ies" },
            summary.expired,
            if summary.skipped > 0 {
                format!(", {} left alone (changed since the evaluation)", summary.skipped)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

async fn admin(
    cfg: &Config,
    reg: &Registry,
    meta: &dyn MetadataStore,
    command: AdminCommand,
) -> anyhow::Result<String> {
    let err = |e: berth_registry::Error| anyhow::anyhow!("{e}");
    let account = |a: Option<String>| a.unwrap_or_else(|| reg.default_account().to_string());
    Ok(match command {
        AdminCommand::CreateWebhook { url, events, repository_filter, account_id } => {
            let account = account(account_id);
            anyhow::ensure!(meta.account_exists(&account).await?, "no account '{account}'");
            let keys = berth_registry::Keys::from_server_key(&server_key(cfg)?);
            let now = SystemClock.now_ms();
            let c = webhooks::create(meta, &keys, &account, &url, &events, repository_filter.as_deref(), now).await?;
            let listed = webhooks::list(meta, &account).await?;
            let mut shown = listed
                .as_array()
                .and_then(|a| a.iter().find(|w| w["WebhookId"] == c.id.as_str()))
                .cloned()
                .unwrap_or_default();
            shown["Secret"] = c.secret.into();
            serde_json::to_string_pretty(&shown)?
        }
        AdminCommand::ListWebhooks { account_id } => {
            serde_json::to_string_pretty(&webhooks::list(meta, &account(account_id)).await?)?
        }
        AdminCommand::DeleteWebhook { webhook_id, account_id } => {
            webhooks::delete(meta, &account(account_id), &webhook_id).await?;
            String::new()
        }
        AdminCommand::RedriveWebhook { webhook_id, account_id } => {
            let n = webhooks::redrive(meta, &account(account_id), &webhook_id, SystemClock.now_ms()).await?;
            serde_json::to_string_pretty(&serde_json::json!({ "Redriven": n }))?
        }
        AdminCommand::CreateAccount { account_id } => {
            serde_json::to_string_pretty(&reg.create_account(account_id.as_deref()).await.map_err(err)?)?
        }
        AdminCommand::CreateAccessKey { account_id, user_name: Some(user) } => {
            serde_json::to_string_pretty(&admin_iam::create_access_key(reg, meta, account_id, &user).await?)?
        }
        AdminCommand::CreateAccessKey { account_id, user_name: None } => {
            let account = account_id.unwrap_or_else(|| reg.default_account().to_string());
            serde_json::to_string_pretty(&reg.create_access_key(&account, None, None).await.map_err(err)?)?
        }
        AdminCommand::GetLoginPassword { account_id } => {
            let account = account_id.unwrap_or_else(|| reg.default_account().to_string());
            reg.login_password(&account).await.map_err(err)?
        }
        AdminCommand::SetPullGate { repository_name, account_id, region, severity, allow_unscanned, off } => {
            let account = account_id.unwrap_or_else(|| reg.default_account().to_string());
            let region = region.unwrap_or_else(|| reg.regions()[0].clone());
            let ns = reg.namespace(&account, &region);
            let gate = (!off).then(|| berth_registry::scan::PullGate {
                severity: severity.unwrap_or_default().to_uppercase(),
                allow_unscanned,
            });
            reg.set_pull_gate(&ns, &repository_name, gate.as_ref()).await.map_err(err)?;
            serde_json::to_string_pretty(&serde_json::json!({
                "registryId": account,
                "repositoryName": repository_name,
                "pullGate": gate,
            }))?
        }
        AdminCommand::CreateRepository { repository_name, image_tag_mutability, exclusion_filters } => {
            let ns = reg.namespace(reg.default_account(), &reg.regions()[0]);
            let settings = berth_registry::RepoSettings {
                image_tag_mutability,
                exclusions: exclusion_filters
                    .into_iter()
                    .map(|f| berth_registry::TagFilter { filter_type: "WILDCARD".into(), filter: f })
                    .collect(),
                ..Default::default()
            };
            anyhow::ensure!(
                repository_name.parse::<berth_oci::RepoName>().is_ok(),
                "invalid repository name '{repository_name}'"
            );
            let info = reg.create_repository(&ns, &repository_name, &settings, &[]).await.map_err(err)?;
            serde_json::to_string_pretty(&serde_json::json!({
                "repositoryArn": format!("arn:aws:ecr:{}:{}:repository/{}", info.region, info.account_id, info.name),
                "registryId": info.account_id,
                "repositoryName": info.name,
                "imageTagMutability": info.image_tag_mutability,
            }))?
        }
        AdminCommand::Jobs { kind, limit } => {
            let jobs = meta.jobs(kind.as_deref(), limit).await?;
            serde_json::to_string_pretty(&jobs.iter().map(job_json).collect::<Vec<_>>())?
        }
        AdminCommand::EnqueueJob { kind, key, payload, max_attempts } => {
            let known = job_kinds();
            anyhow::ensure!(known.contains(&kind.as_str()), "unknown job kind '{kind}' (known: {})", known.join(", "));
            serde_json::from_str::<serde_json::Value>(&payload).context("--payload must be JSON")?;
            let now = SystemClock.now_ms();
            let job = NewJob { kind: &kind, key: &key, payload: &payload, run_after: now, max_attempts, once: false };
            serde_json::to_string_pretty(&serde_json::json!({ "id": meta.enqueue_job(&job, now).await? }))?
        }
        AdminCommand::Iam(command) => match admin_iam::run(reg, meta, command).await? {
            Some(v) => serde_json::to_string_pretty(&v)?,
            None => String::new(),
        },
        AdminCommand::Kms { command } => match admin_kms::run(reg, command).await? {
            Some(v) => serde_json::to_string_pretty(&v)?,
            None => String::new(),
        },
    })
}

fn job_json(j: &Job) -> serde_json::Value {
    serde_json::json!({
        "id": j.id,
        "kind": j.kind,
        "key": j.key,
        "payload": j.payload,
        "state": j.state.as_str(),
        "attempts": j.attempts,
        "maxAttempts": j.max_attempts,
        "runAfter": j.run_after,
        "leaseOwner": j.lease_owner,
        "leaseExpiresAt": j.lease_expires_at,
        "lastError": j.last_error,
        "createdAt": j.created_at,
        "updatedAt": j.updated_at,
    })
}

/// `BERTH_TEST_JOBS=1` adds job kinds for the integration tests: `noop` and `sleep` (payload
/// `{"ms": N}`), which append `<event> <kind> <key> <node> <attempt>` lines to the file
/// `BERTH_TEST_JOBS_LOG` names (if any).
fn test_jobs_enabled() -> bool {
    std::env::var("BERTH_TEST_JOBS").is_ok_and(|v| v == "1")
}

/// Job kinds this binary runs.
fn job_kinds() -> Vec<&'static str> {
    let mut k = vec![
        jobs::EXPIRE_UPLOADS,
        jobs::PURGE_JOBS,
        berth_registry::kms::KMS_SWEEP_JOB,
        webhooks::JOB,
        webhooks::PURGE_JOB,
        audit::PURGE_JOB,
        lifecycle::JOB,
        gc::JOB,
    ];
    if test_jobs_enabled() {
        k.extend(["noop", "sleep"]);
    }
    k
}

fn register_test_jobs(runner: &mut JobRunner) {
    fn record(event: &str, job: &Job, node: &str) -> Result<(), String> {
        let Ok(path) = std::env::var("BERTH_TEST_JOBS_LOG") else { return Ok(()) };
        let line = format!("{event} {} {} {node} {}\n", job.kind, job.key, job.attempts);
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| e.to_string())?;
        // One write of a short line to an O_APPEND file: lines of several processes never mix.
        f.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }
    let node = runner.config().node_id.clone();
    let n = node.clone();
    runner.handle("noop", move |job| {
        let r = record("ran", &job, &n);
        async move { r }
    });
    runner.handle("sleep", move |job| {
        let node = node.clone();
        async move {
            let ms = serde_json::from_str::<serde_json::Value>(&job.payload).ok().and_then(|v| v["ms"].as_u64());
            record("start", &job, &node)?;
            tokio::time::sleep(Duration::from_millis(ms.unwrap_or(1000))).await;
            record("end", &job, &node)
        }
    });
}

/// Log to stderr as text or JSON lines; every line of a request carries its span
/// (`request{id=...}`, in JSON under `spans`). Lines are written by a thread of their own (a
/// slow stderr never holds a request; when 128k lines are queued, logging waits rather than
/// dropping); the returned guard flushes them when dropped.
fn init_tracing(default: &str, format: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if format == "json" {
        fmt.json().with_current_span(false).with_span_list(true).init();
    } else {
        fmt.with_ansi(ansi).init();
    }
    guard
}

/// The configured metadata store.
#[derive(Clone)]
enum Meta {
    Sqlite(berth_meta::sqlite::SqliteStore),
    Postgres(berth_meta::postgres::PgStore),
}

impl Meta {
    /// `metadata = "postgres://..."` selects PostgreSQL; otherwise SQLite in the data dir.
    /// Migrates or only checks the schema per `mode`; returns the migrations applied.
    async fn open(cfg: &Config, mode: SchemaMode) -> anyhow::Result<(Meta, Vec<AppliedMigration>)> {
        Ok(match cfg.metadata.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let (s, applied) = berth_meta::postgres::PgStore::open_with(url, mode)
                    .await
                    .context("opening the PostgreSQL metadata database")?;
                (Meta::Postgres(s), applied)
            }
            Some(other) => anyhow::bail!("metadata must be a postgres:// URL (or unset for SQLite), got '{other}'"),
            None => {
                let (s, applied) = berth_meta::sqlite::SqliteStore::open_with(&cfg.data_dir.join("berth.db"), mode)
                    .await
                    .context("opening the metadata database")?;
                (Meta::Sqlite(s), applied)
            }
        })
    }

    fn store(&self) -> Arc<dyn MetadataStore> {
        match self {
            Meta::Sqlite(s) => Arc::new(s.clone()),
            Meta::Postgres(p) => Arc::new(p.clone()),
        }
    }

    async fn close(&self) {
        match self {
            Meta::Sqlite(s) => s.close().await,
            Meta::Postgres(p) => p.close().await,
        }
    }
}

/// Open the stores under the data dir, bootstrap the default account, build the registry.
/// Create the data dir (mode 0700), or make an existing one owner-only, with the files Berth
/// keeps at its top (the SQLite database and its journal, the server key) mode 0600.
fn make_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data dir {}", dir.display()))?;
    let restrict = |p: &Path, mode: u32| -> anyhow::Result<()> {
        match std::fs::metadata(p) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("making {} readable by its owner only", p.display()))?;
                tracing::warn!(path = %p.display(), "was readable by others: now owner-only");
                Ok(())
            }
            _ => Ok(()),
        }
    };
    restrict(dir, 0o700)?;
    for f in ["berth.db", "berth.db-wal", "berth.db-shm", "server.key", "root-credentials.json"] {
        restrict(&dir.join(f), 0o600)?;
    }
    Ok(())
}

async fn open(cfg: &Config, mode: SchemaMode) -> anyhow::Result<(Arc<Registry>, Meta)> {
    make_data_dir(&cfg.data_dir)?;
    let blobs = blob_store(cfg).await?;
    let (meta, applied) = Meta::open(cfg, mode).await?;
    for m in applied {
        tracing::info!(version = m.version, description = m.description, "applied schema migration");
    }
    let server_key = server_key(cfg)?;
    let store = meta.store();
    check_server_key(&server_key, store.as_ref()).await?;
    let default_account = default_account(cfg, store.as_ref()).await?;
    let mode = if cfg.encrypt_at_rest { "on" } else { "off" };
    let stored = store.init_setting("encrypt_at_rest", mode).await?;
    anyhow::ensure!(
        stored == mode,
        "this data was stored with encryption at rest {stored}; encrypt_at_rest (BERTH_ENCRYPT_AT_REST) cannot be \
         switched {mode} for it"
    );
    let settings = Settings {
        namespace: berth_meta::Namespace { account_id: default_account.clone(), region: cfg.regions[0].clone() },
        upload_ttl: Duration::from_secs(cfg.upload_ttl_secs),
        regions: cfg.regions.clone(),
        create_on_push: cfg.create_on_push,
        registry_domain: cfg.registry_domain.clone(),
        blob_redirect_ttl: cfg.s3_redirect.then_some(BLOB_REDIRECT_TTL),
        min_free_bytes: cfg.min_free_mb.saturating_mul(1 << 20),
        gc_lease: Duration::from_secs(cfg.gc_lease_secs),
        scan_interval: Duration::from_secs(cfg.scan_interval_secs),
        scan_sbom_referrers: cfg.scan_sbom_referrers,
        encrypt_at_rest: cfg.encrypt_at_rest,
    };
    let archive = archive_store(cfg).await?;
    if archive.is_none() && store.any_archived_blob().await? {
        anyhow::bail!(
            "archived images keep their bytes in an archive store, but archive_storage (BERTH_ARCHIVE_STORAGE) is \
             not set: set it to the location used before"
        );
    }
    let reg = Registry::new(
        store.clone(),
        blobs,
        Arc::new(SystemClock),
        settings,
        berth_registry::Keys::from_server_key(&server_key).with_master_key(master_key(cfg, store.as_ref()).await?),
    )
    .with_archive(archive)
    .with_oidc(oidc_keys(cfg)?)
    .with_replication_peers(replication_peers(cfg)?);
    bootstrap(cfg, &reg, store.as_ref(), &default_account).await?;
    Ok((Arc::new(reg), meta))
}

/// The listener's TLS, from `tls_cert`/`tls_key` or a self-signed CA; `None` for plain HTTP.
/// Settings that do not go together, and files that do not load, stop the server with the file
/// named.
fn tls_settings(cfg: &Config) -> anyhow::Result<Option<berth_server::tls::Tls>> {
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key, cfg.tls_self_signed) {
        (Some(_), _, true) | (_, Some(_), true) => {
            anyhow::bail!("tls_self_signed (BERTH_TLS_SELF_SIGNED) and tls_cert/tls_key exclude each other")
        }
        (Some(c), Some(k), false) => (c.clone(), k.clone()),
        (Some(_), None, _) => {
            anyhow::bail!("tls_cert (BERTH_TLS_CERT, --tls-cert) needs tls_key (BERTH_TLS_KEY, --tls-key)")
        }
        (None, Some(_), _) => {
            anyhow::bail!("tls_key (BERTH_TLS_KEY, --tls-key) needs tls_cert (BERTH_TLS_CERT, --tls-cert)")
        }
        (None, None, true) => {
            make_data_dir(&cfg.data_dir)?;
            let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
            if let Some(host) = cfg.listen.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']))
                && !host.is_empty()
                && host != "0.0.0.0"
                && host != "::"
                && !names.iter().any(|n| n == host)
            {
                names.push(host.to_string());
            }
            if let Some(domain) = &cfg.registry_domain {
                let domain = domain.rsplit_once(':').map_or(domain.as_str(), |(h, p)| {
                    if p.bytes().all(|b| b.is_ascii_digit()) { h } else { domain.as_str() }
                });
                names.push(domain.to_string());
                for r in &cfg.regions {
                    names.push(format!("*.dkr.ecr.{r}.{domain}"));
                }
            }
            berth_server::tls::self_signed(&cfg.data_dir.join("tls"), &names)
                .map_err(|e| anyhow::anyhow!("tls_self_signed: {e}"))?
        }
        (None, None, false) => {
            if let Some(ca) = &cfg.tls_client_ca {
                anyhow::bail!(
                    "tls_client_ca ({}) needs TLS: set tls_cert and tls_key, or tls_self_signed",
                    ca.display()
                );
            }
            return Ok(None);
        }
    };
    let settings = berth_server::tls::TlsSettings { cert, key, client_ca: cfg.tls_client_ca.clone() };
    let tls = berth_server::tls::Tls::new(&settings).map_err(|e| match (&e, &cfg.tls_client_ca) {
        (berth_server::tls::TlsError::File { path, .. }, Some(ca)) if std::path::Path::new(path) == ca.as_path() => {
            anyhow::anyhow!("tls_client_ca: {e}")
        }
        _ => anyhow::anyhow!("TLS: {e}"),
    })?;
    Ok(Some(tls))
}

/// Where OIDC providers' keys come from: the configured JWKS files (each checked to be readable
/// now), else discovery over HTTPS.
fn oidc_keys(cfg: &Config) -> anyhow::Result<berth_registry::oidc::Oidc> {
    let mut files = Vec::new();
    for p in &cfg.oidc_providers {
        std::fs::metadata(&p.jwks_file)
            .with_context(|| format!("oidc_providers: the JWKS file of {} ({})", p.url, p.jwks_file.display()))?;
        files.push((p.url.clone(), p.jwks_file.clone()));
    }
    let roots = match &cfg.oidc_ca_file {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("oidc_ca_file ({})", f.display()))?),
        None => None,
    };
    berth_registry::oidc::Oidc::new(files, roots.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The peer deployments of `[[replication.peers]]` (one per region, none for a region this
/// deployment hosts).
fn replication_peers(cfg: &Config) -> anyhow::Result<Vec<Arc<berth_registry::replication::Peer>>> {
    let mut peers: Vec<Arc<berth_registry::replication::Peer>> = Vec::new();
    for p in &cfg.replication.peers {
        anyhow::ensure!(
            !cfg.regions.contains(&p.region),
            "replication peer {}: this deployment hosts that region itself",
            p.region
        );
        anyhow::ensure!(
            !peers.iter().any(|q| q.region() == p.region),
            "replication peer {}: two peers for one region",
            p.region
        );
        peers.push(Arc::new(berth_registry::replication::Peer::new(p).map_err(anyhow::Error::msg)?));
    }
    Ok(peers)
}

/// Job kind of the replication consumer of the event log.
const REPLICATION_CONSUMER_JOB: &str = "replication-consumer";

/// Replication: a consumer of the event log's image pushes that queues one job per
/// destination (one node at a time, as scanning on push).
fn register_replication_consumer(runner: &mut JobRunner, reg: Arc<Registry>, stop: tokio::sync::watch::Receiver<bool>) {
    runner.handle(REPLICATION_CONSUMER_JOB, move |job| {
        let (reg, mut stop) = (reg.clone(), stop.clone());
        async move {
            let until = job.run_after + EVENT_CONSUMER_PERIOD.as_millis() as i64;
            while SystemClock.now_ms() < until && !*stop.borrow() {
                match reg.replication_step().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "replication step failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(SCAN_ON_PUSH_POLL) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            Ok(())
        }
    });
    runner.every(REPLICATION_CONSUMER_JOB, EVENT_CONSUMER_PERIOD, 1_000);
}

/// Each run of the event consumer job works this long; a node that dies holding it delays
/// events by at most the job lease.
const EVENT_CONSUMER_PERIOD: Duration = Duration::from_secs(60);

/// Job kind of the scan-on-push consumer of the event log.
const SCAN_ON_PUSH_JOB: &str = "scan-on-push";

/// How often the scan-on-push consumer looks for new pushes when idle.
const SCAN_ON_PUSH_POLL: Duration = Duration::from_millis(200);

/// Scanning on push: a consumer of the event log's image pushes (one node at a time: each run
/// works for a period, polling, until `stop`).
fn register_scan_on_push(runner: &mut JobRunner, reg: Arc<Registry>, stop: tokio::sync::watch::Receiver<bool>) {
    runner.handle(SCAN_ON_PUSH_JOB, move |job| {
        let (reg, mut stop) = (reg.clone(), stop.clone());
        async move {
            let until = job.run_after + EVENT_CONSUMER_PERIOD.as_millis() as i64;
            while SystemClock.now_ms() < until && !*stop.borrow() {
                match reg.scan_on_push_step().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "scan-on-push step failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(SCAN_ON_PUSH_POLL) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            Ok(())
        }
    });
    runner.every(SCAN_ON_PUSH_JOB, EVENT_CONSUMER_PERIOD, 1_000);
}

/// `berth vulndb import` and `berth vulndb status`.
async fn vulndb(reg: &Registry, command: VulndbCommand) -> anyhow::Result<()> {
    match command {
        VulndbCommand::Import { paths } => {
            for p in &paths {
                anyhow::ensure!(p.exists(), "{}: no such file or directory", p.display());
            }
            let tty = std::io::stderr().is_terminal();
            let started = std::time::Instant::now();
            let report = reg
                .import_advisories(&paths, |n| {
                    if tty {
                        eprint!("\rimported {n} advisories");
                    }
                })
                .await?;
            if tty {
                eprintln!();
            }
            println!(
                "imported {} advisories ({} withdrawn) in {:.1} s",
                report.records,
                report.withdrawn,
                started.elapsed().as_secs_f64()
            );
            if report.rescans > 0 {
                println!("queued {} scans of images in repositories that scan continuously", report.rescans);
            }
            if report.rejected > 0 {
                for r in &report.rejections {
                    eprintln!("skipped: {r}");
                }
                anyhow::bail!(
                    "{} record(s) could not be read and were skipped (the others were imported)",
                    report.rejected
                );
            }
            Ok(())
        }
        VulndbCommand::Status { output } => {
            anyhow::ensure!(output == "text" || output == "json", "--output must be text or json");
            let (imports, advisories, packages) = reg.advisory_status().await?;
            if output == "json" {
                let list: Vec<serde_json::Value> = imports
                    .iter()
                    .map(|i| {
                        serde_json::json!({"source": i.source, "records": i.records, "withdrawn": i.withdrawn,
                            "importedAt": berth_registry::iso8601(i.imported_at)})
                    })
                    .collect();
                println!("{}", serde_json::json!({"advisories": advisories, "packages": packages, "imports": list}));
            } else {
                println!("{advisories} advisories naming {packages} packages");
                for i in &imports {
                    println!(
                        "{}  {} records ({} withdrawn) from {}",
                        berth_registry::iso8601(i.imported_at),
                        i.records,
                        i.withdrawn,
                        i.source
                    );
                }
                if imports.is_empty() {
                    println!("nothing imported yet: berth vulndb import PATH...");
                }
            }
            Ok(())
        }
    }
}

/// How long a blob redirect's presigned URL stays valid.
const BLOB_REDIRECT_TTL: Duration = Duration::from_secs(20 * 60);

/// The configured blob store: `storage = "s3://bucket/prefix"` selects an S3-compatible bucket
/// (created when missing), a path or nothing the filesystem store (under `data_dir` when unset).
async fn blob_store(cfg: &Config) -> anyhow::Result<Arc<dyn berth_storage::BlobStore>> {
    if cfg.s3_redirect && !cfg.storage.as_deref().is_some_and(|s| s.starts_with("s3://")) {
        anyhow::bail!("s3_redirect needs S3 storage (storage = \"s3://bucket/prefix\")");
    }
    let dir = cfg.data_dir.display().to_string();
    store_at(cfg, "storage", cfg.storage.as_deref().unwrap_or(&dir), None).await
}

/// The archive store (`archive_storage`), when one is configured.
async fn archive_store(cfg: &Config) -> anyhow::Result<Option<Arc<dyn berth_storage::BlobStore>>> {
    let Some(url) = cfg.archive_storage.as_deref() else { return Ok(None) };
    let class = url.starts_with("s3://").then(|| cfg.archive_s3_storage_class.clone().unwrap_or("GLACIER_IR".into()));
    Ok(Some(store_at(cfg, "archive_storage", url, class).await?))
}

/// A blob store at `location` (`s3://bucket/prefix` or a directory) for setting `what`; S3
/// objects are written with `storage_class` when given.
async fn store_at(
    cfg: &Config,
    what: &str,
    location: &str,
    storage_class: Option<String>,
) -> anyhow::Result<Arc<dyn berth_storage::BlobStore>> {
    if location.starts_with("s3://") {
        let s3 = berth_storage::s3::S3Config {
            region: cfg.s3_region.clone(),
            access_key_id: cfg.s3_access_key_id.clone(),
            secret_access_key: cfg.s3_secret_access_key.clone(),
            storage_class,
            ..berth_storage::s3::S3Config::from_url(location).map_err(|e| anyhow::anyhow!("{what}: {e}"))?
        }
        .with_endpoint(cfg.s3_endpoint.clone());
        let store = berth_storage::s3::S3Store::connect(&s3).await.with_context(|| format!("configuring S3 {what}"))?;
        store.ensure_bucket().await.with_context(|| format!("opening S3 bucket {} ({what})", s3.bucket))?;
        return Ok(Arc::new(store));
    }
    if location.contains("://") {
        anyhow::bail!("{what} must be s3://bucket/prefix or a directory, got '{location}'");
    }
    let store = berth_storage::fs::FsStore::open(Path::new(location))
        .with_context(|| format!("opening the {what} blob store in {location}"))?;
    Ok(Arc::new(store))
}

/// Every node sharing a metadata database must use the same server key (it seals secrets and
/// signs registry tokens): the database keeps a check value of the key it was set up with (an
/// HMAC of a fixed text, never the key), and a node with another key refuses to start.
async fn check_server_key(key: &[u8], meta: &dyn MetadataStore) -> anyhow::Result<()> {
    let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), b"berth server key check v1");
    let mine = hex::encode(mac.as_ref());
    let stored = meta.init_setting("server_key_check", &mine).await?;
    anyhow::ensure!(
        berth_auth::secret_box::constant_time_eq(stored.as_bytes(), mine.as_bytes()),
        "BERTH_SERVER_KEY (server_key) differs from the key this metadata database was set up with: every \
         node sharing it needs the same server key (set BERTH_SERVER_KEY to the other nodes' key, or use the \
         data dir's server.key)"
    );
    Ok(())
}

/// The master key (issue 13): from `master_key_file`, else `<data_dir>/master.key`, generated
/// (mode 0600) on the first start of a metadata database. The database keeps the key's check
/// value: a node with another key, or without the key once the database has one, refuses to
/// start rather than make a new key that cannot read what is stored.
async fn master_key(cfg: &Config, meta: &dyn MetadataStore) -> anyhow::Result<berth_kms::MasterKey> {
    const CHECK: &str = "master_key_check";
    let (path, configured) = match &cfg.master_key_file {
        Some(p) => (p.clone(), true),
        None => (cfg.data_dir.join("master.key"), false),
    };
    let read = |path: &std::path::Path| -> anyhow::Result<berth_kms::MasterKey> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading the master key {}", path.display()))?,
        );
        berth_kms::MasterKey::from_hex(&text).with_context(|| format!("the master key {}", path.display()))
    };
    let (key, created) = if configured || path.exists() {
        (read(&path)?, false)
    } else {
        let (_, text) = berth_kms::MasterKey::generate()?;
        write_private(&path, text.as_bytes())?;
        // Another process may have won the race: use whatever is on disk now.
        (read(&path)?, true)
    };
    let mine = key.check_value();
    let stored = meta.init_setting(CHECK, &mine).await?;
    if !berth_auth::secret_box::constant_time_eq(stored.as_bytes(), mine.as_bytes()) {
        if created {
            let _ = std::fs::remove_file(&path);
            anyhow::bail!(
                "the master key is missing: this metadata database was set up with a master key that {} does not \
                 hold (restore that file, or set master_key_file / BERTH_MASTER_KEY_FILE to the key the other nodes \
                 use); no new key was made",
                path.display()
            );
        }
        anyhow::bail!(
            "the master key {} is not the one this metadata database was set up with: every node needs the same \
             master key, and the data cannot be read with another",
            path.display()
        );
    }
    if created {
        tracing::warn!(
            path = %path.display(),
            "generated a new master key: it seals every KMS key and data key; back it up, since without it no \
             encrypted image can be read"
        );
    }
    Ok(key)
}

/// The server key: configured (hex), or generated once into `<data_dir>/server.key` (mode 0600).
fn server_key(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(hex) = &cfg.server_key {
        return config::parse_server_key(hex);
    }
    let path = cfg.data_dir.join("server.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            return hex::decode(s.trim()).with_context(|| format!("{} must hold hex", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    write_private(&path, hex::encode(key).as_bytes())?;
    // Another process may have won the race: use whatever is on disk now.
    let s = std::fs::read_to_string(&path)?;
    hex::decode(s.trim()).context("server.key must hold hex")
}

/// Write a file only the owner can read, crash-safely (temp file, fsync, rename; never
/// overwriting an existing one).
fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    // hard_link fails if the target exists: first writer wins.
    let r = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The default account: configured, else the one recorded at first start, else a new random id.
async fn default_account(cfg: &Config, meta: &dyn berth_meta::MetadataStore) -> anyhow::Result<String> {
    if let Some(id) = &cfg.account_id {
        anyhow::ensure!(
            berth_registry::valid_account_id(id),
            "BERTH_ACCOUNT_ID (account_id): expected 12 digits, got '{id}'"
        );
        let stored = meta.init_setting("default_account", id).await?;
        anyhow::ensure!(
            stored == *id,
            "BERTH_ACCOUNT_ID (account_id) is {id}, but the default account of this data is {stored}: it was \
             fixed at the first start. Unset BERTH_ACCOUNT_ID (or set it to {stored}); to add account {id}, run \
             `berth admin create-account --account-id {id}` and address it with its credentials"
        );
        return Ok(stored);
    }
    if let Some(id) = meta.setting("default_account").await? {
        return Ok(id);
    }
    // Two processes starting on fresh data (a server and an admin command) agree on one id.
    Ok(meta.init_setting("default_account", &berth_registry::random_account_id()).await?)
}

/// The default account recorded in existing data (`None` when there is no data yet or it
/// cannot be read); never creates anything.
async fn stored_default_account(cfg: &Config) -> Option<String> {
    if cfg.metadata.is_none() && !cfg.data_dir.join("berth.db").exists() {
        return None;
    }
    let (meta, _) = Meta::open(cfg, SchemaMode::Check).await.ok()?;
    let id = meta.store().setting("default_account").await.ok().flatten();
    meta.close().await;
    id
}

/// Set when this process created the default account's root key (the server then also prints
/// how to log in, once it knows its address).
static FIRST_START: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// First start: create the default account and its root access key, from
/// `BERTH_ROOT_ACCESS_KEY_ID`/`BERTH_ROOT_SECRET_ACCESS_KEY` when set, else generated, printed
/// once and written to `<data_dir>/root-credentials.json` (mode 0600). A key given in the
/// environment that is not known yet is added to the default account on any start.
async fn bootstrap(
    cfg: &Config,
    reg: &Registry,
    meta: &dyn berth_meta::MetadataStore,
    account: &str,
) -> anyhow::Result<()> {
    let env_key = match (std::env::var("BERTH_ROOT_ACCESS_KEY_ID"), std::env::var("BERTH_ROOT_SECRET_ACCESS_KEY")) {
        (Ok(a), Ok(s)) if !a.is_empty() && !s.is_empty() => Some((a, s)),
        _ => None,
    };
    let now = SystemClock.now_ms();
    let created = meta.create_account(account, now).await?;
    if created {
        tracing::info!(account, "created the default account");
    }
    if let Some((akid, secret)) = &env_key {
        if !reg.access_key_exists(akid).await.map_err(|e| anyhow::anyhow!("{e}"))? {
            reg.create_access_key(account, None, Some((akid, secret))).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    } else if created {
        let creds = reg.create_access_key(account, None, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let path = cfg.data_dir.join("root-credentials.json");
        write_private(&path, serde_json::to_string_pretty(&creds)?.as_bytes())?;
        let dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
        eprintln!(
            "berth: first start: data in {dir}\n\
             berth: created account {account}; its root credentials (shown once) are saved in {path}.\n\
             berth: use them with:\n\
             \n    export AWS_ACCESS_KEY_ID={akid} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION={region}\n",
            dir = dir.display(),
            path = path.display(),
            akid = creds.access_key_id,
            secret = creds.secret_access_key,
            region = cfg.regions[0],
        );
        FIRST_START.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(())
}

async fn serve(cfg: Config, no_migrate: bool) -> anyhow::Result<()> {
    let shutdown = shutdown_signals()?;
    // The metrics recorder first: what background jobs and the audit sink record from the
    // start must not go to the no-op recorder.
    let obs = Arc::new(berth_server::Observability::install(cfg.metrics_repository_labels as usize));
    let mode = if no_migrate { SchemaMode::Check } else { SchemaMode::Migrate };
    let tls = tls_settings(&cfg)?;
    let (reg, meta) = open(&cfg, mode).await?;
    let listener =
        tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(t) = &tls {
        t.watch();
    }
    let admin_listener = match &cfg.admin_listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("binding admin_listen {a}"))?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    {
        let mut out = std::io::stdout().lock();
        if FIRST_START.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!(
                "berth: then log in (docker, podman or skopeo login alike):\n\
                 \n    aws ecr get-login-password --endpoint-url {scheme}://{addr} | docker login --username AWS --password-stdin {addr}\n"
            );
        }
        if let Some(a) = admin_addr {
            writeln!(out, "berth admin endpoints on http://{a}")?;
        }
        if cfg.tls_self_signed {
            let ca = cfg.data_dir.join("tls").join("ca.pem");
            eprintln!(
                "berth: TLS with a self-signed CA; clients trust {ca}:\n\
                 \n    docker:        sudo mkdir -p /etc/docker/certs.d/{addr} && sudo cp {ca} /etc/docker/certs.d/{addr}/ca.crt\
                 \n    podman/skopeo: --cert-dir DIR with ca.crt in it (or /etc/containers/certs.d/{addr}/ca.crt)\
                 \n    AWS CLI:       --ca-bundle {ca} (or AWS_CA_BUNDLE={ca})\n",
                ca = ca.display()
            );
        }
        writeln!(out, "berth listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "berth serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grace = Duration::from_secs(cfg.shutdown_timeout_secs);
    let node_id = cfg.node_id.clone().unwrap_or_else(random_node_id);
    // The audit trail: this node's hash chain is named by its node id.
    let audit_sink = audit::AuditSink::start(meta.store(), node_id.clone(), cfg.audit_settings())
        .await
        .context("starting the audit trail")?;
    // Background jobs, upload expiry among them (each period's expiry runs on one node).
    let jobs = {
        let mut rc = RunnerConfig::new(node_id.clone());
        rc.lease = Duration::from_millis(cfg.job_lease_ms);
        rc.renew_every = Duration::from_millis(cfg.job_renew_ms);
        rc.poll_every = Duration::from_millis(cfg.job_poll_ms.max(10));
        rc.workers = cfg.job_workers.clamp(1, 64) as usize;
        let mut runner = JobRunner::new(meta.store(), Arc::new(SystemClock), rc);
        let expire_every = Duration::from_secs((cfg.upload_ttl_secs / 4).clamp(1, 600));
        let retention = Duration::from_secs(cfg.job_retention_days.saturating_mul(86_400));
        runner.with_builtin_jobs(reg.clone(), expire_every, retention);
        if test_jobs_enabled() {
            register_test_jobs(&mut runner);
        }
        let retention = Duration::from_secs(cfg.event_retention_days.saturating_mul(86_400));
        webhooks::Dispatcher::register_retention(&mut runner, retention);
        let retention = Duration::from_secs(cfg.audit_retention_days.saturating_mul(86_400));
        audit::register_retention(&mut runner, retention);
        lifecycle::register(
            &mut runner,
            reg.clone(),
            audit_sink.clone(),
            Duration::from_secs(cfg.lifecycle_interval_secs),
        );
        {
            let r = reg.clone();
            runner.handle(berth_registry::archive::RESTORE_JOB, move |job| {
                let reg = r.clone();
                async move { reg.restore_image(&job.payload).await.map_err(|e| e.to_string()) }
            });
            let r = reg.clone();
            runner.handle(berth_registry::archive::ARCHIVE_JOB, move |job| {
                let reg = r.clone();
                async move { reg.archive_image(&job.payload).await.map_err(|e| e.to_string()) }
            });
            let (reg, sink) = (reg.clone(), audit_sink.clone());
            runner.handle(berth_registry::scan::SCAN_JOB, move |job| {
                let (reg, sink) = (reg.clone(), sink.clone());
                async move {
                    if let Some(call) = reg
                        .run_scan(&job.payload)
                        .await
                        .map_err(|e| e.to_string())?
                        .as_ref()
                        .and_then(audit::scan_completed)
                    {
                        sink.record(call);
                    }
                    Ok(())
                }
            });
        }
        gc::register(
            &mut runner,
            reg.clone(),
            &node_id,
            Duration::from_secs(cfg.gc_interval_secs),
            Duration::from_secs(cfg.gc_sweep_interval_secs),
            Duration::from_secs(cfg.gc_grace_secs),
        );
        tracing::info!(node_id, kinds = ?runner.kinds(), "running background jobs");
        let general = Arc::new(runner).start(stop_rx.clone(), grace);
        // The event consumers have a runner (and workers) of their own: their jobs keep working
        // for a whole period, and must neither wait behind nor hold up the other jobs.
        let mut rc = RunnerConfig::new(node_id.clone());
        rc.lease = Duration::from_millis(cfg.job_lease_ms);
        rc.renew_every = Duration::from_millis(cfg.job_renew_ms);
        rc.poll_every = Duration::from_millis(cfg.job_poll_ms.max(10));
        // Three workers: the webhook fan-out, scanning on push and replication each keep one
        // for a period.
        rc.workers = 3;
        let mut events = JobRunner::new(meta.store(), Arc::new(SystemClock), rc);
        let dispatcher = webhooks::Dispatcher::new(
            meta.store(),
            Arc::new(berth_registry::Keys::from_server_key(&server_key(&cfg)?)),
            Arc::new(SystemClock),
            cfg.webhook_settings(),
            node_id.clone(),
            stop_rx.clone(),
        );
        Arc::new(dispatcher).register(&mut events, EVENT_CONSUMER_PERIOD);
        register_scan_on_push(&mut events, reg.clone(), stop_rx.clone());
        register_replication_consumer(&mut events, reg.clone(), stop_rx.clone());
        let events = Arc::new(events).start(stop_rx.clone(), grace);
        // Replications have a runner of their own: a large copy never waits behind (or blocks)
        // other background jobs.
        let mut rc = RunnerConfig::new(node_id.clone());
        rc.lease = Duration::from_millis(cfg.job_lease_ms);
        rc.renew_every = Duration::from_millis(cfg.job_renew_ms);
        rc.poll_every = Duration::from_millis(cfg.job_poll_ms.max(10));
        rc.workers = cfg.replication_workers.clamp(1, 64) as usize;
        // A destination that comes back is caught up within a minute.
        rc.backoff_max = berth_registry::replication::RETRY_MAX;
        let mut replication = JobRunner::new(meta.store(), Arc::new(SystemClock), rc);
        let r = reg.clone();
        replication.handle(berth_registry::replication::REPLICATE_JOB, move |job| {
            let reg = r.clone();
            async move { reg.replicate(&job.payload, job.attempts, job.max_attempts).await.map_err(|e| e.to_string()) }
        });
        let replication = Arc::new(replication).start(stop_rx.clone(), grace);
        async move {
            let _ = tokio::join!(general, events, replication);
        }
    };

    let state = berth_server::AppState {
        registry: reg.clone(),
        trust_forwarded: cfg.trust_forwarded,
        obs,
        admin_separate: admin_listener.is_some(),
        audit: Some(audit_sink.clone()),
        audit_data_plane_reads: cfg.audit_data_plane_reads,
    };
    let stopped = |rx: &tokio::sync::watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    if let Some(l) = admin_listener {
        let admin = berth_server::admin_router(state.clone());
        tokio::spawn(berth_server::serve(l, admin, cfg.conn_limits(), None, stopped(&stop_rx)));
    }
    let app = berth_server::router(state);
    let server = berth_server::serve(listener, app, cfg.conn_limits(), tls, stopped(&stop_rx));
    let server = tokio::spawn(server);
    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    // Jobs get the same grace, then release what they hold (bounded by the database calls).
    let (served, _) =
        tokio::join!(tokio::time::timeout(grace, server), tokio::time::timeout(grace + Duration::from_secs(10), jobs));
    if served.is_err() {
        tracing::warn!(?grace, "in-flight requests did not finish in time; closing");
    }
    // Every request has been answered: commit the audit records still queued.
    if tokio::time::timeout(grace, audit_sink.flush()).await.is_err() {
        tracing::error!(?grace, "audit records could not be written before shutdown; the last ones are lost");
    }
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `berth audit verify`: a summary per chain; an error naming the first broken record of each
/// broken chain.
async fn audit_verify(meta: &dyn MetadataStore, output: &str) -> anyhow::Result<String> {
    anyhow::ensure!(matches!(output, "text" | "json"), "--output must be text or json, got '{output}'");
    let report = audit::verify(meta).await?;
    let head = |h: &Option<berth_meta::audit::ChainHead>| match h {
        Some(h) => serde_json::json!({"seq": h.seq, "hash": h.hash}),
        None => serde_json::Value::Null,
    };
    let out = if output == "json" {
        serde_json::to_string_pretty(&serde_json::json!({
            "chains": report.chains.iter().map(|c| serde_json::json!({
                "chain": c.chain, "records": c.records, "anchor": head(&c.anchor), "head": head(&c.head),
            })).collect::<Vec<_>>(),
            "broken": report.broken.iter().map(|b| serde_json::json!({
                "chain": b.chain, "seq": b.seq, "eventID": b.event_id, "reason": b.reason,
            })).collect::<Vec<_>>(),
        }))?
    } else {
        let mut out = String::new();
        for c in &report.chains {
            let from = c.anchor.as_ref().map_or(1, |a| a.seq + 1);
            match &c.head {
                Some(h) => out.push_str(&format!(
                    "chain {}: {} record(s) verified from seq {from}; head seq {} hash {}\n",
                    c.chain, c.records, h.seq, h.hash
                )),
                None => out.push_str(&format!("chain {}: empty\n", c.chain)),
            }
        }
        let records: u64 = report.chains.iter().map(|c| c.records).sum();
        out.push_str(&format!("{} chain(s), {records} record(s) verified", report.chains.len()));
        out
    };
    if report.broken.is_empty() {
        return Ok(out);
    }
    println!("{out}");
    let broken: Vec<String> = report
        .broken
        .iter()
        .map(|b| format!("chain {} seq {} (eventID {}): {}", b.chain, b.seq, b.event_id, b.reason))
        .collect();
    anyhow::bail!("the audit trail does not verify: {}", broken.join("; "))
}

/// `berth audit [lookup]`: LookupEvents' answer for an account, as JSON.
async fn audit_lookup(reg: &Registry, meta: &dyn MetadataStore, args: LookupArgs) -> anyhow::Result<String> {
    anyhow::ensure!(args.output == "json", "--output must be json, got '{}'", args.output);
    let mut input = serde_json::json!({});
    if let Some(spec) = &args.lookup_attributes {
        let (mut key, mut value) = (None, None);
        for part in spec.splitn(2, ',') {
            match part.split_once('=') {
                Some(("AttributeKey", k)) => key = Some(k),
                Some(("AttributeValue", v)) => value = Some(v),
                _ => anyhow::bail!("--lookup-attributes: expected AttributeKey=<key>,AttributeValue=<value>"),
            }
        }
        let (Some(key), Some(value)) = (key, value) else {
            anyhow::bail!("--lookup-attributes: expected AttributeKey=<key>,AttributeValue=<value>")
        };
        input["LookupAttributes"] = serde_json::json!([{"AttributeKey": key, "AttributeValue": value}]);
    }
    for (name, v) in [("StartTime", &args.start_time), ("EndTime", &args.end_time)] {
        if let Some(v) = v {
            input[name] = serde_json::json!(parse_cli_time(v).with_context(|| format!("--{}", kebab(name)))?);
        }
    }
    if let Some(n) = args.max_results {
        input["MaxResults"] = serde_json::json!(n);
    }
    if let Some(t) = &args.next_token {
        input["NextToken"] = serde_json::json!(t);
    }
    let account = args.account_id.unwrap_or_else(|| reg.default_account().to_string());
    let out = audit::lookup_events(meta, &account, &input, SystemClock.now_ms())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.aws_code()))?;
    Ok(serde_json::to_string_pretty(&out)?)
}

fn kebab(name: &str) -> &'static str {
    if name == "StartTime" { "start-time" } else { "end-time" }
}

/// Epoch seconds (fractional allowed) or `YYYY-MM-DDTHH:MM:SS[.fff]Z`, as epoch seconds.
fn parse_cli_time(v: &str) -> anyhow::Result<f64> {
    if let Ok(secs) = v.parse::<f64>() {
        anyhow::ensure!(secs.is_finite(), "not a time: '{v}'");
        return Ok(secs);
    }
    let bad = || anyhow::anyhow!("expected epoch seconds or YYYY-MM-DDTHH:MM:SSZ, got '{v}'");
    let t = v.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let frac: f64 = format!("0.{frac}").parse().map_err(|_| bad())?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), h.as_slice()) else { return Err(bad()) };
    anyhow::ensure!((1..=12).contains(m) && (1..=31).contains(day) && *hh < 24 && *mm < 60 && *ss < 61, bad());
    // Days from civil (Howard Hinnant's algorithm).
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// `node-<12 hex digits>`, random.
fn random_node_id() -> String {
    let mut b = [0u8; 6];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    format!("node-{}", hex::encode(b))
}

/// SIGTERM and SIGINT, handled from the moment this is called (so a signal that arrives while
/// the server is still starting is a clean shutdown, not the default death).
fn shutdown_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

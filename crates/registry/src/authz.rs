//! Authorization: every request is decided by IAM policy evaluation ([`berth_policy`]) over the
//! caller's identity policies and the target's resource policy.
//!
//! Decision inputs are cached per node: the caller's principal and parsed identity policies (per
//! access key) and each repository's parsed policy and resource tags (per repository id). Every
//! change that can alter a decision moves the authorization epoch in the metadata store; a node
//! re-reads the epoch at most every [`EPOCH_CHECK_MS`] and drops its caches when it moved, and
//! drops them at once after a change it made itself. A request therefore costs a hash lookup and
//! the evaluation of the few statements that apply, with no database round trip.

use crate::accounts::Identity;
use crate::iam::aws_managed_document;
use crate::{Error, Registry, Result};
use berth_meta::Namespace;
use berth_policy::{Context, Decision, Policy, PolicyKind, Principal};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// How stale (milliseconds) a node's view of other nodes' policy changes may be.
pub const EPOCH_CHECK_MS: i64 = 1000;
/// Cached principals or repositories at most (a full cache is cleared).
const MAX_ENTRIES: usize = 50_000;

/// Who is calling and how.
#[derive(Debug, Clone, Default)]
pub struct Caller<'a> {
    /// `None` for an anonymous caller.
    pub identity: Option<&'a Identity>,
    /// The client's address (`aws:SourceIp`).
    pub source_ip: Option<IpAddr>,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure_transport: bool,
}

/// What a request acts on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A repository (whether it exists or not).
    Repository { ns: &'a Namespace, name: &'a str },
    /// An action without a resource (`*`), in the caller's own account, e.g. GetAuthorizationToken.
    Account,
    /// Every repository of a registry (`arn:aws:ecr:<region>:<account>:repository/*`), e.g.
    /// listing repositories.
    AllRepositories(&'a Namespace),
    /// An IAM resource of the caller's account, by ARN.
    Iam(&'a str),
}

/// The cached decision inputs of one caller.
#[derive(Debug)]
struct PrincipalEntry {
    /// Unique for the life of the process (never reused), so decisions can be keyed by it.
    id: u64,
    /// `false` when the key was deleted or deactivated, or its user is gone.
    valid: bool,
    principal: Principal,
    user_id: Option<String>,
    policies: Vec<Arc<Policy>>,
    /// A role session's session policies (`None`: not limited by any).
    session_policies: Option<Vec<Arc<Policy>>>,
    /// Temporary credentials: when they expire (epoch ms).
    expires_at: Option<i64>,
    /// `aws:PrincipalTag/*`: a role's tags overridden by its session's.
    tags: Vec<(String, String)>,
    /// `aws:FederatedProvider` of a web identity session.
    federated_provider: Option<String>,
    /// A stored policy no longer parses: deny everything rather than ignore a Deny.
    broken: bool,
    /// Some policy reads the clock (`aws:CurrentTime`, `aws:EpochTime`): decisions are not cached.
    time_dependent: bool,
}

/// The cached decision inputs of one repository, and the decisions made on it.
#[derive(Debug)]
struct RepoEntry {
    policy: Option<Policy>,
    broken: bool,
    tags: Vec<(String, String)>,
    time_dependent: bool,
    /// Decisions by (caller, action, source address, transport): everything else a decision
    /// depends on is in this entry or the caller's, and both are dropped when the epoch moves.
    decisions: RwLock<Decisions>,
}

/// Cached decisions: the action they were made for, and `None` (allowed) or the denial message.
type Decisions = HashMap<DecisionKey, (Box<str>, Option<Arc<str>>), foldhash::fast::RandomState>;

/// What a cached decision on a repository was made for. The action is stored next to the
/// decision and compared on a hit, so a hash collision can only cause a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DecisionKey {
    /// [`PrincipalEntry::id`], 0 for anonymous.
    caller: u64,
    action_hash: u64,
    ip: Option<IpAddr>,
    secure: bool,
}

impl PrincipalEntry {
    /// `Error::Unauthenticated` for revoked credentials, `Error::TokenExpired` for temporary
    /// credentials past their expiry.
    fn check_live(&self, now_ms: i64) -> Result<()> {
        if !self.valid {
            return Err(Error::Unauthenticated);
        }
        if self.expires_at.is_some_and(|e| now_ms >= e) {
            return Err(Error::TokenExpired);
        }
        Ok(())
    }
}

/// Evaluate `req` for a caller (`None`: anonymous or federated, no identity policies) with its
/// identity and session policies and the resource's policy.
fn evaluate(entry: Option<&PrincipalEntry>, req: &berth_policy::Request<'_>, resource: Option<&Policy>) -> Decision {
    let identity: Vec<&Policy> = entry.map(|e| e.policies.iter().map(|p| &**p).collect()).unwrap_or_default();
    let session: Option<Vec<&Policy>> =
        entry.and_then(|e| e.session_policies.as_ref()).map(|s| s.iter().map(|p| &**p).collect());
    berth_policy::evaluate_with_session(req, &identity, session.as_deref(), resource)
}

/// Source of [`PrincipalEntry::id`].
static NEXT_PRINCIPAL_ID: AtomicU64 = AtomicU64::new(1);

/// Cached decisions per repository at most (a full map is cleared).
const MAX_DECISIONS: usize = 4096;

/// Whether a policy document reads the clock (a cached decision could go stale with time).
fn reads_clock(doc: &str) -> bool {
    let d = doc.to_ascii_lowercase();
    d.contains("aws:currenttime") || d.contains("aws:epochtime")
}

/// Per-node caches of authorization inputs.
#[derive(Debug, Default)]
pub(crate) struct Authz {
    epoch: AtomicI64,
    /// When the epoch was last read (ms); 0 forces a read.
    checked_at: AtomicI64,
    /// Bumped whenever the caches are cleared, so a load that raced a clear is not cached.
    pub(crate) generation: AtomicU64,
    principals: RwLock<HashMap<String, Arc<PrincipalEntry>, foldhash::fast::RandomState>>,
    repos: RwLock<HashMap<i64, Arc<RepoEntry>>>,
    aws_managed: RwLock<HashMap<String, Arc<Policy>>>,
    /// KMS keys by key id: state, parsed key policy, tags and opened material ([`crate::kms`]).
    pub(crate) kms_keys: RwLock<HashMap<String, Arc<crate::kms::KeyEntry>>>,
    action_hasher: foldhash::fast::RandomState,
}

impl Authz {
    /// Drop every cached input (after a local change) and re-read the epoch on the next request.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.principals.write().unwrap().clear();
        self.repos.write().unwrap().clear();
        self.kms_keys.write().unwrap().clear();
        self.checked_at.store(0, Ordering::SeqCst);
    }
}

/// A KMS key as authorization sees it ([`Registry::authorize_on_key`]).
pub(crate) struct KeyTarget<'a> {
    pub arn: &'a str,
    pub account_id: &'a str,
    /// The key policy; `None` when the stored one no longer parses (every request is denied).
    pub policy: Option<&'a Policy>,
    /// The key's tags (`aws:ResourceTag/<key>`).
    pub tags: &'a [(String, String)],
}

fn insert_bounded<K: std::hash::Hash + Eq, V, S: BuildHasher>(map: &RwLock<HashMap<K, V, S>>, k: K, v: V) {
    let mut m = map.write().unwrap();
    if m.len() >= MAX_ENTRIES {
        m.clear();
    }
    m.insert(k, v);
}

/// The cache key of a caller: its access key id, or its ARN for a keyless (admin-minted) token.
fn principal_key(id: &Identity) -> String {
    if id.access_key_id.is_empty() { id.principal_arn.clone() } else { id.access_key_id.clone() }
}

/// The user name of a user ARN (`arn:aws:iam::<acct>:user/<path>/<name>`).
pub(crate) fn user_name_of(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":user/")?.1;
    Some(rest.rsplit('/').next().unwrap_or(rest))
}

/// `arn:aws:ecr:<region>:<account>:repository/<name>`.
pub fn repository_arn(ns: &Namespace, name: &str) -> String {
    format!("arn:aws:ecr:{}:{}:repository/{name}", ns.region, ns.account_id)
}

/// Which repositories of a registry a caller could possibly be allowed an action on, decided
/// without looking at any repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Any repository.
    All,
    /// Repositories whose name starts with one of these (the caller's identity policies allow
    /// nothing else), and any repository with a repository policy (which may allow anyone).
    PrefixesOrPolicy(Vec<String>),
}

impl Registry {
    /// Decide whether `caller` may perform `action` (e.g. `ecr:BatchGetImage`) on `target`.
    ///
    /// `Error::Denied` with AWS's AccessDenied message when not allowed; `Error::Unauthenticated`
    /// when the caller's credentials were revoked (key deleted or deactivated, user deleted).
    pub async fn authorize(&self, caller: &Caller<'_>, action: &str, target: Target<'_>) -> Result<()> {
        self.sync_auth_epoch().await?;
        let entry = match caller.identity {
            Some(id) => Some(self.principal_entry(id).await?),
            None => None,
        };
        if let Some(e) = &entry {
            e.check_live(self.now())?;
        }
        let anonymous = Principal::Anonymous;
        let principal = entry.as_ref().map(|e| &e.principal).unwrap_or(&anonymous);
        let repo = match target {
            Target::Repository { ns, name } => match self.repo_entry_in(ns, name).await? {
                Some(r) => Some(self.repo_auth(r.id).await?),
                None => None,
            },
            _ => None,
        };
        // A decision on an existing repository is cached unless a policy involved reads the clock.
        let key = match (&repo, &entry) {
            (Some(r), e) if !r.time_dependent && !e.as_ref().is_some_and(|e| e.time_dependent) => Some(DecisionKey {
                caller: e.as_ref().map_or(0, |e| e.id),
                action_hash: self.authz.action_hasher.hash_one(action),
                ip: caller.source_ip,
                secure: caller.secure_transport,
            }),
            _ => None,
        };
        if let (Some(k), Some(r)) = (&key, &repo)
            && let Some((act, d)) = r.decisions.read().unwrap().get(k)
            && **act == *action
        {
            return match d {
                None => Ok(()),
                Some(msg) => Err(Error::Denied(msg.to_string())),
            };
        }
        let (resource, resource_account) = match target {
            Target::Repository { ns, name } => (repository_arn(ns, name), Some(ns.account_id.as_str())),
            Target::AllRepositories(ns) => {
                (format!("arn:aws:ecr:{}:{}:repository/*", ns.region, ns.account_id), Some(ns.account_id.as_str()))
            }
            Target::Account => ("*".to_string(), None),
            Target::Iam(arn) => (arn.to_string(), None),
        };
        let mut ctx = Context::new();
        self.fill_context(&mut ctx, caller, principal, entry.as_deref(), resource_account);
        if let Some(r) = &repo {
            for (k, v) in &r.tags {
                ctx.insert(format!("aws:ResourceTag/{k}"), v.clone());
                ctx.insert(format!("ecr:ResourceTag/{k}"), v.clone());
            }
        }
        let req = berth_policy::Request { principal, action, resource: &resource, resource_account, context: &ctx };
        let broken = entry.as_ref().is_some_and(|e| e.broken) || repo.as_ref().is_some_and(|r| r.broken);
        let decision = if broken {
            Decision::ExplicitDeny { in_resource_policy: repo.as_ref().is_some_and(|r| r.broken) }
        } else {
            evaluate(entry.as_deref(), &req, repo.as_ref().and_then(|r| r.policy.as_ref()))
        };
        let outcome: Option<Arc<str>> = match decision {
            Decision::Allow => None,
            d => Some(berth_policy::denial_message(&req, &d).into()),
        };
        if let (Some(k), Some(r)) = (key, &repo) {
            let mut m = r.decisions.write().unwrap();
            if m.len() >= MAX_DECISIONS {
                m.clear();
            }
            m.insert(k, (action.into(), outcome.clone()));
        }
        match outcome {
            None => Ok(()),
            Some(msg) => Err(Error::Denied(msg.to_string())),
        }
    }

    /// Decide `action` on a role, governed by its trust policy `trust`, for `caller` (AssumeRole)
    /// or for a caller federated through `federated` (AssumeRoleWithWebIdentity), with the
    /// request's own condition keys `extra` (e.g. `sts:ExternalId`, `aws:RequestTag/k`, a
    /// provider's `<host>:sub`). Never cached. `Error::Denied` with AWS's message when not
    /// allowed.
    pub(crate) async fn authorize_on_role(
        &self,
        caller: &Caller<'_>,
        federated: Option<&str>,
        action: &str,
        role: &berth_meta::Role,
        trust: &Policy,
        extra: &[(String, Vec<String>)],
    ) -> Result<()> {
        self.sync_auth_epoch().await?;
        let entry = match (federated, caller.identity) {
            (None, Some(id)) => Some(self.principal_entry(id).await?),
            _ => None,
        };
        if let Some(e) = &entry {
            e.check_live(self.now())?;
        }
        let principal = match (federated, &entry) {
            (Some(p), _) => Principal::Federated { provider: p.to_string() },
            (None, Some(e)) => e.principal.clone(),
            (None, None) => Principal::Anonymous,
        };
        let resource = role.arn();
        let mut ctx = Context::new();
        self.fill_context(&mut ctx, caller, &principal, entry.as_deref(), Some(&role.account_id));
        for (k, v) in &role.tags {
            ctx.insert(format!("aws:ResourceTag/{k}"), v.clone());
            ctx.insert(format!("iam:ResourceTag/{k}"), v.clone());
        }
        for (k, values) in extra {
            ctx.remove(k);
            ctx.insert_many(k.clone(), values.iter().cloned());
        }
        let req = berth_policy::Request {
            principal: &principal,
            action,
            resource: &resource,
            resource_account: Some(&role.account_id),
            context: &ctx,
        };
        let decision = if entry.as_ref().is_some_and(|e| e.broken) {
            Decision::ExplicitDeny { in_resource_policy: false }
        } else {
            match evaluate(entry.as_deref(), &req, Some(trust)) {
                // A role is assumed only by those its trust policy names, even the account's
                // root (AWS: the trust policy must always allow).
                Decision::Allow if !berth_policy::resource_policy_allows(&req, trust) => {
                    Decision::ImplicitDeny { missing: berth_policy::Missing::ResourcePolicy }
                }
                d => d,
            }
        };
        match decision {
            Decision::Allow => Ok(()),
            d => Err(Error::Denied(berth_policy::denial_message(&req, &d))),
        }
    }

    /// Decide `action` on a KMS key for `caller` as KMS does: the key policy must allow the
    /// caller, either by naming it (or `*`), or by naming its account (the account's root), in
    /// which case the caller's IAM policies must allow the action too; an explicit Deny in any
    /// policy wins, and session policies limit role sessions as everywhere. Unlike other
    /// resources, a key whose policy does not name the account cannot be used on the strength
    /// of IAM policies alone, not even by the account's root. `extra` adds the request's own
    /// condition keys (`kms:EncryptionContext:<k>`, ...); `kms:CallerAccount` and the key's
    /// `aws:ResourceTag/<k>` are always set. Never cached. `Error::Denied` with AWS's message.
    pub(crate) async fn authorize_on_key(
        &self,
        caller: &Caller<'_>,
        action: &str,
        key: &KeyTarget<'_>,
        extra: &[(String, Vec<String>)],
    ) -> Result<()> {
        self.sync_auth_epoch().await?;
        let entry = match caller.identity {
            Some(id) => Some(self.principal_entry(id).await?),
            None => None,
        };
        if let Some(e) = &entry {
            e.check_live(self.now())?;
        }
        let anonymous = Principal::Anonymous;
        let principal = entry.as_ref().map(|e| &e.principal).unwrap_or(&anonymous);
        let mut ctx = Context::new();
        self.fill_context(&mut ctx, caller, principal, entry.as_deref(), Some(key.account_id));
        if let Some(a) = principal.account_id() {
            ctx.insert("kms:CallerAccount", a.to_string());
        }
        for (k, v) in key.tags {
            ctx.insert(format!("aws:ResourceTag/{k}"), v.clone());
        }
        for (k, values) in extra {
            ctx.remove(k);
            ctx.insert_many(k.clone(), values.iter().cloned());
        }
        let req = berth_policy::Request {
            principal,
            action,
            resource: key.arn,
            resource_account: Some(key.account_id),
            context: &ctx,
        };
        let decision = match key.policy {
            _ if entry.as_ref().is_some_and(|e| e.broken) => Decision::ExplicitDeny { in_resource_policy: false },
            None => Decision::ExplicitDeny { in_resource_policy: true },
            Some(policy) => match evaluate(entry.as_deref(), &req, Some(policy)) {
                // The key policy must always allow the caller (directly or through its account).
                Decision::Allow if !berth_policy::resource_policy_allows(&req, policy) => {
                    Decision::ImplicitDeny { missing: berth_policy::Missing::ResourcePolicy }
                }
                d => d,
            },
        };
        match decision {
            Decision::Allow => Ok(()),
            d => Err(Error::Denied(berth_policy::denial_message(&req, &d))),
        }
    }

    /// Which repositories of `ns` `caller` could possibly be allowed `action` on: decided from
    /// the caller's identity policies alone (see [`berth_policy::reach`]). Repositories with a
    /// repository policy are always possible (it may name the caller, another account or `*`).
    ///
    /// `Error::Unauthenticated` when the caller's credentials were revoked.
    pub(crate) async fn reach(&self, caller: &Caller<'_>, action: &str, ns: &Namespace) -> Result<Reach> {
        self.sync_auth_epoch().await?;
        let Some(id) = caller.identity else { return Ok(Reach::PrefixesOrPolicy(Vec::new())) };
        let entry = self.principal_entry(id).await?;
        entry.check_live(self.now())?;
        if entry.broken {
            // Every decision is an explicit deny.
            return Ok(Reach::PrefixesOrPolicy(Vec::new()));
        }
        let same_account = entry.principal.account_id() == Some(ns.account_id.as_str());
        let reach = match &entry.principal {
            // Another account's principals need a repository policy; anonymous ones too.
            _ if !same_account => berth_policy::Reach::Nothing,
            Principal::Root { .. } => berth_policy::Reach::Everything,
            _ => {
                let policies: Vec<&Policy> = entry.policies.iter().map(|p| &**p).collect();
                berth_policy::reach(&policies, action, &repository_arn(ns, ""))
            }
        };
        Ok(match reach {
            berth_policy::Reach::Everything => Reach::All,
            berth_policy::Reach::Nothing => Reach::PrefixesOrPolicy(Vec::new()),
            berth_policy::Reach::Prefixes(p) => Reach::PrefixesOrPolicy(p),
        })
    }

    fn fill_context(
        &self,
        ctx: &mut Context,
        caller: &Caller<'_>,
        principal: &Principal,
        entry: Option<&PrincipalEntry>,
        resource_account: Option<&str>,
    ) {
        let now_ms = self.now();
        match principal {
            Principal::Anonymous => {
                ctx.insert("aws:PrincipalType", "Anonymous");
            }
            Principal::Root { account_id } => {
                ctx.insert("aws:PrincipalType", "Account")
                    .insert("aws:PrincipalAccount", account_id.clone())
                    .insert("aws:PrincipalArn", principal.to_string())
                    .insert("aws:userid", account_id.clone());
            }
            Principal::User { account_id, name, arn } => {
                ctx.insert("aws:PrincipalType", "User")
                    .insert("aws:PrincipalAccount", account_id.clone())
                    .insert("aws:PrincipalArn", arn.clone())
                    .insert("aws:username", name.clone());
                if let Some(id) = entry.and_then(|e| e.user_id.clone()) {
                    ctx.insert("aws:userid", id);
                }
            }
            Principal::AssumedRole { account_id, role_arn, .. } => {
                ctx.insert("aws:PrincipalType", "AssumedRole")
                    .insert("aws:PrincipalAccount", account_id.clone())
                    .insert("aws:PrincipalArn", role_arn.clone());
                if let Some(id) = entry.and_then(|e| e.user_id.clone()) {
                    ctx.insert("aws:userid", id);
                }
                if let Some(p) = entry.and_then(|e| e.federated_provider.clone()) {
                    ctx.insert("aws:FederatedProvider", p);
                }
            }
            Principal::Federated { provider } => {
                ctx.insert("aws:PrincipalType", "WebIdentityUser").insert("aws:FederatedProvider", provider.clone());
            }
        }
        for (k, v) in entry.map(|e| e.tags.as_slice()).unwrap_or_default() {
            ctx.insert(format!("aws:PrincipalTag/{k}"), v.clone());
        }
        if let Some(ip) = caller.source_ip {
            ctx.insert("aws:SourceIp", ip.to_string());
        }
        ctx.insert("aws:SecureTransport", if caller.secure_transport { "true" } else { "false" })
            .insert("aws:CurrentTime", iso8601(now_ms))
            .insert("aws:EpochTime", (now_ms / 1000).to_string());
        if let Some(a) = resource_account.or(principal.account_id()) {
            ctx.insert("aws:ResourceAccount", a.to_string());
        }
    }

    /// Re-read the authorization epoch when the last read is older than [`EPOCH_CHECK_MS`].
    pub(crate) async fn sync_auth_epoch(&self) -> Result<()> {
        let now = self.now();
        if now - self.authz.checked_at.load(Ordering::Relaxed) < EPOCH_CHECK_MS {
            return Ok(());
        }
        let epoch = self.meta.auth_epoch().await?;
        if self.authz.epoch.swap(epoch, Ordering::SeqCst) != epoch {
            self.authz.invalidate();
        }
        self.authz.checked_at.store(now, Ordering::SeqCst);
        Ok(())
    }

    async fn principal_entry(&self, id: &Identity) -> Result<Arc<PrincipalEntry>> {
        let key = principal_key(id);
        if let Some(e) = self.authz.principals.read().unwrap().get(&key) {
            return Ok(e.clone());
        }
        let generation = self.authz.generation.load(Ordering::SeqCst);
        let entry = Arc::new(self.load_principal(id).await?);
        if self.authz.generation.load(Ordering::SeqCst) == generation {
            insert_bounded(&self.authz.principals, key, entry.clone());
        }
        Ok(entry)
    }

    async fn load_principal(&self, id: &Identity) -> Result<PrincipalEntry> {
        let entry_id = NEXT_PRINCIPAL_ID.fetch_add(1, Ordering::Relaxed);
        let mut entry = PrincipalEntry {
            id: entry_id,
            valid: false,
            principal: Principal::Anonymous,
            user_id: None,
            policies: Vec::new(),
            session_policies: None,
            expires_at: None,
            tags: Vec::new(),
            federated_provider: None,
            broken: false,
            time_dependent: false,
        };
        let user = if id.access_key_id.is_empty() {
            // Tokens minted by `berth admin get-login-password` carry no key: the account's root.
            if user_name_of(&id.principal_arn).is_some() || !self.meta.account_exists(&id.account_id).await? {
                return Ok(entry);
            }
            None
        } else if crate::sts::is_session_key(&id.access_key_id) {
            let Some(s) = self.meta.session(&id.access_key_id).await? else {
                return Ok(entry);
            };
            if s.account_id != id.account_id {
                return Ok(entry);
            }
            entry.expires_at = Some(s.expires_at);
            if let Some(doc) = &s.policy {
                let (policies, broken, time) = self.session_policies(&s.account_id, doc).await?;
                entry.session_policies = Some(policies);
                entry.broken |= broken;
                entry.time_dependent |= time;
            }
            entry.tags = crate::sts::session_tags(&s.tags);
            if s.kind == "role" {
                return self.load_role_session(entry, &s).await;
            }
            // GetSessionToken: the user's (or the root's) own permissions.
            match (&s.principal_name, &s.principal_id) {
                (Some(name), Some(uid)) => {
                    if self.meta.user(&s.account_id, name).await?.is_none_or(|u| &u.id != uid) {
                        return Ok(entry);
                    }
                    Some(name.clone())
                }
                _ => None,
            }
        } else {
            let Some(k) = self.meta.access_key(&id.access_key_id).await? else {
                return Ok(entry);
            };
            if k.status != "Active" || k.account_id != id.account_id {
                return Ok(entry);
            }
            k.user_name
        };
        let Some(user) = user else {
            entry.valid = true;
            entry.principal = Principal::Root { account_id: id.account_id.clone() };
            return Ok(entry);
        };
        let Some(u) = self.meta.user(&id.account_id, &user).await? else {
            return Ok(entry);
        };
        let docs = self.meta.identity_policies(&id.account_id, &u.name).await?;
        let (policies, broken, time) = self.parse_identity_policies(&u.name, docs);
        entry.valid = true;
        entry.principal = Principal::User {
            account_id: id.account_id.clone(),
            arn: format!("arn:aws:iam::{}:user{}{}", id.account_id, u.path, u.name),
            name: u.name,
        };
        entry.user_id = Some(u.id);
        entry.policies = policies;
        entry.broken |= broken;
        entry.time_dependent |= time;
        Ok(entry)
    }

    /// The decision inputs of a role session: the role's policies, as long as the role is the one
    /// the session was issued for (not deleted, not re-created under the same name).
    async fn load_role_session(&self, mut entry: PrincipalEntry, s: &berth_meta::StsSession) -> Result<PrincipalEntry> {
        let Some(name) = &s.principal_name else { return Ok(entry) };
        let Some(role) = self.meta.role(&s.account_id, name).await? else { return Ok(entry) };
        if s.principal_id.as_deref() != Some(role.id.as_str()) {
            return Ok(entry);
        }
        let docs = self.meta.role_policies(&s.account_id, &role.name).await?;
        let (policies, broken, time) = self.parse_identity_policies(&role.name, docs);
        // Session tags override the role's tags with the same key (any case).
        let mut tags: Vec<(String, String)> = role
            .tags
            .iter()
            .filter(|(k, _)| !entry.tags.iter().any(|(t, _)| t.eq_ignore_ascii_case(k)))
            .cloned()
            .collect();
        tags.append(&mut entry.tags);
        entry.tags = tags;
        entry.valid = true;
        entry.principal = Principal::AssumedRole {
            account_id: s.account_id.clone(),
            role_arn: role.arn(),
            session_arn: crate::sts::session_arn(&s.account_id, &role.name, &s.session_name),
        };
        entry.user_id = Some(format!("{}:{}", role.id, s.session_name));
        entry.federated_provider = crate::sts::federated_provider(s);
        entry.policies = policies;
        entry.broken |= broken;
        entry.time_dependent |= time;
        Ok(entry)
    }

    /// Parse stored identity policies (resolving AWS managed ones): the policies, whether one
    /// no longer parses (then every decision is a deny), and whether one reads the clock.
    fn parse_identity_policies(
        &self,
        owner: &str,
        docs: Vec<berth_meta::IdentityPolicy>,
    ) -> (Vec<Arc<Policy>>, bool, bool) {
        let mut policies = Vec::new();
        let mut broken = false;
        let mut time_dependent = false;
        for p in docs {
            time_dependent |= p.document.as_deref().is_some_and(reads_clock);
            let parsed = match (&p.document, &p.arn) {
                (Some(doc), _) => Policy::parse(doc, PolicyKind::Identity).map(Arc::new),
                (None, Some(arn)) => match self.aws_managed_policy(arn) {
                    Some(p) => Ok(p),
                    None => continue, // attached ARN of a policy that no longer exists
                },
                (None, None) => continue,
            };
            match parsed {
                Ok(p) => policies.push(p),
                Err(e) => {
                    tracing::error!(%owner, error = %e, "stored identity policy does not parse; denying");
                    broken = true;
                }
            }
        }
        (policies, broken, time_dependent)
    }

    /// A session's policies from their stored form (`{"documents":[...],"arns":[...]}`): managed
    /// ones are read now; one that no longer exists allows nothing.
    async fn session_policies(&self, account: &str, stored: &str) -> Result<(Vec<Arc<Policy>>, bool, bool)> {
        let v: serde_json::Value = serde_json::from_str(stored).unwrap_or_default();
        let mut docs: Vec<berth_meta::IdentityPolicy> = v["documents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str())
            .map(|d| berth_meta::IdentityPolicy { document: Some(d.to_string()), arn: None })
            .collect();
        for arn in v["arns"].as_array().into_iter().flatten().filter_map(|a| a.as_str()) {
            let document = match self.meta.managed_policy(arn).await? {
                Some(p) if p.account_id == account => Some(p.document),
                _ => None,
            };
            docs.push(berth_meta::IdentityPolicy { document, arn: Some(arn.to_string()) });
        }
        Ok(self.parse_identity_policies("session", docs))
    }

    fn aws_managed_policy(&self, arn: &str) -> Option<Arc<Policy>> {
        if let Some(p) = self.authz.aws_managed.read().unwrap().get(arn) {
            return Some(p.clone());
        }
        let p = Arc::new(Policy::parse(aws_managed_document(arn)?, PolicyKind::Identity).ok()?);
        self.authz.aws_managed.write().unwrap().insert(arn.to_string(), p.clone());
        Some(p)
    }

    async fn repo_auth(&self, repo_id: i64) -> Result<Arc<RepoEntry>> {
        if let Some(e) = self.authz.repos.read().unwrap().get(&repo_id) {
            return Ok(e.clone());
        }
        let generation = self.authz.generation.load(Ordering::SeqCst);
        let doc = self.meta.repository_policy(repo_id).await?;
        let time_dependent = doc.as_deref().is_some_and(reads_clock);
        let (policy, broken) = match doc {
            None => (None, false),
            Some(doc) => match Policy::parse(&doc, PolicyKind::Resource) {
                Ok(p) => (Some(p), false),
                Err(e) => {
                    tracing::error!(repo_id, error = %e, "stored repository policy does not parse; denying");
                    (None, true)
                }
            },
        };
        let tags = self.meta.resource_tags(repo_id).await?;
        let entry = Arc::new(RepoEntry { policy, broken, tags, time_dependent, decisions: RwLock::default() });
        if self.authz.generation.load(Ordering::SeqCst) == generation {
            insert_bounded(&self.authz.repos, repo_id, entry.clone());
        }
        Ok(entry)
    }

    /// Forget verified data-plane credentials (after a key is deactivated or deleted).
    pub(crate) fn forget_credentials(&self) {
        self.auth_cache.write().unwrap().clear();
    }

    /// Tell this node's caches that something authorization depends on changed, and every
    /// other node through the epoch.
    pub(crate) async fn auth_inputs_changed(&self) -> Result<()> {
        self.meta.bump_auth_epoch().await?;
        self.authz.invalidate();
        Ok(())
    }
}

/// `2026-11-25T19:00:00Z` for epoch milliseconds.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn user_names_from_arns() {
        assert_eq!(user_name_of("arn:aws:iam::123456789012:user/ci"), Some("ci"));
        assert_eq!(user_name_of("arn:aws:iam::123456789012:user/a/b/ci"), Some("ci"));
        assert_eq!(user_name_of("arn:aws:iam::123456789012:root"), None);
    }
}

//! ECR lifecycle policies: the grammar ([`parse`], with ECR's validation messages) and the
//! evaluation, a pure function of (policy, images, now) -> actions ([`evaluate`]).
//!
//! Evaluation follows ECR's documented rules ("Lifecycle policy evaluation rules" in the ECR user
//! guide):
//! - rules are applied by `rulePriority`, lowest first; an image is acted on by at most one rule;
//! - a rule *identifies* every image its selection matches (tag status and lists, storage class),
//!   also those a higher-priority rule acts on, and counts them (`imageCountMoreThan` keeps the
//!   youngest `countNumber` of them by push time);
//! - an image that matches the selection of a higher-priority rule is never acted on by a lower
//!   one ("cannot be expired by a rule with a lower priority");
//! - `tagPrefixList`/`tagPatternList`: an image matches when *every* listed prefix/pattern matches
//!   one of its tags; patterns take `*` for any run of characters;
//! - `since*` count types act on images older than `countNumber` days (strictly): since the push,
//!   the last recorded pull (the push when never pulled), or the move to the archive;
//! - a rule selects only images of its `storageClass` (standard by default): `transition` moves
//!   standard images to the archive, `sinceImageTransitioned` expires archived ones; an image
//!   being restored is acted on by no rule;
//! - images that an image index of the repository lists, and referrers whose subject is in the
//!   repository, are not ranked, counted or acted on: they go with their index or subject.

mod parse;

pub use parse::{MAX_RULES, MAX_WILDCARDS, PolicyError, parse};

/// A parsed lifecycle policy, rules sorted by priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `rulePriority`: unique, at least 1; lower runs first.
    pub priority: u32,
    pub description: Option<String>,
    pub selection: Selection,
    pub action: Action,
}

/// Which images a rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub tags: TagFilter,
    pub count_type: CountType,
    /// Images to keep (`imageCountMoreThan`) or days (`since*`); at least 1.
    pub count_number: u64,
    pub storage_class: StorageClass,
}

/// `tagStatus` with its lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// `any`: every image.
    Any,
    /// `untagged`: images without tags.
    Untagged,
    /// `tagged` with `tagPrefixList`: every prefix starts one of the image's tags.
    Prefixes(Vec<String>),
    /// `tagged` with `tagPatternList`: every pattern matches one of the image's tags.
    Patterns(Vec<String>),
}

/// `countType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountType {
    ImageCountMoreThan,
    SinceImagePushed,
    SinceImagePulled,
    SinceImageTransitioned,
}

/// `storageClass` of a rule's selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    Standard,
    Archive,
}

/// `action.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delete the image.
    Expire,
    /// Move the image to the archive storage class.
    Transition,
}

impl Action {
    /// The API's name of the action (`ImageActionType`).
    pub fn api_name(self) -> &'static str {
        match self {
            Action::Expire => "EXPIRE",
            Action::Transition => "TRANSITION",
        }
    }
}

/// What evaluation needs to know of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub digest: String,
    /// Epoch milliseconds of the first push.
    pub pushed_at: i64,
    /// Epoch milliseconds of the last recorded pull.
    pub last_pulled_at: Option<i64>,
    pub tags: Vec<String>,
    /// Its storage class; `None` while it is being restored from the archive (no rule acts on
    /// it then).
    pub storage_class: Option<StorageClass>,
    /// When it last went to the archive (epoch ms).
    pub transitioned_at: Option<i64>,
    /// Listed by an image index of the repository, or a referrer whose subject is there: it goes
    /// with that image, never by a rule of its own.
    pub dependent: bool,
}

/// One action a run takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index of the image in the slice given to [`evaluate`].
    pub image: usize,
    /// The rule that acts on it.
    pub rule_priority: u32,
    pub action: Action,
}

const DAY_MS: i64 = 86_400_000;

fn tag_matches(filter: &TagFilter, tags: &[String]) -> bool {
    match filter {
        TagFilter::Any => true,
        TagFilter::Untagged => tags.is_empty(),
        TagFilter::Prefixes(ps) => ps.iter().all(|p| tags.iter().any(|t| t.starts_with(p.as_str()))),
        TagFilter::Patterns(ps) => ps.iter().all(|p| tags.iter().any(|t| glob(p, t))),
    }
}

/// `*` matches any run of characters (also none); every other character matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text.
        return rest.is_empty();
    };
    for m in middle {
        match rest.find(m) {
            Some(at) => rest = &rest[at + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What a run of `policy` at `now` (epoch ms) does to `images` (all images of one repository,
/// of both storage classes): at most one decision per image, in the order actions are
/// taken (oldest push first). The same input always gives the same decisions, so a preview
/// equals the run that follows it on unchanged images.
pub fn evaluate(policy: &Policy, images: &[Image], now: i64) -> Vec<Decision> {
    let mut decided: Vec<Option<(u32, Action)>> = vec![None; images.len()];
    // Matched by the selection of a rule applied before: no lower rule acts on it.
    let mut claimed = vec![false; images.len()];
    for rule in &policy.rules {
        let s = &rule.selection;
        let mut matched: Vec<usize> = (0..images.len())
            .filter(|&i| {
                let img = &images[i];
                !img.dependent && img.storage_class == Some(s.storage_class) && tag_matches(&s.tags, &img.tags)
            })
            .collect();
        let marked: Vec<usize> = match s.count_type {
            CountType::ImageCountMoreThan => {
                // Youngest first; the digest orders images pushed in the same millisecond.
                matched.sort_by(|&a, &b| {
                    (images[b].pushed_at, &images[b].digest).cmp(&(images[a].pushed_at, &images[a].digest))
                });
                matched.iter().copied().skip(usize::try_from(s.count_number).unwrap_or(usize::MAX)).collect()
            }
            CountType::SinceImagePushed | CountType::SinceImagePulled | CountType::SinceImageTransitioned => {
                let limit = i64::try_from(s.count_number).unwrap_or(i64::MAX).saturating_mul(DAY_MS);
                matched
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let img = &images[i];
                        let t = match s.count_type {
                            CountType::SinceImagePulled => img.last_pulled_at.unwrap_or(img.pushed_at),
                            // Archived without a recorded time: as old as its push.
                            CountType::SinceImageTransitioned => img.transitioned_at.unwrap_or(img.pushed_at),
                            _ => img.pushed_at,
                        };
                        now.saturating_sub(t) > limit
                    })
                    .collect()
            }
        };
        for i in marked {
            if !claimed[i] && decided[i].is_none() {
                decided[i] = Some((rule.priority, rule.action));
            }
        }
        for i in matched {
            claimed[i] = true;
        }
    }
    let mut out: Vec<Decision> = decided
        .into_iter()
        .enumerate()
        .filter_map(|(image, d)| d.map(|(rule_priority, action)| Decision { image, rule_priority, action }))
        .collect();
    out.sort_by(|a, b| {
        (images[a.image].pushed_at, &images[a.image].digest).cmp(&(images[b.image].pushed_at, &images[b.image].digest))
    });
    out
}

#[cfg(test)]
mod tests;

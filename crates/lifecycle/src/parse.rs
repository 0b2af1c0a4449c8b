//! The policy grammar and its validation, with ECR's messages.
//!
//! ECR validates a policy against a JSON schema first (its messages are those of a JSON-schema
//! validator: `object has missing required properties (["rules"])`, `instance value ("x") not
//! found in enum ...`), then checks the rules against each other (`Only one rule can select
//! Untagged images per storage class.`). Both kinds come back inside
//! `Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy
//! validation failure: <detail>'`; [`PolicyError`] is the detail.

use crate::{Action, CountType, Policy, Rule, Selection, StorageClass, TagFilter};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Why a policy text is not a valid lifecycle policy: the detail ECR puts after
/// `Lifecycle policy validation failure: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Most rules a policy may hold (ECR's quota, not adjustable).
pub const MAX_RULES: usize = 50;
/// Most `*` wildcards in one `tagPatternList` pattern.
pub const MAX_WILDCARDS: usize = 4;

fn err(detail: impl Into<String>) -> PolicyError {
    PolicyError(detail.into())
}

/// The JSON-schema name of a value's type.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(v: &Value, allowed: &str) -> PolicyError {
    err(format!(
        "instance type ({}) does not match any allowed primitive type (allowed: [\"{allowed}\"])",
        type_name(v)
    ))
}

fn json_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[{}]", quoted.join(","))
}

/// An object with exactly the `required` members and some of the `optional` ones.
fn object<'a>(v: &'a Value, required: &[&str], optional: &[&str]) -> Result<&'a Map<String, Value>, PolicyError> {
    let o = v.as_object().ok_or_else(|| wrong_type(v, "object"))?;
    let mut extra: Vec<&str> =
        o.keys().map(String::as_str).filter(|k| !required.contains(k) && !optional.contains(k)).collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(err(format!(
            "object instance has properties which are not allowed by the schema: ({})",
            json_list(&extra)
        )));
    }
    let mut missing: Vec<&str> = required.iter().copied().filter(|k| !o.contains_key(*k)).collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(err(format!("object has missing required properties ({})", json_list(&missing))));
    }
    Ok(o)
}

fn string(v: &Value) -> Result<&str, PolicyError> {
    v.as_str().ok_or_else(|| wrong_type(v, "string"))
}

fn one_of<'a>(v: &'a Value, values: &[&str]) -> Result<&'a str, PolicyError> {
    let s = string(v)?;
    if values.contains(&s) {
        return Ok(s);
    }
    Err(err(format!("instance value ({v}) not found in enum :(possible values: {})", json_list(values))))
}

/// An integer of at least 1.
fn positive(v: &Value) -> Result<u64, PolicyError> {
    let Some(n) = v.as_i64().or_else(|| v.as_u64().map(|n| n.min(i64::MAX as u64) as i64)) else {
        return Err(wrong_type(v, "integer"));
    };
    if n < 1 {
        return Err(err(format!("numeric instance is lower than the required minimum (minimum: 1, found: {n})")));
    }
    Ok(n as u64)
}

/// A non-empty array of strings.
fn strings(v: &Value) -> Result<Vec<String>, PolicyError> {
    let a = v.as_array().ok_or_else(|| wrong_type(v, "array"))?;
    if a.is_empty() {
        return Err(err("array is too short: must have at least 1 elements but instance has 0 elements"));
    }
    a.iter().map(|x| string(x).map(str::to_string)).collect()
}

/// Parse and validate a lifecycle policy text (the whole grammar, archive included; see
/// the archive storage class's rules). Rules come back sorted by
/// priority.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let doc: Value = serde_json::from_str(text).map_err(|_| err("Could not map policyString into LifecyclePolicy."))?;
    if !doc.is_object() {
        return Err(err("Could not map policyString into LifecyclePolicy."));
    }
    let top = object(&doc, &["rules"], &[])?;
    let rules_v = top["rules"].as_array().ok_or_else(|| wrong_type(&top["rules"], "array"))?;
    if rules_v.is_empty() {
        return Err(err("array is too short: must have at least 1 elements but instance has 0 elements"));
    }
    if rules_v.len() > MAX_RULES {
        return Err(err(format!(
            "array is too long: must have at most {MAX_RULES} elements but instance has {} elements",
            rules_v.len()
        )));
    }
    let mut rules = rules_v.iter().map(rule).collect::<Result<Vec<_>, _>>()?;
    rules.sort_by_key(|r| r.priority);
    check_together(&rules)?;
    Ok(Policy { rules })
}

fn rule(v: &Value) -> Result<Rule, PolicyError> {
    let o = object(v, &["rulePriority", "selection", "action"], &["description"])?;
    let priority = positive(&o["rulePriority"])?;
    let priority = u32::try_from(priority).map_err(|_| wrong_type(&o["rulePriority"], "integer"))?;
    let description = o.get("description").map(string).transpose()?.map(str::to_string);
    let selection = selection(&o["selection"])?;
    let action = action(&o["action"])?;
    check_rule(&selection, &action)?;
    Ok(Rule { priority, description, selection, action })
}

fn selection(v: &Value) -> Result<Selection, PolicyError> {
    let o = object(
        v,
        &["tagStatus", "countType", "countNumber"],
        &["tagPrefixList", "tagPatternList", "countUnit", "storageClass"],
    )?;
    let status = one_of(&o["tagStatus"], &["any", "tagged", "untagged"])?;
    let prefixes = o.get("tagPrefixList").map(strings).transpose()?;
    let patterns = o.get("tagPatternList").map(strings).transpose()?;
    let tags = match (status, prefixes, patterns) {
        ("tagged", Some(_), Some(_)) => {
            return Err(err("A rule may specify either tagPrefixList or tagPatternList, but not both."));
        }
        ("tagged", Some(p), None) => TagFilter::Prefixes(p),
        ("tagged", None, Some(p)) => {
            if let Some(bad) = p.iter().find(|p| p.matches('*').count() > MAX_WILDCARDS) {
                return Err(err(format!(
                    "The tag pattern '{bad}' has more than {MAX_WILDCARDS} wildcards (*); at most {MAX_WILDCARDS} are allowed per pattern."
                )));
            }
            TagFilter::Patterns(p)
        }
        ("tagged", None, None) => {
            return Err(err("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED."));
        }
        (_, None, None) => {
            if status == "any" {
                TagFilter::Any
            } else {
                TagFilter::Untagged
            }
        }
        (_, _, _) => {
            return Err(err("tagPrefixList and tagPatternList may only be used when tagStatus=TAGGED."));
        }
    };
    let count_type = match one_of(
        &o["countType"],
        &["imageCountMoreThan", "sinceImagePulled", "sinceImagePushed", "sinceImageTransitioned"],
    )? {
        "imageCountMoreThan" => CountType::ImageCountMoreThan,
        "sinceImagePushed" => CountType::SinceImagePushed,
        "sinceImagePulled" => CountType::SinceImagePulled,
        _ => CountType::SinceImageTransitioned,
    };
    // imageCountMoreThan takes no unit, the `since*` types need `days` (ECR's schema is a oneOf
    // of the two shapes).
    match (count_type, o.get("countUnit")) {
        (CountType::ImageCountMoreThan, None) => {}
        (CountType::ImageCountMoreThan, Some(_)) | (_, None) => {
            return Err(err("instance failed to match exactly one schema (matched 0 out of 2)"));
        }
        (_, Some(u)) => {
            one_of(u, &["days"])?;
        }
    }
    let count_number = positive(&o["countNumber"])?;
    let storage_class = match o.get("storageClass").map(|v| one_of(v, &["archive", "standard"])).transpose()? {
        Some("archive") => StorageClass::Archive,
        _ => StorageClass::Standard,
    };
    Ok(Selection { tags, count_type, count_number, storage_class })
}

fn action(v: &Value) -> Result<Action, PolicyError> {
    let o = object(v, &["type"], &["targetStorageClass"])?;
    match (one_of(&o["type"], &["expire", "transition"])?, o.get("targetStorageClass")) {
        ("expire", None) => Ok(Action::Expire),
        ("transition", Some(t)) => {
            one_of(t, &["archive"])?;
            Ok(Action::Transition)
        }
        // `expire` with a target, `transition` without one: neither shape of the oneOf.
        _ => Err(err("instance failed to match exactly one schema (matched 0 out of 2)")),
    }
}

/// The checks between fields of one rule.
fn check_rule(s: &Selection, a: &Action) -> Result<(), PolicyError> {
    match s.count_type {
        CountType::SinceImageTransitioned => {
            if s.storage_class != StorageClass::Archive || *a != Action::Expire {
                return Err(err(
                    "The sinceImageTransitioned count type must be used with the expire action and the archive storage class.",
                ));
            }
            if s.count_number < 90 {
                return Err(err(
                    "Images must be in archive storage for a minimum of 90 days before deletion: countNumber must be at least 90.",
                ));
            }
        }
        _ if s.storage_class == StorageClass::Archive => {
            return Err(err(
                "The archive storage class can only be selected with the sinceImageTransitioned count type.",
            ));
        }
        CountType::SinceImagePulled if *a != Action::Transition => {
            return Err(err(
                "The sinceImagePulled count type must be used with the transition action. It cannot be used with the expire action.",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The checks between rules (ECR applies them per storage class).
fn check_together(rules: &[Rule]) -> Result<(), PolicyError> {
    let mut seen = BTreeSet::new();
    for r in rules {
        if !seen.insert(r.priority) {
            return Err(err(format!(
                "The rulePriority {} is used by more than one rule; priorities must be unique.",
                r.priority
            )));
        }
    }
    for class in [StorageClass::Standard, StorageClass::Archive] {
        let of_class: Vec<&Rule> = rules.iter().filter(|r| r.selection.storage_class == class).collect();
        if of_class.iter().filter(|r| r.selection.tags == TagFilter::Untagged).count() > 1 {
            return Err(err("Only one rule can select Untagged images per storage class."));
        }
        // Sorted by priority: an `any` rule must come last.
        if let Some(pos) = of_class.iter().position(|r| r.selection.tags == TagFilter::Any)
            && pos + 1 != of_class.len()
        {
            return Err(err("Rule for tagStatus=ANY must have the lowest priority per storage class"));
        }
        let mut lists = BTreeSet::new();
        for r in &of_class {
            let key = match &r.selection.tags {
                TagFilter::Prefixes(p) => ("prefix", p.iter().cloned().collect::<BTreeSet<_>>()),
                TagFilter::Patterns(p) => ("pattern", p.iter().cloned().collect::<BTreeSet<_>>()),
                _ => continue,
            };
            if !lists.insert(key) {
                return Err(err(
                    "The set of all rules selecting a specific storage class must contain a unique set of prefixes.",
                ));
            }
        }
    }
    Ok(())
}

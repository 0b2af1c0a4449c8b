//! The SQL of image listings, shared by both backends and by the test that checks their query
//! plans: every page is an index range of `manifests` (`manifests_by_push`, or
//! `manifests_by_tagged_push` under a `tagStatus` filter) of at most `limit` rows after a keyset
//! cursor, joined with those images' tags (`tags_by_digest`), never a scan of a repository.

use crate::{Image, TagStatus};

/// The columns every image query returns, in order (`t.name` last, NULL for an untagged image).
macro_rules! image_columns {
    () => {
        "m.digest, m.media_type, m.config_media_type, m.artifact_type, m.subject, m.image_size, m.pushed_at, \
         m.last_pulled_at, t.name, m.image_status, m.last_archived_at, m.last_activated_at"
    };
}

/// The SQL of one page of images with filter `$filter` and cursor comparison `$op`.
macro_rules! images_page {
    ($filter:literal, $op:literal) => {
        concat!(
            "SELECT ",
            image_columns!(),
            " FROM (SELECT repo_id, digest, media_type, config_media_type, artifact_type, subject, image_size, \
             pushed_at, last_pulled_at, image_status, last_archived_at, last_activated_at FROM manifests \
             WHERE repo_id = $1 AND ($5 = '' OR image_status = $5)",
            $filter,
            " AND (pushed_at, digest) ",
            $op,
            " ($2, $3) ORDER BY pushed_at, digest LIMIT $4) m \
             LEFT JOIN tags t ON t.repo_id = m.repo_id AND t.digest = m.digest \
             ORDER BY m.pushed_at, m.digest, t.name"
        )
    };
}

/// One page of a repository's images: `$1` repository id, `$2`/`$3` the cursor's push time and
/// digest (`i64::MIN` and `""` for the start), `$4` the page size, `$5` the image status (`""`:
/// any); the cursor's image included when `inclusive`.
pub(crate) fn images_page_sql(status: TagStatus, inclusive: bool) -> &'static str {
    match (status, inclusive) {
        (TagStatus::Any, false) => images_page!("", ">"),
        (TagStatus::Any, true) => images_page!("", ">="),
        (TagStatus::Tagged, false) => images_page!(" AND tagged = 1", ">"),
        (TagStatus::Tagged, true) => images_page!(" AND tagged = 1", ">="),
        (TagStatus::Untagged, false) => images_page!(" AND tagged = 0", ">"),
        (TagStatus::Untagged, true) => images_page!(" AND tagged = 0", ">="),
    }
}

/// One image by digest: `$1` repository id, `$2` digest.
pub(crate) const IMAGE_SQL: &str = concat!(
    "SELECT ",
    image_columns!(),
    " FROM manifests m LEFT JOIN tags t ON t.repo_id = m.repo_id AND t.digest = m.digest \
     WHERE m.repo_id = $1 AND m.digest = $2 ORDER BY t.name"
);

/// One row of an image query: an image and one of its tags.
pub(crate) struct ImageRow {
    pub image: Image,
    pub tag: Option<String>,
}

/// Fold rows ordered by image into images with their tags (sorted bytewise).
pub(crate) fn images_from_rows(rows: impl Iterator<Item = ImageRow>) -> Vec<Image> {
    let mut out: Vec<Image> = Vec::new();
    for ImageRow { image, tag } in rows {
        match out.last_mut() {
            Some(last) if last.digest == image.digest => last.tags.extend(tag),
            _ => {
                let mut image = image;
                image.tags.extend(tag);
                out.push(image);
            }
        }
    }
    for i in &mut out {
        i.tags.sort_unstable();
    }
    out
}

/// Most artifact types a referrers page filters on (ECR's `ArtifactTypeList` maximum).
pub(crate) const MAX_ARTIFACT_TYPES: usize = 5;

/// One page of the referrers of a subject (`manifests_by_subject`): `$1` repository id, `$2`
/// subject, `$3`/`$4` the cursor (`i64::MIN` and `""` for the start), `$5` how many of the
/// artifact types `$6`..`$10` apply (0: any type), `$11` the page size, `$12` the status (`""`:
/// any).
pub(crate) const REFERRERS_PAGE_SQL: &str = "SELECT digest, media_type, size, artifact_type, annotations, pushed_at, \
     image_status FROM manifests WHERE repo_id = $1 AND subject = $2 AND (pushed_at, digest) > ($3, $4) \
     AND ($5 = 0 OR artifact_type IN ($6, $7, $8, $9, $10)) AND ($12 = '' OR image_status = $12) \
     ORDER BY pushed_at, digest LIMIT $11";

/// One page of a repository's tags (OCI tags/list): `$1` repository id, `$2` the last tag of the
/// previous page (`""` for the start), `$3` the page size.
pub(crate) const TAGS_SQL: &str = "SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3";

/// One page of a namespace's repository names (the catalog): `$1` account, `$2` region, `$3`
/// the last name of the previous page (`""` for the start), `$4` the page size.
pub(crate) const REPOSITORIES_SQL: &str = "SELECT name FROM repositories WHERE account_id = $1 AND region = $2 \
     AND name > $3 ORDER BY name LIMIT $4";

/// One page of a namespace's repositories with their settings (DescribeRepositories), with the
/// parameters of [`REPOSITORIES_SQL`].
pub(crate) const REPOSITORY_INFOS_SQL: &str = "SELECT id, account_id, region, name, created_at, image_tag_mutability, \
     mutability_exclusions, scan_on_push, encryption_type, kms_key FROM repositories \
     WHERE account_id = $1 AND region = $2 AND name > $3 ORDER BY name LIMIT $4";

/// The hot listing and lookup queries with parameters for a plan check, and what each must
/// search by: `(name, sql, index on SQLite, key condition of an index search on PostgreSQL,
/// parameters)`. Parameters are given as text or integers in `$n` order.
#[cfg(test)]
pub(crate) fn hot_queries() -> Vec<(String, &'static str, &'static str, &'static str, Vec<Param>)> {
    use Param::{I, N, T};
    let cursor = || vec![I(1), I(1_000), T("sha256:ab"), I(101), T("ACTIVE")];
    let mut out = Vec::new();
    for status in [TagStatus::Any, TagStatus::Tagged, TagStatus::Untagged] {
        for inclusive in [false, true] {
            let (lite, pg) = match status {
                TagStatus::Any => ("manifests_by_push", "ROW(pushed_at, digest)"),
                _ => ("manifests_by_tagged_push", "ROW(pushed_at, digest)"),
            };
            out.push((
                format!("images page {status:?} inclusive={inclusive}"),
                images_page_sql(status, inclusive),
                lite,
                pg,
                cursor(),
            ));
        }
    }
    out.push((
        "one image".into(),
        IMAGE_SQL,
        "sqlite_autoindex_manifests_1",
        "(digest = 'sha256:ab'::text)",
        vec![I(1), T("sha256:ab")],
    ));
    let mut refs = vec![I(1), T("sha256:s"), I(1_000), T("sha256:ab"), I(1), T("application/x")];
    refs.extend([N, N, N, N, I(21), T("ACTIVE")]);
    out.push((
        "referrers page".into(),
        REFERRERS_PAGE_SQL,
        "manifests_by_subject",
        "(subject = 'sha256:s'::text)",
        refs,
    ));
    out.push((
        "tags page".into(),
        TAGS_SQL,
        "sqlite_autoindex_tags_1",
        "(name > 'v1'::text)",
        vec![I(1), T("v1"), I(101)],
    ));
    let repos = || vec![T("111111111111"), T("us-east-1"), T("a"), I(101)];
    out.push((
        "repository names".into(),
        REPOSITORIES_SQL,
        "sqlite_autoindex_repositories_1",
        "(name > 'a'::text)",
        repos(),
    ));
    out.push((
        "repositories".into(),
        REPOSITORY_INFOS_SQL,
        "sqlite_autoindex_repositories_1",
        "(name > 'a'::text)",
        repos(),
    ));
    out
}

/// A parameter of a plan check: an integer, a text, or NULL text.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param {
    I(i64),
    T(&'static str),
    N,
}

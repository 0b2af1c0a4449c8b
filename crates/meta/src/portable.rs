//! The metadata SQL, written once for SQLite and PostgreSQL: `$n` placeholders, `ON CONFLICT`,
//! `RETURNING`, explicit `CAST`s where PostgreSQL must infer a parameter's type. Each backend
//! module expands [`portable_store!`] for its store type, which must provide `begin()` (a write
//! transaction) and the `read` / `write` pools. The one backend difference in the SQL itself is
//! passed as `$skip_locked`: the row-locking clause that lets concurrent job claimers pass each other
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL; empty on SQLite, where `BEGIN IMMEDIATE` already
//! serializes writers).

/// A repository row locked by `touch_repo`: its mutability settings as committed and its
/// identity (for the events the write appends).
pub(crate) struct TouchedRepo {
    pub mutability: String,
    pub exclusions: Option<String>,
    pub account_id: String,
    pub region: String,
    pub name: String,
}

/// The columns [`job_from_row`] reads, in order.
macro_rules! job_columns {
    () => {
        "id, kind, key, payload, state, attempts, max_attempts, run_after, lease_owner, lease_expires_at, \
         last_error, created_at, updated_at"
    };
}

/// Whether an index of repository `$1` lists manifest `$2` as a child.
pub(crate) const LISTED_BY_INDEX_SQL: &str =
    "SELECT 1 FROM manifest_refs WHERE repo_id = $1 AND ref_digest = $2 AND kind = 'm' LIMIT 1";

/// Implement [`crate::MetadataStore`] for `$store` on database `$db` with row type `$row`.
macro_rules! portable_store {
    ($store:ty, $db:ty, $row:ty, $skip_locked:literal) => {
#[async_trait]
impl MetadataStore for $store {
    async fn repository(&self, ns: &Namespace, name: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM repositories WHERE account_id = $1 AND region = $2 AND name = $3")
            .bind(&ns.account_id)
            .bind(&ns.region)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn ensure_repository(&self, ns: &Namespace, name: &str, now: i64) -> Result<i64> {
        if let Some(id) = self.repository(ns, name).await? {
            return Ok(id);
        }
        let mut tx = self.begin().await?;
        let created = sqlx::query(
            "INSERT INTO repositories (account_id, region, name, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, region, name) DO NOTHING",
        )
        .bind(&ns.account_id)
        .bind(&ns.region)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if created {
            let detail = serde_json::json!({"repository-name": name, "created-by": "push"});
            append_event(&mut tx, &ns.account_id, &ns.region, crate::events::kind::REPOSITORY_CREATE, Some(name), &detail, now)
                .await?;
        }
        let id: i64 = sqlx::query("SELECT id FROM repositories WHERE account_id = $1 AND region = $2 AND name = $3")
            .bind(&ns.account_id)
            .bind(&ns.region)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        tx.commit().await?;
        Ok(id)
    }

    async fn list_repositories(&self, ns: &Namespace, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        let rows = sqlx::query(crate::listing::REPOSITORIES_SQL)
        .bind(&ns.account_id)
        .bind(&ns.region)
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn list_repositories_where(
        &self,
        ns: &Namespace,
        filter: crate::RepoFilter<'_>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let rows = match filter {
            crate::RepoFilter::Prefix(prefix) => {
                // Bytewise order (SQLite BINARY, PostgreSQL COLLATE "C"): the names starting with
                // `prefix` lie in [prefix, prefix + U+10FFFF); the substr test makes it exact.
                let upper = format!("{prefix}\u{10FFFF}");
                let from = match last {
                    Some(l) if l >= prefix => l,
                    _ => "",
                };
                sqlx::query(
                    "SELECT name FROM repositories WHERE account_id = $1 AND region = $2 AND name > $3 \
                     AND name >= $4 AND name < $5 AND substr(name, 1, length($4)) = $4 ORDER BY name LIMIT $6",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(from)
                .bind(prefix)
                .bind(upper)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?
            }
            crate::RepoFilter::WithPolicy => {
                sqlx::query(
                    "SELECT r.name FROM repositories r JOIN repository_policies p ON p.repo_id = r.id \
                     WHERE r.account_id = $1 AND r.region = $2 AND r.name > $3 ORDER BY r.name LIMIT $4",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(last.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?
            }
        };
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn blob_in_repo(&self, repo_id: i64, digest: &str) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
             WHERE rb.repo_id = $1 AND rb.digest = $2",
        )
        .bind(repo_id)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }

    async fn link_blob(&self, repo_id: i64, digest: &str, size: u64, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        link(&mut tx, repo_id, digest, size, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mount_blob(&self, repo_id: i64, digest: &str, now: i64) -> Result<Option<u64>> {
        let mut tx = self.begin().await?;
        // A link without bytes of its own: only to a blob that exists and is not being
        // deleted (docs/gc.md).
        blob_mutex(&mut tx, digest, now).await?;
        let size: Option<i64> = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        let Some(size) = size else { return Ok(None) };
        if tombstoned(&mut tx, digest).await? {
            return Ok(None);
        }
        link(&mut tx, repo_id, digest, size as u64, now).await?;
        tx.commit().await?;
        Ok(Some(size as u64))
    }

    async fn unlink_blob(&self, repo_id: i64, digest: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_upload(&self, id: &str, repo_id: i64, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO uploads (id, repo_id, size, created_at, updated_at) VALUES ($1, $2, 0, $3, $3)")
            .bind(id)
            .bind(repo_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query("SELECT id, repo_id, size, state, created_at, updated_at FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| Upload {
            id: r.get(0),
            repo_id: r.get(1),
            size: r.get::<i64, _>(2) as u64,
            state: r.get(3),
            created_at: r.get(4),
            updated_at: r.get(5),
        }))
    }

    async fn advance_upload(&self, id: &str, old: (u64, &str), new: (u64, &str), now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE uploads SET size = $1, state = $2, updated_at = $3 WHERE id = $4 AND size = $5 AND state = $6",
        )
        .bind(new.0 as i64)
        .bind(new.1)
        .bind(now)
        .bind(id)
        .bind(old.0 as i64)
        .bind(old.1)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn complete_upload(&self, id: &str, repo_id: i64, digest: &str, size: u64, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        // The upload's hold (taken before its bytes were written) turns into a link.
        blob_mutex(&mut tx, digest, now).await?;
        if bytes_busy(&mut tx, digest).await? {
            return Err(MetaError::BlobBeingDeleted(digest.to_string()));
        }
        sqlx::query("DELETE FROM blob_holds WHERE digest = $1 AND holder = $2")
            .bind(digest)
            .bind(format!("upload:{id}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&mut *tx).await?;
        link(&mut tx, repo_id, digest, size, now).await?;
        // The upload wrote the bytes to the blob store (no move was in flight since its hold):
        // an archived blob is standard again (its archive copy goes with the blob).
        sqlx::query("UPDATE blobs SET location = 'standard' WHERE digest = $1 AND location <> 'standard'")
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(r.rows_affected() > 0)
    }

    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2")
            .bind(before)
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn put_manifest(&self, m: &NewManifest<'_>, tags: &[&str], now: i64) -> Result<PutManifest> {
        let mut tx = self.begin().await?;
        // First statement: lock the repository row (serializing this write with every other
        // write to the repository, its deletion and mutability changes), move its data epoch,
        // and read the settings as committed.
        let Some(repo) = touch_repo(&mut tx, m.repo_id).await? else {
            return Ok(PutManifest::RepositoryGone);
        };
        for t in tags {
            if !crate::mutability::tag_is_immutable(&repo.mutability, repo.exclusions.as_deref(), t) {
                continue;
            }
            let hit = sqlx::query("SELECT 1 FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(m.repo_id)
                .bind(*t)
                .fetch_optional(&mut *tx)
                .await?;
            if hit.is_some() {
                return Ok(PutManifest::TagExists(t.to_string()));
            }
        }
        let mut missing: Vec<String> = Vec::new();
        let mut image_size: i64 = 0;
        for (d, declared) in m.blobs {
            let stored = sqlx::query(
                "SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
                 WHERE rb.repo_id = $1 AND rb.digest = $2",
            )
            .bind(m.repo_id)
            .bind(*d)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get::<i64, _>(0));
            match stored {
                None => {
                    if !missing.iter().any(|x| x == d) {
                        missing.push(d.to_string());
                    }
                }
                Some(size) if size as u64 != *declared => {
                    return Ok(PutManifest::SizeMismatch {
                        digest: d.to_string(),
                        declared: *declared,
                        stored: size as u64,
                    });
                }
                Some(size) => image_size = image_size.saturating_add(size),
            }
        }
        if !missing.is_empty() {
            return Ok(PutManifest::MissingBlobs(missing));
        }
        let mut largest_child: i64 = 0;
        for (d, declared) in m.children {
            let row = sqlx::query("SELECT size, image_size FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(m.repo_id)
                .bind(*d)
                .fetch_optional(&mut *tx)
                .await?;
            match row.map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1))) {
                None => {
                    if !missing.iter().any(|x| x == d) {
                        missing.push(d.to_string());
                    }
                }
                Some((size, _)) if size as u64 != *declared => {
                    return Ok(PutManifest::SizeMismatch {
                        digest: d.to_string(),
                        declared: *declared,
                        stored: size as u64,
                    });
                }
                Some((_, child_image)) => largest_child = largest_child.max(child_image),
            }
        }
        if !missing.is_empty() {
            return Ok(PutManifest::MissingManifests(missing));
        }
        let image_size = if m.index { largest_child } else { image_size };
        let inserted = sqlx::query(
            "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, size, content, pushed_at, \
             config_media_type, image_size) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (repo_id, digest) DO NOTHING",
        )
        .bind(m.repo_id)
        .bind(m.digest)
        .bind(m.media_type)
        .bind(m.artifact_type)
        .bind(m.subject)
        .bind(m.annotations)
        .bind(m.content.len() as i64)
        .bind(m.content)
        .bind(now)
        .bind(m.config_media_type)
        .bind(image_size)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if inserted {
            for (kind, refs) in [("b", m.blobs), ("m", m.children)] {
                for (r, _) in refs {
                    sqlx::query(
                        "INSERT INTO manifest_refs (repo_id, manifest_digest, ref_digest, kind) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(m.repo_id)
                    .bind(m.digest)
                    .bind(*r)
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        } else {
            // Pushing an archived (or restoring) image again makes it active again, as in ECR.
            sqlx::query(
                "UPDATE manifests SET image_status = 'ACTIVE', last_activated_at = $1 \
                 WHERE repo_id = $2 AND digest = $3 AND image_status <> 'ACTIVE'",
            )
            .bind(now)
            .bind(m.repo_id)
            .bind(m.digest)
            .execute(&mut *tx)
            .await?;
        }
        // A tag already on this digest is left alone (no event: nothing changed).
        let mut moved: Vec<&str> = Vec::new();
        let mut untagged_from: Vec<String> = Vec::new();
        for t in tags {
            let before: Option<String> = sqlx::query("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(m.repo_id)
                .bind(*t)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
            if let Some(d) = before
                && d != m.digest
                && !untagged_from.contains(&d)
            {
                untagged_from.push(d);
            }
            let changed = sqlx::query(
                "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at \
                 WHERE tags.digest <> excluded.digest RETURNING 1",
            )
            .bind(m.repo_id)
            .bind(*t)
            .bind(m.digest)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if changed && !moved.contains(t) {
                moved.push(t);
            }
        }
        if !moved.is_empty() {
            refresh_tagged(&mut tx, m.repo_id, m.digest).await?;
            for d in &untagged_from {
                refresh_tagged(&mut tx, m.repo_id, d).await?;
            }
        }
        let image = crate::events::ImageRef {
            repository: &repo.name,
            digest: m.digest,
            media_type: Some(m.media_type),
            artifact_media_type: m.config_media_type.or(m.artifact_type),
        };
        let pushed = |tag: Option<&str>| {
            let mut d = image.action("PUSH", tag);
            if m.replicated {
                d[crate::events::REPLICATED] = true.into();
            }
            d
        };
        if inserted && moved.is_empty() {
            repo_event(&mut tx, &repo, crate::events::kind::IMAGE_PUSH, &pushed(None), now).await?;
        }
        for t in moved {
            repo_event(&mut tx, &repo, crate::events::kind::IMAGE_PUSH, &pushed(Some(t)), now).await?;
        }
        tx.commit().await?;
        Ok(PutManifest::Stored)
    }

    async fn manifest(&self, repo_id: i64, digest: &str) -> Result<Option<Manifest>> {
        let row =
            sqlx::query("SELECT media_type, content, image_status FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(repo_id)
                .bind(digest)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|r| Manifest {
            digest: digest.to_string(),
            media_type: r.get(0),
            content: r.get(1),
            status: crate::ImageStatus::parse(&r.get::<String, _>(2)).unwrap_or_default(),
        }))
    }

    async fn resolve_tag(&self, repo_id: i64, tag: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(tag)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn delete_manifest(&self, repo_id: i64, digest: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(repo) = touch_repo(&mut tx, repo_id).await? else {
            return Ok(false);
        };
        let tags = manifest_tags(&mut tx, repo_id, digest).await?;
        if !delete_manifest_in(&mut tx, &repo, repo_id, digest, &tags, now).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn expire_manifest(
        &self,
        repo_id: i64,
        digest: &str,
        expect_tags: &[String],
        detail: &serde_json::Value,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(repo) = touch_repo(&mut tx, repo_id).await? else {
            return Ok(false);
        };
        // Evaluated on a snapshot: the image must still be what the evaluation saw.
        let tags = manifest_tags(&mut tx, repo_id, digest).await?;
        if tags != expect_tags {
            return Ok(false);
        }
        if listed_by_index(&mut tx, repo_id, digest).await? || !delete_manifest_in(&mut tx, &repo, repo_id, digest, &tags, now).await? {
            return Ok(false);
        }
        repo_event(&mut tx, &repo, crate::events::kind::LIFECYCLE_ACTION, detail, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_tag(&self, repo_id: i64, tag: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(repo) = touch_repo(&mut tx, repo_id).await? else {
            return Ok(false);
        };
        let Some(row) = sqlx::query(
            "DELETE FROM tags WHERE repo_id = $1 AND name = $2 RETURNING digest, \
             (SELECT media_type FROM manifests m WHERE m.repo_id = tags.repo_id AND m.digest = tags.digest)",
        )
        .bind(repo_id)
        .bind(tag)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let (digest, media_type): (String, Option<String>) = (row.get(0), row.get(1));
        refresh_tagged(&mut tx, repo_id, &digest).await?;
        let image = crate::events::ImageRef {
            repository: &repo.name,
            digest: &digest,
            media_type: media_type.as_deref(),
            artifact_media_type: None,
        };
        repo_event(&mut tx, &repo, crate::events::kind::IMAGE_DELETE, &image.action("DELETE", Some(tag)), now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn repository_version(&self, ns: &Namespace, name: &str) -> Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "SELECT id, data_epoch FROM repositories WHERE account_id = $1 AND region = $2 AND name = $3",
        )
        .bind(&ns.account_id)
        .bind(&ns.region)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn repository_epoch(&self, repo_id: i64) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT data_epoch FROM repositories WHERE id = $1")
            .bind(repo_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn list_tags(&self, repo_id: i64, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        let rows = sqlx::query(crate::listing::TAGS_SQL)
            .bind(repo_id)
            .bind(last.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn referrers(&self, repo_id: i64, subject: &str, artifact_type: Option<&str>) -> Result<Vec<Referrer>> {
        let types: Vec<&str> = artifact_type.into_iter().collect();
        self.referrers_page(repo_id, subject, &types, Some(crate::ImageStatus::Active), None, u32::MAX).await
    }

    async fn referrers_page(
        &self,
        repo_id: i64,
        subject: &str,
        artifact_types: &[&str],
        status: Option<crate::ImageStatus>,
        after: Option<&crate::ImageKey>,
        limit: u32,
    ) -> Result<Vec<Referrer>> {
        if artifact_types.len() > crate::listing::MAX_ARTIFACT_TYPES {
            return Err(crate::MetaError::Invalid(format!(
                "at most {} artifact types",
                crate::listing::MAX_ARTIFACT_TYPES
            )));
        }
        let mut q = sqlx::query(crate::listing::REFERRERS_PAGE_SQL)
            .bind(repo_id)
            .bind(subject)
            .bind(after.map_or(i64::MIN, |k| k.pushed_at))
            .bind(after.map_or("", |k| k.digest.as_str()))
            .bind(artifact_types.len() as i64);
        for i in 0..crate::listing::MAX_ARTIFACT_TYPES {
            q = q.bind(artifact_types.get(i).copied());
        }
        let rows = q.bind(i64::from(limit)).bind(status.map_or("", |s| s.as_str())).fetch_all(&self.read).await?;
        Ok(rows
            .into_iter()
            .map(|r| Referrer {
                digest: r.get(0),
                media_type: r.get(1),
                size: r.get::<i64, _>(2) as u64,
                artifact_type: r.get(3),
                annotations: r.get(4),
                pushed_at: r.get(5),
                status: crate::ImageStatus::parse(&r.get::<String, _>(6)).unwrap_or_default(),
            })
            .collect())
    }

    async fn images_page(
        &self,
        repo_id: i64,
        status: crate::TagStatus,
        image_status: Option<crate::ImageStatus>,
        from: crate::ImagesFrom<'_>,
        limit: u32,
    ) -> Result<Vec<Image>> {
        let (key, inclusive) = match from {
            crate::ImagesFrom::Start => (None, false),
            crate::ImagesFrom::At(k) => (Some(k), true),
            crate::ImagesFrom::After(k) => (Some(k), false),
        };
        let rows = sqlx::query(crate::listing::images_page_sql(status, inclusive))
            .bind(repo_id)
            .bind(key.map_or(i64::MIN, |k| k.pushed_at))
            .bind(key.map_or("", |k| k.digest.as_str()))
            .bind(i64::from(limit))
            .bind(image_status.map_or("", |s| s.as_str()))
            .fetch_all(&self.read)
            .await?;
        Ok(crate::listing::images_from_rows(rows.iter().map(image_row)))
    }

    async fn set_image_status(
        &self,
        repo_id: i64,
        digest: &str,
        from: crate::ImageStatus,
        to: crate::ImageStatus,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        if touch_repo(&mut tx, repo_id).await?.is_none() {
            return Ok(false);
        }
        if !status_move(&mut tx, repo_id, digest, from, to, now).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn transition_manifest(
        &self,
        repo_id: i64,
        digest: &str,
        expect_tags: &[String],
        detail: &serde_json::Value,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(repo) = touch_repo(&mut tx, repo_id).await? else {
            return Ok(false);
        };
        if manifest_tags(&mut tx, repo_id, digest).await? != expect_tags
            || !status_move(&mut tx, repo_id, digest, crate::ImageStatus::Active, crate::ImageStatus::Archived, now).await?
        {
            return Ok(false);
        }
        repo_event(&mut tx, &repo, crate::events::kind::LIFECYCLE_ACTION, detail, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn image(&self, repo_id: i64, digest: &str) -> Result<Option<Image>> {
        let rows = sqlx::query(crate::listing::IMAGE_SQL).bind(repo_id).bind(digest).fetch_all(&self.read).await?;
        Ok(crate::listing::images_from_rows(rows.iter().map(image_row)).pop())
    }

    async fn record_pull(&self, repo_id: i64, digest: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE manifests SET last_pulled_at = $1 WHERE repo_id = $2 AND digest = $3")
            .bind(now)
            .bind(repo_id)
            .bind(digest)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn referenced_by_index(&self, repo_id: i64, digest: &str) -> Result<bool> {
        Ok(sqlx::query(crate::portable::LISTED_BY_INDEX_SQL).bind(repo_id).bind(digest).fetch_optional(&self.read).await?.is_some())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let r = sqlx::query("SELECT value FROM server_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.write)
            .await?;
        let r =
            sqlx::query("SELECT value FROM server_settings WHERE key = $1").bind(key).fetch_one(&self.write).await?;
        Ok(r.get(0))
    }

    async fn create_account(&self, account_id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query("INSERT INTO accounts (account_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(account_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn account_exists(&self, account_id: &str) -> Result<bool> {
        let r = sqlx::query("SELECT 1 FROM accounts WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(r.is_some())
    }

    async fn put_access_key(&self, k: &AccessKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO access_keys (access_key_id, account_id, user_name, secret_enc, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.access_key_id)
        .bind(&k.account_id)
        .bind(&k.user_name)
        .bind(&k.secret_enc)
        .bind(&k.status)
        .bind(k.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>> {
        let row = sqlx::query(
            "SELECT access_key_id, account_id, user_name, secret_enc, status, created_at FROM access_keys \
             WHERE access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| AccessKey {
            access_key_id: r.get(0),
            account_id: r.get(1),
            user_name: r.get(2),
            secret_enc: r.get(3),
            status: r.get(4),
            created_at: r.get(5),
        }))
    }

    async fn create_repository(&self, r: &NewRepository<'_>, now: i64) -> Result<Option<RepositoryInfo>> {
        let mut tx = self.begin().await?;
        let Some(info) = insert_repository(&mut tx, r, None, now).await? else { return Ok(None) };
        tx.commit().await?;
        Ok(Some(info))
    }

    async fn repository_info(&self, ns: &Namespace, name: &str) -> Result<Option<RepositoryInfo>> {
        let row = sqlx::query(concat!(
            "SELECT id, account_id, region, name, created_at, image_tag_mutability, mutability_exclusions, ",
            "scan_on_push, encryption_type, kms_key FROM repositories ",
            "WHERE account_id = $1 AND region = $2 AND name = $3"
        ))
        .bind(&ns.account_id)
        .bind(&ns.region)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(repo_info))
    }

    async fn list_repository_infos(
        &self,
        ns: &Namespace,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RepositoryInfo>> {
        let rows = sqlx::query(crate::listing::REPOSITORY_INFOS_SQL)
        .bind(&ns.account_id)
        .bind(&ns.region)
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(repo_info).collect())
    }

    async fn delete_repository(&self, repo_id: i64, force: bool, now: i64) -> Result<DeleteRepository> {
        let mut tx = self.begin().await?;
        let Some(repo) = touch_repo(&mut tx, repo_id).await? else {
            return Ok(DeleteRepository::Deleted);
        };
        if !force {
            let has = sqlx::query("SELECT 1 FROM manifests WHERE repo_id = $1 LIMIT 1")
                .bind(repo_id)
                .fetch_optional(&mut *tx)
                .await?;
            if has.is_some() {
                return Ok(DeleteRepository::NotEmpty);
            }
        }
        // Children first: tags and refs reference manifests.
        for sql in [
            "DELETE FROM tags WHERE repo_id = $1",
            "DELETE FROM manifest_refs WHERE repo_id = $1",
            "DELETE FROM manifests WHERE repo_id = $1",
            "DELETE FROM repo_blobs WHERE repo_id = $1",
            "DELETE FROM uploads WHERE repo_id = $1",
            "DELETE FROM repository_tags WHERE repo_id = $1",
            "DELETE FROM repositories WHERE id = $1",
        ] {
            sqlx::query(sql).bind(repo_id).execute(&mut *tx).await?;
        }
        let detail = serde_json::json!({"repository-name": repo.name, "force": force});
        repo_event(&mut tx, &repo, crate::events::kind::REPOSITORY_DELETE, &detail, now).await?;
        tx.commit().await?;
        Ok(DeleteRepository::Deleted)
    }

    async fn set_tag_mutability(&self, repo_id: i64, mutability: &str, exclusions: Option<&str>, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let Some(repo) = touch_repo(&mut tx, repo_id).await? else {
            return Ok(());
        };
        sqlx::query("UPDATE repositories SET image_tag_mutability = $1, mutability_exclusions = $2 WHERE id = $3")
            .bind(mutability)
            .bind(exclusions)
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
        let filters: serde_json::Value = exclusions.and_then(|e| serde_json::from_str(e).ok()).unwrap_or_default();
        let detail = serde_json::json!({
            "repository-name": repo.name,
            "image-tag-mutability": mutability,
            "image-tag-mutability-exclusion-filters": filters,
        });
        repo_event(&mut tx, &repo, crate::events::kind::REPOSITORY_MUTABILITY, &detail, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn resource_tags(&self, repo_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT key, value FROM repository_tags WHERE repo_id = $1 ORDER BY key")
            .bind(repo_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn tag_repository(&self, repo_id: i64, tags: &[(String, String)], max: usize) -> Result<bool> {
        let mut tx = self.begin().await?;
        upsert_resource_tags(&mut tx, repo_id, tags).await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM repository_tags WHERE repo_id = $1")
            .bind(repo_id)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if n as usize > max {
            return Ok(false); // dropping the transaction rolls back
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn untag_repository(&self, repo_id: i64, keys: &[String]) -> Result<()> {
        let mut tx = self.begin().await?;
        for k in keys {
            sqlx::query("DELETE FROM repository_tags WHERE repo_id = $1 AND key = $2")
                .bind(repo_id)
                .bind(k)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue_job(&self, job: &NewJob<'_>, now: i64) -> Result<Option<i64>> {
        // Without `once`, the partial unique index on (kind, key) of pending/running jobs makes
        // the insert a no-op; with it, any existing job of that kind and key does too. Two
        // concurrent `once` inserts both pass NOT EXISTS, and the index keeps one.
        let sql = if job.once {
            "INSERT INTO jobs (kind, key, payload, state, attempts, max_attempts, run_after, created_at, updated_at) \
             SELECT $1, $2, $3, 'pending', 0, $4, $5, $6, $6 \
             WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE kind = $1 AND key = $2) \
             ON CONFLICT DO NOTHING RETURNING id"
        } else {
            "INSERT INTO jobs (kind, key, payload, state, attempts, max_attempts, run_after, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', 0, $4, $5, $6, $6) ON CONFLICT DO NOTHING RETURNING id"
        };
        let row = sqlx::query(sql)
            .bind(job.kind)
            .bind(job.key)
            .bind(job.payload)
            .bind(i64::from(job.max_attempts.max(1)))
            .bind(job.run_after)
            .bind(now)
            .fetch_optional(&self.write)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn claim_job(&self, node_id: &str, kinds: &[&str], now: i64, lease_ms: i64) -> Result<Option<Job>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        // `kind IN ($2, $3, ...)`: only generated placeholders go into the text.
        let list = (0..kinds.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
        let mut tx = self.begin().await?;
        // A lease that expired on the last allowed attempt ends the job.
        let exhausted = format!(
            "UPDATE jobs SET state = 'failed', last_error = 'lease expired on the last attempt', \
             lease_expires_at = NULL, updated_at = $1 WHERE id IN (SELECT id FROM jobs WHERE kind IN ({list}) \
             AND state = 'running' AND lease_expires_at <= $1 AND attempts >= max_attempts{})",
            $skip_locked
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(exhausted)).bind(now);
        for k in kinds {
            q = q.bind(*k);
        }
        q.execute(&mut *tx).await?;
        let due = format!(
            "SELECT id FROM jobs WHERE kind IN ({list}) AND ((state = 'pending' AND run_after <= $1) \
             OR (state = 'running' AND lease_expires_at <= $1)) ORDER BY run_after, id LIMIT 1{}",
            $skip_locked
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(due)).bind(now);
        for k in kinds {
            q = q.bind(*k);
        }
        let Some(id) = q.fetch_optional(&mut *tx).await?.map(|r| r.get::<i64, _>(0)) else {
            tx.commit().await?; // keep the failed exhausted leases
            return Ok(None);
        };
        let row = sqlx::query(concat!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, ",
            "updated_at = $3 WHERE id = $4 RETURNING ",
            job_columns!()
        ))
        .bind(node_id)
        .bind(now + lease_ms)
        .bind(now)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(job_from_row(row)))
    }

    async fn renew_lease(&self, id: i64, node_id: &str, now: i64, lease_ms: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'running' AND lease_owner = $4",
        )
        .bind(now + lease_ms)
        .bind(now)
        .bind(id)
        .bind(node_id)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn complete_job(&self, id: i64, node_id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_expires_at = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'running' AND lease_owner = $3",
        )
        .bind(now)
        .bind(id)
        .bind(node_id)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn fail_job(&self, id: i64, node_id: &str, error: &str, retry_at: i64, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET state = CASE WHEN attempts < max_attempts THEN 'pending' ELSE 'failed' END, \
             run_after = $1, last_error = $2, lease_expires_at = NULL, updated_at = $3 \
             WHERE id = $4 AND state = 'running' AND lease_owner = $5",
        )
        .bind(retry_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(node_id)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_job(&self, id: i64, node_id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET state = 'pending', run_after = $1, attempts = attempts - 1, lease_expires_at = NULL, \
             updated_at = $1 WHERE id = $2 AND state = 'running' AND lease_owner = $3",
        )
        .bind(now)
        .bind(id)
        .bind(node_id)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn jobs(&self, kind: Option<&str>, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE (CAST($1 AS TEXT) IS NULL OR kind = $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(kind)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(job_from_row).collect())
    }

    async fn purge_done_jobs(&self, before: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < $1")
            .bind(before)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected())
    }

    async fn stats(&self) -> Result<Stats> {
        let (blobs, blob_bytes): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs").fetch_one(&self.read).await?;
        let (uploads,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM uploads").fetch_one(&self.read).await?;
        let jobs: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, state, COUNT(*) FROM jobs WHERE state <> 'done' GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(Stats {
            blobs: blobs.max(0) as u64,
            blob_bytes: blob_bytes.max(0) as u64,
            uploads_open: uploads.max(0) as u64,
            jobs: jobs.into_iter().map(|(k, s, n)| (k, s, n.max(0) as u64)).collect(),
        })
    }
}

fn job_from_row(r: $row) -> Job {
    Job {
        id: r.get(0),
        kind: r.get(1),
        key: r.get(2),
        payload: r.get(3),
        state: JobState::parse(r.get::<&str, _>(4)),
        attempts: r.get::<i64, _>(5) as u32,
        max_attempts: r.get::<i64, _>(6) as u32,
        run_after: r.get(7),
        lease_owner: r.get(8),
        lease_expires_at: r.get(9),
        last_error: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
    }
}

fn image_row(r: &$row) -> crate::listing::ImageRow {
    crate::listing::ImageRow {
        image: Image {
            digest: r.get(0),
            media_type: r.get(1),
            config_media_type: r.get(2),
            artifact_type: r.get(3),
            subject: r.get(4),
            image_size: r.get::<i64, _>(5) as u64,
            pushed_at: r.get(6),
            last_pulled_at: r.get(7),
            status: crate::ImageStatus::parse(&r.get::<String, _>(9)).unwrap_or_default(),
            last_archived_at: r.get(10),
            last_activated_at: r.get(11),
            tags: Vec::new(),
        },
        tag: r.get(8),
    }
}

/// Record in `tx` whether a tag points at manifest `digest` (`manifests.tagged`); every write
/// that adds, moves or removes a tag calls it for each manifest it touched.
async fn refresh_tagged(tx: &mut Transaction<'static, $db>, repo_id: i64, digest: &str) -> Result<()> {
    sqlx::query(
        "UPDATE manifests SET tagged = CASE WHEN EXISTS \
         (SELECT 1 FROM tags t WHERE t.repo_id = $1 AND t.digest = $2) THEN 1 ELSE 0 END \
         WHERE repo_id = $1 AND digest = $2",
    )
    .bind(repo_id)
    .bind(digest)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Insert repository `r` with its resource tags and creation event in `tx` (`"created-by"` in
/// the event's detail when given); `None` (nothing written) when it exists.
async fn insert_repository(
    tx: &mut Transaction<'static, $db>,
    r: &NewRepository<'_>,
    created_by: Option<&str>,
    now: i64,
) -> Result<Option<RepositoryInfo>> {
    let id: Option<i64> = sqlx::query(
        "INSERT INTO repositories (account_id, region, name, created_at, image_tag_mutability, \
         mutability_exclusions, scan_on_push, encryption_type, kms_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (account_id, region, name) DO NOTHING RETURNING id",
    )
    .bind(&r.ns.account_id)
    .bind(&r.ns.region)
    .bind(r.name)
    .bind(now)
    .bind(r.image_tag_mutability)
    .bind(r.mutability_exclusions)
    .bind(r.scan_on_push)
    .bind(r.encryption_type)
    .bind(r.kms_key)
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| row.get(0));
    let Some(id) = id else { return Ok(None) };
    upsert_resource_tags(tx, id, r.tags).await?;
    let mut detail = serde_json::json!({
        "repository-name": r.name,
        "image-tag-mutability": r.image_tag_mutability,
        "scan-on-push": r.scan_on_push,
        "encryption-type": r.encryption_type,
    });
    if let Some(by) = created_by {
        detail["created-by"] = serde_json::json!(by);
    }
    append_event(tx, &r.ns.account_id, &r.ns.region, crate::events::kind::REPOSITORY_CREATE, Some(r.name), &detail, now)
        .await?;
    Ok(Some(RepositoryInfo {
        id,
        account_id: r.ns.account_id.clone(),
        region: r.ns.region.clone(),
        name: r.name.to_string(),
        created_at: now,
        image_tag_mutability: r.image_tag_mutability.to_string(),
        mutability_exclusions: r.mutability_exclusions.map(str::to_string),
        scan_on_push: r.scan_on_push,
        encryption_type: r.encryption_type.to_string(),
        kms_key: r.kms_key.map(str::to_string),
    }))
}

fn repo_info(r: $row) -> RepositoryInfo {
    RepositoryInfo {
        id: r.get(0),
        account_id: r.get(1),
        region: r.get(2),
        name: r.get(3),
        created_at: r.get(4),
        image_tag_mutability: r.get(5),
        mutability_exclusions: r.get(6),
        scan_on_push: r.get(7),
        encryption_type: r.get(8),
        kms_key: r.get(9),
    }
}

/// Add or overwrite resource tags of a repository.
async fn upsert_resource_tags(
    tx: &mut Transaction<'static, $db>,
    repo_id: i64,
    tags: &[(String, String)],
) -> Result<()> {
    for (k, v) in tags {
        sqlx::query(
            "INSERT INTO repository_tags (repo_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (repo_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(repo_id)
        .bind(k)
        .bind(v)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Lock a repository's row for the rest of the transaction and move its data epoch on; returns
/// its tag mutability and exclusion filters as committed, or `None` when the repository does not
/// exist. The first statement of every write to a repository's manifests and tags: concurrent
/// writes to one repository (from any node) queue on its row, writes to different
/// repositories never meet, and a concurrent deletion or mutability change is ordered before or
/// after the whole write.
async fn touch_repo(tx: &mut Transaction<'static, $db>, repo_id: i64) -> Result<Option<crate::portable::TouchedRepo>> {
    locked_repo(
        tx,
        repo_id,
        "UPDATE repositories SET data_epoch = data_epoch + 1 WHERE id = $1 \
         RETURNING image_tag_mutability, mutability_exclusions, account_id, region, name",
    )
    .await
}

/// Lock repository `repo_id`'s row like [`touch_repo`] (serialized with its writes), without
/// moving its data epoch: for writes that change nothing its tags and manifests resolve to
/// (scan records), so that no node's read caches are dropped for them.
async fn lock_repo(tx: &mut Transaction<'static, $db>, repo_id: i64) -> Result<Option<crate::portable::TouchedRepo>> {
    locked_repo(
        tx,
        repo_id,
        "UPDATE repositories SET data_epoch = data_epoch WHERE id = $1 \
         RETURNING image_tag_mutability, mutability_exclusions, account_id, region, name",
    )
    .await
}

async fn locked_repo(
    tx: &mut Transaction<'static, $db>,
    repo_id: i64,
    sql: &'static str,
) -> Result<Option<crate::portable::TouchedRepo>> {
    let row = sqlx::query(sql).bind(repo_id).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| crate::portable::TouchedRepo {
        mutability: r.get(0),
        exclusions: r.get(1),
        account_id: r.get(2),
        region: r.get(3),
        name: r.get(4),
    }))
}

/// Append an event about repository `repo` in `tx`.
async fn repo_event(
    tx: &mut Transaction<'static, $db>,
    repo: &crate::portable::TouchedRepo,
    kind: &str,
    detail: &serde_json::Value,
    now: i64,
) -> Result<()> {
    append_event(tx, &repo.account_id, &repo.region, kind, Some(&repo.name), detail, now).await
}

/// The tags pointing at a manifest, sorted.
async fn manifest_tags(tx: &mut Transaction<'static, $db>, repo_id: i64, digest: &str) -> Result<Vec<String>> {
    Ok(sqlx::query("SELECT name FROM tags WHERE repo_id = $1 AND digest = $2 ORDER BY name")
        .bind(repo_id)
        .bind(digest)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

/// Delete a manifest of the repository locked by `touch_repo` with its `tags`, appending the
/// image deletion events; `false` when it is absent.
/// Whether an index of the repository lists manifest `digest` (as committed, seen from `tx`).
async fn listed_by_index(tx: &mut Transaction<'static, $db>, repo_id: i64, digest: &str) -> Result<bool> {
    Ok(sqlx::query(crate::portable::LISTED_BY_INDEX_SQL).bind(repo_id).bind(digest).fetch_optional(&mut **tx).await?.is_some())
}

/// In `tx` (holding the repository's row): move `digest` from `from` to `to`, recording when it
/// was archived or restored; to the archive only if no index of the repository lists it.
async fn status_move(
    tx: &mut Transaction<'static, $db>,
    repo_id: i64,
    digest: &str,
    from: crate::ImageStatus,
    to: crate::ImageStatus,
    now: i64,
) -> Result<bool> {
    if to == crate::ImageStatus::Archived && listed_by_index(tx, repo_id, digest).await? {
        return Ok(false);
    }
    let sql = match to {
        crate::ImageStatus::Archived => {
            "UPDATE manifests SET image_status = $1, last_archived_at = $2 \
             WHERE repo_id = $3 AND digest = $4 AND image_status = $5"
        }
        crate::ImageStatus::Active => {
            "UPDATE manifests SET image_status = $1, last_activated_at = $2 \
             WHERE repo_id = $3 AND digest = $4 AND image_status = $5"
        }
        crate::ImageStatus::Activating => {
            "UPDATE manifests SET image_status = $1 WHERE repo_id = $3 AND digest = $4 AND image_status = $5 \
             AND $2 = $2"
        }
    };
    let n = sqlx::query(sql)
        .bind(to.as_str())
        .bind(now)
        .bind(repo_id)
        .bind(digest)
        .bind(from.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n == 1)
}

async fn delete_manifest_in(
    tx: &mut Transaction<'static, $db>,
    repo: &crate::portable::TouchedRepo,
    repo_id: i64,
    digest: &str,
    tags: &[String],
    now: i64,
) -> Result<bool> {
        let Some(row) = sqlx::query(
            "DELETE FROM manifests WHERE repo_id = $1 AND digest = $2 \
             RETURNING media_type, config_media_type, artifact_type",
        )
        .bind(repo_id)
        .bind(digest)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(false);
        };
        let (media_type, config, artifact): (String, Option<String>, Option<String>) = (row.get(0), row.get(1), row.get(2));
        let image = crate::events::ImageRef {
            repository: &repo.name,
            digest,
            media_type: Some(&media_type),
            artifact_media_type: config.as_deref().or(artifact.as_deref()),
        };
        if tags.is_empty() {
            repo_event(tx, repo, crate::events::kind::IMAGE_DELETE, &image.action("DELETE", None), now).await?;
        }
        for t in tags {
            repo_event(tx, repo, crate::events::kind::IMAGE_DELETE, &image.action("DELETE", Some(t)), now)
                .await?;
        }
    Ok(true)
}

async fn link(tx: &mut Transaction<'static, $db>, repo_id: i64, digest: &str, size: u64, now: i64) -> Result<()> {
    // The repository may have been deleted by another node since the caller looked it up.
    if sqlx::query("SELECT 1 FROM repositories WHERE id = $1").bind(repo_id).fetch_optional(&mut **tx).await?.is_none() {
        return Err(MetaError::RepositoryGone);
    }
    sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
        .bind(digest)
        .bind(size as i64)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (repo_id, digest) DO UPDATE SET created_at = excluded.created_at",
    )
    .bind(repo_id)
    .bind(digest)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
    };
}

pub(crate) use portable_store;

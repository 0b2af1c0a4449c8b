-- Listings of a repository's images page by keyset, with their filters in the database: images
-- are listed oldest first, by (push time, digest); `tagged` (1 when a tag points at the
-- manifest, maintained by every write that moves, adds or removes a tag) lets ECR's
-- `tagStatus` filter read only the matching images.
ALTER TABLE manifests ADD COLUMN tagged INTEGER NOT NULL DEFAULT 0;
UPDATE manifests SET tagged = 1
 WHERE EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = manifests.repo_id AND t.digest = manifests.digest);
CREATE INDEX manifests_by_push ON manifests(repo_id, pushed_at, digest);
CREATE INDEX manifests_by_tagged_push ON manifests(repo_id, tagged, pushed_at, digest);
-- A page's tags come sorted from the index; referrers of a subject page in push order.
DROP INDEX tags_by_digest;
CREATE INDEX tags_by_digest ON tags(repo_id, digest, name);
DROP INDEX manifests_by_subject;
CREATE INDEX manifests_by_subject ON manifests(repo_id, subject, pushed_at, digest) WHERE subject IS NOT NULL;

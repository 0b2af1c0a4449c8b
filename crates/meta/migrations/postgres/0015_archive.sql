-- ECR's archive storage class: an image is ACTIVE (standard storage), ARCHIVED (cannot be
-- pulled; listed only when asked for) or ACTIVATING (being restored). When it last went to the
-- archive and when it was last restored (epoch ms).
ALTER TABLE manifests ADD COLUMN image_status TEXT NOT NULL DEFAULT 'ACTIVE';
ALTER TABLE manifests ADD COLUMN last_archived_at BIGINT;
ALTER TABLE manifests ADD COLUMN last_activated_at BIGINT;

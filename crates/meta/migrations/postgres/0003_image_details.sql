-- What DescribeImages reports about each manifest.
ALTER TABLE manifests ADD COLUMN image_size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE manifests ADD COLUMN config_media_type TEXT;
ALTER TABLE manifests ADD COLUMN last_pulled_at BIGINT;

-- Encryption at rest (issue 13): the data key of each encrypted blob, wrapped by every key that
-- protects a repository holding the blob. `dek_id` (hex) is the id in the blob's storage
-- header; `key_arn` is a KMS key ARN, or 'berth:aes256' for the Berth-managed key of AES256
-- repositories; `wrapped` is a KMS ciphertext blob of the data key bound to (digest, dek_id).
CREATE TABLE blob_keys (
    digest      TEXT    NOT NULL,
    dek_id      TEXT    NOT NULL,
    key_arn     TEXT    NOT NULL,
    wrapped     BLOB   NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (digest, dek_id, key_arn)
);
CREATE INDEX blob_keys_by_key ON blob_keys(key_arn, digest, dek_id);

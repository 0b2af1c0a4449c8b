//! KMS-style key primitives, pure (no I/O): the operator's [`MasterKey`], key material sealed
//! under it, KMS ciphertext blobs ([`encrypt`] / [`decrypt`]) and data keys.
//!
//! # Layers
//! - The **master key** (32 bytes, supplied by the operator or generated once into the data dir)
//!   seals the material of every KMS key ([`MasterKey::seal`]) and derives the Berth-managed key of
//!   `AES256` repositories ([`MasterKey::aes256_material`]) and the data keys of upload areas
//!   ([`MasterKey::upload_key`]). Without it nothing stored can be decrypted.
//! - A **KMS key** has one or more versions of 32-byte material (rotation adds a version; old ones
//!   stay to decrypt what they encrypted). [`encrypt`] makes a self-describing ciphertext blob
//!   naming the key and the version, as AWS KMS's `CiphertextBlob` names its key, so `Decrypt`
//!   needs no key id.
//! - A **data key** encrypts one blob (storage's segmented AES-256-GCM); it is stored wrapped by
//!   the repository's KMS key as a ciphertext blob whose encryption context binds it to the blob.
//!
//! All ciphers are AES-256-GCM with random 96-bit nonces (ring), far below NIST's 2^32 messages per
//! key for the number of keys and data keys a registry makes.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const TAG_LEN: usize = 16;
/// Prefix of a KMS ciphertext blob and its format version.
const BLOB_MAGIC: &[u8; 3] = b"BK\x01";
/// Magic (3) + key uuid (16) + material version (4).
const BLOB_HEADER: usize = 3 + 16 + 4;
const SEAL_DOMAIN: &[u8] = b"berth-kms-seal-v1\0";

/// Key failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// The master key text is not 64 hex digits.
    #[error("the master key must be 64 hex digits (32 bytes)")]
    MasterKeyFormat,
    /// Not a ciphertext this registry made (too short, wrong prefix).
    #[error("malformed ciphertext")]
    Malformed,
    /// Wrong key, wrong context, or the ciphertext was altered.
    #[error("ciphertext failed authentication")]
    Decrypt,
    /// The system random number generator failed.
    #[error("random number generator failure")]
    Random,
}

/// Result alias.
pub type Result<T> = std::result::Result<T, KmsError>;

/// 32 bytes of key material, zeroized on drop.
pub type Material = Zeroizing<[u8; 32]>;

/// The operator's master key. `Debug` does not print it.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey { key: Zeroizing::new(bytes) }
    }

    /// Parse the text of a master key file: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<MasterKey> {
        let raw = Zeroizing::new(hex::decode(text.trim()).map_err(|_| KmsError::MasterKeyFormat)?);
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| KmsError::MasterKeyFormat)?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// A fresh random master key and its file text (64 hex digits and a newline).
    pub fn generate() -> Result<(MasterKey, Zeroizing<String>)> {
        let bytes = random_material()?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(*bytes)));
        Ok((MasterKey::from_bytes(*bytes), text))
    }

    /// A check value of the key (an HMAC of a fixed text, never the key): stored beside the data
    /// so that a node started with another master key refuses to run.
    pub fn check_value(&self) -> String {
        hex::encode(self.derive(b"berth master key check v1"))
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, self.key.as_slice()), label);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Seal `secret` (key material) under the master key, bound to `context` (e.g. the key's ARN
    /// and version): `nonce || ciphertext || tag`.
    pub fn seal(&self, context: &[u8], secret: &[u8]) -> Result<Vec<u8>> {
        let key = Zeroizing::new(self.derive(b"berth kms sealing key v1"));
        let mut aad = SEAL_DOMAIN.to_vec();
        aad.extend_from_slice(context);
        seal_with(&key, &aad, secret, Vec::new())
    }

    /// Open what [`MasterKey::seal`] made with the same `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let key = Zeroizing::new(self.derive(b"berth kms sealing key v1"));
        let mut aad = SEAL_DOMAIN.to_vec();
        aad.extend_from_slice(context);
        open_with(&key, &aad, sealed)
    }

    /// Open sealed 32-byte key material.
    pub fn open_material(&self, context: &[u8], sealed: &[u8]) -> Result<Material> {
        let raw = self.open(context, sealed)?;
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| KmsError::Malformed)?;
        Ok(Zeroizing::new(bytes))
    }

    /// The material of the Berth-managed key that `AES256` repositories use (ECR's SSE-S3
    /// equivalent): derived, never stored.
    pub fn aes256_material(&self) -> Material {
        Zeroizing::new(self.derive(b"berth aes256 repository key v1"))
    }

    /// The data key of upload area `upload_id` and its 16-byte id: deterministic, so every node
    /// sharing the master key derives the same pair without storing it.
    pub fn upload_key(&self, upload_id: &str) -> ([u8; 16], Material) {
        let mut label = b"berth upload data key v1\0".to_vec();
        label.extend_from_slice(upload_id.as_bytes());
        let key = Zeroizing::new(self.derive(&label));
        let mut id_label = b"berth upload data key id v1\0".to_vec();
        id_label.extend_from_slice(upload_id.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.derive(&id_label)[..16]);
        (id, key)
    }
}

/// 32 random bytes (new key material or a data key).
pub fn random_material() -> Result<Material> {
    let mut m = Zeroizing::new([0u8; 32]);
    SystemRandom::new().fill(m.as_mut_slice()).map_err(|_| KmsError::Random)?;
    Ok(m)
}

/// `len` random bytes (GenerateRandom, data keys of other lengths).
pub fn random_bytes(len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut m = Zeroizing::new(vec![0u8; len]);
    SystemRandom::new().fill(m.as_mut_slice()).map_err(|_| KmsError::Random)?;
    Ok(m)
}

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8], mut out: Vec<u8>) -> Result<Vec<u8>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| KmsError::Random)?);
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| KmsError::Random)?;
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[start..])
        .map_err(|_| KmsError::Random)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(KmsError::Malformed);
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| KmsError::Decrypt)?);
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("length checked");
    let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
    let plain_len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| KmsError::Decrypt)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Canonical bytes of an encryption context (sorted keys; lengths prefixed so no two contexts
/// share bytes).
fn context_bytes(context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// Encrypt `plaintext` under version `version` of key `key_uuid` (its 16 bytes) with
/// `material`, bound to `context` (KMS's encryption context: Decrypt must present the same one).
/// The blob is `BK\x01 || key uuid || version (u32 BE) || nonce || ciphertext || tag`; the
/// header is authenticated.
pub fn encrypt(
    key_uuid: [u8; 16],
    version: u32,
    material: &[u8; 32],
    plaintext: &[u8],
    context: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(BLOB_HEADER + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(BLOB_MAGIC);
    out.extend_from_slice(&key_uuid);
    out.extend_from_slice(&version.to_be_bytes());
    let mut aad = out.clone();
    aad.extend_from_slice(&context_bytes(context));
    seal_with(material, &aad, plaintext, out)
}

/// The key (uuid bytes) and material version a ciphertext blob names.
pub fn blob_key(blob: &[u8]) -> Result<([u8; 16], u32)> {
    if blob.len() < BLOB_HEADER + NONCE_LEN + TAG_LEN || &blob[..3] != BLOB_MAGIC {
        return Err(KmsError::Malformed);
    }
    let uuid: [u8; 16] = blob[3..19].try_into().expect("length checked");
    let version = u32::from_be_bytes(blob[19..23].try_into().expect("length checked"));
    Ok((uuid, version))
}

/// Decrypt a blob made by [`encrypt`] with the material of the version it names, under the
/// same `context`.
pub fn decrypt(material: &[u8; 32], blob: &[u8], context: &BTreeMap<String, String>) -> Result<Zeroizing<Vec<u8>>> {
    blob_key(blob)?;
    let mut aad = blob[..BLOB_HEADER].to_vec();
    aad.extend_from_slice(&context_bytes(context));
    open_with(material, &aad, &blob[BLOB_HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn master_key_text_round_trip_and_check_value() {
        let (k, text) = MasterKey::generate().unwrap();
        assert_eq!(text.len(), 65);
        let again = MasterKey::from_hex(&text).unwrap();
        assert_eq!(k.check_value(), again.check_value());
        let (other, _) = MasterKey::generate().unwrap();
        assert_ne!(k.check_value(), other.check_value());
        assert_eq!(MasterKey::from_hex("abcd").unwrap_err(), KmsError::MasterKeyFormat);
        assert_eq!(MasterKey::from_hex(&"zz".repeat(32)).unwrap_err(), KmsError::MasterKeyFormat);
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }

    #[test]
    fn seal_binds_context_and_key() {
        let k = MasterKey::from_bytes([7; 32]);
        let sealed = k.seal(b"arn:a", &[1; 32]).unwrap();
        assert_eq!(*k.open_material(b"arn:a", &sealed).unwrap(), [1; 32]);
        assert_eq!(k.open(b"arn:b", &sealed).unwrap_err(), KmsError::Decrypt);
        assert_eq!(MasterKey::from_bytes([8; 32]).open(b"arn:a", &sealed).unwrap_err(), KmsError::Decrypt);
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert_eq!(k.open(b"arn:a", &bad).unwrap_err(), KmsError::Decrypt);
        assert_eq!(k.open(b"arn:a", &sealed[..10]).unwrap_err(), KmsError::Malformed);
        // Random nonces: sealing twice differs.
        assert_ne!(sealed, k.seal(b"arn:a", &[1; 32]).unwrap());
    }

    #[test]
    fn derived_keys_are_deterministic_and_distinct() {
        let k = MasterKey::from_bytes([3; 32]);
        let (id1, key1) = k.upload_key("u-1");
        let (id1b, key1b) = k.upload_key("u-1");
        let (id2, key2) = k.upload_key("u-2");
        assert_eq!((id1, *key1), (id1b, *key1b));
        assert_ne!(id1, id2);
        assert_ne!(*key1, *key2);
        assert_ne!(*k.aes256_material(), *key1);
        assert_ne!(*k.aes256_material(), *MasterKey::from_bytes([4; 32]).aes256_material());
    }

    #[test]
    fn blob_names_its_key_and_checks_context() {
        let m = [9u8; 32];
        let c = ctx(&[("repo", "a"), ("digest", "sha256:1")]);
        let blob = encrypt([5; 16], 3, &m, b"secret", &c).unwrap();
        assert_eq!(blob_key(&blob).unwrap(), ([5; 16], 3));
        assert_eq!(decrypt(&m, &blob, &c).unwrap().as_slice(), b"secret");
        assert_eq!(decrypt(&m, &blob, &ctx(&[("repo", "a")])).unwrap_err(), KmsError::Decrypt);
        assert_eq!(decrypt(&[1; 32], &blob, &c).unwrap_err(), KmsError::Decrypt);
        // The header is authenticated: claiming another version fails.
        let mut other = blob.clone();
        other[22] ^= 1;
        assert_eq!(decrypt(&m, &other, &c).unwrap_err(), KmsError::Decrypt);
        assert_eq!(blob_key(b"nope").unwrap_err(), KmsError::Malformed);
        // Context keys and values cannot be shifted into each other.
        let blob2 = encrypt([5; 16], 3, &m, b"x", &ctx(&[("ab", "c")])).unwrap();
        assert_eq!(decrypt(&m, &blob2, &ctx(&[("a", "bc")])).unwrap_err(), KmsError::Decrypt);
    }

    proptest! {
        #[test]
        fn encrypt_decrypt_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..5000), v in any::<u32>(),
                                      k in "[a-z]{0,8}", val in "[a-z0-9]{0,8}") {
            let m = [v as u8; 32];
            let c = ctx(&[(&k, &val)]);
            let blob = encrypt([v as u8; 16], v, &m, &plain, &c).unwrap();
            let opened = decrypt(&m, &blob, &c).unwrap();
            prop_assert_eq!(opened.as_slice(), plain.as_slice());
        }
    }
}

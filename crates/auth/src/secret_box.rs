//! Secrets at rest: AES-256-GCM under a 32-byte server key, and constant-time comparison.
//!
//! # Format
//! [`SecretBox::seal`] returns `bsb1:` followed by unpadded URL-safe base64 of
//! `nonce (12 bytes) || ciphertext || tag (16 bytes)`. The nonce is random (system CSPRNG) for
//! every seal, so sealing the same secret twice gives different strings. The additional
//! authenticated data is `"berth-secret-box-v1\0" || aad`: the caller's `aad` binds a ciphertext
//! to its context (e.g. the access key id of the row holding it), so ciphertexts cannot be moved
//! between rows, and the version prefix cannot be swapped either.
//!
//! Random 96-bit nonces are safe for far more than the number of secrets a registry stores
//! (NIST's 2^32 messages per key). A future format (key rotation, key ids) gets a new prefix.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "bsb1:";
const AAD_DOMAIN: &[u8] = b"berth-secret-box-v1\0";
const TAG_LEN: usize = 16;

/// Why a sealed string could not be opened (or a secret not sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretBoxError {
    /// Not a `bsb1:` string of valid base64 with room for nonce and tag.
    #[error("malformed sealed secret")]
    Malformed,
    /// Wrong key, wrong `aad`, or the ciphertext was altered.
    #[error("sealed secret failed authentication")]
    Decrypt,
    /// The system random number generator failed (sealing only).
    #[error("random number generator failure")]
    Random,
}

/// Encrypts and decrypts secrets under one 32-byte key. `Debug` does not print the key.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key redacted>)")
    }
}

fn full_aad(aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(AAD_DOMAIN.len() + aad.len());
    v.extend_from_slice(AAD_DOMAIN);
    v.extend_from_slice(aad);
    v
}

impl SecretBox {
    /// A box using `key` (32 random bytes that the server keeps outside the database).
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 key is 32 bytes");
        Self { key: LessSafeKey::new(unbound), rng: SystemRandom::new() }
    }

    /// Encrypts `plaintext`, authenticating `aad` with it (pass the same `aad` to
    /// [`SecretBox::open`]; `b""` if there is no context). Returns a `bsb1:` string.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, SecretBoxError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretBoxError::Random)?;
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(full_aad(aad)),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| SecretBoxError::Malformed)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&buf)))
    }

    /// Decrypts a string made by [`SecretBox::seal`] with the same key and `aad`.
    ///
    /// Errors: [`SecretBoxError::Malformed`] for anything not in the format,
    /// [`SecretBoxError::Decrypt`] if authentication fails (any altered byte, other key or aad).
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, SecretBoxError> {
        let b64 = sealed.strip_prefix(PREFIX).ok_or(SecretBoxError::Malformed)?;
        let mut buf = URL_SAFE_NO_PAD.decode(b64).map_err(|_| SecretBoxError::Malformed)?;
        if buf.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretBoxError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&buf[..NONCE_LEN]).map_err(|_| SecretBoxError::Malformed)?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(full_aad(aad)), &mut buf[NONCE_LEN..])
            .map_err(|_| SecretBoxError::Decrypt)?;
        Ok(plaintext.to_vec())
    }
}

/// Whether `a == b`, in time that depends only on the lengths (a length mismatch returns
/// `false` at once: lengths are not secret here).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn round_trips() {
        let sb = SecretBox::new(&KEY);
        for pt in [&b""[..], b"x", b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &[0u8; 1000]] {
            let sealed = sb.seal(pt, b"AKIDEXAMPLE").unwrap();
            assert!(sealed.starts_with("bsb1:"));
            assert_eq!(sb.open(&sealed, b"AKIDEXAMPLE").unwrap(), pt);
        }
    }

    #[test]
    fn nonces_are_random() {
        let sb = SecretBox::new(&KEY);
        let a = sb.seal(b"same", b"").unwrap();
        let b = sb.seal(b"same", b"").unwrap();
        assert_ne!(a, b);
        assert_eq!(sb.open(&a, b"").unwrap(), sb.open(&b, b"").unwrap());
    }

    #[test]
    fn wrong_key_or_aad_fails() {
        let sealed = SecretBox::new(&KEY).seal(b"secret", b"row-1").unwrap();
        assert_eq!(SecretBox::new(&[8; 32]).open(&sealed, b"row-1"), Err(SecretBoxError::Decrypt));
        assert_eq!(SecretBox::new(&KEY).open(&sealed, b"row-2"), Err(SecretBoxError::Decrypt));
    }

    #[test]
    fn any_altered_byte_fails() {
        let sb = SecretBox::new(&KEY);
        let sealed = sb.seal(b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"ak").unwrap();
        let bytes = sealed.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'z', b'0', b'-', b'_', b':'] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut m = bytes.to_vec();
                m[i] = replacement;
                let m = String::from_utf8(m).unwrap();
                assert!(sb.open(&m, b"ak").is_err(), "position {i} -> {}", replacement as char);
            }
        }
        // Truncation and extension fail too.
        assert!(sb.open(&sealed[..sealed.len() - 1], b"ak").is_err());
        assert!(sb.open(&format!("{sealed}A"), b"ak").is_err());
    }

    #[test]
    fn malformed_inputs() {
        let sb = SecretBox::new(&KEY);
        for bad in ["", "bsb1:", "bsb2:AAAA", "bsb1:!!!!", "bsb1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(sb.open(bad, b""), Err(SecretBoxError::Malformed), "{bad}");
        }
        assert!(!format!("{sb:?}").contains('7'));
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"\x00", b"\x80"));
    }
}

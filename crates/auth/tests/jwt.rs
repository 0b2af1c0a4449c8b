//! OIDC web identity token verification: tokens signed here with `ring` (ES256 keys generated per
//! test, RS256 keys from test-only fixtures), the RFC 7515 examples, and the refusals.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_auth::jwt::{Expectations, Jwks, JwtError, MAX_TOKEN_LEN, provider_host, verify};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};

/// TEST-ONLY RSA keys (see fixtures/README.md).
const RSA_A: &[u8] = include_bytes!("fixtures/jwt-test-rsa2048-a.pk8");
const RSA_B: &[u8] = include_bytes!("fixtures/jwt-test-rsa2048-b.pk8");

const ISS: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "sts.amazonaws.com";
const SUB: &str = "repo:org/app:ref:refs/heads/main";
const NOW: i64 = 1_750_000_000;
const SKEW: i64 = 300;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

fn rsa_key(pkcs8: &[u8]) -> RsaKeyPair {
    RsaKeyPair::from_pkcs8(pkcs8).unwrap()
}

fn ec_jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    assert_eq!(point.len(), 65);
    assert_eq!(point[0], 0x04);
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
           "x": b64(&point[1..33]), "y": b64(&point[33..])})
}

fn rsa_jwk(key: &RsaKeyPair, kid: &str) -> Value {
    let public: RsaPublicKeyComponents<Vec<u8>> = key.public().into();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&public.n), "e": b64(&public.e)})
}

fn jwks(keys: &[Value]) -> Jwks {
    Jwks::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn signing_input(header: &Value, payload: &[u8]) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload))
}

fn sign_es_raw(key: &EcdsaKeyPair, header: &Value, payload: &[u8]) -> String {
    let input = signing_input(header, payload);
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

fn sign_es(key: &EcdsaKeyPair, kid: &str, claims: &Value) -> String {
    sign_es_raw(key, &json!({"alg": "ES256", "typ": "JWT", "kid": kid}), claims.to_string().as_bytes())
}

fn sign_rs_raw(key: &RsaKeyPair, header: &Value, payload: &[u8]) -> String {
    let input = signing_input(header, payload);
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
    format!("{input}.{}", b64(&sig))
}

fn sign_rs(key: &RsaKeyPair, kid: &str, claims: &Value) -> String {
    sign_rs_raw(key, &json!({"alg": "RS256", "typ": "JWT", "kid": kid}), claims.to_string().as_bytes())
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": SUB, "exp": NOW + 600, "iat": NOW - 10, "nbf": NOW - 10,
           "repository": "org/app", "ref": "refs/heads/main"})
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn expect() -> Expectations {
    Expectations::new(ISS, ["other-client", AUD])
}

/// Verifies, expecting a refusal; checks that neither the message nor `Debug` quote the token.
fn refuse(token: &str, jwks: &Jwks, expect: &Expectations, now: i64) -> JwtError {
    let err = verify(token, jwks, expect, now).expect_err("token must be refused");
    let shown = format!("{err} {err:?}");
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!shown.contains(part), "error {shown:?} quotes the token");
    }
    err
}

struct Es {
    key: EcdsaKeyPair,
    jwks: Jwks,
}

fn es() -> Es {
    let key = ec_key();
    let jwks = jwks(&[ec_jwk(&key, "ec-1")]);
    Es { key, jwks }
}

#[test]
fn es256_token_verifies_and_claims_are_typed() {
    let Es { key, jwks } = es();
    let token = sign_es(&key, "ec-1", &claims());
    let c = verify(&token, &jwks, &expect(), NOW).unwrap();
    assert_eq!(c.iss(), ISS);
    assert_eq!(c.sub(), SUB);
    assert_eq!(c.aud(), [AUD]);
    assert_eq!(c.exp(), NOW + 600);
    assert_eq!(c.iat(), Some(NOW - 10));
    assert_eq!(c.nbf(), Some(NOW - 10));
    assert_eq!(c.azp(), None);
    assert!(c.amr().is_empty());
    assert_eq!(c.raw()["repository"], "org/app");
    assert_eq!(c.into_raw(), *claims().as_object().unwrap());
}

#[test]
fn rs256_token_verifies() {
    let key = rsa_key(RSA_A);
    let jwks = jwks(&[rsa_jwk(&key, "rsa-a")]);
    let token = sign_rs(&key, "rsa-a", &claims());
    assert_eq!(verify(&token, &jwks, &expect(), NOW).unwrap().sub(), SUB);
}

#[test]
fn the_right_key_is_picked_from_a_mixed_set() {
    let (ec1, ec2, rsa) = (ec_key(), ec_key(), rsa_key(RSA_A));
    let set = jwks(&[rsa_jwk(&rsa, "rsa-a"), ec_jwk(&ec1, "ec-1"), ec_jwk(&ec2, "ec-2")]);
    assert_eq!(set.len(), 3);
    for token in [sign_es(&ec1, "ec-1", &claims()), sign_es(&ec2, "ec-2", &claims()), sign_rs(&rsa, "rsa-a", &claims())]
    {
        verify(&token, &set, &expect(), NOW).unwrap();
    }
    // Without a kid, every key of the algorithm's type is tried.
    let no_kid = sign_es_raw(&ec2, &json!({"alg": "ES256"}), claims().to_string().as_bytes());
    verify(&no_kid, &set, &expect(), NOW).unwrap();
    let no_kid = sign_rs_raw(&rsa, &json!({"alg": "RS256"}), claims().to_string().as_bytes());
    verify(&no_kid, &set, &expect(), NOW).unwrap();
    // JWKs without alg or use are fine too.
    let bare = json!({"kty": "EC", "crv": "P-256", "x": ec_jwk(&ec1, "")["x"], "y": ec_jwk(&ec1, "")["y"]});
    verify(
        &sign_es_raw(&ec1, &json!({"alg": "ES256"}), claims().to_string().as_bytes()),
        &jwks(&[bare]),
        &expect(),
        NOW,
    )
    .unwrap();
}

/// RFC 7515 A.2 (RS256) and A.3 (ES256): signatures made by other implementations verify (the
/// examples' claims have no `aud`, so they fail only there), and a flipped signature does not.
#[test]
fn rfc7515_examples_verify() {
    const PAYLOAD: &str =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    let rsa = jwks(&[json!({"kty": "RSA", "e": "AQAB",
        "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"})]);
    let rs_sig = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    let ec = jwks(&[json!({"kty": "EC", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})]);
    let es_sig = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    let joe = Expectations::new("joe", [AUD]);
    for (set, header, sig) in [(&rsa, "eyJhbGciOiJSUzI1NiJ9", rs_sig), (&ec, "eyJhbGciOiJFUzI1NiJ9", es_sig)] {
        let token = format!("{header}.{PAYLOAD}.{sig}");
        assert_eq!(refuse(&token, set, &joe, 1_300_819_000), JwtError::InvalidClaim("aud"));
        let flipped = format!("{header}.{PAYLOAD}.{}{}", if sig.starts_with('c') { 'd' } else { 'E' }, &sig[1..]);
        assert_eq!(refuse(&flipped, set, &joe, 1_300_819_000), JwtError::BadSignature);
    }
}

#[test]
fn alg_none_is_refused() {
    let Es { key, jwks } = es();
    let payload = b64(claims().to_string().as_bytes());
    let real = sign_es(&key, "ec-1", &claims());
    let real_sig = real.rsplit('.').next().unwrap();
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "kid": "ec-1"}).to_string().as_bytes());
        assert_eq!(refuse(&format!("{header}.{payload}."), &jwks, &expect(), NOW), JwtError::UnsupportedAlgorithm);
        assert_eq!(
            refuse(&format!("{header}.{payload}.{real_sig}"), &jwks, &expect(), NOW),
            JwtError::UnsupportedAlgorithm
        );
    }
}

/// The classic confusion: HS256 keyed with the RSA public key, which a naive verifier would use as
/// the HMAC secret.
#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let rsa = rsa_key(RSA_A);
    let jwk = rsa_jwk(&rsa, "rsa-a");
    let set = jwks(std::slice::from_ref(&jwk));
    let secrets: [Vec<u8>; 3] =
        [rsa.public().as_ref().to_vec(), jwk.to_string().into_bytes(), jwk["n"].to_string().into_bytes()];
    for secret in secrets {
        let input = signing_input(&json!({"alg": "HS256", "kid": "rsa-a"}), claims().to_string().as_bytes());
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret), input.as_bytes());
        let token = format!("{input}.{}", b64(tag.as_ref()));
        assert_eq!(refuse(&token, &set, &expect(), NOW), JwtError::UnsupportedAlgorithm);
    }
}

#[test]
fn other_algorithms_and_a_missing_alg_are_refused() {
    let Es { key, jwks } = es();
    let payload = claims().to_string();
    for header in [
        json!({"alg": "RS384", "kid": "ec-1"}),
        json!({"alg": "PS256", "kid": "ec-1"}),
        json!({"alg": "ES384", "kid": "ec-1"}),
        json!({"alg": "EdDSA", "kid": "ec-1"}),
        json!({"alg": "es256", "kid": "ec-1"}),
        json!({"alg": "ES256 ", "kid": "ec-1"}),
        json!({"alg": 256, "kid": "ec-1"}),
        json!({"alg": null, "kid": "ec-1"}),
        json!({"kid": "ec-1"}),
    ] {
        let token = sign_es_raw(&key, &header, payload.as_bytes());
        assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::UnsupportedAlgorithm, "{header}");
    }
}

#[test]
fn a_token_signed_by_another_key_with_the_same_kid_is_refused() {
    let Es { jwks: ec_set, .. } = es();
    let impostor = ec_key();
    assert_eq!(refuse(&sign_es(&impostor, "ec-1", &claims()), &ec_set, &expect(), NOW), JwtError::BadSignature);

    let rsa_set = jwks(&[rsa_jwk(&rsa_key(RSA_A), "rsa-a")]);
    let token = sign_rs(&rsa_key(RSA_B), "rsa-a", &claims());
    assert_eq!(refuse(&token, &rsa_set, &expect(), NOW), JwtError::BadSignature);
}

#[test]
fn tampering_is_refused() {
    let Es { key, jwks } = es();
    let token = sign_es(&key, "ec-1", &claims());
    let parts: Vec<&str> = token.split('.').collect();

    let forged_payload =
        b64(with(claims(), "sub", json!("repo:attacker/app:ref:refs/heads/main")).to_string().as_bytes());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(refuse(&forged, &jwks, &expect(), NOW), JwtError::BadSignature);

    let forged_header = b64(json!({"alg": "ES256", "kid": "ec-1", "typ": "at+jwt"}).to_string().as_bytes());
    let forged = format!("{forged_header}.{}.{}", parts[1], parts[2]);
    assert_eq!(refuse(&forged, &jwks, &expect(), NOW), JwtError::BadSignature);

    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert_eq!(refuse(&forged, &jwks, &expect(), NOW), JwtError::BadSignature);

    let truncated = format!("{}.{}.{}", parts[0], parts[1], b64(&sig[..63]));
    assert_eq!(refuse(&truncated, &jwks, &expect(), NOW), JwtError::BadSignature);
    let empty = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(refuse(&empty, &jwks, &expect(), NOW), JwtError::BadSignature);
}

#[test]
fn an_unknown_kid_is_refused() {
    let Es { key, jwks } = es();
    assert_eq!(refuse(&sign_es(&key, "ec-2", &claims()), &jwks, &expect(), NOW), JwtError::UnknownKey);
    let empty = Jwks::parse(br#"{"keys":[]}"#).unwrap();
    assert!(empty.is_empty());
    assert_eq!(refuse(&sign_es(&key, "ec-1", &claims()), &empty, &expect(), NOW), JwtError::UnknownKey);
}

/// An ES256 signature presented as RS256: the kid's key is EC, so nothing fits; with an RSA key
/// under the same kid (or no kid), the RSA check runs and fails.
#[test]
fn an_es256_token_whose_header_says_rs256_is_refused() {
    let Es { key, jwks: ec_only } = es();
    let payload = claims().to_string();
    let token = sign_es_raw(&key, &json!({"alg": "RS256", "kid": "ec-1"}), payload.as_bytes());
    assert_eq!(refuse(&token, &ec_only, &expect(), NOW), JwtError::UnknownKey);

    let mixed = jwks(&[ec_jwk(&key, "ec-1"), rsa_jwk(&rsa_key(RSA_A), "ec-1")]);
    assert_eq!(refuse(&token, &mixed, &expect(), NOW), JwtError::BadSignature);
    let no_kid = sign_es_raw(&key, &json!({"alg": "RS256"}), payload.as_bytes());
    assert_eq!(refuse(&no_kid, &ec_only, &expect(), NOW), JwtError::UnknownKey);
    assert_eq!(refuse(&no_kid, &mixed, &expect(), NOW), JwtError::BadSignature);
}

#[test]
fn a_key_is_used_only_for_its_declared_alg() {
    let key = ec_key();
    let mut jwk = ec_jwk(&key, "ec-1");
    jwk["alg"] = json!("RS256");
    let set = jwks(&[jwk]);
    assert_eq!(refuse(&sign_es(&key, "ec-1", &claims()), &set, &expect(), NOW), JwtError::UnknownKey);
}

#[test]
fn issuer_must_match_up_to_one_trailing_slash() {
    let Es { key, jwks } = es();
    let ok = |iss: &str, expected: &str| {
        let token = sign_es(&key, "ec-1", &with(claims(), "iss", json!(iss)));
        let mut e = expect();
        e.issuer = expected.to_owned();
        verify(&token, &jwks, &e, NOW)
    };
    ok(ISS, ISS).unwrap();
    ok(&format!("{ISS}/"), ISS).unwrap();
    ok(ISS, &format!("{ISS}/")).unwrap();
    for (iss, expected) in [
        ("https://evil.example.com", ISS),
        (&format!("{ISS}//"), ISS),
        (&format!("{ISS}/x"), ISS),
        ("https://TOKEN.actions.githubusercontent.com", ISS),
        ("http://token.actions.githubusercontent.com", ISS),
        ("", ISS),
    ] {
        assert_eq!(ok(iss, expected), Err(JwtError::IssuerMismatch), "{iss}");
    }
    for bad in [json!(null), json!(["https://token.actions.githubusercontent.com"]), json!(1)] {
        let token = sign_es(&key, "ec-1", &with(claims(), "iss", bad));
        assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::InvalidClaim("iss"));
    }
    let token = sign_es(&key, "ec-1", &without(claims(), "iss"));
    assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::InvalidClaim("iss"));
}

#[test]
fn audience_must_contain_a_client_id() {
    let Es { key, jwks } = es();
    let token = |aud: Value| sign_es(&key, "ec-1", &with(claims(), "aud", aud));
    verify(&token(json!(["a", AUD])), &jwks, &expect(), NOW).unwrap();
    verify(&token(json!("other-client")), &jwks, &expect(), NOW).unwrap();
    assert_eq!(refuse(&token(json!("sts.amazonaws.com.evil")), &jwks, &expect(), NOW), JwtError::AudienceMismatch);
    assert_eq!(refuse(&token(json!(["a", "b"])), &jwks, &expect(), NOW), JwtError::AudienceMismatch);
    assert_eq!(refuse(&token(json!([])), &jwks, &expect(), NOW), JwtError::AudienceMismatch);
    let no_clients = Expectations { audiences: vec![], ..expect() };
    assert_eq!(refuse(&token(json!(AUD)), &jwks, &no_clients, NOW), JwtError::AudienceMismatch);
    for bad in [json!([AUD, 1]), json!(1), json!({"aud": AUD}), json!(null)] {
        assert_eq!(refuse(&token(bad), &jwks, &expect(), NOW), JwtError::InvalidClaim("aud"));
    }
    let missing = sign_es(&key, "ec-1", &without(claims(), "aud"));
    assert_eq!(refuse(&missing, &jwks, &expect(), NOW), JwtError::InvalidClaim("aud"));
}

#[test]
fn expiry_allows_the_skew_and_no_more() {
    let Es { key, jwks } = es();
    let token = |exp: Value| sign_es(&key, "ec-1", &with(with(claims(), "exp", exp), "iat", json!(NOW - 3600)));
    verify(&token(json!(NOW - SKEW + 1)), &jwks, &expect(), NOW).unwrap();
    assert_eq!(refuse(&token(json!(NOW - SKEW)), &jwks, &expect(), NOW), JwtError::Expired);
    assert_eq!(refuse(&token(json!(NOW - 86_400)), &jwks, &expect(), NOW), JwtError::Expired);
    let strict = Expectations { max_skew_secs: 0, ..expect() };
    verify(&token(json!(NOW + 1)), &jwks, &strict, NOW).unwrap();
    assert_eq!(refuse(&token(json!(NOW)), &jwks, &strict, NOW), JwtError::Expired);
    // NumericDate may have a fraction (rounded down); a huge value does not overflow.
    verify(&token(json!(NOW as f64 + 0.5)), &jwks, &strict, NOW - 1).unwrap();
    verify(&token(json!(i64::MAX)), &jwks, &expect(), NOW).unwrap();
    assert_eq!(refuse(&token(json!(i64::MIN)), &jwks, &expect(), NOW), JwtError::Expired);
    for bad in [json!("1750000600"), json!(null), json!(1e300), json!(u64::MAX)] {
        assert_eq!(refuse(&token(bad), &jwks, &expect(), NOW), JwtError::InvalidClaim("exp"));
    }
    let missing = sign_es(&key, "ec-1", &without(claims(), "exp"));
    assert_eq!(refuse(&missing, &jwks, &expect(), NOW), JwtError::InvalidClaim("exp"));
}

#[test]
fn not_before_and_issued_at_allow_the_skew_and_no_more() {
    let Es { key, jwks } = es();
    let token = |name: &str, at: i64| sign_es(&key, "ec-1", &with(claims(), name, json!(at)));
    verify(&token("nbf", NOW + SKEW), &jwks, &expect(), NOW).unwrap();
    assert_eq!(refuse(&token("nbf", NOW + SKEW + 1), &jwks, &expect(), NOW), JwtError::NotYetValid);
    verify(&token("iat", NOW + SKEW), &jwks, &expect(), NOW).unwrap();
    assert_eq!(refuse(&token("iat", NOW + SKEW + 1), &jwks, &expect(), NOW), JwtError::IssuedInFuture);
    let none = sign_es(&key, "ec-1", &without(without(claims(), "nbf"), "iat"));
    verify(&none, &jwks, &expect(), NOW).unwrap();
    let bad = sign_es(&key, "ec-1", &with(claims(), "nbf", json!("soon")));
    assert_eq!(refuse(&bad, &jwks, &expect(), NOW), JwtError::InvalidClaim("nbf"));
    let bad = sign_es(&key, "ec-1", &with(claims(), "iat", json!(true)));
    assert_eq!(refuse(&bad, &jwks, &expect(), NOW), JwtError::InvalidClaim("iat"));
}

#[test]
fn lifetime_limit() {
    let Es { key, jwks } = es();
    let limited = Expectations { max_lifetime_secs: Some(3600), ..expect() };
    let token = |iat: i64, exp: i64| sign_es(&key, "ec-1", &with(with(claims(), "iat", json!(iat)), "exp", json!(exp)));
    verify(&token(NOW, NOW + 3600), &jwks, &limited, NOW).unwrap();
    assert_eq!(refuse(&token(NOW, NOW + 3601), &jwks, &limited, NOW), JwtError::LifetimeTooLong);
    verify(&token(NOW, NOW + 3601), &jwks, &expect(), NOW).unwrap();
    let no_iat = sign_es(&key, "ec-1", &with(without(claims(), "iat"), "exp", json!(NOW + 3601)));
    assert_eq!(refuse(&no_iat, &jwks, &limited, NOW), JwtError::LifetimeTooLong);
}

#[test]
fn sub_azp_and_amr_types() {
    let Es { key, jwks } = es();
    for bad in [json!(null), json!(1), json!([SUB])] {
        let token = sign_es(&key, "ec-1", &with(claims(), "sub", bad));
        assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::InvalidClaim("sub"));
    }
    let token = sign_es(&key, "ec-1", &without(claims(), "sub"));
    assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::InvalidClaim("sub"));
    let token = sign_es(&key, "ec-1", &with(claims(), "azp", json!(["x"])));
    assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::InvalidClaim("azp"));
    let token = sign_es(&key, "ec-1", &with(claims(), "amr", json!([1])));
    assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::InvalidClaim("amr"));
}

#[test]
fn garbage_and_oversized_tokens_are_refused() {
    let Es { key, jwks } = es();
    let token = sign_es(&key, "ec-1", &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let malformed = |t: &str| matches!(refuse(t, &jwks, &expect(), NOW), JwtError::Malformed(_));
    for t in [
        "",
        ".",
        "..",
        "...",
        "a.b",
        "a.b.c",
        "not a token",
        &format!("{token}."),
        &format!("{token}.{}", parts[2]),
        &format!("{}.{}", parts[0], parts[1]),
        &format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        &format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        &format!(" {token}"),
        &format!("{token}\n"),
        &format!("{}.{}.{}", parts[0].replace('J', "+"), parts[1], parts[2]),
        &format!(".{}.{}", parts[1], parts[2]),
    ] {
        assert!(malformed(t), "{t:?}");
    }
    // An empty payload is valid JWS syntax: it fails at the signature.
    let empty_payload = format!("{}..{}", parts[0], parts[2]);
    assert_eq!(refuse(&empty_payload, &jwks, &expect(), NOW), JwtError::BadSignature);
    for header in [b"not json".as_slice(), b"[\"alg\",\"ES256\"]", b"\"ES256\"", b"{\"alg\":\"ES256\""] {
        let t = format!("{}.{}.{}", b64(header), parts[1], parts[2]);
        assert_eq!(refuse(&t, &jwks, &expect(), NOW), JwtError::Malformed("the header is not a JSON object"));
    }
    let kid_number = sign_es_raw(&key, &json!({"alg": "ES256", "kid": 1}), b"{}");
    assert_eq!(refuse(&kid_number, &jwks, &expect(), NOW), JwtError::Malformed("the header's kid is not a string"));
    let crit =
        sign_es_raw(&key, &json!({"alg": "ES256", "kid": "ec-1", "crit": ["exp"]}), claims().to_string().as_bytes());
    assert!(matches!(refuse(&crit, &jwks, &expect(), NOW), JwtError::Malformed(_)));

    let padded = format!("{token}.{}", "A".repeat(MAX_TOKEN_LEN - token.len() - 1));
    assert_eq!(padded.len(), MAX_TOKEN_LEN);
    assert!(malformed(&padded), "at the limit: parsed, not refused for size");
    let over = format!("{padded}A");
    assert_eq!(refuse(&over, &jwks, &expect(), NOW), JwtError::TooLarge);
    assert_eq!(refuse(&"a".repeat(1 << 20), &jwks, &expect(), NOW), JwtError::TooLarge);
}

/// A validly signed payload that is not a JSON object is refused after the signature check.
#[test]
fn a_signed_non_json_payload_is_refused() {
    let Es { key, jwks } = es();
    let header = json!({"alg": "ES256", "kid": "ec-1"});
    for payload in [b"hello".as_slice(), b"", b"[1,2]", b"null", b"{\"sub\":", &[0xff, 0xfe]] {
        let token = sign_es_raw(&key, &header, payload);
        assert_eq!(refuse(&token, &jwks, &expect(), NOW), JwtError::Malformed("the payload is not a JSON object"));
    }
    let other = ec_key();
    assert_eq!(refuse(&sign_es_raw(&other, &header, b"hello"), &jwks, &expect(), NOW), JwtError::BadSignature);
}

#[test]
fn condition_values_for_a_github_token() {
    let Es { key, jwks } = es();
    let c = verify(&sign_es(&key, "ec-1", &claims()), &jwks, &expect(), NOW).unwrap();
    let host = provider_host(ISS);
    assert_eq!(host, "token.actions.githubusercontent.com");
    let expected = vec![
        ("token.actions.githubusercontent.com:aud".to_owned(), vec![AUD.to_owned()]),
        ("token.actions.githubusercontent.com:sub".to_owned(), vec![SUB.to_owned()]),
    ];
    assert_eq!(c.condition_values(host), expected);
    assert_eq!(c.condition_values(ISS), expected);
    assert_eq!(c.condition_values(&format!("{ISS}/")), expected);

    // azp replaces aud; amr is listed when present (a string or an array).
    let token = sign_es(&key, "ec-1", &with(with(claims(), "azp", json!("client-1")), "amr", json!("mfa")));
    let c = verify(&token, &jwks, &expect(), NOW).unwrap();
    assert_eq!(c.azp(), Some("client-1"));
    assert_eq!(c.amr(), ["mfa"]);
    assert_eq!(
        c.condition_values("example.com/oidc"),
        vec![
            ("example.com/oidc:aud".to_owned(), vec!["client-1".to_owned()]),
            ("example.com/oidc:sub".to_owned(), vec![SUB.to_owned()]),
            ("example.com/oidc:amr".to_owned(), vec!["mfa".to_owned()]),
        ]
    );
    let token = sign_es(&key, "ec-1", &with(with(claims(), "aud", json!([AUD, "x"])), "amr", json!(["pwd", "otp"])));
    let c = verify(&token, &jwks, &expect(), NOW).unwrap();
    assert_eq!(c.condition_values(host)[0].1, [AUD, "x"]);
    assert_eq!(c.condition_values(host)[2].1, ["pwd", "otp"]);
}

#[test]
fn provider_host_strips_scheme_and_trailing_slash() {
    assert_eq!(provider_host("https://example.com/oidc/"), "example.com/oidc");
    assert_eq!(provider_host("HTTPS://example.com"), "example.com");
    assert_eq!(provider_host("example.com/oidc"), "example.com/oidc");
    assert_eq!(provider_host("https://"), "");
    assert_eq!(provider_host("h"), "h");
    assert_eq!(provider_host("https://é.example"), "é.example");
}

#[test]
fn jwks_parse_keeps_signing_keys_and_skips_the_rest() {
    let (ec, rsa) = (ec_key(), rsa_key(RSA_A));
    let mut enc = ec_jwk(&ec, "enc");
    enc["use"] = json!("enc");
    let mut rs384 = rsa_jwk(&rsa, "rs384");
    rs384["alg"] = json!("RS384");
    let set = jwks(&[
        ec_jwk(&ec, "ec-1"),
        rsa_jwk(&rsa, "rsa-a"),
        enc,
        rs384,
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
    ]);
    assert_eq!(set.len(), 2);
    let debug = format!("{set:?}");
    assert!(debug.contains("ec-1") && debug.contains("rsa-a") && debug.contains("RS256"), "{debug}");
    assert!(!debug.contains(rsa_jwk(&rsa, "")["n"].as_str().unwrap()), "{debug}");

    // Padded base64url and a leading zero byte on n (both seen in the wild) are tolerated.
    let public: RsaPublicKeyComponents<Vec<u8>> = rsa.public().into();
    let mut n = vec![0];
    n.extend_from_slice(&public.n);
    let lenient =
        json!({"kty": "RSA", "kid": "rsa-a", "n": base64::engine::general_purpose::URL_SAFE.encode(&n), "e": "AQAB"});
    verify(&sign_rs(&rsa, "rsa-a", &claims()), &jwks(&[lenient]), &expect(), NOW).unwrap();
}

#[test]
fn jwks_parse_refuses_broken_documents() {
    let (ec, rsa) = (ec_key(), rsa_key(RSA_A));
    let invalid = |doc: &[u8]| match Jwks::parse(doc) {
        Err(JwtError::InvalidJwks(_)) => true,
        other => panic!("expected InvalidJwks, got {other:?}"),
    };
    for doc in [&b""[..], b"not json", b"[]", b"{}", b"{\"keys\":{}}", b"{\"keys\":[1]}", b"{\"keys\":[{}]}"] {
        assert!(invalid(doc));
    }
    let doc = |key: Value| json!({ "keys": [key] }).to_string().into_bytes();
    let tweak = |mut key: Value, name: &str, value: Value| {
        key[name] = value;
        doc(key)
    };
    let ec_good = ec_jwk(&ec, "ec-1");
    let rsa_good = rsa_jwk(&rsa, "rsa-a");
    assert!(invalid(&tweak(ec_good.clone(), "x", json!(b64(&[1; 31])))));
    assert!(invalid(&tweak(ec_good.clone(), "y", json!(b64(&[1; 33])))));
    assert!(invalid(&tweak(ec_good.clone(), "x", json!("not base64!"))));
    assert!(invalid(&tweak(ec_good.clone(), "x", json!(null))));
    assert!(invalid(&tweak(ec_good.clone(), "kid", json!(7))));
    assert!(invalid(&tweak(ec_good.clone(), "d", json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"))));
    assert!(invalid(&tweak(rsa_good.clone(), "d", json!("AQAB"))));
    assert!(invalid(&tweak(rsa_good.clone(), "n", json!(b64(&[0xff; 128])))), "1024-bit modulus");
    assert!(invalid(&tweak(rsa_good.clone(), "n", json!(b64(&[0xff; 1025])))), "8200-bit modulus");
    assert!(invalid(&tweak(rsa_good.clone(), "n", json!(""))));
    for e in ["", "AQ", "Ag", "AAAB", "AQAAAAAB"] {
        assert!(invalid(&tweak(rsa_good.clone(), "e", json!(e))), "e={e}");
    }
    let mut no_e = rsa_good.clone();
    no_e.as_object_mut().unwrap().remove("e");
    assert!(invalid(&doc(no_e)));
    // An 8192-bit modulus is the largest accepted; AQAB with leading zeros is still 65537.
    assert!(Jwks::parse(&tweak(rsa_good.clone(), "n", json!(b64(&[0xff; 1024])))).is_ok());
    assert!(Jwks::parse(&tweak(rsa_good.clone(), "e", json!("AAEAAQ"))).is_ok());

    let many: Vec<Value> = (0..=100).map(|i| ec_jwk(&ec, &format!("k{i}"))).collect();
    assert!(invalid(json!({ "keys": many }).to_string().as_bytes()));
    assert_eq!(jwks(&many[..100]).len(), 100);
    let mut huge = json!({"keys": [ec_good], "padding": "x".repeat(1 << 20)}).to_string().into_bytes();
    assert!(invalid(&huge));
    huge.truncate(1 << 20);
    assert!(invalid(&huge), "truncated: not JSON");
}

#[test]
fn sts_codes() {
    assert_eq!(JwtError::Expired.sts_code(), "ExpiredTokenException");
    assert_eq!(JwtError::TooLarge.sts_code(), "ValidationError");
    for err in [
        JwtError::Malformed("x"),
        JwtError::UnsupportedAlgorithm,
        JwtError::UnknownKey,
        JwtError::BadSignature,
        JwtError::InvalidClaim("sub"),
        JwtError::IssuerMismatch,
        JwtError::AudienceMismatch,
        JwtError::NotYetValid,
        JwtError::IssuedInFuture,
        JwtError::LifetimeTooLong,
        JwtError::InvalidJwks("x"),
    ] {
        assert_eq!(err.sts_code(), "InvalidIdentityToken", "{err:?}");
    }
    assert!(JwtError::IssuerMismatch.to_string().contains("issuer"));
    assert!(JwtError::AudienceMismatch.to_string().contains("audience"));
    assert!(JwtError::NotYetValid.to_string().contains("nbf"));
}

fn fixed_jwks() -> Jwks {
    // A fixed EC key (RFC 7515 A.3's) and RSA key, so the property tests need no key generation.
    let rsa = rsa_key(RSA_A);
    jwks(&[
        json!({"kty": "EC", "crv": "P-256", "kid": "k",
               "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
        rsa_jwk(&rsa, "k"),
    ])
}

proptest! {
    #[test]
    fn verify_never_panics_on_any_string(token in any::<String>(), now in any::<i64>()) {
        let _ = verify(&token, &fixed_jwks(), &expect(), now);
    }

    #[test]
    fn verify_never_panics_on_jws_shaped_strings(
        header in prop_oneof![
            Just(r#"{"alg":"ES256","kid":"k"}"#.to_owned()),
            Just(r#"{"alg":"RS256"}"#.to_owned()),
            "\\{\"alg\":\"[A-Za-z0-9]{0,6}\"(,\"kid\":[\"k0-9]{0,3})?\\}",
            any::<String>(),
        ],
        payload in prop_oneof![Just(claims().to_string()), "[ -~]{0,60}", any::<String>()],
        signature in proptest::collection::vec(any::<u8>(), 0..600),
        extra in "[A-Za-z0-9_.=-]{0,4}",
    ) {
        let token = format!("{}.{}.{}{extra}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(&signature));
        let result = verify(&token, &fixed_jwks(), &expect(), NOW);
        prop_assert!(result.is_err(), "a random signature verified");
    }

    #[test]
    fn jwks_parse_never_panics(doc in any::<Vec<u8>>()) {
        let _ = Jwks::parse(&doc);
    }

    #[test]
    fn jwks_parse_never_panics_on_jwk_shaped_documents(
        kty in prop_oneof![Just("RSA".to_owned()), Just("EC".to_owned()), Just("oct".to_owned()), "[A-Z]{0,3}"],
        members in proptest::collection::vec(
            (prop_oneof![Just("n"), Just("e"), Just("x"), Just("y"), Just("crv"), Just("use"), Just("alg"), Just("kid")],
             prop_oneof![
                 "[A-Za-z0-9_-]{0,400}".prop_map(Value::from),
                 Just(Value::from("P-256")),
                 Just(Value::from("AQAB")),
                 any::<i64>().prop_map(Value::from),
                 Just(Value::Null),
             ]),
            0..8,
        ),
    ) {
        let mut key = json!({"kty": kty});
        for (name, value) in members {
            key[name] = value;
        }
        let _ = Jwks::parse(json!({"keys": [key]}).to_string().as_bytes());
    }
}

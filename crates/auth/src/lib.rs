//! Authentication primitives for Berth.
//!
//! Everything here is pure: no I/O, no HTTP framework, no global clock. Callers pass the current
//! time (`now: SystemTime`) and look secrets up themselves, so every rule is testable with a fixed
//! clock and works the same on every node of a cluster.
//!
//! - [`sigv4`]: verify AWS Signature Version 4 (the `Authorization` header form and the presigned
//!   query-string form), with AWS's exception names and messages for every failure; presign URLs;
//!   sign requests in the header form (for Berth's own clients).
//! - [`token`]: the stateless data-plane registry token that `GetAuthorizationToken` returns
//!   (shaped like ECR's, HMAC-signed with a server key, bound to the principal, valid 12 hours).
//! - [`jwt`]: verify an OIDC web identity token (an RS256 or ES256 JWS) against the provider's
//!   JWK Set and check its claims, for STS `AssumeRoleWithWebIdentity`.
//! - [`secret_box`]: AES-256-GCM encryption of secrets at rest (e.g. secret access keys in the
//!   metadata DB) and a constant-time byte comparison.
//!
//! No function in this crate logs, and no `Debug` implementation prints a secret.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod jwt;
pub mod secret_box;
pub mod sigv4;
pub mod token;

pub use secret_box::constant_time_eq;

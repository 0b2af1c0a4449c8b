//! TEMPORARY until the KMS domain lands (replaced at merge).
use crate::{Error, Registry, Result};

pub(crate) struct UsableKey {
    pub uuid: [u8; 16],
    pub version: u32,
    pub material: berth_kms::Material,
}

pub(crate) struct MetaKeyMaterials;

#[async_trait::async_trait]
impl crate::encryption::KeyMaterials for MetaKeyMaterials {
    async fn material(&self, arn: &str, _version: u32) -> Result<berth_kms::Material> {
        Err(Error::Internal(format!("no KMS key {arn}")))
    }
}

impl Registry {
    pub(crate) async fn kms_key_for_encrypt(&self, arn: &str) -> Result<UsableKey> {
        Err(Error::Internal(format!("no KMS key {arn}")))
    }
}

impl Registry {
    pub(crate) async fn kms_key_for_repository(&self, _a: &str, _r: &str, k: Option<&str>) -> Result<String> {
        Err(Error::Internal(format!("no KMS key {k:?}")))
    }
}

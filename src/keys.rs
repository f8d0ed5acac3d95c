//! Bearer API keys: `prk_<key id>_<secret>`. The key id is public and
//! indexes the record; only SHA-256(secret) is stored, and the comparison
//! is constant-time. The secrets are 256 random bits, so a fast hash is the
//! right one (a password hash would only add latency to every request).

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{ApiKeyRecord, NewApiKey, Scope};

const PREFIX: &str = "prk_";
const KEY_ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A freshly made key: the clear text is shown once and then forgotten.
pub struct IssuedKey {
    pub clear: String,
    pub record: NewApiKey,
}

pub fn issue(name: &str, scopes: Vec<Scope>, phone_id: Option<String>, now_ms: i64) -> IssuedKey {
    let mut rng = rand::rng();
    let mut id = [0u8; KEY_ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret_hex = hex::encode(secret);
    IssuedKey {
        clear: format!("{PREFIX}{key_id}_{secret_hex}"),
        record: NewApiKey {
            key_id,
            name: name.to_string(),
            secret_hash: hash_secret(&secret_hex),
            scopes,
            phone_id,
            created_at_ms: now_ms,
        },
    }
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Split a presented key into (key id, secret); `None` if it is not shaped
/// like one of ours.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let well_formed = key_id.len() == KEY_ID_BYTES * 2
        && secret.len() == SECRET_BYTES * 2
        && key_id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((key_id, secret))
}

/// Does `secret` belong to `record`, and is the key still active?
pub fn verify(record: &ApiKeyRecord, secret: &str) -> bool {
    let matches: bool = hash_secret(secret).ct_eq(&record.secret_hash).into();
    matches && record.revoked_at_ms.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(issued: &IssuedKey) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: issued.record.key_id.clone(),
            name: issued.record.name.clone(),
            secret_hash: issued.record.secret_hash.clone(),
            scopes: issued.record.scopes.clone(),
            phone_id: None,
            created_at_ms: 0,
            revoked_at_ms: None,
        }
    }

    #[test]
    fn issued_keys_verify_and_tampered_ones_do_not() {
        let issued = issue("relay", vec![Scope::Send], None, 0);
        let (id, secret) = parse(&issued.clear).expect("well formed");
        assert_eq!(id, issued.record.key_id);
        let rec = record(&issued);
        assert!(verify(&rec, secret));
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        assert!(!verify(&rec, &wrong));
        let revoked = ApiKeyRecord {
            revoked_at_ms: Some(1),
            ..rec
        };
        assert!(!verify(&revoked, secret));
    }

    #[test]
    fn the_store_never_sees_the_secret() {
        let issued = issue("relay", vec![Scope::Send], None, 0);
        let (_, secret) = parse(&issued.clear).unwrap();
        assert_ne!(issued.record.secret_hash, secret.as_bytes());
        assert!(!format!("{:?}", issued.record).contains(secret));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "prk_",
            "Bearer x",
            "prk_zz_yy",
            "sk_0123456789abcdef_00",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}

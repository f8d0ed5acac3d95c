//! What the config file held when it was read, so that a reload can tell
//! the operator an edit is not applied: SIGHUP reads the relay pairing and
//! key again, not the config, and an edit that seems to take no effect,
//! unsaid, is worse than a word that it needs a restart.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The SHA-256 of a config file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDigest([u8; 32]);

impl ConfigDigest {
    pub fn of(bytes: &[u8]) -> ConfigDigest {
        ConfigDigest(Sha256::digest(bytes).into())
    }

    /// Whether the file at `path` now holds other bytes than these.
    pub async fn differs_from_file(&self, path: &Path) -> std::io::Result<bool> {
        let now = tokio::fs::read(path).await?;
        Ok(ConfigDigest::of(&now) != *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_differs_once_its_bytes_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phonerelay.toml");
        std::fs::write(&path, "[server]\n").unwrap();
        let digest = ConfigDigest::of(b"[server]\n");
        assert!(!digest.differs_from_file(&path).await.unwrap());
        std::fs::write(&path, "[server]\n# an edit\n").unwrap();
        assert!(digest.differs_from_file(&path).await.unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(digest.differs_from_file(&path).await.is_err());
    }
}

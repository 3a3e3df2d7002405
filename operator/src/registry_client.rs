//! Opens the registry from the command line: the Redis URL, and the password from a file when
//! one is given (a mounted Secret), so it never appears in the process list or the environment.

use std::{path::Path, sync::Arc};

use streamfleet_registry::{
    KeyHashSecret, KeyHasher, RegistryError, SharedOperatorRegistry,
    redis::{RedisConfig, RedisRegistry},
};

use crate::config::RegistryArgs;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("--redis-url is required")]
    MissingUrl,
    #[error("reading the Redis password file {path}: {source}")]
    PasswordFile { path: String, source: std::io::Error },
    #[error("connecting to the registry: {0}")]
    Registry(#[source] Box<RegistryError>),
    #[error("key-hash secret: {0}")]
    KeyHashSecret(String),
}

/// How records hash publish keys: with the key-hash secret from `--key-hash-secret-file` or
/// `STREAMFLEET_KEY_HASH_SECRET`, else the legacy SHA-256, said loudly (refusing to start would
/// take every stream of an upgraded deployment that has no secret yet off the air). Reads a
/// file: call it off the async workers.
pub fn key_hasher(args: &RegistryArgs) -> Result<KeyHasher, ConnectError> {
    let secret =
        KeyHashSecret::from_file_or_env(args.key_hash_secret_file.as_deref()).map_err(ConnectError::KeyHashSecret)?;
    match &secret {
        Some(s) => {
            tracing::info!(key_hash_secret_id = %s.id(), "records store publish keys as HMAC-SHA256 under the key-hash secret")
        }
        None => tracing::warn!(
            "no key-hash secret (--key-hash-secret-file / STREAMFLEET_KEY_HASH_SECRET): records store the unsalted SHA-256 of each publish key, which anyone who reads Redis can test guesses against offline; give the operator and every edge the same secret (docs/registry.md, \"Key hashes\")"
        ),
    }
    Ok(KeyHasher::new(secret))
}

/// The password in a file, without the trailing newline editors and `echo` add.
pub fn read_password(path: &Path) -> Result<String, ConnectError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|source| ConnectError::PasswordFile { path: path.display().to_string(), source })
}

/// Connects to the Redis registry named by the flags.
pub async fn connect(args: &RegistryArgs) -> Result<SharedOperatorRegistry, ConnectError> {
    Ok(Arc::new(connect_redis(args).await?))
}

/// Like [`connect`], keeping the Redis-specific operations (`end_quarantine`).
pub async fn connect_redis(args: &RegistryArgs) -> Result<RedisRegistry, ConnectError> {
    let url = args.redis_url.as_deref().ok_or(ConnectError::MissingUrl)?;
    let password = args.redis_password_file.as_deref().map(read_password).transpose()?;
    let mut cfg = RedisConfig::new(url);
    cfg.password = password;
    // A Redis that is down is not fatal here (calls fail as `unavailable` and are retried); a
    // bad URL or refused credentials are.
    RedisRegistry::connect(cfg).await.map_err(|e| ConnectError::Registry(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_lose_their_trailing_newline() {
        let path = std::env::temp_dir().join(format!("sf-op-pw-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(read_password(&path).expect("read"), "s3cret");
        std::fs::remove_file(&path).expect("cleanup");
        assert!(matches!(read_password(&path), Err(ConnectError::PasswordFile { .. })));
    }
}

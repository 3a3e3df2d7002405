//! Opens the registry from the command line: the Redis URL, and the password from a file when
//! one is given (a mounted Secret), so it never appears in the process list or the environment.

use std::path::Path;

use streamfleet_registry::{RegistryError, SharedRegistry};

use crate::config::RegistryArgs;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("--redis-url is required")]
    MissingUrl,
    #[error("reading the Redis password file {path}: {source}")]
    PasswordFile { path: String, source: std::io::Error },
    #[error("connecting to the registry: {0}")]
    Registry(#[source] Box<RegistryError>),
}

/// The password in a file, without the trailing newline editors and `echo` add.
pub fn read_password(path: &Path) -> Result<String, ConnectError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|source| ConnectError::PasswordFile { path: path.display().to_string(), source })
}

/// Connects to the Redis registry named by the flags.
pub async fn connect(args: &RegistryArgs) -> Result<SharedRegistry, ConnectError> {
    let url = args.redis_url.as_deref().ok_or(ConnectError::MissingUrl)?;
    let password = args.redis_password_file.as_deref().map(read_password).transpose()?;
    let _ = (url, password);
    Err(ConnectError::Registry(Box::new(RegistryError::Unavailable("the Redis backend is not built yet".into()))))
}

//! The daemon's configuration: one TOML file, unknown keys rejected, every
//! default a named constant, relative paths resolved against the file.

mod defaults;
mod digest;
mod load;
mod model;
mod validate;

pub use defaults::*;
pub use digest::ConfigDigest;
#[cfg(test)]
pub use load::in_dir_with_state;
pub use load::{
    ConfigError, LoadedConfig, find_config_path, load_from_path, load_from_str, read_failed_for_now,
};
pub use model::*;
pub use validate::{is_relay_url, validate, validate_with};

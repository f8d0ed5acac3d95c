use super::{Cli, load_config};
use crate::config::validate;
use crate::exit::ExitError;

/// Print every problem (key and reason), or the effective config with
/// secrets masked. Reads the config and the files it names; writes nothing.
pub fn run(cli: &Cli) -> Result<(), ExitError> {
    let loaded = load_config(cli)?;
    let issues = validate(&loaded);
    if !issues.is_empty() {
        for issue in &issues {
            eprintln!("{issue}");
        }
        return Err(ExitError::Config(format!(
            "{} problem(s) in {}",
            issues.len(),
            loaded.path.display()
        )));
    }
    let effective = toml::to_string_pretty(&loaded.config)
        .map_err(|e| ExitError::Runtime(format!("cannot print the config: {e}")))?;
    println!(
        "# {} is valid; effective config (secrets masked):",
        loaded.path.display()
    );
    println!(
        "# relative paths resolve against {}",
        loaded.base_dir.display()
    );
    print!("{effective}");
    Ok(())
}

//! Checks a plugin configuration with the filter's own parser: `check_config < config.json`.
//! Exit 0 when valid; otherwise the same message the filter logs, and exit 1. Variables named by
//! `token_env` are looked up in this process's environment, as the VM would.

use anyhow::Context;
use kube_oidc_discovery::config::Config;
use std::io::Read;
use std::process::ExitCode;

fn check() -> anyhow::Result<Config> {
    let mut json = Vec::new();
    std::io::stdin()
        .read_to_end(&mut json)
        .context("reading the configuration from stdin")?;
    Ok(Config::from_json(&json, |var| std::env::var(var).ok())?)
}

fn main() -> ExitCode {
    match check() {
        Ok(cfg) => {
            println!("{cfg:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

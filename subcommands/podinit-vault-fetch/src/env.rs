//! The `BAO_*` / `VAULT_*` variables, read the way OpenBao's and Vault's own clients read them:
//! `BAO_X` first when set, then `VAULT_X`; an empty value counts as unset; booleans parse like
//! Go's `strconv.ParseBool`, and anything else is an error (so `VAULT_SKIP_VERIFY=no` or a typo
//! never turns verification off, unlike vaultrs's own reader).
//!
//! This is the one place podinit reads variables outside clap: clap's `env` takes one name,
//! and these come in pairs. Every flag's help names its pair.

use std::ffi::OsString;

use podinit_core::Error;

/// The value of `BAO_<name>`, else `VAULT_<name>`, with the variable it came from.
pub(crate) fn get(name: &str) -> Option<(String, String)> {
    ["BAO_", "VAULT_"].iter().find_map(|prefix| {
        let var = format!("{prefix}{name}");
        let value = read(&var)?;
        Some((var, value.to_string_lossy().into_owned()))
    })
}

/// A `BAO_`/`VAULT_` boolean; `None` when neither is set.
pub(crate) fn get_bool(name: &str) -> Result<Option<bool>, Error> {
    match get(name) {
        None => Ok(None),
        Some((var, value)) => parse_bool(&value)
            .map(Some)
            .ok_or_else(|| Error::usage(format!("{var}='{value}' is not a boolean")).with_hint("use true or false (or 1, 0, t, f)")),
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

// The pair lookup above is why this module exists (see the module docs).
#[allow(clippy::disallowed_methods)]
fn read(var: &str) -> Option<OsString> {
    std::env::var_os(var).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_booleans_only() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        for bad in ["", "yes", "no", "on", "2", "tRUE", " true"] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }
}

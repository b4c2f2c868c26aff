//! Which HTTP redirects podinit follows: the one policy every applet's HTTP client applies.
//!
//! - Never from `https` to `http` anywhere in the chain: a downgrade would put the request,
//!   its credentials and the answer (a secret, an artifact) in the clear.
//! - At most [`Policy::max`] hops.
//! - A request that carries credentials (a Vault token, a bearer token, operator-given header
//!   values, a login body) goes only to the origin (scheme, host, port) the operator named,
//!   with one exception for Vault: [`Credentials::VaultTls`] follows a redirect to another
//!   host when the whole chain is TLS (a standby pointing at the active node), which is what
//!   Vault's own client does — minus the downgrade, which it refuses too.
//!
//! The check is a pure function of the chain, so each HTTP client plugs it into its own
//! redirect hook (reqwest's `Policy::custom`) and tests cover it without a server.

use url::Url;

/// What a request carries that must not reach a host the operator did not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing secret: any origin, as long as the chain never downgrades.
    None,
    /// Credentials: the original origin only.
    SameOrigin,
    /// A Vault token or login: the original origin, or another one reached over TLS only.
    VaultTls,
}

/// A redirect policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Most redirects followed for one request.
    pub max: usize,
    /// What the request carries.
    pub credentials: Credentials,
}

impl Policy {
    /// Vault's own client follows one redirect (a standby to the active node).
    pub const VAULT: Self = Self { max: 1, credentials: Credentials::VaultTls };

    /// Whether to follow a redirect to `next`, given the URLs requested so far (`chain[0]` is
    /// the one the operator named). `Err` says why not, in words for the operator.
    pub fn check(&self, chain: &[Url], next: &Url) -> Result<(), String> {
        let Some(first) = chain.first() else { return Ok(()) };
        let shown = crate::redact::url(next);
        if chain.len() > self.max {
            return Err(format!("refusing to follow more than {} redirect(s) (the next is to {shown})", self.max));
        }
        if !matches!(next.scheme(), "http" | "https") {
            return Err(format!("refusing a redirect to {shown}: not http(s)"));
        }
        if next.scheme() == "http" && chain.iter().any(|u| u.scheme() == "https") {
            return Err(format!("refusing a redirect from https to http ({shown}): it would send the request in the clear"));
        }
        let same_origin = next.origin() == first.origin();
        match self.credentials {
            Credentials::None => Ok(()),
            _ if same_origin => Ok(()),
            Credentials::VaultTls if next.scheme() == "https" && chain.iter().all(|u| u.scheme() == "https") => Ok(()),
            Credentials::SameOrigin | Credentials::VaultTls => Err(format!(
                "refusing a redirect to {shown}: the request carries credentials and that is not the host given ({})",
                first.origin().ascii_serialization()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn the_policy_table() {
        let cases: &[(Policy, &[&str], &str, bool)] = &[
            // Vault: one redirect, to another host only over TLS; never a downgrade.
            (Policy::VAULT, &["https://vault:8200/v1/x"], "https://active:8200/v1/x", true),
            (Policy::VAULT, &["https://vault:8200/v1/x"], "http://active:8200/v1/x", false),
            (Policy::VAULT, &["https://vault:8200/v1/x"], "http://vault:8200/v1/x", false),
            (Policy::VAULT, &["http://vault:8200/v1/x"], "http://vault:8200/v1/y", true),
            (Policy::VAULT, &["http://vault:8200/v1/x"], "http://evil:8200/v1/x", false),
            (Policy::VAULT, &["http://vault:8200/v1/x"], "https://evil/v1/x", false),
            (Policy::VAULT, &["https://vault/v1/x", "https://a/v1/x"], "https://b/v1/x", false),
            // Headers from the operator: the named origin only (another port is another origin).
            (Policy { max: 10, credentials: Credentials::SameOrigin }, &["https://api/h"], "https://api/ready", true),
            (Policy { max: 10, credentials: Credentials::SameOrigin }, &["https://api/h"], "https://api:8443/ready", false),
            (Policy { max: 10, credentials: Credentials::SameOrigin }, &["https://api/h"], "https://cdn/ready", false),
            // Nothing secret: anywhere but down to http.
            (Policy { max: 10, credentials: Credentials::None }, &["http://a/"], "https://b/", true),
            (Policy { max: 10, credentials: Credentials::None }, &["https://a/", "https://b/"], "http://c/", false),
            (Policy { max: 10, credentials: Credentials::None }, &["https://a/"], "ftp://c/", false),
            (Policy { max: 1, credentials: Credentials::None }, &["http://a/", "http://b/"], "http://c/", false),
        ];
        for (policy, chain, next, allowed) in cases {
            let chain: Vec<Url> = chain.iter().map(|s| u(s)).collect();
            let verdict = policy.check(&chain, &u(next));
            assert_eq!(verdict.is_ok(), *allowed, "{policy:?} {chain:?} -> {next}: {verdict:?}");
        }
    }

    #[test]
    fn refusals_never_show_secrets() {
        let err = Policy::VAULT.check(&[u("https://vault/")], &u("http://x/?token=hunter2")).unwrap_err();
        assert!(err.contains("https to http") && !err.contains("hunter2"), "{err}");
    }
}

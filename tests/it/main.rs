//! The one integration-test binary (`cargo test --test it`).
//!
//! Tests run the built `podinit` with a cleared environment (`support::cmd`) against real
//! things: the kernel's /proc/sys in fresh namespaces, and containers started through
//! testcontainers from images built here from `images/` (`support::docker`). There is no
//! skip switch: a test that needs Docker fails when Docker is missing; `scripts/test`
//! installs and starts the engine.
//!
//! Environment switches:
//! - `PODINIT_STATIC_BIN`: the static binary to put in images (else built on demand into
//!   `target/static`).
//! - `PODINIT_TEST_BIN`: the binary the command-line tests run (else the one cargo built).
//!
//! Service images (PostgreSQL, MariaDB, OpenBao, Garage) are built by the scripts under `images/test/`,
//! which the harness calls; each is cached by a hash of its build context.

#![allow(unreachable_pub, reason = "test support items are pub for the test modules; the crate is a test binary")]
#![allow(clippy::disallowed_methods, reason = "the bans guard product code; tests write fixtures and pause plainly")]

mod support;

mod certs;
mod cli;
mod dropin;
mod faults;
mod git_clone;
mod hostile;
mod http_get;
mod kube;
mod manifests;
mod migrate;
mod pods;
mod render;
mod s3_get;
mod sysctl;
mod template_go;
mod vault_fetch;
mod vault_templates;
mod volume;
mod wait_for;
mod wait_for_protocols;

//! Test support: the command builder and the Docker gate with its image builder.

pub mod cmd;
pub mod docker;

pub use cmd::{Outcome, Podinit};

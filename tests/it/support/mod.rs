//! Test support: the command builder, hand-made tar archives, the Docker gate with its image builder, and the
//! database services.

pub mod archive;
pub mod cmd;
pub mod docker;
pub mod fault;
pub mod git;
pub mod jwt;
pub mod kube;
pub mod pod;
pub mod s3;
pub mod services;
pub mod web;

pub use cmd::{Outcome, Podinit};

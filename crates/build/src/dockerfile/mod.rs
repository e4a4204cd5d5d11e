//! The Dockerfile parser: text in, typed instructions out, with BuildKit's semantics
//! (`frontend/dockerfile/parser` and `instructions`).
//!
//! Entry points: [`parse`] (or [`parse_bytes`]) gives a [`Dockerfile`]; [`Stages::analyze`]
//! groups it into stages and answers which stages a `--target` needs. Errors name the
//! file, line and column and say what was expected; no input makes the parser panic.
//!
//! Module map: `lines` (physical to logical lines, directives, continuations),
//! `words` (keyword, flags and argument splitting), `flags` (per-instruction flag
//! checks), `instructions` (keyword table and simple instructions), `transfer`
//! (COPY/ADD), `run` and `mount` (RUN), `healthcheck`, `heredoc`, `stages`, `ast` (the
//! tree) and `error`.

mod ast;
mod directives;
mod error;
mod flags;
mod healthcheck;
mod heredoc;
mod instructions;
mod lines;
mod mount;
mod parser;
mod run;
mod stages;
mod suggest;
mod transfer;
mod words;

pub use ast::*;
pub use error::{Error, ErrorKind};
pub use lines::MAX_LINE_BYTES;
pub use mount::MountError;
pub use parser::{parse, parse_bytes, MAX_DOCKERFILE_BYTES};
pub use stages::{Base, Stage, Stages, TargetError};

#[cfg(test)]
mod tests;

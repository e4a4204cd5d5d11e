//! `swarmctl image build`: the front end, everything about a build that can be decided from
//! text alone, and the builder that runs it on a node.
//!
//! - [`dockerfile`]: parses a Dockerfile into typed instructions (parser directives,
//!   continuations, heredocs, flags, JSON and shell forms), groups them into stages and
//!   computes which stages a `--target` needs.
//! - [`shell`]: Docker's variable substitution (`$VAR`, `${VAR:-default}`, quotes, escapes)
//!   that the builder applies to the instructions that expand variables.
//! - [`ignore`]: the `.dockerignore` matcher a build-context walker asks which paths to
//!   leave out and which directories it may skip.
//! - [`builder`]: runs a Dockerfile's stages with this node's runtime and image store (the
//!   only module that does IO).
//!
//! Invariant: outside [`builder`], this crate does no IO and never panics on input. Every function is a
//! deterministic function of its arguments; inputs are bounded (see the `MAX_*` constants)
//! and an error never echoes more than a short snippet of the input back.
#![forbid(unsafe_code)]

pub mod builder;
pub mod dockerfile;
pub mod ignore;
pub mod shell;

pub use dockerfile::{parse, Dockerfile, Error, ErrorKind, Instruction, Node};
pub use ignore::{IgnoreError, IgnoreMatcher};
pub use shell::{expand, expand_words, ExpandError, Lexer};

/// The largest build context a node accepts (the tar the CLI sends): 2 GiB. The CLI refuses
/// a bigger one before sending it; the node stops reading a stream that goes past it.
pub const MAX_CONTEXT_BYTES: u64 = 2 << 30;

/// Shortens a piece of input quoted in an error message, so an error never echoes an
/// unbounded input back.
pub(crate) fn snippet(text: &str) -> String {
    const MAX_CHARS: usize = 48;
    if text.chars().count() <= MAX_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX_CHARS).collect();
    short.push('…');
    short
}

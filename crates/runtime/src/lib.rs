//! `swarm-runtime`: the native Linux container runtime of swarm.
//!
//! It owns everything between "here is an image and a process spec" and "a hardened process runs
//! in its own namespaces, cgroup and overlayfs rootfs":
//!
//! - [`image`]: an OCI image layout store (content-addressed blobs, tags, import/export, safe
//!   layer unpacking, garbage collection);
//! - [`spec`]: the runtime-level container spec and the image-config merge rules;
//! - [`runtime`]: the lifecycle API used by the agent (create, start, wait, signal, stop, remove,
//!   exec, logs, list, stats, re-adoption); with feature `tokio`, `asyncwait` waits for any
//!   number of containers on a pidfd each, without a thread each;
//! - [`init`]: the re-exec'd init mode (`maybe_run_init`) that does all setup single-threaded;
//! - [`cgroup`], [`caps`], [`seccomp`], [`mounts`]: the kernel-facing building blocks;
//!   [`privilege`]: `--privileged`, `--device` and the seccomp mode, checked;
//! - The runc-compatible command line lives in the `swarm-runtime` binary (`src/bin_cli/cli.rs`),
//!   not in this library.
//!
//! This is the only crate of the workspace allowed to use `unsafe`; every block carries a
//! `// SAFETY:` comment.
#![allow(unsafe_code)]

#[cfg(feature = "tokio")]
pub mod asyncwait;
pub mod caps;
pub mod cgroup;
pub mod image;
pub mod init;
pub mod logs;
pub mod mounts;
pub mod nftables;
pub mod oci;
pub mod options;
pub mod paths;
pub mod privilege;
pub mod runtime;
pub mod seccomp;
pub mod selfexe;
pub mod spec;
pub mod state;
pub mod sys;
pub mod timefmt;
pub mod userns;

pub use image::{ImageConfig, ImageError, ImageStore};
pub use runtime::{
    ContainerInfo, ContainerStats, ContainerStatus, ExecOutput, ExecSpec, ExitStatus, Runtime,
    RuntimeConfig, RuntimeError,
};
pub use spec::{
    ContainerSpec, MountSpec, NetworkMode, ProcessOverrides, ProcessSpec, Resources, RootfsSpec,
    StdioMode,
};

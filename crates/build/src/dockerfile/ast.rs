//! The typed syntax tree a Dockerfile parses into.
//!
//! Words are kept as written (quotes and `$VAR` references included) wherever Docker
//! expands variables later: the builder runs them through [`crate::shell::Lexer::expand`]
//! with the build's variables, which also removes the quotes. [`Instruction::expands_variables`]
//! says which instructions that applies to.

use std::time::Duration;

pub use crate::dockerfile::mount::{Mount, MountType, RunMount, Sharing};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The file name the caller passed; errors found later (stages) name it too.
    pub file: String,
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
}

/// The parser directives at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# escape=`: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# syntax=`: the frontend image the file asks for (recorded, not acted on).
    pub syntax: Option<String>,
    /// `# check=`: build-check configuration (recorded, not acted on).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// Something legal but worth telling the user about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// One instruction and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub instruction: Instruction,
    /// First physical line (1-based).
    pub line: usize,
    /// Column of the instruction keyword (1-based).
    pub column: usize,
    /// Last physical line, including continuation lines and heredoc bodies.
    pub end_line: usize,
    /// The logical line as written (continuations joined, heredoc bodies not included).
    pub original: String,
}

/// One Dockerfile instruction with its flags and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(FromArgs),
    /// `ARG name[=default] ...`
    Arg(Vec<ArgDecl>),
    /// `ENV key=value ...` (or the legacy `ENV key value`).
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Workdir(String),
    /// `USER user[:group]`, as written; split it with [`split_user`] after expansion.
    User(String),
    Copy(CopyArgs),
    Add(AddArgs),
    Run(RunArgs),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// `EXPOSE port[/proto] ...`, as written; check each with [`parse_port`] after expansion.
    Expose(Vec<String>),
    Volume(Vec<String>),
    Healthcheck(Healthcheck),
    StopSignal(String),
    /// `SHELL ["executable", "arg", ...]` (JSON form only).
    Shell(Vec<String>),
    Onbuild(Onbuild),
    /// Deprecated but accepted; a warning is recorded.
    Maintainer(String),
}

impl Instruction {
    /// The keyword, upper-case.
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Arg(_) => "ARG",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Shell(_) => "SHELL",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }

    /// Whether the builder substitutes variables in this instruction's words (Docker's
    /// list: ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, plus ARG
    /// defaults as BuildKit does). RUN, CMD, ENTRYPOINT and SHELL leave `$` to the
    /// command's shell; ONBUILD triggers are expanded when they run in a child build.
    pub fn expands_variables(&self) -> bool {
        matches!(
            self,
            Instruction::Add(_)
                | Instruction::Copy(_)
                | Instruction::Env(_)
                | Instruction::Expose(_)
                | Instruction::From(_)
                | Instruction::Label(_)
                | Instruction::StopSignal(_)
                | Instruction::User(_)
                | Instruction::Volume(_)
                | Instruction::Workdir(_)
                | Instruction::Arg(_)
        )
    }
}

/// Free-function form of [`Instruction::expands_variables`].
pub fn expands_variables(instruction: &Instruction) -> bool {
    instruction.expands_variables()
}

/// `FROM [--platform=..] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromArgs {
    /// As written; may reference global ARGs (`FROM ${BASE}`) or an earlier stage name.
    pub image: String,
    /// The stage name, lower-cased as Docker does.
    pub stage_name: Option<String>,
    pub platform: Option<String>,
}

impl FromArgs {
    /// `FROM scratch`: an empty base.
    pub fn is_scratch(&self) -> bool {
        self.image == "scratch"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// The two forms of a command: shell form runs through the stage's SHELL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `RUN make all`: one string for `SHELL` (default `/bin/sh -c`).
    Shell(String),
    /// `RUN ["make", "all"]`: executed directly.
    Exec(Vec<String>),
}

/// `COPY [--from] [--chown] [--chmod] [--link] [--parents] [--exclude]... src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// A stage name, a stage index or an image.
    pub from: Option<String>,
    pub parents: bool,
    pub transfer: Transfer,
}

/// `ADD [--chown] [--chmod] [--link] [--checksum] [--keep-git-dir] [--unpack] [--exclude]... src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddArgs {
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    /// `None`: Docker's default (unpack local archives, not remote ones).
    pub unpack: Option<bool>,
    pub transfer: Transfer,
}

/// What COPY and ADD share: sources, destination and ownership flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    /// Written as a JSON array (`COPY ["a b", "/dst/"]`).
    pub json_form: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path in the build context (or the `--from` stage/image), as written.
    Path(String),
    /// `COPY <<EOF /dest`: a file whose content is the heredoc body.
    Heredoc(Heredoc),
}

/// A heredoc body attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// `3<<EOF`: the file descriptor (0 when not given).
    pub fd: u32,
    /// `<<-EOF`: leading tabs were stripped from every body line.
    pub chomp: bool,
    /// False when the delimiter was quoted: the body must not be variable-expanded.
    pub expand: bool,
    /// The body, each line ending in its newline; without the terminator line.
    pub content: String,
}

/// `RUN [--mount=..]... [--network=..] [--security=..] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub command: CommandLine,
    /// Heredocs named on the line, in order (`RUN <<EOF` runs the first as a script).
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<RunMount>,
    pub network: Option<Network>,
    pub security: Option<Security>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Cmd(HealthcheckCmd),
}

/// `HEALTHCHECK [--interval] [--timeout] [--start-period] [--start-interval] [--retries] CMD ..`.
/// A duration of `0` means "Docker's default", stored as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckCmd {
    pub command: CommandLine,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// `ONBUILD <instruction>`: stored in the image, run by builds that use it as a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    pub trigger: Box<Instruction>,
    /// The trigger as Docker stores it in the image config (heredoc bodies appended).
    pub expression: String,
}

/// Splits an expanded `USER` value into user and optional group.
pub fn split_user(user: &str) -> (&str, Option<&str>) {
    match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    }
}

/// An expanded `EXPOSE` word: a port or port range and its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub start: u16,
    pub end: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// Why an `EXPOSE` word is not a port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port {word:?}: expected <port>[/tcp|udp|sctp] or <start>-<end>[/proto] with ports 1-65535")]
pub struct PortError {
    pub word: String,
}

/// Parses an expanded `EXPOSE` word such as `80`, `53/udp` or `8000-8010/tcp`.
pub fn parse_port(word: &str) -> Result<PortSpec, PortError> {
    let fail = || PortError {
        word: crate::snippet(word),
    };
    let (ports, protocol) = match word.split_once('/') {
        None => (word, Protocol::Tcp),
        Some((ports, proto)) => (ports, parse_protocol(proto).ok_or_else(fail)?),
    };
    let (start, end) = match ports.split_once('-') {
        None => (ports, ports),
        Some(range) => range,
    };
    let port = |text: &str| text.parse::<u16>().ok().filter(|p| *p > 0);
    match (port(start), port(end)) {
        (Some(start), Some(end)) if start <= end => Ok(PortSpec {
            start,
            end,
            protocol,
        }),
        _ => Err(fail()),
    }
}

fn parse_protocol(text: &str) -> Option<Protocol> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        _ => None,
    }
}

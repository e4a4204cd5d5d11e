//! The one error type of the Dockerfile front end: where (`file:line:column`, 1-based) and
//! what was wrong or expected.
//!
//! Columns point at the offending token (a flag, an argument, a heredoc marker); problems
//! with a whole instruction (unknown instruction, missing arguments, order of
//! instructions) point at the instruction's keyword.

use crate::dockerfile::mount::MountError;
use crate::shell::ExpandError;

/// A Dockerfile could not be parsed or its stages could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {kind}")]
pub struct Error {
    /// The file name the caller passed, e.g. `Dockerfile`.
    pub file: String,
    /// 1-based physical line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(file: &str, line: usize, column: usize, kind: ErrorKind) -> Self {
        Error {
            file: file.to_string(),
            line,
            column,
            kind,
        }
    }
}

/// What was wrong. Quoted input is shortened, so messages stay short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("the Dockerfile is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("line is {size} bytes; the limit is {limit} bytes: split it with line continuations")]
    LineTooLong { size: usize, limit: usize },
    #[error("the {name} parser directive is given twice; keep only one")]
    DuplicateDirective { name: String },
    #[error("invalid escape directive {value:?}: the escape character must be \\ or `")]
    InvalidEscape { value: String },
    #[error("the file has no instructions: a Dockerfile starts with FROM <image>")]
    NoInstructions,
    #[error("no FROM instruction: add FROM <image> after the ARG lines")]
    NoFrom,
    #[error("{instruction} before the first FROM: only ARG may come before FROM")]
    BeforeFrom { instruction: &'static str },
    #[error("unknown instruction {name:?}{}", did_you_mean(.suggestion))]
    UnknownInstruction {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("unknown flag --{flag} for {instruction}{}; {instruction} {accepted}", did_you_mean_flag(.suggestion))]
    UnknownFlag {
        instruction: &'static str,
        flag: String,
        suggestion: Option<&'static str>,
        accepted: String,
    },
    #[error("--{flag} is given twice for {instruction}; give it once")]
    DuplicateFlag {
        instruction: &'static str,
        flag: &'static str,
    },
    #[error("--{flag} needs a value: write --{flag}=<value>")]
    FlagNeedsValue { flag: &'static str },
    #[error("--{flag} expects true or false, not {value:?}")]
    FlagNotBool { flag: &'static str, value: String },
    #[error("{instruction} is missing arguments; usage: {usage}")]
    MissingArgument {
        instruction: &'static str,
        usage: &'static str,
    },
    #[error("unexpected argument {word:?} for {instruction}; usage: {usage}")]
    UnexpectedArgument {
        instruction: &'static str,
        word: String,
        usage: &'static str,
    },
    #[error("invalid stage name {name:?}: it must start with a letter and contain only letters, digits, '-', '_' and '.'")]
    InvalidStageName { name: String },
    #[error(
        "{instruction} JSON array must contain only strings, e.g. [\"/bin/sh\", \"-c\", \"make\"]"
    )]
    NotStringArray { instruction: &'static str },
    #[error("{instruction} needs the JSON array form, e.g. {instruction} [\"/bin/sh\", \"-c\"]")]
    JsonRequired { instruction: &'static str },
    #[error("{instruction} expects <name>=<value> pairs, but {word:?} has no '='")]
    MissingEquals {
        instruction: &'static str,
        word: String,
    },
    #[error("{instruction} {key} needs a value: write {instruction} {key}=<value>")]
    MissingValue {
        instruction: &'static str,
        key: String,
    },
    #[error("{instruction} name is empty: write {instruction} <name>=<value>")]
    BlankName { instruction: &'static str },
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger { trigger: &'static str },
    #[error("unknown HEALTHCHECK type {value:?}: expected CMD or NONE")]
    HealthcheckType { value: String },
    #[error("HEALTHCHECK NONE takes no arguments or flags")]
    HealthcheckNone,
    #[error("HEALTHCHECK CMD needs a command, e.g. HEALTHCHECK CMD curl -f http://localhost/")]
    HealthcheckCommand,
    #[error("invalid --{flag}={value:?}: {reason}")]
    Duration {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid --retries={value:?}: expected a whole number from 0 to 2147483647")]
    Retries { value: String },
    #[error("invalid --mount: {0}")]
    Mount(MountError),
    #[error("unsupported --network={value:?}: expected default, none or host")]
    Network { value: String },
    #[error("unsupported --security={value:?}: expected sandbox or insecure")]
    Security { value: String },
    #[error(
        "{instruction} cannot take a heredoc as its destination; put the destination path last"
    )]
    HeredocDestination { instruction: &'static str },
    #[error("unterminated heredoc: add a line containing only {name} to end it")]
    UnterminatedHeredoc { name: String },
    #[error("VOLUME path is empty")]
    EmptyVolume,
    #[error("--from={value:?} uses a variable, which is not supported: define a stage with FROM ${{VAR}} AS <name> and copy from that stage")]
    VariableFrom { value: String },
    #[error(
        "duplicate stage name {name:?}: already used on line {line}; rename one of the stages"
    )]
    DuplicateStage { name: String, line: usize },
    #[error("from {reference:?} refers to stage {index}, but stages are numbered 0 to {last}")]
    StageIndex {
        reference: String,
        index: usize,
        last: usize,
    },
    #[error("from {reference:?} refers to a stage that is not defined before this one; a stage can only use earlier stages")]
    LaterStage { reference: String },
    #[error("cannot expand {what}: {reason}")]
    Expand {
        what: &'static str,
        reason: ExpandError,
    },
    #[error("FROM {image:?} expands to an empty image name: give the build argument a value")]
    BlankBase { image: String },
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

fn did_you_mean_flag(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean --{s}?)"))
        .unwrap_or_default()
}

/// An error inside one logical line, at a byte offset of that line's text; the parser
/// turns it into an [`Error`] with line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At {
    pub offset: usize,
    pub kind: ErrorKind,
}

impl At {
    pub(crate) fn new(offset: usize, kind: ErrorKind) -> Self {
        At { offset, kind }
    }
}

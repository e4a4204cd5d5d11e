//! From a split instruction line ([`Head`]) to a typed [`Instruction`]: the keyword table
//! and the parsers of the instructions that need no module of their own (FROM, ARG, ENV,
//! LABEL, WORKDIR, USER, STOPSIGNAL, MAINTAINER, EXPOSE, VOLUME, CMD, ENTRYPOINT, SHELL,
//! ONBUILD). COPY/ADD, RUN and HEALTHCHECK live in their own modules.

use crate::dockerfile::ast::{
    ArgDecl, CommandLine, FromArgs, Heredoc, Instruction, KeyValue, Onbuild,
};
use crate::dockerfile::error::{At, ErrorKind};
use crate::dockerfile::flags::{self, Flags, Spec};
use crate::dockerfile::words::{self, is_separator, json_array, ArrayForm, Head, Word};
use crate::dockerfile::{healthcheck, run, suggest, transfer};

/// The instruction keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
}

const KEYWORDS: [(&str, Keyword, &str); 18] = [
    ("ADD", Keyword::Add, "ADD [flags] <src>... <dest>"),
    ("ARG", Keyword::Arg, "ARG <name>[=<default>] ..."),
    (
        "CMD",
        Keyword::Cmd,
        "CMD [\"executable\", \"arg\"] or CMD <command>",
    ),
    ("COPY", Keyword::Copy, "COPY [flags] <src>... <dest>"),
    (
        "ENTRYPOINT",
        Keyword::Entrypoint,
        "ENTRYPOINT [\"executable\", \"arg\"] or ENTRYPOINT <command>",
    ),
    ("ENV", Keyword::Env, "ENV <key>=<value> ..."),
    ("EXPOSE", Keyword::Expose, "EXPOSE <port>[/<protocol>] ..."),
    (
        "FROM",
        Keyword::From,
        "FROM [--platform=<platform>] <image> [AS <name>]",
    ),
    (
        "HEALTHCHECK",
        Keyword::Healthcheck,
        "HEALTHCHECK [flags] CMD <command> or HEALTHCHECK NONE",
    ),
    ("LABEL", Keyword::Label, "LABEL <key>=<value> ..."),
    ("MAINTAINER", Keyword::Maintainer, "MAINTAINER <name>"),
    ("ONBUILD", Keyword::Onbuild, "ONBUILD <instruction>"),
    (
        "RUN",
        Keyword::Run,
        "RUN [flags] <command> or RUN [flags] [\"executable\", \"arg\"]",
    ),
    ("SHELL", Keyword::Shell, "SHELL [\"executable\", \"arg\"]"),
    ("STOPSIGNAL", Keyword::StopSignal, "STOPSIGNAL <signal>"),
    ("USER", Keyword::User, "USER <user>[:<group>]"),
    (
        "VOLUME",
        Keyword::Volume,
        "VOLUME <path>... or VOLUME [\"<path>\", ...]",
    ),
    ("WORKDIR", Keyword::Workdir, "WORKDIR <path>"),
];

const NAMES: [&str; 18] = {
    let mut names = [""; 18];
    let mut i = 0;
    while i < KEYWORDS.len() {
        names[i] = KEYWORDS[i].0;
        i += 1;
    }
    names
};

impl Keyword {
    /// The keyword for a word, ASCII case-insensitive.
    pub(crate) fn lookup(word: &str) -> Option<Keyword> {
        KEYWORDS
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(word))
            .map(|(_, kw, _)| *kw)
    }

    pub(crate) fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(_, kw, _)| *kw == self)
            .map_or("", |(name, _, _)| name)
    }

    pub(crate) fn usage(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(_, kw, _)| *kw == self)
            .map_or("", |(_, _, usage)| usage)
    }
}

/// Parses one instruction; `docs` are the heredoc bodies read after its line.
pub(crate) fn parse(h: &Head<'_>, docs: &[Heredoc], escape: char) -> Result<Instruction, At> {
    let Some(kw) = Keyword::lookup(h.keyword) else {
        let name = crate::snippet(h.keyword);
        let suggestion = suggest::closest(h.keyword, &NAMES);
        return Err(At::new(
            h.keyword_offset,
            ErrorKind::UnknownInstruction { name, suggestion },
        ));
    };
    match kw {
        Keyword::From => from(h),
        Keyword::Arg => arg(h, escape),
        Keyword::Env => Ok(Instruction::Env(pairs(h, kw, escape)?)),
        Keyword::Label => Ok(Instruction::Label(pairs(h, kw, escape)?)),
        Keyword::Workdir => Ok(Instruction::Workdir(whole(h, kw)?)),
        Keyword::User => Ok(Instruction::User(whole(h, kw)?)),
        Keyword::StopSignal => Ok(Instruction::StopSignal(whole(h, kw)?)),
        Keyword::Maintainer => Ok(Instruction::Maintainer(whole(h, kw)?)),
        Keyword::Copy => transfer::copy(h, docs),
        Keyword::Add => transfer::add(h, docs),
        Keyword::Run => run::run(h, docs),
        Keyword::Cmd => Ok(Instruction::Cmd(
            no_flags(h, kw).and_then(|_| command_line(h, kw))?,
        )),
        Keyword::Entrypoint => Ok(Instruction::Entrypoint(
            no_flags(h, kw).and_then(|_| command_line(h, kw))?,
        )),
        Keyword::Expose => expose(h),
        Keyword::Volume => volume(h),
        Keyword::Healthcheck => healthcheck::healthcheck(h),
        Keyword::Shell => shell(h),
        Keyword::Onbuild => onbuild(h, docs, escape),
    }
}

/// "`kw` is missing arguments", pointing at the keyword.
pub(crate) fn missing(h: &Head<'_>, kw: Keyword) -> At {
    At::new(
        h.keyword_offset,
        ErrorKind::MissingArgument {
            instruction: kw.name(),
            usage: kw.usage(),
        },
    )
}

fn unexpected(word: &Word, kw: Keyword) -> At {
    let word_text = crate::snippet(&word.text);
    At::new(
        word.offset,
        ErrorKind::UnexpectedArgument {
            instruction: kw.name(),
            word: word_text,
            usage: kw.usage(),
        },
    )
}

fn no_flags(h: &Head<'_>, kw: Keyword) -> Result<(), At> {
    Flags::parse(&[], &h.flags, kw.name()).map(|_| ())
}

/// Arguments that may be a JSON array or whitespace-separated words; true when JSON.
pub(crate) fn list_args(h: &Head<'_>, kw: Keyword) -> Result<(Vec<Word>, bool), At> {
    match json_array(h.args) {
        ArrayForm::Strings(items) => {
            let words = items
                .into_iter()
                .map(|text| Word {
                    text,
                    offset: h.args_offset,
                })
                .collect();
            Ok((words, true))
        }
        ArrayForm::NotStrings => Err(At::new(
            h.args_offset,
            ErrorKind::NotStringArray {
                instruction: kw.name(),
            },
        )),
        ArrayForm::NotArray => Ok((words::split_whitespace(h.args, h.args_offset), false)),
    }
}

/// Exec form (a JSON array of strings) or shell form (the argument text).
pub(crate) fn command_line(h: &Head<'_>, kw: Keyword) -> Result<CommandLine, At> {
    match json_array(h.args) {
        ArrayForm::Strings(items) => Ok(CommandLine::Exec(items)),
        ArrayForm::NotStrings => Err(At::new(
            h.args_offset,
            ErrorKind::NotStringArray {
                instruction: kw.name(),
            },
        )),
        ArrayForm::NotArray if h.args.is_empty() => Err(missing(h, kw)),
        ArrayForm::NotArray => Ok(CommandLine::Shell(h.args.to_string())),
    }
}

const FROM_FLAGS: &[Spec] = &[flags::text("platform")];

fn from(h: &Head<'_>) -> Result<Instruction, At> {
    let flags = Flags::parse(FROM_FLAGS, &h.flags, "FROM")?;
    let args = words::split_whitespace(h.args, h.args_offset);
    let stage_name = match args.as_slice() {
        [] => return Err(missing(h, Keyword::From)),
        [_] => None,
        [_, as_word, name] if as_word.text.eq_ignore_ascii_case("as") => Some(stage_name(name)?),
        [_, second, _] => return Err(unexpected(second, Keyword::From)),
        [_, second] => return Err(unexpected(second, Keyword::From)),
        [_, _, _, fourth, ..] => return Err(unexpected(fourth, Keyword::From)),
    };
    let platform = flags.owned("platform");
    Ok(Instruction::From(FromArgs {
        image: args[0].text.clone(),
        stage_name,
        platform,
    }))
}

/// Stage names are lower-cased and must match `^[a-z][a-z0-9-_.]*$`.
fn stage_name(word: &Word) -> Result<String, At> {
    let name = word.text.to_ascii_lowercase();
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !valid {
        let name = crate::snippet(&word.text);
        return Err(At::new(word.offset, ErrorKind::InvalidStageName { name }));
    }
    Ok(name)
}

fn arg(h: &Head<'_>, escape: char) -> Result<Instruction, At> {
    no_flags(h, Keyword::Arg)?;
    let words = words::quoted_words(h.args, h.args_offset, escape);
    if words.is_empty() {
        return Err(missing(h, Keyword::Arg));
    }
    let decl = |w: &Word| match w.text.split_once('=') {
        Some(("", _)) => Err(At::new(
            w.offset,
            ErrorKind::BlankName { instruction: "ARG" },
        )),
        Some((name, default)) => Ok(ArgDecl {
            name: name.to_string(),
            default: Some(default.to_string()),
        }),
        None => Ok(ArgDecl {
            name: w.text.clone(),
            default: None,
        }),
    };
    Ok(Instruction::Arg(
        words.iter().map(decl).collect::<Result<_, _>>()?,
    ))
}

/// ENV and LABEL: `key=value ...`, or the legacy `key value` (value = rest of the line).
fn pairs(h: &Head<'_>, kw: Keyword, escape: char) -> Result<Vec<KeyValue>, At> {
    no_flags(h, kw)?;
    let words = words::quoted_words(h.args, h.args_offset, escape);
    let Some(first) = words.first() else {
        return Err(missing(h, kw));
    };
    if !first.text.contains('=') {
        return legacy_pair(h, kw).map(|pair| vec![pair]);
    }
    let pair = |w: &Word| match w.text.split_once('=') {
        None => Err(At::new(
            w.offset,
            ErrorKind::MissingEquals {
                instruction: kw.name(),
                word: crate::snippet(&w.text),
            },
        )),
        Some(("", _)) => Err(At::new(
            w.offset,
            ErrorKind::BlankName {
                instruction: kw.name(),
            },
        )),
        Some((key, value)) => Ok(KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        }),
    };
    words.iter().map(pair).collect()
}

fn legacy_pair(h: &Head<'_>, kw: Keyword) -> Result<KeyValue, At> {
    let key_end = h.args.find(is_separator).unwrap_or(h.args.len());
    let (key, rest) = h.args.split_at(key_end);
    let value = rest.trim_start_matches(is_separator);
    if value.is_empty() {
        let key = crate::snippet(key);
        return Err(At::new(
            h.args_offset,
            ErrorKind::MissingValue {
                instruction: kw.name(),
                key,
            },
        ));
    }
    Ok(KeyValue {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// WORKDIR, USER, STOPSIGNAL, MAINTAINER: the whole argument text is one value.
fn whole(h: &Head<'_>, kw: Keyword) -> Result<String, At> {
    no_flags(h, kw)?;
    if h.args.is_empty() {
        return Err(missing(h, kw));
    }
    Ok(h.args.to_string())
}

fn expose(h: &Head<'_>) -> Result<Instruction, At> {
    no_flags(h, Keyword::Expose)?;
    let ports = words::split_whitespace(h.args, h.args_offset);
    if ports.is_empty() {
        return Err(missing(h, Keyword::Expose));
    }
    Ok(Instruction::Expose(
        ports.into_iter().map(|w| w.text).collect(),
    ))
}

fn volume(h: &Head<'_>) -> Result<Instruction, At> {
    no_flags(h, Keyword::Volume)?;
    let (paths, _) = list_args(h, Keyword::Volume)?;
    if paths.is_empty() {
        return Err(missing(h, Keyword::Volume));
    }
    let path = |w: Word| match w.text.trim() {
        "" => Err(At::new(w.offset, ErrorKind::EmptyVolume)),
        trimmed => Ok(trimmed.to_string()),
    };
    Ok(Instruction::Volume(
        paths.into_iter().map(path).collect::<Result<_, _>>()?,
    ))
}

fn shell(h: &Head<'_>) -> Result<Instruction, At> {
    no_flags(h, Keyword::Shell)?;
    match json_array(h.args) {
        ArrayForm::Strings(items) if !items.is_empty() => Ok(Instruction::Shell(items)),
        ArrayForm::Strings(_) => Err(missing(h, Keyword::Shell)),
        ArrayForm::NotStrings => Err(At::new(
            h.args_offset,
            ErrorKind::NotStringArray {
                instruction: "SHELL",
            },
        )),
        ArrayForm::NotArray if h.args.is_empty() => Err(missing(h, Keyword::Shell)),
        ArrayForm::NotArray => Err(At::new(
            h.args_offset,
            ErrorKind::JsonRequired {
                instruction: "SHELL",
            },
        )),
    }
}

/// `ONBUILD <instruction>`: the trigger is parsed now so mistakes surface in this build.
fn onbuild(h: &Head<'_>, docs: &[Heredoc], escape: char) -> Result<Instruction, At> {
    no_flags(h, Keyword::Onbuild)?;
    if h.args.is_empty() {
        return Err(missing(h, Keyword::Onbuild));
    }
    let inner = words::split_head(h.args, h.args_offset, escape);
    let refused = match Keyword::lookup(inner.keyword) {
        Some(kw @ (Keyword::Onbuild | Keyword::From | Keyword::Maintainer)) => Some(kw.name()),
        _ => None,
    };
    if let Some(trigger) = refused {
        return Err(At::new(
            inner.keyword_offset,
            ErrorKind::OnbuildTrigger { trigger },
        ));
    }
    let trigger = parse(&inner, docs, escape)?;
    let mut expression = h.args.to_string();
    for doc in docs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Ok(Instruction::Onbuild(Onbuild {
        trigger: Box::new(trigger),
        expression,
    }))
}

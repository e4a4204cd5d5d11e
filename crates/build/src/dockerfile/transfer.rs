//! COPY and ADD: their flags, sources and destination in shell or JSON form, and heredoc
//! sources (`COPY <<EOF /dest` makes a file from the heredoc body).

use crate::dockerfile::ast::{AddArgs, CopyArgs, Heredoc, Instruction, Source, Transfer};
use crate::dockerfile::error::{At, ErrorKind};
use crate::dockerfile::flags::{self, Flags, Spec};
use crate::dockerfile::heredoc;
use crate::dockerfile::instructions::{list_args, missing, Keyword};
use crate::dockerfile::words::{Head, Word};

const COPY_FLAGS: &[Spec] = &[
    flags::text("from"),
    flags::text("chown"),
    flags::text("chmod"),
    flags::boolean("link"),
    flags::boolean("parents"),
    flags::list("exclude"),
];

const ADD_FLAGS: &[Spec] = &[
    flags::text("chown"),
    flags::text("chmod"),
    flags::boolean("link"),
    flags::boolean("keep-git-dir"),
    flags::text("checksum"),
    flags::boolean("unpack"),
    flags::list("exclude"),
];

pub(crate) fn copy(h: &Head<'_>, docs: &[Heredoc]) -> Result<Instruction, At> {
    let flags = Flags::parse(COPY_FLAGS, &h.flags, "COPY")?;
    let from = match flags.text("from") {
        Some((value, offset)) if value.contains('$') => {
            let value = crate::snippet(value);
            return Err(At::new(offset, ErrorKind::VariableFrom { value }));
        }
        Some((value, _)) => Some(value.to_string()),
        None => None,
    };
    let transfer = transfer(h, Keyword::Copy, &flags, docs)?;
    Ok(Instruction::Copy(CopyArgs {
        from,
        parents: flags.bool("parents"),
        transfer,
    }))
}

pub(crate) fn add(h: &Head<'_>, docs: &[Heredoc]) -> Result<Instruction, At> {
    let flags = Flags::parse(ADD_FLAGS, &h.flags, "ADD")?;
    let transfer = transfer(h, Keyword::Add, &flags, docs)?;
    Ok(Instruction::Add(AddArgs {
        checksum: flags.owned("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.opt_bool("unpack"),
        transfer,
    }))
}

fn transfer(h: &Head<'_>, kw: Keyword, flags: &Flags, docs: &[Heredoc]) -> Result<Transfer, At> {
    let (words, json_form) = list_args(h, kw)?;
    let Some((dest, sources)) = words.split_last() else {
        return Err(missing(h, kw));
    };
    if sources.is_empty() {
        return Err(missing(h, kw));
    }
    if heredoc::marker(&dest.text).is_some() {
        return Err(At::new(
            dest.offset,
            ErrorKind::HeredocDestination {
                instruction: kw.name(),
            },
        ));
    }
    Ok(Transfer {
        sources: sources.iter().map(|w| source(w, docs)).collect(),
        dest: dest.text.clone(),
        chown: flags.owned("chown"),
        chmod: flags.owned("chmod"),
        link: flags.bool("link"),
        exclude: flags
            .list("exclude")
            .into_iter()
            .map(|(value, _)| value)
            .collect(),
        json_form,
    })
}

/// A heredoc marker with a body becomes a heredoc source (the last body of that name, as
/// BuildKit looks bodies up by name); anything else is a path.
fn source(word: &Word, docs: &[Heredoc]) -> Source {
    let doc =
        heredoc::marker(&word.text).and_then(|m| docs.iter().rev().find(|d| d.name == m.name));
    match doc {
        Some(doc) => Source::Heredoc(doc.clone()),
        None => Source::Path(word.text.clone()),
    }
}

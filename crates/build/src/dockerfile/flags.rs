//! Instruction flags (`--name=value`), checked as BuildKit's `BFlags` does: a flag must be
//! one the instruction accepts; boolean flags take no value or `=true`/`=false`; other
//! flags need `=value`; only list flags (`--mount`, `--exclude`) may repeat.

use crate::dockerfile::error::{At, ErrorKind};
use crate::dockerfile::suggest;
use crate::dockerfile::words::Word;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Text,
    List,
}

/// A flag an instruction accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub name: &'static str,
    pub kind: Kind,
}

pub(crate) const fn boolean(name: &'static str) -> Spec {
    Spec {
        name,
        kind: Kind::Bool,
    }
}

pub(crate) const fn text(name: &'static str) -> Spec {
    Spec {
        name,
        kind: Kind::Text,
    }
}

pub(crate) const fn list(name: &'static str) -> Spec {
    Spec {
        name,
        kind: Kind::List,
    }
}

#[derive(Debug, Clone)]
enum Found {
    Bool(bool),
    Text(String, usize),
    List(Vec<(String, usize)>),
}

/// The flags given to one instruction, checked against its [`Spec`]s.
#[derive(Debug, Clone)]
pub(crate) struct Flags {
    specs: &'static [Spec],
    found: Vec<Option<Found>>,
}

impl Flags {
    /// Checks `words` (each `--name[=value]`) against `specs`.
    pub(crate) fn parse(
        specs: &'static [Spec],
        words: &[Word],
        instruction: &'static str,
    ) -> Result<Self, At> {
        let mut flags = Flags {
            specs,
            found: vec![None; specs.len()],
        };
        for word in words {
            let body = word.text.strip_prefix("--").unwrap_or(&word.text);
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(index) = specs.iter().position(|s| s.name == name) else {
                return Err(At::new(word.offset, unknown(specs, name, instruction)));
            };
            flags.record(index, value, word.offset, instruction)?;
        }
        Ok(flags)
    }

    fn record(
        &mut self,
        index: usize,
        value: Option<&str>,
        offset: usize,
        instruction: &'static str,
    ) -> Result<(), At> {
        let spec = self.specs[index];
        let fail = |kind| Err(At::new(offset, kind));
        if self.found[index].is_some() && spec.kind != Kind::List {
            return fail(ErrorKind::DuplicateFlag {
                instruction,
                flag: spec.name,
            });
        }
        let found = match (spec.kind, value) {
            (Kind::Bool, None) => Found::Bool(true),
            (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" => Found::Bool(true),
                "false" => Found::Bool(false),
                "" => return fail(ErrorKind::FlagNeedsValue { flag: spec.name }),
                _ => {
                    return fail(ErrorKind::FlagNotBool {
                        flag: spec.name,
                        value: crate::snippet(v),
                    })
                }
            },
            (_, None) => return fail(ErrorKind::FlagNeedsValue { flag: spec.name }),
            (Kind::Text, Some(v)) => Found::Text(v.to_string(), offset),
            (Kind::List, Some(v)) => {
                let mut items = match self.found[index].take() {
                    Some(Found::List(items)) => items,
                    _ => Vec::new(),
                };
                items.push((v.to_string(), offset));
                Found::List(items)
            }
        };
        self.found[index] = Some(found);
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Found> {
        let index = self.specs.iter().position(|s| s.name == name)?;
        self.found.get(index)?.as_ref()
    }

    /// A text flag's value and the offset of the flag.
    pub(crate) fn text(&self, name: &str) -> Option<(&str, usize)> {
        match self.get(name)? {
            Found::Text(value, offset) => Some((value.as_str(), *offset)),
            _ => None,
        }
    }

    pub(crate) fn owned(&self, name: &str) -> Option<String> {
        self.text(name).map(|(value, _)| value.to_string())
    }

    /// A boolean flag: `None` when not given.
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Found::Bool(value) => Some(*value),
            _ => None,
        }
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        self.opt_bool(name).unwrap_or(false)
    }

    /// A list flag's values with the offset of each occurrence.
    pub(crate) fn list(&self, name: &str) -> Vec<(String, usize)> {
        match self.get(name) {
            Some(Found::List(items)) => items.clone(),
            _ => Vec::new(),
        }
    }
}

fn unknown(specs: &[Spec], name: &str, instruction: &'static str) -> ErrorKind {
    let names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
    let accepted = if names.is_empty() {
        "takes no flags".to_string()
    } else {
        let listed: Vec<String> = names.iter().map(|n| format!("--{n}")).collect();
        format!("accepts {}", listed.join(", "))
    };
    ErrorKind::UnknownFlag {
        instruction,
        flag: crate::snippet(name),
        suggestion: suggest::closest(name, &names),
        accepted,
    }
}

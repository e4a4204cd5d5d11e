//! Build stages: the instructions grouped by FROM, the global ARGs declared before the
//! first FROM, stage references resolved (FROM <stage>, `COPY --from=<name|index>`,
//! `RUN --mount=from=<name|index>`) into a dependency graph, and the stages a `--target`
//! needs, in an order that builds every dependency first.
//!
//! As in BuildKit: FROM refers to a stage defined earlier (`FROM node AS node` is the
//! image `node`); FROM expands global ARGs (build arguments override their defaults);
//! `--from` may name any earlier stage by name or index, and otherwise an image. Stage
//! names are case-insensitive. Every edge points to an earlier stage, so the graph has no
//! cycles.

use std::collections::HashMap;
use std::ops::Range;

use crate::dockerfile::ast::{ArgDecl, Dockerfile, FromArgs, Instruction, Node};
use crate::dockerfile::error::{Error, ErrorKind};
use crate::shell::Lexer;

/// The stages of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// ARGs declared before the first FROM, in order.
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// Lower-case name from `FROM .. AS name`.
    pub name: Option<String>,
    pub base: Base,
    /// `--platform` with global ARGs expanded.
    pub platform: Option<String>,
    /// Line of the FROM instruction.
    pub line: usize,
    /// The stage's instructions after its FROM, as indices into [`Dockerfile::nodes`].
    pub nodes: Range<usize>,
    /// Earlier stages this one needs (its base and `--from` sources), ascending.
    pub deps: Vec<usize>,
    /// Images named by `--from` (not stages), in order of appearance.
    pub images: Vec<String>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An image reference, global ARGs expanded.
    Image(String),
    /// An earlier stage.
    Stage(usize),
}

/// Why a `--target` cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target stage {target:?} not found; named stages: {available}")]
    NotFound { target: String, available: String },
}

/// A `--from` reference resolved.
enum Ref {
    Stage(usize),
    Image(String),
}

impl Stages {
    /// Groups `df` into stages. `build_args` gives the values of build arguments passed
    /// by the user (`--build-arg`); they override the defaults of global ARGs.
    pub fn analyze(
        df: &Dockerfile,
        build_args: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Stages, Error> {
        let lexer = Lexer::new(df.directives.escape);
        let froms: Vec<usize> = df
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.instruction, Instruction::From(_)))
            .map(|(i, _)| i)
            .collect();
        let first = froms.first().copied().unwrap_or(df.nodes.len());
        let global_args: Vec<ArgDecl> = df.nodes[..first]
            .iter()
            .filter_map(|n| match &n.instruction {
                Instruction::Arg(decls) => Some(decls.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let vars = global_values(df, &global_args, &lexer, build_args)?;
        let names = stage_names(df, &froms)?;
        let mut stages = Vec::with_capacity(froms.len());
        for (index, &at) in froms.iter().enumerate() {
            let end = froms.get(index + 1).copied().unwrap_or(df.nodes.len());
            stages.push(stage(df, index, at..end, &names, &vars, &lexer)?);
        }
        Ok(Stages {
            global_args,
            stages,
        })
    }

    /// The index of the stage with this name (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// The stage a build of `target` ends with: the named stage, or the last one.
    pub fn target(&self, target: Option<&str>) -> Result<usize, TargetError> {
        match target {
            None => Ok(self.stages.len().saturating_sub(1)),
            Some(name) => self.by_name(name).ok_or_else(|| self.not_found(name)),
        }
    }

    /// Every stage a build of `target` needs, dependencies before dependents (ascending
    /// index). Stages not listed can be skipped; stages with no path between them can be
    /// built concurrently.
    pub fn needed_for(&self, target: Option<&str>) -> Result<Vec<usize>, TargetError> {
        let target = self.target(target)?;
        let mut needed = vec![false; self.stages.len()];
        if let Some(slot) = needed.get_mut(target) {
            *slot = true;
        }
        for index in (0..needed.len()).rev() {
            if needed[index] {
                for &dep in &self.stages[index].deps {
                    needed[dep] = true;
                }
            }
        }
        Ok((0..needed.len()).filter(|&i| needed[i]).collect())
    }

    fn not_found(&self, target: &str) -> TargetError {
        let names: Vec<&str> = self
            .stages
            .iter()
            .filter_map(|s| s.name.as_deref())
            .take(10)
            .collect();
        let available = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        TargetError::NotFound {
            target: crate::snippet(target),
            available,
        }
    }
}

impl Dockerfile {
    /// [`Stages::analyze`] for this file.
    pub fn stages(&self, build_args: &dyn Fn(&str) -> Option<String>) -> Result<Stages, Error> {
        Stages::analyze(self, build_args)
    }
}

type Vars = HashMap<String, String>;

fn lookup(vars: &Vars, name: &str) -> Option<String> {
    vars.get(name).cloned()
}

/// Stage names (lower-case) and the index of the stage each names.
struct Names {
    index: HashMap<String, usize>,
    count: usize,
}

impl Names {
    fn get(&self, name: &str) -> Option<usize> {
        self.index.get(&name.to_ascii_lowercase()).copied()
    }
}

/// Values of the global ARGs: the build argument if given, else the default expanded
/// with the global ARGs declared before it.
fn global_values(
    df: &Dockerfile,
    args: &[ArgDecl],
    lexer: &Lexer,
    build_args: &dyn Fn(&str) -> Option<String>,
) -> Result<Vars, Error> {
    let mut vars = Vars::new();
    for decl in args {
        let value = match (build_args(&decl.name), &decl.default) {
            (Some(value), _) => Some(value),
            (None, Some(default)) => Some(lexer.expand(default, |n| lookup(&vars, n)).map_err(
                |reason| {
                    let node = arg_node(df, &decl.name);
                    located(
                        df,
                        node,
                        ErrorKind::Expand {
                            what: "ARG default",
                            reason,
                        },
                    )
                },
            )?),
            (None, None) => None,
        };
        if let Some(value) = value {
            vars.insert(decl.name.clone(), value);
        }
    }
    Ok(vars)
}

fn arg_node<'a>(df: &'a Dockerfile, name: &str) -> Option<&'a Node> {
    df.nodes
        .iter()
        .find(|n| matches!(&n.instruction, Instruction::Arg(d) if d.iter().any(|a| a.name == name)))
}

fn located(df: &Dockerfile, node: Option<&Node>, kind: ErrorKind) -> Error {
    let (line, column) = node.map_or((1, 1), |n| (n.line, n.column));
    Error::new(&df.file, line, column, kind)
}

/// The stage names, refusing duplicates.
fn stage_names(df: &Dockerfile, froms: &[usize]) -> Result<Names, Error> {
    let mut index = HashMap::new();
    for (stage, &at) in froms.iter().enumerate() {
        let Instruction::From(FromArgs {
            stage_name: Some(name),
            ..
        }) = &df.nodes[at].instruction
        else {
            continue;
        };
        if let Some(first) = index.insert(name.clone(), stage) {
            let line = df.nodes[froms[first]].line;
            let kind = ErrorKind::DuplicateStage {
                name: crate::snippet(name),
                line,
            };
            return Err(located(df, Some(&df.nodes[at]), kind));
        }
    }
    Ok(Names {
        index,
        count: froms.len(),
    })
}

/// One stage: its FROM at `nodes.start`, instructions up to `nodes.end`.
fn stage(
    df: &Dockerfile,
    index: usize,
    nodes: Range<usize>,
    names: &Names,
    vars: &Vars,
    lexer: &Lexer,
) -> Result<Stage, Error> {
    let from_node = &df.nodes[nodes.start];
    let Instruction::From(from) = &from_node.instruction else {
        return Err(located(df, Some(from_node), ErrorKind::NoFrom));
    };
    let fail = |kind| located(df, Some(from_node), kind);
    let expand = |what, word: &str| {
        lexer
            .expand(word, |n| lookup(vars, n))
            .map_err(|reason| fail(ErrorKind::Expand { what, reason }))
    };
    let image = expand("FROM image", &from.image)?;
    let platform = from
        .platform
        .as_deref()
        .map(|p| expand("FROM --platform", p))
        .transpose()?;
    let base = match names.get(&image).filter(|&stage| stage < index) {
        Some(stage) => Base::Stage(stage),
        None if image.is_empty() => {
            return Err(fail(ErrorKind::BlankBase {
                image: crate::snippet(&from.image),
            }))
        }
        None if image == "scratch" => Base::Scratch,
        None => Base::Image(image),
    };
    let mut stage = Stage {
        index,
        name: from.stage_name.clone(),
        base,
        platform,
        line: from_node.line,
        nodes: nodes.start + 1..nodes.end,
        deps: Vec::new(),
        images: Vec::new(),
    };
    collect_refs(df, &mut stage, names)?;
    Ok(stage)
}

/// Adds the stage's base and `--from` references to its deps and images.
fn collect_refs(df: &Dockerfile, stage: &mut Stage, names: &Names) -> Result<(), Error> {
    if let Base::Stage(base) = stage.base {
        stage.deps.push(base);
    }
    for node in &df.nodes[stage.nodes.clone()] {
        for reference in from_refs(&node.instruction) {
            match resolve(reference, stage.index, names)
                .map_err(|kind| located(df, Some(node), kind))?
            {
                Ref::Stage(dep) => stage.deps.push(dep),
                Ref::Image(image) => stage.images.push(image),
            }
        }
    }
    stage.deps.sort_unstable();
    stage.deps.dedup();
    Ok(())
}

/// The `--from` values of an instruction (COPY and RUN mounts; ONBUILD triggers run in
/// other builds and are not followed).
fn from_refs(instruction: &Instruction) -> Vec<&str> {
    match instruction {
        Instruction::Copy(copy) => copy.from.as_deref().into_iter().collect(),
        Instruction::Run(run) => run
            .mounts
            .iter()
            .filter_map(|m| m.from.as_deref())
            .collect(),
        _ => Vec::new(),
    }
}

fn resolve(reference: &str, current: usize, names: &Names) -> Result<Ref, ErrorKind> {
    let later = || ErrorKind::LaterStage {
        reference: crate::snippet(reference),
    };
    if let Ok(index) = reference.parse::<usize>() {
        return match index {
            i if i >= names.count => Err(ErrorKind::StageIndex {
                reference: crate::snippet(reference),
                index: i,
                last: names.count.saturating_sub(1),
            }),
            i if i >= current => Err(later()),
            i => Ok(Ref::Stage(i)),
        };
    }
    match names.get(reference) {
        Some(i) if i >= current => Err(later()),
        Some(i) => Ok(Ref::Stage(i)),
        None => Ok(Ref::Image(reference.to_string())),
    }
}

//! RUN: `--mount` (see [`crate::dockerfile::mount`]), `--network`, `--security`, the
//! command in shell or exec form, and the heredocs named on the line.

use crate::dockerfile::ast::{CommandLine, Heredoc, Instruction, Network, RunArgs, Security};
use crate::dockerfile::error::{At, ErrorKind};
use crate::dockerfile::flags::{self, Flags, Spec};
use crate::dockerfile::instructions::{command_line, missing, Keyword};
use crate::dockerfile::mount::RunMount;
use crate::dockerfile::words::Head;

const RUN_FLAGS: &[Spec] = &[
    flags::list("mount"),
    flags::text("network"),
    flags::text("security"),
];

pub(crate) fn run(h: &Head<'_>, docs: &[Heredoc]) -> Result<Instruction, At> {
    let flags = Flags::parse(RUN_FLAGS, &h.flags, "RUN")?;
    let mounts = flags
        .list("mount")
        .into_iter()
        .map(|(spec, offset)| {
            RunMount::parse(&spec).map_err(|e| At::new(offset, ErrorKind::Mount(e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let network = flags.text("network").map(network).transpose()?;
    let security = flags.text("security").map(security).transpose()?;
    let command = command_line(h, Keyword::Run)?;
    if matches!(&command, CommandLine::Exec(args) if args.is_empty()) {
        return Err(missing(h, Keyword::Run));
    }
    Ok(Instruction::Run(RunArgs {
        command,
        heredocs: docs.to_vec(),
        mounts,
        network,
        security,
    }))
}

fn network((value, offset): (&str, usize)) -> Result<Network, At> {
    match value {
        "default" => Ok(Network::Default),
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        _ => Err(At::new(
            offset,
            ErrorKind::Network {
                value: crate::snippet(value),
            },
        )),
    }
}

fn security((value, offset): (&str, usize)) -> Result<Security, At> {
    match value {
        "sandbox" => Ok(Security::Sandbox),
        "insecure" => Ok(Security::Insecure),
        _ => Err(At::new(
            offset,
            ErrorKind::Security {
                value: crate::snippet(value),
            },
        )),
    }
}

//! The parse loop: logical lines in, [`Node`]s out, then the file-level checks (at least
//! one instruction; only ARG before the first FROM).

use crate::dockerfile::ast::{Dockerfile, Instruction, Node, Warning};
use crate::dockerfile::error::{At, Error, ErrorKind};
use crate::dockerfile::heredoc;
use crate::dockerfile::instructions;
use crate::dockerfile::lines::{LineReader, LogicalLine};
use crate::dockerfile::words::split_head;

/// Largest Dockerfile accepted.
pub const MAX_DOCKERFILE_BYTES: usize = 8 << 20;

/// Parses Dockerfile text. `file` names the file in errors (e.g. `"Dockerfile"`).
pub fn parse(source: &str, file: &str) -> Result<Dockerfile, Error> {
    if source.len() > MAX_DOCKERFILE_BYTES {
        let kind = ErrorKind::TooLarge {
            size: source.len(),
            limit: MAX_DOCKERFILE_BYTES,
        };
        return Err(Error::new(file, 1, 1, kind));
    }
    let mut reader = LineReader::new(source, file)?;
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    while let Some(logical) = reader.next_logical()? {
        if logical.empty_continuation {
            let message =
                "empty continuation line: remove the blank line or end the instruction before it"
                    .to_string();
            warnings.push(Warning {
                line: logical.start_line,
                message,
            });
        }
        let node = parse_node(&mut reader, &logical, file)?;
        if let Instruction::Maintainer(_) = node.instruction {
            let message =
                "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors=<name>"
                    .to_string();
            warnings.push(Warning {
                line: node.line,
                message,
            });
        }
        nodes.push(node);
    }
    check_order(&nodes, file)?;
    Ok(Dockerfile {
        file: file.to_string(),
        directives: reader.directives(),
        nodes,
        warnings,
    })
}

/// [`parse`] for raw bytes: invalid UTF-8 is replaced, as a lossy read would.
pub fn parse_bytes(source: &[u8], file: &str) -> Result<Dockerfile, Error> {
    parse(&String::from_utf8_lossy(source), file)
}

fn parse_node(
    reader: &mut LineReader<'_>,
    logical: &LogicalLine,
    file: &str,
) -> Result<Node, Error> {
    let locate = |at: At| {
        let (line, column) = logical.position(at.offset);
        Error::new(file, line, column, at.kind)
    };
    let escape = reader.escape();
    let head = split_head(&logical.text, 0, escape);
    let docs = heredoc::read_bodies(reader, &head, &logical.text).map_err(locate)?;
    let instruction = instructions::parse(&head, &docs, escape).map_err(locate)?;
    let (line, column) = logical.position(head.keyword_offset);
    Ok(Node {
        instruction,
        line,
        column,
        end_line: reader.line_number(),
        original: logical.text.clone(),
    })
}

fn check_order(nodes: &[Node], file: &str) -> Result<(), Error> {
    let Some(first) = nodes.first() else {
        return Err(Error::new(file, 1, 1, ErrorKind::NoInstructions));
    };
    let at = |node: &Node, kind| Err(Error::new(file, node.line, node.column, kind));
    match nodes
        .iter()
        .find(|n| !matches!(n.instruction, Instruction::Arg(_)))
    {
        None => at(first, ErrorKind::NoFrom),
        Some(node) if !matches!(node.instruction, Instruction::From(_)) => at(
            node,
            ErrorKind::BeforeFrom {
                instruction: node.instruction.name(),
            },
        ),
        Some(_) => Ok(()),
    }
}

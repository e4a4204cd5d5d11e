//! Table tests for the Dockerfile parser: `good` (what each form parses into), `bad` (the
//! exact error text, with line and column), `stages` (stage grouping and graphs).

use super::*;

mod bad;
mod good;
mod stages;

/// Parses a file that must be valid.
fn parse_ok(source: &str) -> Dockerfile {
    match parse(source, "Dockerfile") {
        Ok(df) => df,
        Err(e) => panic!("{source:?} failed: {e}"),
    }
}

fn instructions(source: &str) -> Vec<Instruction> {
    parse_ok(source)
        .nodes
        .into_iter()
        .map(|n| n.instruction)
        .collect()
}

fn from(image: &str) -> Instruction {
    Instruction::From(FromArgs {
        image: image.to_string(),
        stage_name: None,
        platform: None,
    })
}

fn shell(command: &str) -> CommandLine {
    CommandLine::Shell(command.to_string())
}

fn exec(args: &[&str]) -> CommandLine {
    CommandLine::Exec(strings(args))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn run(command: CommandLine) -> Instruction {
    Instruction::Run(RunArgs {
        command,
        heredocs: Vec::new(),
        mounts: Vec::new(),
        network: None,
        security: None,
    })
}

fn kv(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn paths(items: &[&str]) -> Vec<Source> {
    items.iter().map(|s| Source::Path(s.to_string())).collect()
}

fn transfer(sources: Vec<Source>, dest: &str) -> Transfer {
    Transfer {
        sources,
        dest: dest.to_string(),
        chown: None,
        chmod: None,
        link: false,
        exclude: Vec::new(),
        json_form: false,
    }
}

fn copy(sources: &[&str], dest: &str) -> Instruction {
    Instruction::Copy(CopyArgs {
        from: None,
        parents: false,
        transfer: transfer(paths(sources), dest),
    })
}

fn heredoc(name: &str, content: &str) -> Heredoc {
    Heredoc {
        name: name.to_string(),
        fd: 0,
        chomp: false,
        expand: true,
        content: content.to_string(),
    }
}

//! HEALTHCHECK: `NONE`, or `CMD` in shell or exec form with `--interval`, `--timeout`,
//! `--start-period`, `--start-interval` (Go duration strings such as `30s` or `1m30s`;
//! `0` means Docker's default, anything else at least 1ms) and `--retries`.

use std::time::Duration;

use crate::dockerfile::ast::{Healthcheck, HealthcheckCmd, Instruction};
use crate::dockerfile::error::{At, ErrorKind};
use crate::dockerfile::flags::{self, Flags, Spec};
use crate::dockerfile::instructions::{command_line, missing, Keyword};
use crate::dockerfile::words::Head;

const FLAGS: &[Spec] = &[
    flags::text("interval"),
    flags::text("timeout"),
    flags::text("start-period"),
    flags::text("start-interval"),
    flags::text("retries"),
];

pub(crate) fn healthcheck(h: &Head<'_>) -> Result<Instruction, At> {
    if h.args.is_empty() {
        return Err(missing(h, Keyword::Healthcheck));
    }
    let kind_end = h.args.find(char::is_whitespace).unwrap_or(h.args.len());
    let (kind, rest) = h.args.split_at(kind_end);
    let rest_trimmed = rest.trim_start();
    let rest_offset = h.args_offset + (h.args.len() - rest_trimmed.len());
    match kind.to_ascii_uppercase().as_str() {
        "NONE" if rest_trimmed.is_empty() && h.flags.is_empty() => {
            Ok(Instruction::Healthcheck(Healthcheck::None))
        }
        "NONE" => Err(At::new(h.keyword_offset, ErrorKind::HealthcheckNone)),
        "CMD" => {
            let flags = Flags::parse(FLAGS, &h.flags, "HEALTHCHECK")?;
            let cmd = Head {
                args: rest_trimmed,
                args_offset: rest_offset,
                flags: Vec::new(),
                ..h.clone()
            };
            check_command(&cmd, &flags)
        }
        _ => {
            let value = crate::snippet(kind);
            Err(At::new(h.args_offset, ErrorKind::HealthcheckType { value }))
        }
    }
}

fn check_command(cmd: &Head<'_>, flags: &Flags) -> Result<Instruction, At> {
    let command = match command_line(cmd, Keyword::Healthcheck) {
        Ok(crate::dockerfile::ast::CommandLine::Exec(args)) if args.is_empty() => None,
        Ok(command) => Some(command),
        Err(At {
            kind: ErrorKind::MissingArgument { .. },
            ..
        }) => None,
        Err(other) => return Err(other),
    };
    let command =
        command.ok_or_else(|| At::new(cmd.keyword_offset, ErrorKind::HealthcheckCommand))?;
    Ok(Instruction::Healthcheck(Healthcheck::Cmd(HealthcheckCmd {
        command,
        interval: interval(flags, "interval")?,
        timeout: interval(flags, "timeout")?,
        start_period: interval(flags, "start-period")?,
        start_interval: interval(flags, "start-interval")?,
        retries: retries(flags)?,
    })))
}

/// A duration flag: `None` when absent, empty or zero (Docker's default).
fn interval(flags: &Flags, name: &'static str) -> Result<Option<Duration>, At> {
    let Some((value, offset)) = flags.text(name) else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    let fail = |reason| {
        At::new(
            offset,
            ErrorKind::Duration {
                flag: name,
                value: crate::snippet(value),
                reason,
            },
        )
    };
    let nanos = go_duration(value)
        .ok_or_else(|| fail("expected a duration such as 30s, 1m30s or 500ms"))?;
    match nanos {
        0 => Ok(None),
        n if n < 1_000_000 => Err(fail("must be 0 (the default) or at least 1ms")),
        n => Ok(Some(Duration::from_nanos(n as u64))),
    }
}

fn retries(flags: &Flags) -> Result<Option<u32>, At> {
    let Some((value, offset)) = flags.text("retries") else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<i32>() {
        Ok(n) if n >= 0 => Ok(Some(n as u32)),
        _ => Err(At::new(
            offset,
            ErrorKind::Retries {
                value: crate::snippet(value),
            },
        )),
    }
}

/// Go's `time.ParseDuration`, in nanoseconds; `None` for malformed or overflowing input.
pub(crate) fn go_duration(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, tail) = duration_component(rest)?;
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= i64::MAX as u128)?;
        rest = tail;
    }
    let total = total as i128;
    Some(if negative { -total } else { total })
}

/// One `<number><unit>` component: its nanoseconds and the text after it.
fn duration_component(text: &str) -> Option<(u128, &str)> {
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (int, rest) = text.split_at(int_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(after) => after.split_at(after.bytes().take_while(u8::is_ascii_digit).count()),
        None => ("", rest),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let unit_len = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (unit, rest) = rest.split_at(unit_len);
    let scale: u128 = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac = &frac[..frac.len().min(18)];
    let frac_nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u128>().ok()? * scale / 10u128.pow(frac.len() as u32)
    };
    Some((whole.checked_mul(scale)?.checked_add(frac_nanos)?, rest))
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn go_durations() {
        let s = 1_000_000_000i128;
        assert_eq!(go_duration("30s"), Some(30 * s));
        assert_eq!(go_duration("1m30s"), Some(90 * s));
        assert_eq!(go_duration("1.5h"), Some(5400 * s));
        assert_eq!(go_duration("500ms"), Some(s / 2));
        assert_eq!(go_duration("2us"), Some(2_000));
        assert_eq!(go_duration("0"), Some(0));
        assert_eq!(go_duration("-1s"), Some(-s));
        assert_eq!(go_duration(".5s"), Some(s / 2));
        for bad in ["", "s", "10", "1x", "1.s.", "99999999999999999999h", "-"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }
}

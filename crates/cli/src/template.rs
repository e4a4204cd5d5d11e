//! A small Go-template subset for `--format`, enough for what Docker users write:
//! `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{upper .F}}`, `{{lower .F}}`,
//! `{{title .F}}`, literal text with `\t` and `\n`, and a leading `table` for an aligned table
//! with a header. Anything else is refused when the flag is parsed.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// `table …`: print a header and align columns.
    pub table: bool,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Action { func: Func, path: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Field,
    Json,
    Upper,
    Lower,
    Title,
}

fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Template::parse(s)
    }
}

impl Template {
    pub fn parse(src: &str) -> Result<Self, String> {
        let (table, body) = match src.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, src),
        };
        let mut parts = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(unescape(&rest[..open])));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template {src:?}: an action is not closed with }}}}"))?;
            parts.push(action(after[..close].trim(), src)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(unescape(rest)));
        }
        Ok(Template { table, parts })
    }

    /// One object's line. A field the object does not have is an error naming the ones it has.
    pub fn render(&self, obj: &Value) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { func, path } => {
                    let mut v = obj;
                    for (i, k) in path.iter().enumerate() {
                        v = v.get(k).ok_or_else(|| {
                            let at = if i == 0 { obj } else { v };
                            let fields: Vec<&str> = at
                                .as_object()
                                .map(|m| m.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            format!(
                                "template: no field {:?} here; the fields are {}",
                                path[..=i].join("."),
                                fields.join(", ")
                            )
                        })?;
                    }
                    let text = match func {
                        Func::Json => v.to_string(),
                        _ => plain(v),
                    };
                    out.push_str(&match func {
                        Func::Upper => text.to_uppercase(),
                        Func::Lower => text.to_lowercase(),
                        Func::Title => title(&text),
                        _ => text,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The header of a `table` template: each field's name in capitals (Docker's way).
    pub fn header(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { path, .. } => match path.last() {
                    Some(k) => out.push_str(&header_name(k)),
                    None => out.push_str("OBJECT"),
                },
            }
        }
        out
    }
}

/// `CurrentState` → `CURRENT STATE`, `ID` → `ID`.
fn header_name(k: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = k.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let boundary = i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()));
        if boundary {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// How Go prints a value: strings raw, nothing as `<no value>`.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        other => other.to_string(),
    }
}

fn action(a: &str, src: &str) -> Result<Part, String> {
    let words: Vec<&str> = a.split_whitespace().collect();
    let (func, arg) = match words.as_slice() {
        [arg] if arg.starts_with('.') => (Func::Field, *arg),
        ["json", arg] => (Func::Json, *arg),
        ["upper", arg] => (Func::Upper, *arg),
        ["lower", arg] => (Func::Lower, *arg),
        ["title", arg] => (Func::Title, *arg),
        _ => {
            return Err(format!(
                "template {src:?}: unsupported action {{{{{a}}}}}: use {{{{.Field}}}}, {{{{json .Field}}}}, {{{{upper|lower|title .Field}}}}"
            ))
        }
    };
    let Some(p) = arg.strip_prefix('.') else {
        return Err(format!(
            "template {src:?}: {arg:?} is not a field (fields start with a dot: .Name)"
        ));
    };
    let path = if p.is_empty() {
        Vec::new()
    } else {
        p.split('.').map(String::from).collect()
    };
    if path.iter().any(|k| k.is_empty()) {
        return Err(format!("template {src:?}: {arg:?} is not a field path"));
    }
    Ok(Part::Action { func, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_text_and_functions_render() {
        let o = json!({"Name": "web", "Replicas": "3/3", "Spec": {"Labels": {"a": "b"}}, "N": 2});
        let t = Template::parse(
            "{{.Name}}\\t{{.Replicas}} {{upper .Name}} {{json .Spec.Labels}} {{.N}}",
        )
        .unwrap();
        assert!(!t.table);
        assert_eq!(t.render(&o).unwrap(), "web\t3/3 WEB {\"a\":\"b\"} 2");
        assert_eq!(
            Template::parse("{{json .}}")
                .unwrap()
                .render(&json!({"a":1}))
                .unwrap(),
            "{\"a\":1}"
        );
    }

    #[test]
    fn a_table_template_has_a_header() {
        let t = Template::parse("table {{.ID}}\\t{{.CurrentState}}").unwrap();
        assert!(t.table);
        assert_eq!(t.header(), "ID\tCURRENT STATE");
    }

    #[test]
    fn mistakes_are_explained() {
        let e = Template::parse("{{.Name").unwrap_err();
        assert!(e.contains("not closed"), "{e}");
        let e = Template::parse("{{range .X}}").unwrap_err();
        assert!(e.contains("unsupported action"), "{e}");
        let e = Template::parse("{{json Name}}").unwrap_err();
        assert!(e.contains("start with a dot"), "{e}");
        let t = Template::parse("{{.Nmae}}").unwrap();
        let e = t.render(&json!({"Name": "x", "ID": "y"})).unwrap_err();
        assert!(e.contains("\"Nmae\"") && e.contains("ID, Name"), "{e}");
    }
}

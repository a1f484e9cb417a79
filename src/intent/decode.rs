//! Hand-written decoding over the positioned tree, collecting every problem.
//!
//! Each helper records a [`Problem`] and returns `None` instead of failing, so the caller
//! carries on and the user sees all mistakes of a commit at once.

use std::fmt;

use super::node::{Node, Pos, Value};
use crate::model::names::is_dns1123_label;

/// One thing wrong with the input, located precisely enough to jump to it in an editor.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Path of the file relative to the config repo root.
    pub file: String,
    pub pos: Pos,
    /// Dotted path of the field, e.g. `spec.rules[0].matches[1].path.value`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.pos, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.pos, self.field, self.message
            )
        }
    }
}

/// The decoding context of one file: where problems go.
pub struct Cx<'f> {
    pub file: &'f str,
    pub problems: Vec<Problem>,
    /// Decoding a plain Gateway API object (`resources/`) rather than an intent: the
    /// schema is the CRD's, with every filter and backend kind the API allows, where an
    /// intent accepts only what tidegate can render in every mode.
    pub plain: bool,
}

impl<'f> Cx<'f> {
    pub fn new(file: &'f str) -> Self {
        Self {
            file,
            problems: Vec::new(),
            plain: false,
        }
    }

    pub fn report(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            pos,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Treats `node` as a mapping whose only keys are `allowed`; unknown keys are reported
    /// with a did-you-mean. Returns `None` (after reporting) when it is not a mapping.
    pub fn object<'n>(&mut self, node: &'n Node, field: &str, allowed: &[&str]) -> Option<Obj<'n>> {
        let Value::Map(entries) = &node.value else {
            self.report(
                node.pos,
                field,
                format!("expected a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in entries {
            let Value::Str(key) = &k.value else {
                self.report(
                    k.pos,
                    field,
                    format!("keys must be strings, found {}", k.kind()),
                );
                continue;
            };
            if seen.contains(&key.as_str()) {
                self.report(k.pos, &join(field, key), "duplicate key");
            }
            seen.push(key);
            if !allowed.contains(&key.as_str()) {
                let hint = match did_you_mean(key, allowed) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => String::new(),
                };
                self.report(
                    k.pos,
                    &join(field, key),
                    format!(
                        "unknown field `{key}`{hint} (valid fields: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(Obj {
            node,
            entries,
            field: field.to_owned(),
        })
    }

    pub fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.report(
                    node.pos,
                    field,
                    format!("expected a string, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A string that `valid` accepts; otherwise reports "`value` is not {what}". Names and
    /// hostnames of every API are checked through here, so each rule is written once.
    pub fn checked_string(
        &mut self,
        node: &Node,
        field: &str,
        valid: impl Fn(&str) -> bool,
        what: &str,
    ) -> Option<String> {
        let s = self.string(node, field)?;
        if !valid(&s) {
            self.report(node.pos, field, format!("`{s}` is not {what}"));
            return None;
        }
        Some(s)
    }

    /// A namespace: a DNS-1123 label.
    pub fn namespace(&mut self, node: &Node, field: &str) -> Option<String> {
        self.checked_string(
            node,
            field,
            is_dns1123_label,
            "a valid namespace; valid: a DNS-1123 label",
        )
    }

    pub fn int(&mut self, node: &Node, field: &str, min: i64, max: i64) -> Option<i64> {
        match &node.value {
            Value::Int(i) if (min..=max).contains(i) => Some(*i),
            Value::Int(i) => {
                self.report(
                    node.pos,
                    field,
                    format!("{i} is out of range; valid: an integer from {min} to {max}"),
                );
                None
            }
            Value::Str(s) if s.parse::<i64>().is_ok() => {
                self.report(
                    node.pos,
                    field,
                    format!(
                        "expected an integer, found the string \"{s}\"; write it without quotes"
                    ),
                );
                None
            }
            _ => {
                self.report(
                    node.pos,
                    field,
                    format!(
                        "expected an integer from {min} to {max}, found {}",
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.report(
                    node.pos,
                    field,
                    format!("expected true or false, found {}", node.kind()),
                );
                None
            }
        }
    }

    pub fn list<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.report(
                    node.pos,
                    field,
                    format!("expected a list, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A string that must be one of `choices` (case-sensitive, as Kubernetes enums are).
    pub fn choice(&mut self, node: &Node, field: &str, choices: &[&str]) -> Option<String> {
        let s = self.string(node, field)?;
        if choices.contains(&s.as_str()) {
            return Some(s);
        }
        let hint = match did_you_mean(&s, choices) {
            Some(c) => format!("; did you mean `{c}`?"),
            None => String::new(),
        };
        self.report(
            node.pos,
            field,
            format!("`{s}` is not valid{hint} (valid: {})", choices.join(", ")),
        );
        None
    }

    /// A list of strings.
    pub fn strings(&mut self, node: &Node, field: &str) -> Option<Vec<(Pos, String)>> {
        let items = self.list(node, field)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(item, &format!("{field}[{i}]")) {
                out.push((item.pos, s));
            }
        }
        Some(out)
    }

    /// A mapping of string to string (labels, headers).
    pub fn string_map(&mut self, node: &Node, field: &str) -> Option<Vec<(Pos, String, String)>> {
        let Value::Map(entries) = &node.value else {
            self.report(
                node.pos,
                field,
                format!("expected a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = self.string(k, field);
            let value = match key.as_deref() {
                Some(key) => self.string(v, &join(field, key)),
                None => None,
            };
            if let (Some(k2), Some(v)) = (key, value) {
                out.push((k.pos, k2, v));
            }
        }
        Some(out)
    }
}

/// A mapping being decoded.
pub struct Obj<'n> {
    pub node: &'n Node,
    entries: &'n [(Node, Node)],
    field: String,
}

impl<'n> Obj<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(_, v)| v)
            // An explicit `null` is the same as an absent field, as in Kubernetes.
            .filter(|v| v.value != Value::Null)
    }

    /// Like `get`, but reports a missing field.
    pub fn require(&self, cx: &mut Cx<'_>, key: &str, what_is_valid: &str) -> Option<&'n Node> {
        let found = self.get(key);
        if found.is_none() {
            cx.report(
                self.node.pos,
                &self.field(key),
                format!("missing required field `{key}`: {what_is_valid}"),
            );
        }
        found
    }

    /// The dotted path of a child field.
    pub fn field(&self, key: &str) -> String {
        join(&self.field, key)
    }

    pub fn pos(&self) -> Pos {
        self.node.pos
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    // `Prefix` for `PathPrefix`: a clipped name is a likely slip too.
    if lower.len() >= 4
        && let Some(c) = candidates.iter().find(|c| {
            c.to_ascii_lowercase().ends_with(&lower) || c.to_ascii_lowercase().starts_with(&lower)
        })
    {
        return Some(c);
    }
    candidates
        .iter()
        .map(|c| (levenshtein(&lower, &c.to_ascii_lowercase()), *c))
        // A third of the length, at least 1 and at most 3 edits: catches typos and case
        // slips (`hostname` for `hostnames`, `pathprefix`) without absurd suggestions.
        .filter(|(d, c)| *d <= (c.len() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["hostnames", "gateway", "rules", "mode"];
        assert_eq!(did_you_mean("hostname", &fields), Some("hostnames"));
        assert_eq!(did_you_mean("rulez", &fields), Some("rules"));
        assert_eq!(did_you_mean("backends", &fields), None);
        assert_eq!(
            did_you_mean("Prefix", &["Exact", "PathPrefix"]),
            Some("PathPrefix")
        );
    }
}

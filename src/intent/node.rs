//! A positioned YAML tree.
//!
//! Intents are decoded in two steps: serde-saphyr parses the text into this tree (every node
//! keeps its line and column), then `decode` walks it by hand. Walking by hand, instead of
//! deriving `Deserialize` on the intent types, is what lets a commit report *every* problem
//! (serde stops at the first) and point each one at a file, line, column and field.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// 1-based line and column of a node in its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own positions so "unknown field" can point at the key.
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    /// The value under `key` of a mapping (`None` for a missing key or another type).
    pub fn field(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// What a reader would call this node's type, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Limits on one file, far above any real intent file, far below what hurts the server.
/// Aliases count every time they are used, so an alias bomb hits `MAX_NODES`.
pub mod limits {
    /// Bytes in one file (checked before it is even read from Git).
    pub const MAX_FILE_BYTES: u64 = 1 << 20;
    pub const MAX_DOCUMENTS: usize = 1_000;
    pub const MAX_NODES: usize = 100_000;
    pub const MAX_DEPTH: usize = 32;
    pub const MAX_ALIASES: usize = 1_000;
    /// Intents in one commit.
    pub const MAX_INTENTS: usize = 50_000;
}

/// Parses one file's worth of YAML documents. Empty documents (a lone `---`) are dropped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, serde_saphyr::Error> {
    // Both structs are non-exhaustive: start from the defaults and set what matters.
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_documents = limits::MAX_DOCUMENTS;
    budget.max_nodes = limits::MAX_NODES;
    budget.max_depth = limits::MAX_DEPTH;
    budget.max_aliases = limits::MAX_ALIASES;
    budget.max_anchors = limits::MAX_ALIASES;
    budget.max_total_scalar_bytes = limits::MAX_FILE_BYTES as usize;
    let mut options = serde_saphyr::options::Options::default();
    options.budget = Some(budget);
    let docs: Vec<Option<Node>> = serde_saphyr::from_multiple_with_options(text, options)?;
    Ok(docs.into_iter().flatten().collect())
}

/// A reader's explanation of a parse error that comes from a limit.
pub fn explain_limit(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    if m.contains("nodes") && m.contains("budget") {
        Some(format!(
            "the file expands to more than {} YAML nodes (anchors and aliases count every time they are used); split it or drop the aliases",
            limits::MAX_NODES
        ))
    } else if m.contains("recursion limit") || (m.contains("budget") && m.contains("depth")) {
        Some(format!(
            "the YAML is nested deeper than {} levels",
            limits::MAX_DEPTH
        ))
    } else if m.contains("budget") && m.contains("documents") {
        Some(format!(
            "more than {} YAML documents in one file; split it",
            limits::MAX_DOCUMENTS
        ))
    } else if m.contains("budget") && (m.contains("alias") || m.contains("anchor")) {
        Some(format!(
            "more than {} YAML anchors or aliases in one file",
            limits::MAX_ALIASES
        ))
    } else if m.contains("budget") {
        Some(format!(
            "the file exceeds a YAML parsing limit ({})",
            message.trim()
        ))
    } else {
        None
    }
}

// === impl Deserialize for Node ===

/// The raw value, without a position; `Spanned<Raw>` adds it. Children are deserialized as
/// `Spanned<Raw>` again, straight from the YAML deserializer, so their spans survive (serde's
/// buffering `Content` would lose them).
struct Raw(Value);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Raw>::deserialize(d)?;
        let loc = spanned.referenced;
        Ok(Node {
            pos: Pos {
                line: loc.line() as u32,
                column: loc.column() as u32,
            },
            value: spanned.value.0,
        })
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(Value::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Raw(Value::Int(i))),
            Err(_) => Ok(Raw(Value::Float(v as f64))),
        }
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw(Value::Float(v as f64)))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw(Value::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(Value::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(Value::Str(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(Value::Str(v)))
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw(Value::Null))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Raw(Value::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Raw(Value::Map(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_nested_keys_and_values() {
        let text = "a: 1\nb:\n  - x: \"80\"\n    y: on\n---\n---\nc: [1, 2]\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2, "the empty document is dropped");
        let Value::Map(top) = &docs[0].value else {
            panic!("map")
        };
        assert_eq!(top[0].0.pos, Pos { line: 1, column: 1 });
        let Value::Seq(items) = &top[1].1.value else {
            panic!("seq")
        };
        let Value::Map(inner) = &items[0].value else {
            panic!("map")
        };
        assert_eq!(
            inner[0].1.value,
            Value::Str("80".into()),
            "quoted stays a string"
        );
        assert_eq!(inner[0].1.pos.line, 3);
        assert_eq!(inner[1].0.pos, Pos { line: 4, column: 5 });
        let Value::Map(second) = &docs[1].value else {
            panic!("map")
        };
        assert_eq!(second[0].0.pos.line, 7);
    }
}

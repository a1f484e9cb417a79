//! Where a route came from: the file and line in the repository of the rule and match a
//! plan's route was made of.

use crate::gitsync::Tree;
use crate::intent::node::{self, Node, Pos, Value};
use crate::intent::{Config, Intent};
use crate::model::istio::StringMatch;
use crate::model::{Model, Object};
use crate::xds::explain::RouteHit;

/// A place in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Relative to the config root, as errors name files.
    pub file: String,
    pub line: u32,
}

/// Where the rule and match of `hit` were written: the match's line in an intent or in a
/// plain object of `resources/` (its document's first line when `tree` lacks the file's
/// text). `None` for routes a proxy makes itself (a waypoint's pass-through, a
/// misdirected host).
pub fn locate(config: &Config, model: &Model, tree: &Tree, hit: &RouteHit) -> Option<Location> {
    if hit.kind.is_empty() {
        return None;
    }
    // A plain object of that kind, namespace and name: its document.
    for r in &config.resources {
        let (kind, meta) = match &*r.object {
            Object::HttpRoute(o) => ("HTTPRoute", &o.metadata),
            Object::GrpcRoute(o) => ("GRPCRoute", &o.metadata),
            Object::L4Route(o) => (o.kind, &o.metadata),
            Object::VirtualService(o) => ("VirtualService", &o.metadata),
            _ => continue,
        };
        if kind == hit.kind
            && meta.name == hit.object
            && meta.namespace.as_deref().unwrap_or("default") == hit.namespace
        {
            let line = tree
                .files
                .get(&r.file)
                .and_then(|text| match_line(text, r.pos, hit))
                .unwrap_or(r.pos.line);
            return Some(Location {
                file: r.file.clone(),
                line,
            });
        }
    }
    // An intent's own route: `<intent>-ingress`, `<intent>-waypoint-route` (HTTPRoutes
    // keep the intent's rule and match indices), or the VirtualService named after it.
    let intent_name = match hit.kind.as_str() {
        "HTTPRoute" => hit
            .object
            .strip_suffix("-ingress")
            .or_else(|| hit.object.strip_suffix("-waypoint-route"))?,
        "VirtualService" => hit.object.as_str(),
        _ => return None,
    };
    let intent = config
        .intents
        .iter()
        .find(|i| i.namespace == hit.namespace && i.name == intent_name)?;
    let at = |ri: usize, mi: usize| {
        let (rule, matches) = intent.rule_pos.get(ri)?;
        Some(Location {
            file: intent.file.clone(),
            line: matches.get(mi).unwrap_or(rule).line,
        })
    };
    if hit.kind == "HTTPRoute" {
        return at(hit.rule, hit.r#match).or(Some(Location {
            file: intent.file.clone(),
            line: intent.pos.line,
        }));
    }
    // A VirtualService's `http` entries are the intent's matches reordered and split (a
    // PathPrefix is an exact and a prefix entry): find the match they came from.
    let vs = model.objects.iter().find_map(|o| match &**o {
        Object::VirtualService(v)
            if v.metadata.name == hit.object
                && v.metadata.namespace.as_deref() == Some(hit.namespace.as_str()) =>
        {
            Some(v)
        }
        _ => None,
    })?;
    let m = vs.spec.http.get(hit.rule)?.match_.get(hit.r#match);
    let found = m.and_then(|m| find_intent_match(intent, m));
    found.and_then(|(ri, mi)| at(ri, mi)).or(Some(Location {
        file: intent.file.clone(),
        line: intent.pos.line,
    }))
}

fn find_intent_match(
    intent: &Intent,
    m: &crate::model::istio::HttpMatchRequest,
) -> Option<(usize, usize)> {
    let path = match &m.uri {
        Some(StringMatch::Exact(p))
        | Some(StringMatch::Prefix(p))
        | Some(StringMatch::Regex(p)) => p.as_str(),
        None => "/",
    };
    let method = match &m.method {
        Some(StringMatch::Exact(x)) => Some(x.as_str()),
        _ => None,
    };
    for (ri, rule) in intent.rules.iter().enumerate() {
        for (mi, im) in rule.matches.iter().enumerate() {
            let v = im.path.value.as_str();
            let same_path = v == path
                || format!("{}/", v.trim_end_matches('/')) == path
                || (path == "/" && v.is_empty());
            if same_path
                && im.method.as_deref() == method
                && im.headers.len() == m.headers.len()
                && im.query_params.len() == m.query_params.len()
            {
                return Some((ri, mi));
            }
        }
        if rule.matches.is_empty() && path == "/" {
            return Some((ri, 0));
        }
    }
    None
}

/// The line of match `hit.match` of rule `hit.rule` (`spec.rules[r].matches[m]`, or
/// `spec.http[r].match[m]` of a VirtualService) in the document of `text` at `doc`; the
/// rule's line when the match is not written (a rule without matches).
fn match_line(text: &[u8], doc: Pos, hit: &RouteHit) -> Option<u32> {
    let text = std::str::from_utf8(text).ok()?;
    let docs = node::parse_documents(text).ok()?;
    let d = docs.iter().find(|d| d.pos == doc)?;
    let (rules, matches) = match (hit.kind.as_str(), hit.section) {
        ("VirtualService", section) => (section, "match"),
        _ => ("rules", "matches"),
    };
    let rule = d
        .field("spec")?
        .field(rules)
        .and_then(|r| index(r, hit.rule))?;
    Some(
        rule.field(matches)
            .and_then(|m| index(m, hit.r#match))
            .unwrap_or(rule)
            .pos
            .line,
    )
}

fn index(n: &Node, i: usize) -> Option<&Node> {
    match &n.value {
        Value::Seq(v) => v.get(i),
        _ => None,
    }
}

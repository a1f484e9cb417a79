//! The second extraction (`cases-l4-mesh.yaml`, `inventory.md`, `manifests/*.go-objects.yaml`),
//! read into plain structs. Cases stay JSON values: their fields are many, optional, and read
//! where they are checked, following the `defaults:` block of the data.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

pub use super::data::{kind, name, namespace, parse_docs};

/// Kinds committed to the repository; Services, Deployments, EndpointSlices and Secrets
/// are modelled by the harness (echo servers, the endpoints file, `--certs`). ConfigMaps
/// (CA bundles are not secrets) are plain objects in `resources/`.
pub const COMMITTED_KINDS: &[&str] = &[
    "Namespace",
    "Gateway",
    "HTTPRoute",
    "GRPCRoute",
    "ReferenceGrant",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "ListenerSet",
    "GatewayClass",
    "ConfigMap",
    "BackendTLSPolicy",
];

pub struct L4Test {
    pub short_name: String,
    pub core: bool,
    pub features: Vec<String>,
    /// Objects of the test's manifests, placeholder substituted.
    pub objects: Vec<Value>,
    pub namespaces_ready: Vec<String>,
    pub phases: Vec<Phase>,
    pub runs_only_if: Value,
    /// The cases of this test (a case with `test:` belongs to that test only).
    pub cases: Vec<Value>,
}

/// Objects changed before the cases of `group` run.
pub struct Phase {
    pub group: String,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub enum Step {
    /// Add or replace (same kind, namespace and name) this object.
    Put(Value),
    Delete {
        kind: String,
        namespace: String,
        name: String,
    },
    /// Set `data[key]` of an object already applied (the data's inline patches,
    /// `'ConfigMap ns/name: data.ca.crt = ""'`).
    SetData {
        kind: String,
        namespace: String,
        name: String,
        key: String,
        value: DataValue,
    },
    /// A step the harness cannot express (free text in the data).
    Unsupported(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum DataValue {
    Text(String),
    /// What the object held when it was applied (`= original CA PEM`).
    Original,
}

/// `Kind ns/name: data.<key> = "<text>"` or `= original …`.
fn inline_patch(text: &str) -> Option<Step> {
    let (object, assignment) = text.split_once(": ")?;
    let (kind, rest) = object.split_once(' ')?;
    let (namespace, name) = rest.split_once('/')?;
    let (field, value) = assignment.split_once(" = ")?;
    let key = field.strip_prefix("data.")?;
    let value = value.trim();
    let value = if value.starts_with("original") {
        DataValue::Original
    } else {
        DataValue::Text(value.strip_prefix('"')?.strip_suffix('"')?.to_owned())
    };
    Some(Step::SetData {
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key: key.to_owned(),
        value,
    })
}

pub fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(s).collect())
        .unwrap_or_default()
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(rel).display()))
}

/// `manifests/<file>#Kind/ns/name` (or `#Kind/name` for cluster-scoped objects).
fn go_object(dir: &Path, reference: &str) -> Result<Value, String> {
    let (file, id) = reference
        .split_once('#')
        .ok_or_else(|| format!("no '#' in {reference}"))?;
    let parts: Vec<&str> = id.split('/').collect();
    let docs = parse_docs(&read(dir, file), file);
    docs.into_iter()
        .find(|o| match parts.as_slice() {
            [k, ns, n] => kind(o) == *k && namespace(o) == *ns && name(o) == *n,
            [k, n] => kind(o) == *k && name(o) == *n,
            _ => false,
        })
        .ok_or_else(|| format!("{reference}: no such object"))
}

fn parse_step(dir: &Path, b: &Value) -> Step {
    let text = |k: &str| s(&b[k]);
    if let Some(r) = text("apply").or_else(|| text("patch")) {
        if !r.contains('#')
            && let Some(step) = inline_patch(&r)
        {
            return step;
        }
        return match go_object(dir, &r) {
            Ok(o) => Step::Put(o),
            Err(e) => Step::Unsupported(e),
        };
    }
    if let Some(d) = text("delete") {
        // "Kind ns/name"
        if let Some((k, rest)) = d.split_once(' ')
            && let Some((ns, n)) = rest.split_once('/')
        {
            return Step::Delete {
                kind: k.to_owned(),
                namespace: ns.to_owned(),
                name: n.to_owned(),
            };
        }
        return Step::Unsupported(d);
    }
    Step::Unsupported(serde_json::to_string(b).unwrap_or_default())
}

pub fn load(dir: &Path) -> Vec<L4Test> {
    let data: Value =
        serde_saphyr::from_str(&read(dir, "cases-l4-mesh.yaml")).expect("cases-l4-mesh.yaml");
    let mut tests = Vec::new();
    for file in data["tests"].as_array().expect("tests:") {
        let phases: Vec<Phase> = file["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Phase {
                group: s(&p["group"]).unwrap_or_default(),
                steps: p["before"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    // A bare note changes nothing.
                    .filter(|b| b.as_object().is_some_and(|m| m.keys().any(|k| k != "note")))
                    .map(|b| parse_step(dir, b))
                    .collect(),
            })
            .collect();
        for t in file["tests"].as_array().expect("tests[].tests") {
            let short_name = s(&t["shortName"]).expect("shortName");
            let objects = strings(&t["manifests"])
                .iter()
                // Mesh tests' manifests are under manifests/mesh/ (some share a file
                // name with a Gateway test's).
                .map(|m| match m.strip_prefix("tests/mesh/") {
                    Some(f) => format!("mesh/{f}"),
                    None => m.rsplit('/').next().unwrap_or(m).to_owned(),
                })
                .filter(|m| dir.join("manifests").join(m).exists())
                .flat_map(|m| parse_docs(&read(dir, &format!("manifests/{m}")), &m))
                .collect();
            let cases = file["cases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| s(&c["test"]).is_none_or(|n| n == short_name))
                .cloned()
                .collect();
            tests.push(L4Test {
                core: s(&t["supportLevel"]).as_deref() == Some("Core"),
                features: strings(&t["features"]),
                objects,
                namespaces_ready: strings(&file["namespaces_must_be_ready"]),
                phases: phases
                    .iter()
                    .map(|p| Phase {
                        group: p.group.clone(),
                        steps: p.steps.clone(),
                    })
                    .collect(),
                runs_only_if: if t.get("runs_only_if").is_some() {
                    t["runs_only_if"].clone()
                } else {
                    file["runs_only_if"].clone()
                },
                cases,
                short_name,
            });
        }
    }
    tests
}

/// One row of `inventory.md`: a test, its profiles and its support level.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub short_name: String,
    pub profiles: Vec<String>,
    pub core: bool,
    pub in_cases: bool,
}

pub fn inventory(dir: &Path) -> Vec<Inventory> {
    read(dir, "inventory.md")
        .lines()
        .filter(|l| {
            l.starts_with("| ") && !l.starts_with("| ShortName") && !l.starts_with("| profile")
        })
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            // | ShortName | file | profile(s) | features | Core/Extended | provisional | in cases.yaml | in cases-l4-mesh.yaml | remark |
            if cols.len() < 10 || !cols[2].starts_with('`') {
                return None;
            }
            Some(Inventory {
                short_name: cols[1].to_owned(),
                profiles: cols[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|p| p.starts_with("GATEWAY-") || p.starts_with("MESH-"))
                    .map(str::to_owned)
                    .collect(),
                core: cols[5] == "Core",
                in_cases: cols[7] == "yes",
            })
        })
        .collect()
}

/// Rows of a previous `target/conformance.md`: ShortName -> (passed, total, notes).
pub fn conformance_md(text: &str) -> BTreeMap<String, (usize, usize, String)> {
    text.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ShortName"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            let (p, t) = cols.get(3)?.split_once('/')?;
            Some((
                cols[1].to_owned(),
                (p.parse().ok()?, t.parse().ok()?, cols.get(4)?.to_string()),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_patches_are_read() {
        match inline_patch(r#"ConfigMap ns/cm: data.ca.crt = """#) {
            Some(Step::SetData {
                kind,
                namespace,
                name,
                key,
                value,
            }) => {
                assert_eq!((kind.as_str(), namespace.as_str()), ("ConfigMap", "ns"));
                assert_eq!((name.as_str(), key.as_str()), ("cm", "ca.crt"));
                assert_eq!(value, DataValue::Text(String::new()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            inline_patch("ConfigMap ns/cm: data.ca.crt = original CA PEM"),
            Some(Step::SetData {
                value: DataValue::Original,
                ..
            })
        ));
        assert!(
            inline_patch("BackendTLSPolicy reconcile-test back to the manifest version").is_none()
        );
        assert!(inline_patch("ConfigMap ns/cm: spec.x = 1").is_none());
    }

    #[test]
    fn conformance_md_rows_are_read() {
        let md = "# x\n\n| ShortName | Core or Extended | passed/total | notes |\n|---|---|---|---|\n| HTTPRouteSimple | Core | 3/4 | boom |\n| X | Extended | 0/0 | not run: y |\n";
        let rows = conformance_md(md);
        assert_eq!(rows["HTTPRouteSimple"], (3, 4, "boom".to_owned()));
        assert_eq!(rows["X"].1, 0);
        assert_eq!(rows.len(), 2);
    }
}

//! Offline validation of rendered Kubernetes manifests.
//!
//! Custom resources (Gateway API, Istio, OpenShift Route) are checked against the
//! `openAPIV3Schema` of the CRDs in the shared CRD directory, converted to JSON Schema draft 7
//! the way kubeconform does it. Core kinds that tidegate renders but that have no CRD
//! (Namespace, Service, Kustomization) get small hand-written checks instead.
//!
//! The CRDs are read at run time and never copied into the project, so they can be upgraded in
//! one place. The directory is `$TIDEGATE_CRDS_DIR`, or `$CARGO_MANIFEST_DIR/../shared/crds`.
//!
//! Include it from a test crate with `#[path = "common/schema.rs"] mod schema;` and call
//! [`assert_valid_yaml`].

// Each test crate that includes this file uses a different subset of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Environment variable that overrides where the CRDs are read from.
pub const CRDS_DIR_ENV: &str = "TIDEGATE_CRDS_DIR";

/// Schema messages quote the offending instance, which for `anyOf`/`oneOf` failures can be a
/// whole `spec`; cut them so a failing test stays readable.
const MAX_MESSAGE_CHARS: usize = 300;

/// JSON Schema validators for every served CRD version, keyed by (`group/version`, kind).
pub struct Schemas {
    dir: PathBuf,
    validators: HashMap<(String, String), jsonschema::Validator>,
    load_time: Duration,
}

/// The CRD directory this process uses (see the module docs).
pub fn crds_dir() -> PathBuf {
    resolve_crds_dir(
        std::env::var_os(CRDS_DIR_ENV).map(PathBuf::from),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}

/// Pure part of [`crds_dir`], so the rule can be tested without mutating the environment.
pub fn resolve_crds_dir(env_value: Option<PathBuf>, manifest_dir: &Path) -> PathBuf {
    match env_value {
        // An empty variable is what `TIDEGATE_CRDS_DIR= cargo test` gives; treat it as unset.
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => manifest_dir.join("../shared/crds"),
    }
}

/// The schemas, loaded and compiled once per process. `None` when the CRD directory is missing.
///
/// A directory that exists but cannot be loaded (unparsable YAML, no CRDs, a schema the
/// validator rejects) panics instead: that is a broken setup, not an absent one.
pub fn schemas() -> Option<&'static Schemas> {
    static SCHEMAS: OnceLock<Option<Schemas>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            let dir = crds_dir();
            if !dir.is_dir() {
                return None;
            }
            match Schemas::load(&dir) {
                Ok(schemas) => Some(schemas),
                Err(err) => panic!("cannot load CRD schemas from {}: {err}", dir.display()),
            }
        })
        .as_ref()
}

/// [`schemas`], plus the policy for when they are missing: with `CI=true` that is a failure
/// (validation must not silently stop running there); locally it prints one warning and
/// returns `None` so the caller can skip.
pub fn require_schemas() -> Option<&'static Schemas> {
    if let Some(schemas) = schemas() {
        return Some(schemas);
    }
    let dir = crds_dir();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CRD schemas not found at {}; set {CRDS_DIR_ENV}",
            dir.display()
        );
    }
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        // Not eprintln!: the test harness captures that for passing tests, and this warning
        // is exactly what must not go unseen.
        let _ = writeln!(
            std::io::stderr(),
            "warning: CRD schemas not found at {}; skipping Kubernetes manifest validation \
             (set {CRDS_DIR_ENV}; with CI=true this is an error)",
            dir.display()
        );
    });
    None
}

/// Validates every document in `text` and panics with all problems if there are any. Skips
/// (after one warning) when the schemas are missing outside CI; see [`require_schemas`].
pub fn assert_valid_yaml(label: &str, text: &str) {
    let Some(schemas) = require_schemas() else {
        return;
    };
    let problems = schemas.validate_yaml(text);
    assert!(
        problems.is_empty(),
        "{label}: {} manifest problem(s):\n  {}\n--- manifest ---\n{text}",
        problems.len(),
        problems.join("\n  ")
    );
}

impl Schemas {
    /// Reads every `*.yaml`/`*.yml` file under `dir` (recursively) and compiles a validator for
    /// each served version of each CustomResourceDefinition found. Other documents are skipped.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let started = Instant::now();
        let mut files = Vec::new();
        collect_yaml_files(dir, &mut files)?;
        files.sort();
        let texts = files
            .iter()
            .map(|file| {
                std::fs::read_to_string(file)
                    .map_err(|e| format!("reading {}: {e}", file.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Parsing ~1.7 MB of YAML dominates the load time in unoptimised test builds, and half
        // of it is Istio's single file, so work per document rather than per file. Largest
        // first, so that a big document does not start last.
        let mut documents: Vec<(&Path, usize, &str)> = files
            .iter()
            .zip(&texts)
            .flat_map(|(file, text)| {
                split_documents(text)
                    .into_iter()
                    .map(move |(line, document)| (file.as_path(), line, document))
            })
            .collect();
        documents.sort_by_key(|&(_, _, document)| std::cmp::Reverse(document.len()));

        // Gateway API repeats the same hostname/name patterns in every version of every CRD;
        // sharing compiled regexes across builds saves a good part of the compile time.
        let patterns = jsonschema::PatternCache::new();
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, documents.len().max(1));
        let compiled: Vec<Result<Vec<Compiled>, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        while let Some(&(file, line, document)) =
                            documents.get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            out.extend(compile_document(file, line, document, &patterns)?);
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
                .collect()
        });

        let mut validators = HashMap::new();
        let mut origin: HashMap<(String, String), &Path> = HashMap::new();
        for (key, validator, file) in compiled
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
        {
            if let Some(previous) = origin.insert(key.clone(), file) {
                return Err(format!(
                    "{} {} is defined by both {} and {}",
                    key.0,
                    key.1,
                    previous.display(),
                    file.display()
                ));
            }
            validators.insert(key, validator);
        }
        if validators.is_empty() {
            return Err("no CustomResourceDefinitions found".to_owned());
        }
        Ok(Self {
            dir: dir.to_owned(),
            validators,
            load_time: started.elapsed(),
        })
    }

    /// Where the CRDs were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wall time spent reading, converting and compiling the schemas.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Whether a CRD schema exists for this `apiVersion` and `kind`.
    pub fn has_schema(&self, api_version: &str, kind: &str) -> bool {
        self.validators
            .contains_key(&(api_version.to_owned(), kind.to_owned()))
    }

    /// Number of (apiVersion, kind) pairs with a CRD schema.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Validates every YAML document in `text` (multi-document). Returns one message per
    /// problem, formatted `<Kind> <namespace>/<name> <json-pointer>: <error>`; empty when valid.
    pub fn validate_yaml(&self, text: &str) -> Vec<String> {
        match serde_saphyr::from_multiple::<Value>(text) {
            Ok(docs) => docs
                .iter()
                .flat_map(|doc| self.validate_value(doc))
                .collect(),
            Err(err) => vec![format!("YAML parse error: {err}")],
        }
    }

    /// Validates one manifest. See [`Schemas::validate_yaml`] for the message format; the
    /// namespace part is omitted for objects without one, and the document root is `/`.
    pub fn validate_value(&self, doc: &Value) -> Vec<String> {
        let Some(object) = doc.as_object() else {
            return vec![format!(
                "document is not a mapping: {}",
                truncate(doc.to_string())
            )];
        };
        let mut problems = Problems::default();
        let api_version = object.get("apiVersion").and_then(Value::as_str);
        let kind = object.get("kind").and_then(Value::as_str);

        match (api_version, kind) {
            (Some("v1"), Some("Namespace")) => {
                check_metadata(object, NameRule::Dns1123Label, &mut problems);
            }
            (Some("v1"), Some("Service")) => {
                // Service names become DNS labels of the form <name>.<ns>.svc, so the API
                // server requires an RFC 1035 label, stricter than the usual subdomain.
                check_metadata(object, NameRule::Dns1035Label, &mut problems);
                check_service(object, &mut problems);
            }
            (Some("v1"), Some("ConfigMap")) => {
                check_metadata(object, NameRule::Dns1123Subdomain, &mut problems);
                // The API server's rules for `data`: keys are file names, values strings.
                if let Some(data) = object.get("data") {
                    match data.as_object() {
                        Some(entries) => {
                            for (k, v) in entries {
                                let key_ok = !k.is_empty()
                                    && k.len() <= 253
                                    && k.bytes().all(|b| {
                                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
                                    });
                                if !key_ok {
                                    problems.push("/data", format!("invalid key {k:?}"));
                                }
                                if !v.is_string() {
                                    problems.push(&format!("/data/{k}"), "must be a string".into());
                                }
                            }
                        }
                        None => problems.push("/data", "must be a mapping".into()),
                    }
                }
            }
            (Some("kustomize.config.k8s.io/v1beta1"), Some("Kustomization")) => {
                // A kustomization.yaml is build input, never stored in a cluster, and kustomize
                // itself does not require metadata; check it only when present.
                if object.contains_key("metadata") {
                    check_metadata(object, NameRule::Dns1123Subdomain, &mut problems);
                }
                check_kustomization(object, &mut problems);
            }
            (Some(api_version), Some(kind)) => {
                check_metadata(object, NameRule::Dns1123Subdomain, &mut problems);
                match self
                    .validators
                    .get(&(api_version.to_owned(), kind.to_owned()))
                {
                    Some(validator) => {
                        for error in validator.iter_errors(doc) {
                            problems.push(error.instance_path().as_str(), error.to_string());
                        }
                    }
                    None => problems.push("", format!("no schema for {api_version} {kind}")),
                }
            }
            _ => {
                check_metadata(object, NameRule::Dns1123Subdomain, &mut problems);
                for field in ["apiVersion", "kind"] {
                    if !object.get(field).is_some_and(Value::is_string) {
                        problems.push(&format!("/{field}"), "required, must be a string".into());
                    }
                }
            }
        }
        let subject = describe(object);
        problems
            .0
            .into_iter()
            .map(|(pointer, message)| {
                let pointer = if pointer.is_empty() { "/" } else { &pointer };
                format!("{subject} {pointer}: {}", truncate(message))
            })
            .collect()
    }
}

/// A compiled CRD version: (`group/version`, kind), its validator, and the file it came from.
type Compiled<'a> = ((String, String), jsonschema::Validator, &'a Path);

/// Parses one YAML document of `file` (starting at `line`) and compiles its CRD schemas.
fn compile_document<'a>(
    file: &'a Path,
    line: usize,
    text: &str,
    patterns: &jsonschema::PatternCache,
) -> Result<Vec<Compiled<'a>>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        format!(
            "parsing {} (document starting at line {line}): {e}",
            file.display()
        )
    })?;
    let mut out = Vec::new();
    for doc in &docs {
        for (key, schema) in crd_schemas(doc) {
            let validator = jsonschema::draft7::options()
                .with_pattern_cache(patterns.clone())
                .build(&schema)
                .map_err(|e| {
                    format!("compiling {} {} from {}: {e}", key.0, key.1, file.display())
                })?;
            out.push((key, validator, file));
        }
    }
    Ok(out)
}

/// Splits a YAML stream before each `---` line, returning (1-based first line, text) pieces.
///
/// A `---` at the start of a line is always a document marker in YAML (it cannot occur inside a
/// scalar), so each piece parses exactly as it would within the stream. Directives (`%YAML`)
/// belong to the document after them, so a piece holding one is not cut off there; parsing a
/// piece with several documents is still correct, just not parallel.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        let piece = &text[start..offset];
        if is_marker && !piece.is_empty() && !piece.lines().any(|l| l.starts_with('%')) {
            pieces.push((start_line, piece));
            (start, start_line) = (offset, index + 1);
        }
        offset += line.len();
    }
    if start < text.len() {
        pieces.push((start_line, &text[start..]));
    }
    pieces
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("listing {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The draft-7 schemas of every served version of `doc`, if it is a CustomResourceDefinition.
fn crd_schemas(doc: &Value) -> Vec<((String, String), Value)> {
    if doc.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
        return Vec::new();
    }
    let spec = &doc["spec"];
    let (Some(group), Some(kind), Some(versions)) = (
        spec["group"].as_str(),
        spec["names"]["kind"].as_str(),
        spec["versions"].as_array(),
    ) else {
        return Vec::new();
    };
    versions
        .iter()
        .filter(|version| version["served"].as_bool() == Some(true))
        .filter_map(|version| {
            let name = version["name"].as_str()?;
            let schema = version["schema"]["openAPIV3Schema"].as_object()?;
            let key = (format!("{group}/{name}"), kind.to_owned());
            Some((key, to_json_schema(schema)))
        })
        .collect()
}

/// Converts a CRD version's `openAPIV3Schema` to a standalone draft-7 schema (public so the
/// conversion rules can be tested on their own).
pub fn to_json_schema(schema: &Map<String, Value>) -> Value {
    let mut root = schema.clone();
    // Istio's generated CRDs describe only spec/status. The API server accepts the standard
    // envelope for every kind regardless, so add it before strict mode closes the object.
    // metadata is checked by hand (see check_metadata), as the CRDs only say `type: object`.
    if let Value::Object(properties) = root
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        for (field, schema) in [
            ("apiVersion", json!({"type": "string"})),
            ("kind", json!({"type": "string"})),
            ("metadata", json!({"type": "object"})),
        ] {
            properties.entry(field).or_insert(schema);
        }
    }
    let mut converted = convert(&Value::Object(root), true);
    if let Value::Object(map) = &mut converted {
        map.insert(
            "$schema".to_owned(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
    }
    converted
}

/// Converts one Kubernetes structural-schema node to draft 7.
///
/// `structural` is false inside `allOf`/`anyOf`/`oneOf`/`not`. Kubernetes only allows pure value
/// checks there (the OpenShift Route spec uses `anyOf: [{properties: {path: {maxLength: 0}}}, …]`),
/// so closing those objects with `additionalProperties: false` would reject every real object.
fn convert(node: &Value, structural: bool) -> Value {
    let Value::Object(source) = node else {
        return node.clone();
    };
    let flag = |key: &str| source.get(key).and_then(Value::as_bool) == Some(true);
    let mut out = Map::new();
    for (key, value) in source {
        // e.g. OpenShift's `anyOf: null` on spec.port.targetPort: meaningless, and draft 7
        // rejects a null keyword value when compiling.
        if value.is_null() {
            continue;
        }
        let converted = match key.as_str() {
            "properties" | "patternProperties" | "definitions" => match value {
                Value::Object(children) => Value::Object(
                    children
                        .iter()
                        .map(|(name, child)| (name.clone(), convert(child, structural)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "additionalItems" => match value {
                Value::Array(children) => Value::Array(
                    children
                        .iter()
                        .map(|child| convert(child, structural))
                        .collect(),
                ),
                other => convert(other, structural),
            },
            "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(children) => {
                    Value::Array(children.iter().map(|child| convert(child, false)).collect())
                }
                other => other.clone(),
            },
            "not" => convert(value, false),
            // Handled below, or annotations that draft 7 ignores anyway (CEL rules are not
            // enforced here). Dropping them keeps the compiled schemas small.
            "nullable" | "description" => continue,
            _ if key.starts_with("x-kubernetes-") => continue,
            // Everything else is either a keyword with a plain value or data (enum, default,
            // example), which must be copied verbatim: `enum: [null]` is meaningful.
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }

    let nullable = flag("nullable");
    if flag("x-kubernetes-int-or-string") {
        // Kubernetes allows no anyOf next to int-or-string other than exactly this pair, so
        // replacing it loses nothing; the declared type (if any) would contradict it.
        out.remove("type");
        let mut either = vec![json!({"type": "integer"}), json!({"type": "string"})];
        if nullable {
            either.push(json!({"type": "null"}));
        }
        out.insert("anyOf".to_owned(), Value::Array(either));
    }
    if nullable {
        match out.get_mut("type") {
            Some(Value::String(ty)) => {
                let ty = std::mem::take(ty);
                out.insert("type".to_owned(), json!([ty, "null"]));
            }
            Some(Value::Array(types)) if !types.contains(&json!("null")) => {
                types.push(json!("null"))
            }
            _ => {}
        }
        // Kubernetes accepts null for a nullable field before looking at its enum.
        if let Some(Value::Array(values)) = out.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
    }

    // Strict mode, as kubeconform -strict: an unknown field is almost always a typo or a field
    // from another API version, and the API server would silently prune it.
    if structural
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    Value::Object(out)
}

/// Problems for one document as (JSON pointer, message).
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, pointer: &str, message: String) {
        self.0.push((pointer.to_owned(), message));
    }
}

/// `<Kind> <namespace>/<name>`, tolerating whatever is missing (that is reported separately).
fn describe(object: &Map<String, Value>) -> String {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let kind = text(object.get("kind")).unwrap_or_else(|| "<no kind>".to_owned());
    let metadata = object.get("metadata");
    let name = text(metadata.and_then(|m| m.get("name"))).unwrap_or_else(|| "<no name>".to_owned());
    match text(metadata.and_then(|m| m.get("namespace"))) {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

#[derive(Clone, Copy)]
enum NameRule {
    Dns1123Label,
    Dns1035Label,
    Dns1123Subdomain,
}

fn check_metadata(object: &Map<String, Value>, rule: NameRule, problems: &mut Problems) {
    let Some(metadata) = object.get("metadata") else {
        problems.push("/metadata", "required mapping is missing".into());
        return;
    };
    let Some(metadata) = metadata.as_object() else {
        problems.push(
            "/metadata",
            format!("expected a mapping, got {}", type_of(metadata)),
        );
        return;
    };
    match metadata.get("name") {
        None => problems.push("/metadata/name", "required string is missing".into()),
        Some(Value::String(name)) => {
            let (valid, expected) = match rule {
                NameRule::Dns1123Label => (is_dns1123_label(name), "an RFC 1123 DNS label"),
                NameRule::Dns1035Label => (is_dns1035_label(name), "an RFC 1035 DNS label"),
                NameRule::Dns1123Subdomain => {
                    (is_dns1123_subdomain(name), "an RFC 1123 DNS subdomain")
                }
            };
            if !valid {
                problems.push("/metadata/name", format!("{name:?} is not {expected}"));
            }
        }
        Some(other) => problems.push(
            "/metadata/name",
            format!("expected a string, got {}", type_of(other)),
        ),
    }
    match metadata.get("namespace") {
        None => {}
        Some(Value::String(namespace)) if is_dns1123_label(namespace) => {}
        Some(other) => problems.push(
            "/metadata/namespace",
            format!("{other} is not an RFC 1123 DNS label"),
        ),
    }
    for field in ["labels", "annotations"] {
        check_string_map(metadata.get(field), &format!("/metadata/{field}"), problems);
    }
}

/// A `map[string]string` field: in YAML an unquoted `true`, `8080` or `null` value silently
/// turns into a non-string that the API server rejects.
fn check_string_map(value: Option<&Value>, pointer: &str, problems: &mut Problems) {
    match value {
        None => {}
        Some(Value::Object(entries)) => {
            for (key, value) in entries {
                if !value.is_string() {
                    problems.push(
                        &format!("{pointer}/{}", escape_pointer(key)),
                        format!("expected a string, got {} {value}", type_of(value)),
                    );
                }
            }
        }
        Some(other) => problems.push(
            pointer,
            format!("expected a mapping, got {}", type_of(other)),
        ),
    }
}

fn check_service(object: &Map<String, Value>, problems: &mut Problems) {
    let Some(spec) = object.get("spec") else {
        problems.push("/spec", "required mapping is missing".into());
        return;
    };
    let Some(spec) = spec.as_object() else {
        problems.push(
            "/spec",
            format!("expected a mapping, got {}", type_of(spec)),
        );
        return;
    };
    const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if let Some(ty) = spec.get("type")
        && !ty.as_str().is_some_and(|ty| TYPES.contains(&ty))
    {
        problems.push("/spec/type", format!("{ty} is not one of {TYPES:?}"));
    }
    check_string_map(spec.get("selector"), "/spec/selector", problems);

    let ports = match spec.get("ports") {
        None => return,
        Some(Value::Array(ports)) => ports,
        Some(other) => {
            problems.push(
                "/spec/ports",
                format!("expected a list, got {}", type_of(other)),
            );
            return;
        }
    };
    for (index, port) in ports.iter().enumerate() {
        let at = |field: &str| format!("/spec/ports/{index}{field}");
        let Some(port) = port.as_object() else {
            problems.push(
                &at(""),
                format!("expected a mapping, got {}", type_of(port)),
            );
            continue;
        };
        match port.get("port") {
            None => problems.push(&at("/port"), "required integer is missing".into()),
            Some(value) if !is_port_number(value) => problems.push(
                &at("/port"),
                format!("{value} is not an integer in 1..=65535"),
            ),
            Some(_) => {}
        }
        match port.get("name") {
            Some(Value::String(_)) => {}
            // The API server needs names to tell ports apart once there is more than one.
            None if ports.len() > 1 => problems.push(
                &at("/name"),
                "required when a Service has more than one port".into(),
            ),
            None => {}
            Some(other) => problems.push(
                &at("/name"),
                format!("expected a string, got {}", type_of(other)),
            ),
        }
        if let Some(protocol) = port.get("protocol")
            && !matches!(protocol.as_str(), Some("TCP" | "UDP" | "SCTP"))
        {
            problems.push(
                &at("/protocol"),
                format!("{protocol} is not one of TCP, UDP, SCTP"),
            );
        }
        if let Some(target) = port.get("targetPort")
            && !(is_port_number(target) || target.as_str().is_some_and(|s| !s.is_empty()))
        {
            problems.push(
                &at("/targetPort"),
                format!("{target} is neither a port number nor a port name"),
            );
        }
    }
}

fn check_kustomization(object: &Map<String, Value>, problems: &mut Problems) {
    match object.get("resources") {
        None => {}
        Some(Value::Array(resources)) => {
            for (index, resource) in resources.iter().enumerate() {
                if !resource.is_string() {
                    problems.push(
                        &format!("/resources/{index}"),
                        format!("expected a string, got {}", type_of(resource)),
                    );
                }
            }
        }
        Some(other) => problems.push(
            "/resources",
            format!("expected a list of strings, got {}", type_of(other)),
        ),
    }
}

fn is_port_number(value: &Value) -> bool {
    value
        .as_u64()
        .is_some_and(|port| (1..=65535).contains(&port))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

/// An RFC 1123 label that also starts with a letter.
fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Dot-separated RFC 1123 labels, at most 253 characters.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// RFC 6901 escaping for one reference token (label keys like `app.kubernetes.io/name`).
fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

fn truncate(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => {
            let mut short = message[..cut].to_owned();
            let _ = write!(short, "… ({} chars)", message.chars().count());
            short
        }
        None => message,
    }
}

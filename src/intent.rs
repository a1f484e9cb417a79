//! Ingress intents: reading them from a config tree, validating them, expanding them into
//! the model.
//!
//! A commit is accepted or rejected as a whole: [`load`] either returns every intent of the
//! tree, or every problem found in it, never a subset.

pub mod config;
pub mod created;
pub mod decode;
pub mod expand;
pub mod gateway_api;
pub mod istio;
pub mod node;
pub mod resources;
pub mod spec;

use std::fmt;

pub use config::Config;
pub use decode::Problem;
pub use spec::{Exposure, Intent, Mode, Platform, Protocol, Settings};

use crate::gitsync::Tree;
use decode::Cx;
use node::Pos;

/// The settings file at the root of a config repo.
pub const SETTINGS_FILE: &str = "tidegate.yaml";
/// Where intents live.
pub const INTENTS_DIR: &str = "intents/";

/// What of a config repo tidegate reads: the settings file, intents and plain objects, each
/// file at most [`node::limits::MAX_FILE_BYTES`] (the parser's budget).
pub const LAYOUT: crate::gitsync::Layout = crate::gitsync::Layout {
    files: &[SETTINGS_FILE],
    dirs: &[INTENTS_DIR, resources::RESOURCES_DIR],
    max_file_bytes: node::limits::MAX_FILE_BYTES,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tree holds invalid input; every problem is listed.
    #[error("{} problem(s) in the config:\n{}", .0.len(), Problems(.0))]
    Invalid(Vec<Problem>),
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Decodes and validates every intent in `tree`.
pub fn load(tree: &Tree) -> Result<Config, Error> {
    load_cached(tree, &mut Cache::default())
}

/// What one intent file says, decoded once per (path, content).
#[derive(Debug, Default)]
struct FileResult {
    /// Shared with every commit's Config while the file is unchanged: the incremental
    /// stages after this one recognise an unchanged intent by its address.
    intents: Vec<std::sync::Arc<Intent>>,
    /// A `resources/` file's plain objects.
    resources: Vec<resources::Resource>,
    problems: Vec<Problem>,
}

/// Gateways (namespace, name) whose intents passed the per-gateway checks, with those
/// intents (held, so their addresses are not reused while cached).
type Checked = foldhash::HashMap<(String, String), Vec<std::sync::Arc<Intent>>>;

/// Decoded intent files by (path, blob id): an unchanged file is not parsed again, and
/// with [`Cache::knows`] not even read from Git.
/// Cloning is cheap (the decoded files are shared): a preview branch starts from the
/// followed branch's cache and decodes only the files it changed.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    /// By path: the blob id decoded and what it decoded to.
    files: std::collections::HashMap<String, (String, std::sync::Arc<FileResult>)>,
    /// Gateways whose intents passed the per-gateway checks.
    checked: Checked,
    /// What each gateway's intents expanded to.
    expanded: expand::Cache,
}

impl Cache {
    /// Whether the file `path` with content id `id` is decoded already.
    pub fn knows(&self, path: &str, id: &str) -> bool {
        self.files.get(path).is_some_and(|(known, _)| known == id)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Like [`load`], reusing (and updating) `cache`. Files not in `tree` leave the cache.
pub fn load_cached(tree: &Tree, cache: &mut Cache) -> Result<Config, Error> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    let settings = match tree.files.get(SETTINGS_FILE) {
        None => Settings::default(),
        Some(bytes) => {
            let mut cx = Cx::new(SETTINGS_FILE);
            let settings = match parse_file(&mut cx, bytes) {
                Some(docs) if docs.len() == 1 => spec::decode_settings(&mut cx, &docs[0]),
                Some(docs) if docs.is_empty() => Settings::default(),
                Some(docs) => {
                    cx.report(docs[1].pos, "", "tidegate.yaml must hold one YAML document");
                    Settings::default()
                }
                None => Settings::default(),
            };
            problems.append(&mut cx.problems);
            settings
        }
    };

    let mut intents = Vec::new();
    let mut saw_intent_file = false;
    let mut live = std::collections::HashSet::new();
    // A large first render (thousands of files) takes a while: say how far it got.
    let to_decode = tree
        .files
        .keys()
        .filter(|p| p.starts_with(INTENTS_DIR))
        .count();
    let mut decoded = 0usize;
    let mut last_report = std::time::Instant::now();
    let mut plain = Vec::new();
    let mut fresh = decode_fresh(tree, cache);
    for (path, id) in &tree.ids {
        let is_resource = path.starts_with(resources::RESOURCES_DIR);
        if !path.starts_with(INTENTS_DIR) && !is_resource {
            continue;
        }
        if !is_yaml(path) {
            warnings.push(format!(
                "{path}: ignored (only *.yaml and *.yml files are read)"
            ));
            continue;
        }
        saw_intent_file = true;
        let cached = cache
            .files
            .get(path)
            .filter(|(known, _)| known == id)
            .map(|(_, r)| r.clone());
        let result = match (cached, tree.files.get(path)) {
            (Some(r), _) => r,
            (None, Some(bytes)) => {
                let mut decoded_file = fresh
                    .remove(path.as_str())
                    .unwrap_or_else(|| decode_file(path, bytes, is_resource));
                // An intent the edit did not touch keeps the previous commit's `Arc`,
                // so the later stages see its gateway as unchanged (a file usually
                // holds intents of several gateways). Plain objects likewise.
                if let Some((_, old)) = cache.files.get(path) {
                    for i in &mut decoded_file.intents {
                        if let Some(same) = old.intents.iter().find(|o| ***o == **i) {
                            *i = same.clone();
                        }
                    }
                    for r in &mut decoded_file.resources {
                        if let Some(same) = old.resources.iter().find(|o| *o.object == *r.object) {
                            r.object = same.object.clone();
                        }
                    }
                }
                let r = std::sync::Arc::new(decoded_file);
                decoded += 1;
                if last_report.elapsed() > std::time::Duration::from_secs(2) {
                    tracing::info!("decoding intents: {decoded}/{to_decode} files");
                    last_report = std::time::Instant::now();
                }
                cache.files.insert(path.clone(), (id.clone(), r.clone()));
                r
            }
            // The caller skipped reading a blob it did not have cached: a bug.
            (None, None) => std::sync::Arc::new(FileResult {
                problems: vec![Problem {
                    file: path.clone(),
                    pos: Pos::default(),
                    field: String::new(),
                    message: "internal error: file content not read".into(),
                }],
                ..FileResult::default()
            }),
        };
        live.insert(path.as_str());
        intents.extend(result.intents.iter().cloned());
        for r in &result.resources {
            if let crate::model::Object::HttpRoute(h) = &*r.object
                && h.spec.rules.iter().any(|rule| rule.retry.is_some())
            {
                warnings.push(format!("{}:{}: HTTPRoute {}: `retry` is a field of Gateway API's experimental channel; the proxies retry, but a cluster with the standard-channel CRDs drops the field from the applied manifest", r.file, r.pos, h.metadata.name));
            }
        }
        plain.extend(result.resources.iter().cloned());
        problems.extend(result.problems.iter().cloned());
    }
    cache.files.retain(|p, _| live.contains(p.as_str()));
    for (path, size) in &tree.too_large {
        problems.push(Problem {
            file: path.clone(),
            pos: Pos::default(),
            field: String::new(),
            message: format!(
                "the file is {size} bytes; the limit is {} bytes (split it into several files)",
                node::limits::MAX_FILE_BYTES
            ),
        });
    }
    for s in &tree.skipped {
        warnings.push(s.clone());
    }
    if intents.len() > node::limits::MAX_INTENTS {
        problems.push(Problem {
            file: String::new(),
            pos: Pos::default(),
            field: String::new(),
            message: format!(
                "{} intents in one commit; the limit is {}",
                intents.len(),
                node::limits::MAX_INTENTS
            ),
        });
    }
    if !saw_intent_file && !tree.ids.contains_key(SETTINGS_FILE) {
        problems.push(Problem {
            file: String::new(),
            pos: Pos::default(),
            field: String::new(),
            message: format!("no {SETTINGS_FILE} and no {INTENTS_DIR}*.yaml here: is --repo the config repo's directory?"),
        });
    }

    // Also when some files had problems: what the valid intents say about each other is
    // reported in the same pass, so one round of fixes suffices.
    cross_check(&settings, &intents, &mut problems, &mut cache.checked);
    if !problems.is_empty() {
        problems.sort();
        problems.dedup();
        return Err(Error::Invalid(problems));
    }
    intents.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(Config {
        settings,
        intents,
        resources: plain,
        warnings,
    })
}

/// The files of `tree` that `cache` does not hold, decoded on every core: at 10,000
/// intents a cold start (a new replica, the base side of a diff) spends most of its time
/// here, and files decode independently. Few files are decoded in place, where a thread
/// would cost more than it saves.
fn decode_fresh<'t>(
    tree: &'t Tree,
    cache: &Cache,
) -> std::collections::HashMap<&'t str, FileResult> {
    let todo: Vec<(&str, &[u8], bool)> = tree
        .ids
        .iter()
        .filter(|(path, id)| {
            (path.starts_with(INTENTS_DIR) || path.starts_with(resources::RESOURCES_DIR))
                && is_yaml(path)
                && !cache.knows(path, id)
        })
        .filter_map(|(path, _)| {
            let bytes = tree.files.get(path)?;
            Some((
                path.as_str(),
                bytes.as_slice(),
                path.starts_with(resources::RESOURCES_DIR),
            ))
        })
        .collect();
    const MIN_PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(todo.len() / MIN_PER_THREAD);
    if threads < 2 {
        return std::collections::HashMap::new();
    }
    let chunk = todo.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = todo
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(path, bytes, plain)| (*path, decode_file(path, bytes, *plain)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The files of `intents/` and `resources/` that are read; others there are warned about.
fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

fn decode_file(path: &str, bytes: &[u8], plain: bool) -> FileResult {
    let mut cx = Cx::new(path);
    let mut intents = Vec::new();
    let mut objects = Vec::new();
    if let Some(docs) = parse_file(&mut cx, bytes) {
        if plain {
            objects = resources::decode_documents(&mut cx, &docs);
        } else {
            for doc in &docs {
                if let Some(intent) = spec::decode_intent(&mut cx, doc) {
                    intents.push(std::sync::Arc::new(intent));
                }
            }
        }
    }
    FileResult {
        intents,
        resources: objects,
        problems: cx.problems,
    }
}

fn parse_file(cx: &mut Cx<'_>, bytes: &[u8]) -> Option<Vec<node::Node>> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        cx.report(
            Pos::default(),
            "",
            "the file is not valid UTF-8; valid: UTF-8 text",
        );
        return None;
    };
    match node::parse_documents(text) {
        Ok(docs) => Some(docs),
        Err(e) => {
            let pos = e.location().map_or(Pos::default(), |l| Pos {
                line: l.line() as u32,
                column: l.column() as u32,
            });
            // serde-saphyr's message embeds a snippet; the first line says what is wrong.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid YAML").trim();
            // Drop serde-saphyr's own "error: line L column C: " prefix; the location is
            // already in the problem.
            let first = match first.strip_prefix("error: line ") {
                Some(rest) => rest.split_once(": ").map_or(rest, |(_, m)| m),
                None => first,
            }
            .to_owned();
            match node::explain_limit(&first) {
                Some(limit) => cx.report(pos, "", limit),
                None => cx.report(pos, "", format!("invalid YAML: {first}")),
            }
            None
        }
    }
}

/// Checks that need every intent at once: duplicates, conflicts on a shared gateway or
/// namespace, and settings-dependent fields.
fn cross_check(
    settings: &Settings,
    intents: &[std::sync::Arc<Intent>],
    problems: &mut Vec<Problem>,
    checked: &mut Checked,
) {
    let at = |i: &Intent, pos: Pos, field: &str, message: String| Problem {
        file: i.file.clone(),
        pos,
        field: field.to_owned(),
        message,
    };

    for i in intents {
        if i.gateway.exposure.value == Exposure::OpenShiftRoute
            && settings.platform != Platform::OpenShift
        {
            problems.push(at(i, i.gateway.exposure.pos, "spec.gateway.exposure", "OpenShiftRoute needs an OpenShift cluster, but tidegate.yaml says platform: kubernetes (the default); valid here: LoadBalancer or ClusterIP, or set `platform: openshift` in tidegate.yaml".to_owned()));
        }
    }

    // The maps below are rebuilt over every intent on every commit: hashed, with borrowed
    // keys, and messages formatted only when there is a problem.
    // Duplicate intents.
    let mut by_name: foldhash::HashMap<(&str, &str), &Intent> = Default::default();
    for i in intents {
        if let Some(first) = by_name.insert((&i.namespace, &i.name), i) {
            problems.push(at(i, i.pos, "metadata.name", format!(
                "intent {}/{} is defined twice: here and at {}:{}; valid: one intent per namespace and name",
                i.namespace, i.name, first.file, first.pos
            )));
        }
    }

    // Per gateway: intents sharing it must agree on how it is built and exposed, and
    // must not claim the same host and match. A gateway whose intents are the very ones
    // that passed these checks last commit (same `Arc`s) is not checked again.
    let mut groups: foldhash::HashMap<(&str, &str), Vec<&std::sync::Arc<Intent>>> =
        Default::default();
    for i in intents {
        groups
            .entry((i.gateway_namespace(), i.gateway.name.as_str()))
            .or_default()
            .push(i);
    }
    let mut passed = Checked::default();
    for (key, users) in &groups {
        let owned = (key.0.to_owned(), key.1.to_owned());
        if let Some(prev) = checked.remove(&owned)
            && prev.len() == users.len()
            && prev
                .iter()
                .zip(users)
                .all(|(a, b)| std::sync::Arc::ptr_eq(a, b))
        {
            passed.insert(owned, prev);
            continue;
        }
        let before = problems.len();
        check_gateway(users, problems);
        if problems.len() == before {
            passed.insert(
                owned,
                users.iter().map(|u| std::sync::Arc::clone(u)).collect(),
            );
        }
    }
    *checked = passed;

    // Namespace labels must not contradict each other.
    // (ambient?, waypoint or revision) decides the labels.
    fn dataplane<'b>(settings: &'b Settings, i: &'b Intent) -> (bool, Option<&'b str>) {
        match i.mode.value {
            // A TLS/TCP/UDP intent names no waypoint (it has no L7 rules for one).
            Mode::Ambient if i.gateway.protocol.is_l4() => (true, None),
            Mode::Ambient => (true, Some(i.waypoint_name())),
            _ => (false, expand::revision(settings, i)),
        }
    }
    let describe = |d: &(bool, Option<&str>)| match d {
        (true, Some(w)) => format!("ambient with waypoint {w}"),
        (true, None) => "ambient".to_owned(),
        (false, Some(rev)) => format!("sidecar injection with revision {rev}"),
        (false, None) => "sidecar injection (istio-injection=enabled)".to_owned(),
    };
    let mut namespaces: foldhash::HashMap<&str, (&Intent, (bool, Option<&str>))> =
        Default::default();
    for i in intents {
        let d = dataplane(settings, i);
        match namespaces.get(i.namespace.as_str()) {
            None => {
                namespaces.insert(&i.namespace, (i, d));
            }
            // Ambient without a waypoint agrees with ambient with any: the first intent
            // that names one decides it for the rest.
            Some((_, other)) if other.0 && d.0 && (other.1.is_none() || d.1.is_none()) => {
                if other.1.is_none() && d.1.is_some() {
                    namespaces.insert(&i.namespace, (i, d));
                }
            }
            Some((first, other)) if *other != d => {
                problems.push(at(i, i.mode.pos, "spec.mode", format!(
                    "namespace {} would be labelled for {} here but for {} by {}/{} ({}:{}); intents in one namespace must agree",
                    i.namespace, describe(&d), describe(other), first.namespace, first.name, first.file, first.pos
                )));
            }
            Some(_) => {}
        }
    }
}

/// The checks within one gateway's intents (in commit order).
fn check_gateway(users: &[&std::sync::Arc<Intent>], problems: &mut Vec<Problem>) {
    let at = |i: &Intent, pos: Pos, field: &str, message: String| Problem {
        file: i.file.clone(),
        pos,
        field: field.to_owned(),
        message,
    };
    let Some(first) = users.first() else {
        return;
    };
    for i in &users[1..] {
        let key = (i.gateway_namespace(), i.gateway.name.as_str());
        let gw = || format!("{}/{}", key.0, key.1);
        if first.mode.value != i.mode.value {
            problems.push(at(i, i.mode.pos, "spec.mode", format!(
                "gateway {} is used with mode {} here but with mode {} by {}/{} ({}:{}); one gateway serves one mode",
                gw(), i.mode.value.as_str(), first.mode.value.as_str(), first.namespace, first.name, first.file, first.mode.pos
            )));
        }
        if first.gateway.exposure.value != i.gateway.exposure.value {
            problems.push(at(i, i.gateway.exposure.pos, "spec.gateway.exposure", format!(
                "gateway {} is exposed as {} here but as {} by {}/{} ({}:{}); use the same exposure",
                gw(), i.gateway.exposure.value.as_str(), first.gateway.exposure.value.as_str(), first.namespace, first.name, first.file, first.gateway.exposure.pos
            )));
        }
    }

    // Two intents claiming the same host and match on one gateway port: the routing between
    // them would be decided by object age, which Git does not have. Keys borrow from the
    // intents (no string copies): this runs over every match of every intent per commit.
    type Claim<'a> = (&'a Intent, Pos);
    type ClaimKey<'a> = (
        &'a str,
        &'a str,
        u16,
        &'a str,
        &'a crate::model::gateway_api::HttpRouteMatch,
    );
    let mut claims: foldhash::HashMap<ClaimKey<'_>, Claim<'_>> = Default::default();
    // TLS/TCP/UDP intents have no request matches; their SNI and port claims are checked
    // in expansion, in connection terms.
    for i in users.iter().filter(|i| !i.gateway.protocol.is_l4()) {
        for (rule, (_, mpos)) in i.rules.iter().zip(&i.rule_pos) {
            for (m, pos) in rule.matches.iter().zip(mpos) {
                for h in &i.hostnames {
                    let key = (
                        i.gateway_namespace(),
                        i.gateway.name.as_str(),
                        i.gateway.port,
                        h.value.as_str(),
                        m,
                    );
                    match claims.get(&key) {
                        Some((first, fpos)) if !std::ptr::eq(*first, &***i) => {
                            problems.push(at(i, *pos, "spec.rules", format!(
                                "host {} {:?} {} on gateway {}/{} port {} is also claimed by {}/{} in {}:{}; valid: each host and path belongs to one intent",
                                h.value, m.path.type_, m.path.value, key.0, key.1, key.2, first.namespace, first.name, first.file, fpos
                            )));
                        }
                        Some(_) => {}
                        None => {
                            claims.insert(key, (i, *pos));
                        }
                    }
                }
            }
        }
    }
}

/// The whole pipeline of one commit: decode, validate, expand. Either every intent of the
/// tree makes it into the model, or the commit is rejected with every problem found.
pub fn load_and_expand(tree: &Tree) -> Result<(Config, crate::model::Model), Error> {
    load_and_expand_cached(tree, &mut Cache::default())
}

/// [`load_and_expand`] with a decode cache kept between commits.
pub fn load_and_expand_cached(
    tree: &Tree,
    cache: &mut Cache,
) -> Result<(Config, crate::model::Model), Error> {
    let config = load_cached(tree, cache)?;
    let model = expand::expand_cached(&config, &mut cache.expanded).map_err(Error::Invalid)?;
    Ok((config, model))
}

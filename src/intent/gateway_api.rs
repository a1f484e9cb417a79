//! Gateway API fragments as intents and plain `HTTPRoute`s write them: rules, matches,
//! filters, backendRefs, timeouts and retries. One decoder for both, so an intent's rule and
//! a plain route's rule are checked alike and reported with the same words.

use super::decode::Cx;
use super::node::{Node, Pos};
use crate::model::gateway_api::{
    BackendObjectRef, Cors, FilterType, Fraction, HeaderModifier, HttpBackendRef, HttpHeader,
    HttpPathMatch, HttpRouteFilter, HttpRouteMatch, HttpRouteRetry, HttpRouteRule,
    HttpRouteTimeouts, LocalObjectRef, PathMatchType, PathModifier, PathModifierType,
    RequestMirror, RequestRedirect, UrlRewrite, ValueMatch, ValueMatchType,
};
use crate::model::names::{is_dns1123_label, is_gateway_hostname};

const RULE_FIELDS: &[&str] = &[
    "name",
    "matches",
    "filters",
    "backendRefs",
    "timeouts",
    "retry",
    "sessionPersistence",
];

pub fn decode_rule(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
) -> Option<(HttpRouteRule, (Pos, Vec<Pos>))> {
    let before = cx.problems.len();
    let r = cx.object(node, field, RULE_FIELDS)?;
    for unsupported in ["sessionPersistence"] {
        if let Some(n) = r.get(unsupported) {
            cx.report(n.pos, &r.field(unsupported), format!("`{unsupported}` is a Gateway API field that tidegate does not support yet; remove it"));
        }
    }
    let mut rule = HttpRouteRule::default();
    if let Some(n) = r.get("name")
        && let Some(s) = cx.string(n, &r.field("name"))
    {
        if is_dns1123_label(&s) {
            rule.name = Some(s);
        } else {
            cx.report(
                n.pos,
                &r.field("name"),
                format!("`{s}` is not a valid rule name; valid: a DNS-1123 label"),
            );
        }
    }
    let mut match_pos = Vec::new();
    match r.get("matches") {
        // The spec's default: one match, PathPrefix `/`.
        None => {
            rule.matches.push(HttpRouteMatch::default());
            match_pos.push(node.pos);
        }
        Some(n) => {
            if let Some(items) = cx.list(n, &r.field("matches")) {
                if items.is_empty() {
                    rule.matches.push(HttpRouteMatch::default());
                    match_pos.push(n.pos);
                }
                for (i, item) in items.iter().enumerate() {
                    if let Some(m) = decode_match(cx, item, &format!("{}[{i}]", r.field("matches")))
                    {
                        rule.matches.push(m);
                        match_pos.push(item.pos);
                    }
                }
            }
        }
    }
    if let Some(n) = r.get("filters")
        && let Some(items) = cx.list(n, &r.field("filters"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", r.field("filters"));
            if let Some(filter) = decode_filter(cx, item, &f) {
                // Mirrors may repeat (each to its own backend); every other type may not.
                if filter.type_ != FilterType::RequestMirror
                    && rule.filters.iter().any(|x| x.type_ == filter.type_)
                {
                    cx.report(item.pos, &f, format!("filter {:?} appears twice in this rule; valid: each filter type at most once", filter.type_));
                }
                rule.filters.push(filter);
            }
        }
    }
    if let Some(n) = r.get("backendRefs")
        && let Some(items) = cx.list(n, &r.field("backendRefs"))
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(b) = decode_backend(cx, item, &format!("{}[{i}]", r.field("backendRefs"))) {
                rule.backend_refs.push(b);
            }
        }
    }
    if let Some(n) = r.get("timeouts")
        && let Some(t) = cx.object(n, &r.field("timeouts"), &["request", "backendRequest"])
    {
        let mut timeouts = HttpRouteTimeouts::default();
        for (key, slot) in [
            ("request", &mut timeouts.request),
            ("backendRequest", &mut timeouts.backend_request),
        ] {
            if let Some(v) = t.get(key)
                && let Some(s) = cx.string(v, &t.field(key))
            {
                if crate::model::duration::is_gateway_api(&s) {
                    *slot = Some(s);
                } else {
                    cx.report(v.pos, &t.field(key), format!("`{s}` is not a Gateway API duration; valid: digits with h, m, s or ms, such as 10s or 1m30s"));
                }
            }
        }
        rule.timeouts = Some(timeouts);
    }
    if let Some(n) = r.get("retry") {
        rule.retry = decode_retry(cx, n, &r.field("retry"));
    }

    // Rules the Gateway API CRD enforces with CEL, checked here so the commit is rejected
    // before an API server would reject the manifest.
    let redirect = rule
        .filters
        .iter()
        .any(|f| f.type_ == FilterType::RequestRedirect);
    let rewrite = rule
        .filters
        .iter()
        .any(|f| f.type_ == FilterType::UrlRewrite);
    if redirect && rewrite {
        cx.report(
            node.pos,
            field,
            "a rule cannot have both RequestRedirect and URLRewrite filters",
        );
    }
    if redirect && !rule.backend_refs.is_empty() {
        cx.report(node.pos, field, "a rule with a RequestRedirect filter answers the request itself; remove its backendRefs or the redirect");
    }
    let prefix_rewrite = rule.filters.iter().any(|f| {
        let path = f
            .request_redirect
            .as_ref()
            .and_then(|r| r.path.as_ref())
            .or(f.url_rewrite.as_ref().and_then(|r| r.path.as_ref()));
        path.is_some_and(|p| p.type_ == PathModifierType::ReplacePrefixMatch)
    });
    if prefix_rewrite
        && rule
            .matches
            .iter()
            .any(|m| m.path.type_ != PathMatchType::PathPrefix)
    {
        cx.report(
            node.pos,
            field,
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
        );
    }
    if cx.problems.len() > before {
        return None;
    }
    Some((rule, (node.pos, match_pos)))
}

fn decode_match(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpRouteMatch> {
    let before = cx.problems.len();
    let m = cx.object(node, field, &["path", "headers", "queryParams", "method"])?;
    let mut out = HttpRouteMatch::default();
    if let Some(p) = m.get("path")
        && let Some(po) = cx.object(p, &m.field("path"), &["type", "value"])
    {
        let type_ = match po.get("type") {
            None => PathMatchType::PathPrefix,
            Some(t) => match cx
                .choice(
                    t,
                    &po.field("type"),
                    &["Exact", "PathPrefix", "RegularExpression"],
                )
                .as_deref()
            {
                Some("Exact") => PathMatchType::Exact,
                Some("RegularExpression") => PathMatchType::RegularExpression,
                _ => PathMatchType::PathPrefix,
            },
        };
        let value = match po.get("value") {
            None => "/".to_owned(),
            Some(v) => cx.string(v, &po.field("value")).unwrap_or_default(),
        };
        let vpos = po.get("value").map_or(p.pos, |v| v.pos);
        if type_ != PathMatchType::RegularExpression {
            if !value.starts_with('/') {
                cx.report(
                    vpos,
                    &po.field("value"),
                    format!(
                        "`{value}` does not start with `/`; valid: an absolute path such as /{}",
                        value.trim_start_matches('/')
                    ),
                );
            } else if value.contains("//")
                || value.contains("/./")
                || value.contains("/../")
                || value.ends_with("/..")
                || value.ends_with("/.")
            {
                cx.report(
                    vpos,
                    &po.field("value"),
                    format!("`{value}` is not a normalized path (no `//`, `/./` or `/../`)"),
                );
            } else if value.contains(['?', '#'])
                || value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                cx.report(vpos, &po.field("value"), format!("`{value}` may not contain `?`, `#` or whitespace; match query parameters with queryParams"));
            }
        } else if value.is_empty() {
            cx.report(
                vpos,
                &po.field("value"),
                "a regular expression must not be empty",
            );
        } else if let Err(e) = check_regex(&value) {
            cx.report(vpos, &po.field("value"), e);
        }
        out.path = HttpPathMatch { type_, value };
    }
    if let Some(n) = m.get("headers") {
        out.headers = decode_value_matches(cx, n, &m.field("headers"), true);
    }
    if let Some(n) = m.get("queryParams") {
        out.query_params = decode_value_matches(cx, n, &m.field("queryParams"), false);
    }
    if let Some(n) = m.get("method") {
        out.method = cx.choice(
            n,
            &m.field("method"),
            &[
                "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
            ],
        );
    }
    (cx.problems.len() == before).then_some(out)
}

fn decode_retry(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpRouteRetry> {
    let r = cx.object(node, field, &["codes", "attempts", "backoff"])?;
    let mut out = HttpRouteRetry::default();
    if let Some(n) = r.get("codes")
        && let Some(items) = cx.list(n, &r.field("codes"))
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(c) = cx.int(item, &format!("{}[{i}]", r.field("codes")), 400, 599) {
                out.codes.push(c as u16);
            }
        }
    }
    if let Some(n) = r.get("attempts") {
        out.attempts = cx.int(n, &r.field("attempts"), 0, 1000).map(|a| a as u32);
    }
    if let Some(n) = r.get("backoff")
        && let Some(s) = cx.string(n, &r.field("backoff"))
    {
        if crate::model::duration::is_gateway_api(&s) {
            out.backoff = Some(s);
        } else {
            cx.report(n.pos, &r.field("backoff"), format!("`{s}` is not a Gateway API duration; valid: digits with h, m, s or ms, such as 100ms"));
        }
    }
    Some(out)
}

/// Header or query-parameter matches (`headers: true` compares names case-insensitively).
pub fn decode_value_matches(
    cx: &mut Cx<'_>,
    n: &Node,
    field: &str,
    headers: bool,
) -> Vec<ValueMatch> {
    let mut slot: Vec<ValueMatch> = Vec::new();
    let Some(items) = cx.list(n, field) else {
        return slot;
    };
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let Some(h) = cx.object(item, &f, &["type", "name", "value"]) else {
            continue;
        };
        let type_ = match h.get("type") {
            None => Some(ValueMatchType::Exact),
            Some(t) => cx
                .choice(t, &h.field("type"), &["Exact", "RegularExpression"])
                .map(|s| {
                    if s == "Exact" {
                        ValueMatchType::Exact
                    } else {
                        ValueMatchType::RegularExpression
                    }
                }),
        };
        let name = h
            .require(cx, "name", "the header or parameter name")
            .and_then(|nn| {
                let s = cx.string(nn, &h.field("name"))?;
                if s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    cx.report(
                        nn.pos,
                        &h.field("name"),
                        format!(
                            "`{s}` is not a valid name; valid: letters, digits and !#$%&'*+-.^_`|~"
                        ),
                    );
                    return None;
                }
                Some(s)
            });
        let value = h
            .require(cx, "value", "the value to match")
            .and_then(|v| cx.string(v, &h.field("value")));
        if let (Some(ValueMatchType::RegularExpression), Some(v)) = (type_, &value)
            && let Err(e) = check_regex(v)
        {
            let pos = h.get("value").map_or(item.pos, |n| n.pos);
            cx.report(pos, &h.field("value"), e);
        }
        if let (Some(type_), Some(name), Some(value)) = (type_, name, value) {
            // Header names compare case-insensitively: a repeat is a mistake.
            let dup = slot.iter().any(|x: &ValueMatch| {
                if headers {
                    x.name.eq_ignore_ascii_case(&name)
                } else {
                    x.name == name
                }
            });
            if dup {
                cx.report(
                    item.pos,
                    &f,
                    format!("`{name}` is matched twice in this match; only the first would count"),
                );
            }
            slot.push(ValueMatch { type_, name, value });
        }
    }
    slot
}

/// Every filter type: its name, the field that holds its settings, and the model's type.
/// One table for the fields allowed, the types allowed, and the settings field of each.
const FILTERS: &[(&str, &str, FilterType)] = &[
    (
        "RequestHeaderModifier",
        "requestHeaderModifier",
        FilterType::RequestHeaderModifier,
    ),
    (
        "ResponseHeaderModifier",
        "responseHeaderModifier",
        FilterType::ResponseHeaderModifier,
    ),
    (
        "RequestRedirect",
        "requestRedirect",
        FilterType::RequestRedirect,
    ),
    ("URLRewrite", "urlRewrite", FilterType::UrlRewrite),
    ("RequestMirror", "requestMirror", FilterType::RequestMirror),
    ("CORS", "cors", FilterType::Cors),
    ("ExtensionRef", "extensionRef", FilterType::ExtensionRef),
];

pub fn decode_filter(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpRouteFilter> {
    let fields: Vec<&str> = std::iter::once("type")
        .chain(FILTERS.iter().map(|(_, key, _)| *key))
        .collect();
    let f = cx.object(node, field, &fields)?;
    let t = f.require(
        cx,
        "type",
        "RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror or CORS",
    )?;
    let names: Vec<&str> = FILTERS.iter().map(|(name, _, _)| *name).collect();
    let ty = cx.choice(t, &f.field("type"), &names)?;
    let (_, key, type_) = *FILTERS.iter().find(|(name, _, _)| *name == ty)?;
    // ExtensionRef names an implementation's own object: plain routes may carry it (and
    // get the spec's 500), intents may not.
    if type_ == FilterType::ExtensionRef && !cx.plain {
        let supported: Vec<&str> = names.into_iter().filter(|n| *n != ty).collect();
        cx.report(
            t.pos,
            &f.field("type"),
            format!(
                "the {ty} filter is not supported in intents (it names an implementation-specific object); supported: {}",
                supported.join(", ")
            ),
        );
        return None;
    }
    let mut out = HttpRouteFilter::of(type_);
    for (_, other, _) in FILTERS {
        if *other != key && f.get(other).is_some() {
            cx.report(
                f.get(other).map_or(node.pos, |n| n.pos),
                &f.field(other),
                format!("`{other}` does not go with type {ty}; use `{key}`"),
            );
        }
    }
    let body = f.require(cx, key, &format!("the {ty} settings"))?;
    let bf = f.field(key);
    match type_ {
        FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier => {
            let hm = decode_header_modifier(cx, body, &bf)?;
            if type_ == FilterType::RequestHeaderModifier {
                out.request_header_modifier = Some(hm);
            } else {
                out.response_header_modifier = Some(hm);
            }
        }
        FilterType::RequestRedirect => {
            let r = cx.object(
                body,
                &bf,
                &["scheme", "hostname", "path", "port", "statusCode"],
            )?;
            let mut red = RequestRedirect {
                status_code: 302,
                ..Default::default()
            };
            if let Some(n) = r.get("scheme") {
                red.scheme = cx.choice(n, &r.field("scheme"), &["http", "https"]);
            }
            if let Some(n) = r.get("hostname") {
                red.hostname = decode_plain_hostname(cx, n, &r.field("hostname"));
            }
            if let Some(n) = r.get("path") {
                red.path = decode_path_modifier(cx, n, &r.field("path"));
            }
            if let Some(n) = r.get("port") {
                red.port = cx.int(n, &r.field("port"), 1, 65535).map(|p| p as u16);
            }
            if let Some(n) = r.get("statusCode")
                && let Some(code) = cx.int(n, &r.field("statusCode"), 0, 999)
            {
                if [301, 302, 303, 307, 308].contains(&code) {
                    red.status_code = code as u16;
                } else {
                    cx.report(
                        n.pos,
                        &r.field("statusCode"),
                        format!("{code} is not a redirect status; valid: 301, 302, 303, 307, 308"),
                    );
                }
            }
            out.request_redirect = Some(red);
        }
        FilterType::UrlRewrite => {
            let r = cx.object(body, &bf, &["hostname", "path"])?;
            let mut rw = UrlRewrite::default();
            if let Some(n) = r.get("hostname") {
                rw.hostname = decode_plain_hostname(cx, n, &r.field("hostname"));
            }
            if let Some(n) = r.get("path") {
                rw.path = decode_path_modifier(cx, n, &r.field("path"));
            }
            out.url_rewrite = Some(rw);
        }
        FilterType::RequestMirror => {
            let r = cx.object(body, &bf, &["backendRef", "percent", "fraction"])?;
            let b = r.require(cx, "backendRef", "the Service requests are copied to")?;
            let bo = cx.object(
                b,
                &r.field("backendRef"),
                &["group", "kind", "name", "namespace", "port"],
            )?;
            let s = |cx: &mut Cx<'_>, k: &str| bo.get(k).and_then(|n| cx.string(n, &bo.field(k)));
            let backend_ref = BackendObjectRef {
                group: s(cx, "group").unwrap_or_default(),
                kind: s(cx, "kind").unwrap_or_else(|| "Service".into()),
                name: bo
                    .require(cx, "name", "the Service's name")
                    .and_then(|n| cx.string(n, &bo.field("name")))?,
                namespace: s(cx, "namespace"),
                port: bo
                    .get("port")
                    .and_then(|n| cx.int(n, &bo.field("port"), 1, 65535))
                    .map(|p| p as u16),
            };
            let percent = r
                .get("percent")
                .and_then(|n| cx.int(n, &r.field("percent"), 0, 100))
                .map(|p| p as u32);
            let fraction = match r.get("fraction") {
                None => None,
                Some(n) => {
                    let fo = cx.object(n, &r.field("fraction"), &["numerator", "denominator"])?;
                    let numerator = fo
                        .require(cx, "numerator", "an integer")
                        .and_then(|x| cx.int(x, &fo.field("numerator"), 0, i64::from(u32::MAX)))?
                        as u32;
                    let denominator = match fo.get("denominator") {
                        None => 100,
                        Some(x) => {
                            cx.int(x, &fo.field("denominator"), 1, i64::from(u32::MAX))? as u32
                        }
                    };
                    if numerator > denominator {
                        cx.report(
                            n.pos,
                            &r.field("fraction"),
                            "numerator must not exceed denominator",
                        );
                    }
                    Some(Fraction {
                        numerator,
                        denominator,
                    })
                }
            };
            if percent.is_some() && fraction.is_some() {
                cx.report(body.pos, &bf, "give percent or fraction, not both");
            }
            out.request_mirror = Some(RequestMirror {
                backend_ref,
                percent,
                fraction,
            });
        }
        FilterType::Cors => {
            let r = cx.object(
                body,
                &bf,
                &[
                    "allowOrigins",
                    "allowCredentials",
                    "allowMethods",
                    "allowHeaders",
                    "exposeHeaders",
                    "maxAge",
                ],
            )?;
            let mut c = Cors::default();
            for (key, slot) in [
                ("allowOrigins", &mut c.allow_origins),
                ("allowMethods", &mut c.allow_methods),
                ("allowHeaders", &mut c.allow_headers),
                ("exposeHeaders", &mut c.expose_headers),
            ] {
                if let Some(n) = r.get(key) {
                    *slot = cx
                        .strings(n, &r.field(key))
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(_, s)| s)
                        .collect();
                }
            }
            if let Some(n) = r.get("allowCredentials") {
                c.allow_credentials = cx.boolean(n, &r.field("allowCredentials"));
            }
            if let Some(n) = r.get("maxAge") {
                c.max_age = cx
                    .int(n, &r.field("maxAge"), 1, i64::from(u32::MAX))
                    .map(|v| v as u32);
            }
            out.cors = Some(c);
        }
        FilterType::ExtensionRef => {
            let r = cx.object(body, &bf, &["group", "kind", "name"])?;
            let get = |cx: &mut Cx<'_>, k: &str| {
                r.require(cx, k, "required")
                    .and_then(|n| cx.string(n, &r.field(k)))
            };
            out.extension_ref = Some(LocalObjectRef {
                group: get(cx, "group")?,
                kind: get(cx, "kind")?,
                name: get(cx, "name")?,
            });
        }
    }
    Some(out)
}

fn decode_plain_hostname(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<String> {
    cx.checked_string(
        node,
        field,
        |s| !s.starts_with("*.") && is_gateway_hostname(s),
        "a valid hostname; valid: a DNS name without wildcard or port",
    )
}

fn decode_path_modifier(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<PathModifier> {
    let p = cx.object(
        node,
        field,
        &["type", "replaceFullPath", "replacePrefixMatch"],
    )?;
    let t = p.require(cx, "type", "ReplaceFullPath or ReplacePrefixMatch")?;
    let ty = cx.choice(
        t,
        &p.field("type"),
        &["ReplaceFullPath", "ReplacePrefixMatch"],
    )?;
    let (type_, key) = if ty == "ReplaceFullPath" {
        (PathModifierType::ReplaceFullPath, "replaceFullPath")
    } else {
        (PathModifierType::ReplacePrefixMatch, "replacePrefixMatch")
    };
    let v = p.require(cx, key, "an absolute path such as /")?;
    let value = cx.string(v, &p.field(key))?;
    if !value.starts_with('/') {
        cx.report(
            v.pos,
            &p.field(key),
            format!("`{value}` does not start with `/`"),
        );
        return None;
    }
    Some(PathModifier {
        type_,
        replace_full_path: (type_ == PathModifierType::ReplaceFullPath).then(|| value.clone()),
        replace_prefix_match: (type_ == PathModifierType::ReplacePrefixMatch).then_some(value),
    })
}

fn decode_header_modifier(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HeaderModifier> {
    let h = cx.object(node, field, &["set", "add", "remove"])?;
    let mut out = HeaderModifier::default();
    for (key, slot) in [("set", &mut out.set), ("add", &mut out.add)] {
        let Some(n) = h.get(key) else { continue };
        let Some(items) = cx.list(n, &h.field(key)) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", h.field(key));
            let Some(o) = cx.object(item, &f, &["name", "value"]) else {
                continue;
            };
            let name = o
                .require(cx, "name", "a header name")
                .and_then(|x| cx.string(x, &o.field("name")));
            let value = o
                .require(cx, "value", "a header value")
                .and_then(|x| cx.string(x, &o.field("value")));
            if let (Some(name), Some(value)) = (name, value) {
                slot.push(HttpHeader { name, value });
            }
        }
    }
    if let Some(n) = h.get("remove")
        && let Some(list) = cx.strings(n, &h.field("remove"))
    {
        out.remove = list.into_iter().map(|(_, s)| s).collect();
    }
    Some(out)
}

pub fn decode_backend(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<HttpBackendRef> {
    let before = cx.problems.len();
    let b = cx.object(
        node,
        field,
        &[
            "group",
            "kind",
            "name",
            "namespace",
            "port",
            "weight",
            "filters",
        ],
    )?;
    let mut filters = Vec::new();
    if let Some(n) = b.get("filters") {
        if !cx.plain {
            cx.report(
                n.pos,
                &b.field("filters"),
                "per-backend filters are not supported in intents yet; put the filters on the rule",
            );
        } else if let Some(items) = cx.list(n, &b.field("filters")) {
            for (i, item) in items.iter().enumerate() {
                if let Some(f) = decode_filter(cx, item, &format!("{}[{i}]", b.field("filters"))) {
                    filters.push(f);
                }
            }
        }
    }
    // A plain route may name any kind: an API server accepts it, and the route's status
    // says the kind is not supported (ResolvedRefs False, InvalidKind).
    let (mut group, mut kind) = (String::new(), "Service".to_owned());
    if cx.plain {
        if let Some(n) = b.get("group") {
            group = cx.string(n, &b.field("group")).unwrap_or_default();
        }
        if let Some(n) = b.get("kind") {
            kind = cx.string(n, &b.field("kind")).unwrap_or_default();
        }
    } else if let Some(n) = b.get("group")
        && let Some(g) = cx.string(n, &b.field("group"))
        && !g.is_empty()
    {
        cx.report(
            n.pos,
            &b.field("group"),
            format!("`{g}` is not supported; valid: \"\" (the core group, for a Service)"),
        );
    }
    if !cx.plain
        && let Some(n) = b.get("kind")
    {
        cx.choice(n, &b.field("kind"), &["Service"]);
    }
    let is_service = group.is_empty() && kind == "Service";
    let name = b
        .require(cx, "name", "the Service's name, such as httpbin")
        .and_then(|n| {
            cx.checked_string(
                n,
                &b.field("name"),
                is_dns1123_label,
                "a valid Service name; valid: a DNS-1123 label",
            )
        });
    let namespace = b
        .get("namespace")
        .and_then(|n| cx.namespace(n, &b.field("namespace")));
    // Gateway API makes `port` optional only for kinds other than Service.
    let port = if is_service {
        b.require(cx, "port", "the Service port, such as 8000")
            .and_then(|n| cx.int(n, &b.field("port"), 1, 65535))
            .map(|p| p as u16)
    } else {
        Some(
            b.get("port")
                .and_then(|n| cx.int(n, &b.field("port"), 1, 65535))
                .map_or(0, |p| p as u16),
        )
    };
    let weight = match b.get("weight") {
        None => Some(1),
        Some(n) => cx
            .int(n, &b.field("weight"), 0, 1_000_000)
            .map(|w| w as u32),
    };
    if cx.problems.len() > before {
        return None;
    }
    Some(HttpBackendRef {
        group,
        kind,
        name: name?,
        namespace,
        port: port?,
        weight: weight?,
        filters,
    })
}

/// Envoy compiles regular expressions with RE2; one it cannot compile makes the proxy
/// reject the whole route table. RE2 and Rust's `regex` share a syntax (no backreferences,
/// no look-around), so the `regex` parser catches those before a commit is accepted.
pub fn check_regex(re: &str) -> Result<(), String> {
    regex_syntax::Parser::new()
        .parse(re)
        .map(|_| ())
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ")
                .to_owned();
            format!("`{re}` is not a valid RE2 regular expression ({last})")
        })
}

//! Status expectations (`expect.status_conditions`, `expect.status_fields` of
//! cases-l4-mesh.yaml) checked against tidegate's `/status` → `gatewayApi`:
//!
//! ```text
//! gateways[]:     {namespace, name, conditions[], listeners[{name, attachedRoutes, supportedKinds, conditions[]}], attachedListenerSets}
//! routes[]:       {kind, namespace, name, parents[{parentRef{group,kind,name,namespace?,sectionName?,port?}, conditions[]}]}
//! listenerSets[]: {namespace, name, conditions[], listeners[]}
//! policies[]:     {kind, namespace, name, generation?, ancestors[{ancestorRef{group,kind,name,namespace}, conditions[]}]}
//! ```
//!
//! What Git-read objects do not have (metadata.generation, observedGeneration, GatewayClass
//! status) is reported as [`Check::Skip`] with the reason, never as a pass. Should `/status`
//! give an object a `generation` and its conditions an `observedGeneration`, those
//! expectations are checked against them.

use serde_json::Value;

/// The outcome of one expectation.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Pass,
    Fail(String),
    /// Not checkable here; the reason.
    Skip(String),
}

/// What the harness knows beyond `/status`.
pub struct Context<'a> {
    /// `<ns>/<name>` of the Gateways tidegate serves a proxy configuration for: the harness
    /// gives each its own Envoy address, which stands for `status.addresses`.
    pub served_gateways: &'a [String],
    /// `gatewayApi` as it was before the current phase's commit (for `metadata.generation:
    /// changed`).
    pub before: Option<&'a Value>,
}

/// `"Kind ns/name"` or `"Kind name"` (cluster-scoped).
fn split_object(o: &str) -> (&str, Option<&str>, &str) {
    let (k, rest) = o.split_once(' ').unwrap_or((o, ""));
    match rest.split_once('/') {
        Some((ns, n)) => (k, Some(ns), n),
        None => (k, None, rest),
    }
}

/// The `/status` entry of an object, or why there is none.
fn find<'a>(api: &'a Value, object: &str) -> Result<&'a Value, Check> {
    let (k, ns, n) = split_object(object);
    let list = match k {
        "Gateway" => "gateways",
        "ListenerSet" => "listenerSets",
        "GatewayClass" => "gatewayClasses",
        "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "TCPRoute" | "UDPRoute" => "routes",
        "BackendTLSPolicy" => "policies",
        _ => {
            return Err(Check::Skip(format!(
                "/status has no {k} status (not reported by tidegate)"
            )));
        }
    };
    api[list]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| {
            o["name"] == n
                && ns.is_none_or(|ns| o["namespace"] == ns)
                && (!["routes", "policies"].contains(&list) || o["kind"] == k)
        })
        .ok_or_else(|| Check::Fail(format!("{object}: not in /status gatewayApi.{list}")))
}

/// The status conditions `want` (`{type, status, reason?}`) hold in `have`.
fn condition_holds(have: &Value, want: &Value) -> Result<(), String> {
    let ty = want["type"].as_str().unwrap_or("");
    let Some(c) = have
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty)
    else {
        return Err(format!("no {ty} condition (have {})", brief(have)));
    };
    let status = want["status"].as_str().unwrap_or("any");
    if status != "any" && c["status"] != status {
        return Err(format!("{ty}={} want {status} ({})", c["status"], brief(c)));
    }
    if let Some(reason) = want["reason"].as_str()
        && c["reason"] != reason
    {
        return Err(format!(
            "{ty} reason {} want {reason} ({})",
            c["reason"],
            brief(c)
        ));
    }
    Ok(())
}

fn brief(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// A route's `parents[]` entries matching `parent` ("Kind ns/name"): name, and namespace
/// when the status sets it (sectionName and port are never compared, as the suite does).
fn parents<'a>(route: &'a Value, parent: &str) -> Vec<&'a Value> {
    let (k, ns, n) = split_object(parent);
    let route_ns = route["namespace"].as_str().unwrap_or("");
    route["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            let r = &p["parentRef"];
            r["name"] == n
                && r["kind"].as_str().unwrap_or("Gateway") == k
                && ns.is_none_or(|ns| r["namespace"].as_str().unwrap_or(route_ns) == ns)
        })
        .collect()
}

/// A policy's `ancestors[]` entries whose ancestorRef is `ancestor` ("Kind ns/name"; the
/// namespace defaults to the policy's).
fn ancestors<'a>(policy: &'a Value, ancestor: &str) -> Vec<&'a Value> {
    let (k, ns, n) = split_object(ancestor);
    let policy_ns = policy["namespace"].as_str().unwrap_or("");
    policy["ancestors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let r = &a["ancestorRef"];
            r["name"] == n
                && r["kind"].as_str().unwrap_or("Gateway") == k
                && ns.is_none_or(|ns| r["namespace"].as_str().unwrap_or(policy_ns) == ns)
        })
        .collect()
}

/// One `status_conditions[]` entry.
pub fn condition(api: &Value, want: &Value) -> Check {
    let object = want["object"].as_str().unwrap_or("");
    let o = match find(api, object) {
        Ok(o) => o,
        Err(c) => return c,
    };
    if let Some(parent) = want["parent"].as_str() {
        // A policy's parent is an ancestor (status.ancestors[].ancestorRef).
        let ps = if o.get("ancestors").is_some() {
            ancestors(o, parent)
        } else {
            parents(o, parent)
        };
        if ps.is_empty() {
            return Check::Fail(format!("{object}: no status parent {parent}"));
        }
        let errors: Vec<String> = ps
            .iter()
            .filter_map(|p| condition_holds(&p["conditions"], want).err())
            .collect();
        return if errors.len() < ps.len() {
            Check::Pass
        } else {
            Check::Fail(format!("{object} parent {parent}: {}", errors.join("; ")))
        };
    }
    if let Some(listener) = want["listener"].as_str() {
        let ls: Vec<&Value> = o["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| listener == "*" || l["name"] == listener)
            .collect();
        if ls.is_empty() {
            return Check::Fail(format!("{object}: no listener status {listener}"));
        }
        for l in ls {
            if let Err(e) = condition_holds(&l["conditions"], want) {
                return Check::Fail(format!("{object} listener {}: {e}", l["name"]));
            }
        }
        return Check::Pass;
    }
    match condition_holds(&o["conditions"], want) {
        Ok(()) => Check::Pass,
        Err(e) => Check::Fail(format!("{object}: {e}")),
    }
}

fn kinds_of(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().or_else(|| k["kind"].as_str()).map(str::to_owned))
        .collect()
}

fn listeners_equal(o: &Value, want: &Value) -> Result<(), String> {
    let have: Vec<&Value> = o["listeners"].as_array().into_iter().flatten().collect();
    let want: Vec<&Value> = want.as_array().into_iter().flatten().collect();
    let mut have_names: Vec<&str> = have.iter().filter_map(|l| l["name"].as_str()).collect();
    let mut want_names: Vec<&str> = want.iter().filter_map(|l| l["name"].as_str()).collect();
    have_names.sort();
    want_names.sort();
    if have_names != want_names {
        return Err(format!(
            "listeners {have_names:?}, want exactly {want_names:?}"
        ));
    }
    for w in want {
        let n = w["name"].as_str().unwrap_or("");
        let Some(l) = have.iter().find(|l| l["name"] == n) else {
            continue;
        };
        if let Some(a) = w.get("attachedRoutes")
            && l["attachedRoutes"] != *a
        {
            return Err(format!(
                "listener {n}: attachedRoutes {}, want {a}",
                l["attachedRoutes"]
            ));
        }
        for c in w["conditions"].as_array().into_iter().flatten() {
            condition_holds(&l["conditions"], c).map_err(|e| format!("listener {n}: {e}"))?;
        }
        if let Some(k) = w.get("supportedKinds") {
            let want_kinds = kinds_of(k);
            let have_kinds = kinds_of(&l["supportedKinds"]);
            if want_kinds.is_empty() && !have_kinds.is_empty() {
                return Err(format!(
                    "listener {n}: supportedKinds {have_kinds:?}, want none"
                ));
            }
            if let Some(missing) = want_kinds.iter().find(|k| !have_kinds.contains(k)) {
                return Err(format!(
                    "listener {n}: supportedKinds {have_kinds:?} lack {missing}"
                ));
            }
        }
    }
    Ok(())
}

fn parents_present(route: &Value, want: &Value) -> Result<(), String> {
    let route_ns = route["namespace"].as_str().unwrap_or("");
    for w in want.as_array().into_iter().flatten() {
        let parent = w["parent"].as_str().unwrap_or("");
        let (k, ns, _) = split_object(parent);
        let ps = parents(route, parent);
        let mut why = Vec::new();
        let ok = ps.iter().any(|p| {
            let r = &p["parentRef"];
            let group = r["group"].as_str().unwrap_or("gateway.networking.k8s.io");
            if group != "gateway.networking.k8s.io" || r["kind"].as_str().unwrap_or("") != k {
                why.push(format!("parentRef {r} (group/kind)"));
                return false;
            }
            let ns_ok = match r["namespace"].as_str() {
                Some(n) => Some(n) == ns,
                None => ns == Some(route_ns) && !w["namespace_required"].as_bool().unwrap_or(false),
            };
            if !ns_ok {
                why.push(format!("parentRef {r} (namespace)"));
                return false;
            }
            for c in w["conditions"].as_array().into_iter().flatten() {
                if let Err(e) = condition_holds(&p["conditions"], c) {
                    why.push(e);
                    return false;
                }
            }
            true
        });
        if !ok {
            return Err(format!(
                "parent {parent}: {}",
                if ps.is_empty() {
                    "absent".to_owned()
                } else {
                    why.join("; ")
                }
            ));
        }
    }
    Ok(())
}

/// `conditionsObservedGeneration`: every condition of the object (its own, its listeners',
/// its parents') carries `generation`; `metadata.generation: changed`: the generation differs
/// from the one before the phase's commit.
fn generation_check(
    f: &str,
    object: &str,
    o: &Value,
    generation: &Value,
    ctx: &Context,
) -> Result<(), String> {
    if f == "metadata.generation" {
        let before = ctx
            .before
            .ok_or("no status from before the phase")
            .and_then(|b| find(b, object).map_err(|_| "the object was not there before"))?;
        return if before["generation"] != *generation {
            Ok(())
        } else {
            Err(format!("generation still {generation}"))
        };
    }
    let all = o["conditions"].as_array().into_iter().flatten().chain(
        ["listeners", "parents", "ancestors"]
            .iter()
            .flat_map(|k| o[*k].as_array().into_iter().flatten())
            .flat_map(|x| x["conditions"].as_array().into_iter().flatten()),
    );
    for c in all {
        if c["observedGeneration"] != *generation {
            return Err(format!(
                "{} has observedGeneration {}, the object's generation is {generation}",
                c["type"], c["observedGeneration"]
            ));
        }
    }
    Ok(())
}

/// One `status_fields[]` entry.
pub fn field(api: &Value, want: &Value, ctx: &Context) -> Check {
    let object = want["object"].as_str().unwrap_or("");
    let f = want["field"].as_str().unwrap_or("");
    let equals = &want["equals"];
    match f {
        "conditionsObservedGeneration"
        | "ancestorConditionsObservedGeneration"
        | "metadata.generation" => {
            // The suite reads the object's status: it must be there.
            let o = match find(api, object) {
                Ok(o) => o,
                Err(c) => return c,
            };
            let Some(generation) = o.get("generation") else {
                return Check::Skip(format!(
                    "{f}: objects read from Git have no metadata.generation and /status no observedGeneration"
                ));
            };
            return match generation_check(f, object, o, generation, ctx) {
                Ok(()) => Check::Pass,
                Err(e) => Check::Fail(format!("{object} {f}: {e}")),
            };
        }
        "addresses" => {
            // Adaptation: the Envoy address the harness dials is the Gateway's address;
            // there is one when tidegate serves a configuration for the Gateway.
            let (_, ns, n) = split_object(object);
            let id = format!("{}/{n}", ns.unwrap_or("default"));
            return if ctx.served_gateways.contains(&id) {
                Check::Pass
            } else {
                Check::Fail(format!(
                    "{object}: no proxy configuration served (no address)"
                ))
            };
        }
        _ => {}
    }
    let o = match find(api, object) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let r = match f {
        "attachedListenerSets" => {
            if o["attachedListenerSets"] == *equals {
                Ok(())
            } else {
                Err(format!(
                    "attachedListenerSets {}, want {equals}",
                    o["attachedListenerSets"]
                ))
            }
        }
        "zeroRoutes" => {
            let ls = o["listeners"].as_array().cloned().unwrap_or_default();
            if ls.is_empty() || (ls.len() == 1 && ls[0]["attachedRoutes"] == 0) {
                Ok(())
            } else {
                Err(format!("listeners {}", brief(&o["listeners"])))
            }
        }
        "acceptedParents" => {
            let ps = o["parents"].as_array().cloned().unwrap_or_default();
            let accepted_false = |p: &Value| {
                condition_holds(
                    &p["conditions"],
                    &serde_json::json!({"type": "Accepted", "status": "False"}),
                )
                .is_ok()
            };
            if ps.is_empty() || (ps.len() == 1 && accepted_false(&ps[0])) {
                Ok(())
            } else {
                Err(format!("parents {}", brief(&o["parents"])))
            }
        }
        "parents" => parents_present(o, equals),
        "listeners" => listeners_equal(o, equals),
        other => return Check::Skip(format!("field {other} is not known to the harness")),
    };
    match r {
        Ok(()) => Check::Pass,
        Err(e) => Check::Fail(format!("{object} {f}: {e}")),
    }
}

/// NamespacesMustBeReady: every Gateway of `objects` in `namespaces` without the skip
/// annotation is Accepted=True and Programmed=True.
pub fn namespaces_ready(api: &Value, objects: &[&Value], namespaces: &[String]) -> Check {
    for gw in objects.iter().filter(|o| o["kind"] == "Gateway") {
        let ns = gw["metadata"]["namespace"].as_str().unwrap_or("default");
        if !namespaces.iter().any(|n| n == ns)
            || gw["metadata"]["annotations"]["gateway-api/skip-this-for-readiness"] == "true"
        {
            continue;
        }
        let object = format!(
            "Gateway {ns}/{}",
            gw["metadata"]["name"].as_str().unwrap_or("")
        );
        for ty in ["Accepted", "Programmed"] {
            let want = serde_json::json!({"object": object, "type": ty, "status": "True"});
            if let c @ (Check::Fail(_) | Check::Skip(_)) = condition(api, &want) {
                return c;
            }
        }
    }
    Check::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api() -> Value {
        json!({
            "gateways": [{"namespace": "ns", "name": "gw", "attachedListenerSets": 1,
                "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"},
                               {"type": "Programmed", "status": "True", "reason": "Programmed"}],
                "listeners": [
                    {"name": "tls", "attachedRoutes": 1, "supportedKinds": ["TLSRoute"],
                     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"},
                                    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}]},
                    {"name": "bad", "attachedRoutes": 0, "supportedKinds": [],
                     "conditions": [{"type": "Accepted", "status": "False", "reason": "UnsupportedProtocol"}]}]}],
            "listenerSets": [{"namespace": "ns", "name": "ls", "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowed"}], "listeners": []}],
            "policies": [{"kind": "BackendTLSPolicy", "namespace": "ns", "name": "p", "ancestors": [
                {"ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "ns"},
                 "conditions": [{"type": "Accepted", "status": "False", "reason": "Conflicted"},
                                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}]}]}],
            "routes": [
                {"kind": "TLSRoute", "namespace": "ns", "name": "r", "parents": [
                    {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "sectionName": "tls"},
                     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}]},
                {"kind": "TCPRoute", "namespace": "ns", "name": "r", "parents": [
                    {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "ns"},
                     "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}]}]
        })
    }

    fn ctx() -> Context<'static> {
        Context {
            served_gateways: &[],
            before: None,
        }
    }

    #[test]
    fn conditions_on_parents_listeners_and_objects() {
        let a = api();
        let c = |v: Value| condition(&a, &v);
        assert_eq!(
            c(
                json!({"object": "TLSRoute ns/r", "parent": "Gateway ns/gw", "type": "Accepted", "status": "True", "reason": "Accepted"})
            ),
            Check::Pass
        );
        // Same name, other kind: the TCPRoute's parent is not accepted.
        assert!(matches!(
            c(
                json!({"object": "TCPRoute ns/r", "parent": "Gateway ns/gw", "type": "Accepted", "status": "True"})
            ),
            Check::Fail(_)
        ));
        assert!(matches!(
            c(
                json!({"object": "TLSRoute ns/r", "parent": "Gateway ns/other", "type": "Accepted", "status": "True"})
            ),
            Check::Fail(_)
        ));
        assert!(matches!(
            c(
                json!({"object": "TLSRoute ns/r", "parent": "Gateway ns/gw", "type": "Accepted", "status": "True", "reason": "Other"})
            ),
            Check::Fail(_)
        ));
        assert_eq!(
            c(
                json!({"object": "Gateway ns/gw", "listener": "tls", "type": "ResolvedRefs", "status": "True"})
            ),
            Check::Pass
        );
        // '*' = every listener, and "bad" is not accepted.
        assert!(matches!(
            c(
                json!({"object": "Gateway ns/gw", "listener": "*", "type": "Accepted", "status": "True"})
            ),
            Check::Fail(_)
        ));
        assert_eq!(
            c(json!({"object": "ListenerSet ns/ls", "type": "Accepted", "status": "any"})),
            Check::Pass
        );
        // A kind /status does not report is skipped, never passed.
        assert!(matches!(
            c(
                json!({"object": "XBackendTrafficPolicy ns/p", "type": "Accepted", "status": "True"})
            ),
            Check::Skip(_)
        ));
        // A policy's parent is its ancestor.
        assert_eq!(
            c(
                json!({"object": "BackendTLSPolicy ns/p", "parent": "Gateway ns/gw", "type": "Accepted", "status": "False", "reason": "Conflicted"})
            ),
            Check::Pass
        );
        assert!(matches!(
            c(
                json!({"object": "BackendTLSPolicy ns/p", "parent": "Gateway ns/gw", "type": "ResolvedRefs", "status": "False"})
            ),
            Check::Fail(_)
        ));
        assert!(matches!(
            c(
                json!({"object": "BackendTLSPolicy ns/p", "parent": "Gateway ns/other", "type": "Accepted", "status": "False"})
            ),
            Check::Fail(_)
        ));
        assert!(matches!(
            c(
                json!({"object": "BackendTLSPolicy ns/q", "parent": "Gateway ns/gw", "type": "Accepted", "status": "False"})
            ),
            Check::Fail(_)
        ));
        assert!(matches!(
            c(json!({"object": "Gateway ns/missing", "type": "Accepted", "status": "True"})),
            Check::Fail(_)
        ));
    }

    #[test]
    fn fields() {
        let a = api();
        let f = |v: Value| field(&a, &v, &ctx());
        assert_eq!(
            f(json!({"object": "Gateway ns/gw", "field": "attachedListenerSets", "equals": 1})),
            Check::Pass
        );
        assert!(matches!(
            f(json!({"object": "Gateway ns/gw", "field": "attachedListenerSets", "equals": 2})),
            Check::Fail(_)
        ));
        assert_eq!(
            f(json!({"object": "TCPRoute ns/r", "field": "acceptedParents", "equals": "none"})),
            Check::Pass
        );
        assert!(matches!(
            f(json!({"object": "TLSRoute ns/r", "field": "acceptedParents", "equals": "none"})),
            Check::Fail(_)
        ));
        let listeners = json!([
            {"name": "tls", "attachedRoutes": 1, "supportedKinds": ["TLSRoute"], "conditions": [{"type": "Accepted", "status": "True"}]},
            {"name": "bad", "attachedRoutes": 0, "supportedKinds": [], "conditions": [{"type": "Accepted", "status": "False", "reason": "UnsupportedProtocol"}]}]);
        assert_eq!(
            f(json!({"object": "Gateway ns/gw", "field": "listeners", "equals": listeners})),
            Check::Pass
        );
        // Exactly these names.
        assert!(matches!(
            f(
                json!({"object": "Gateway ns/gw", "field": "listeners", "equals": [listeners[0].clone()]})
            ),
            Check::Fail(_)
        ));
        let mut wrong = listeners.clone();
        wrong[0]["supportedKinds"] = json!(["TCPRoute"]);
        assert!(matches!(
            f(json!({"object": "Gateway ns/gw", "field": "listeners", "equals": wrong})),
            Check::Fail(_)
        ));
        let mut empty_want = listeners.clone();
        empty_want[0]["supportedKinds"] = json!([]);
        assert!(matches!(
            f(json!({"object": "Gateway ns/gw", "field": "listeners", "equals": empty_want})),
            Check::Fail(_)
        ));
        assert!(matches!(
            f(json!({"object": "Gateway ns/gw", "field": "zeroRoutes", "equals": true})),
            Check::Fail(_)
        ));
        // parents: the namespace may be unset only when the route is in the parent's
        // namespace and it is not required.
        assert_eq!(
            f(
                json!({"object": "TLSRoute ns/r", "field": "parents", "equals": [{"parent": "Gateway ns/gw", "conditions": [{"type": "Accepted", "status": "True"}]}]})
            ),
            Check::Pass
        );
        assert!(matches!(
            f(
                json!({"object": "TLSRoute ns/r", "field": "parents", "equals": [{"parent": "Gateway ns/gw", "namespace_required": true}]})
            ),
            Check::Fail(_)
        ));
        assert!(matches!(
            f(
                json!({"object": "Gateway ns/gw", "field": "conditionsObservedGeneration", "equals": "metadata.generation"})
            ),
            Check::Skip(_)
        ));
        assert!(matches!(
            f(
                json!({"object": "Gateway ns/missing", "field": "conditionsObservedGeneration", "equals": "metadata.generation"})
            ),
            Check::Fail(_)
        ));
        assert!(matches!(
            f(json!({"object": "Gateway ns/gw", "field": "addresses", "equals": "non-empty"})),
            Check::Fail(_)
        ));
        let served = vec!["ns/gw".to_owned()];
        assert_eq!(
            field(
                &a,
                &json!({"object": "Gateway ns/gw", "field": "addresses", "equals": "non-empty"}),
                &Context {
                    served_gateways: &served,
                    before: None,
                }
            ),
            Check::Pass
        );
    }

    #[test]
    fn generations_are_checked_when_status_has_them() {
        let now = json!({"gateways": [{"namespace": "ns", "name": "gw", "generation": 2,
            "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2}],
            "listeners": [{"name": "l", "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 1}]}]}]});
        let before = json!({"gateways": [{"namespace": "ns", "name": "gw", "generation": 1}]});
        let ctx = Context {
            served_gateways: &[],
            before: Some(&before),
        };
        let f = |field: &str, equals: &str| {
            super::field(
                &now,
                &json!({"object": "Gateway ns/gw", "field": field, "equals": equals}),
                &ctx,
            )
        };
        // The listener's condition is stale.
        assert!(matches!(
            f("conditionsObservedGeneration", "metadata.generation"),
            Check::Fail(_)
        ));
        assert_eq!(f("metadata.generation", "changed"), Check::Pass);
        let same = Context {
            served_gateways: &[],
            before: Some(&now),
        };
        assert!(matches!(
            field(
                &now,
                &json!({"object": "Gateway ns/gw", "field": "metadata.generation", "equals": "changed"}),
                &same
            ),
            Check::Fail(_)
        ));
        let mut fresh = now.clone();
        fresh["gateways"][0]["listeners"][0]["conditions"][0]["observedGeneration"] = json!(2);
        assert_eq!(
            field(
                &fresh,
                &json!({"object": "Gateway ns/gw", "field": "conditionsObservedGeneration", "equals": "metadata.generation"}),
                &ctx
            ),
            Check::Pass
        );
    }

    #[test]
    fn namespaces_ready_skips_annotated_gateways() {
        let a = api();
        let ok = json!({"kind": "Gateway", "metadata": {"namespace": "ns", "name": "gw"}});
        let missing = json!({"kind": "Gateway", "metadata": {"namespace": "ns", "name": "nope"}});
        let skipped = json!({"kind": "Gateway", "metadata": {"namespace": "ns", "name": "nope",
            "annotations": {"gateway-api/skip-this-for-readiness": "true"}}});
        let ns = vec!["ns".to_owned()];
        assert_eq!(namespaces_ready(&a, &[&ok, &skipped], &ns), Check::Pass);
        assert!(matches!(
            namespaces_ready(&a, &[&ok, &missing], &ns),
            Check::Fail(_)
        ));
        assert_eq!(namespaces_ready(&a, &[&missing], &[]), Check::Pass);
    }
}

//! Self-test of the manifest validator in tests/common/schema.rs: known-good manifests must
//! pass and each known-bad one must fail at the expected place, so the validator cannot
//! silently degrade into accepting everything.

#[path = "common/schema.rs"]
mod schema;

use std::path::{Path, PathBuf};

use schema::Schemas;
use serde_json::json;

/// The schemas, or `None` (after the shared warning) when they are missing outside CI.
fn schemas() -> Option<&'static Schemas> {
    schema::require_schemas()
}

/// Asserts that `yaml` validates cleanly.
fn assert_passes(schemas: &Schemas, yaml: &str) {
    let problems = schemas.validate_yaml(yaml);
    assert!(
        problems.is_empty(),
        "expected no problems, got:\n  {}\n--- manifest ---\n{yaml}",
        problems.join("\n  ")
    );
}

/// Asserts that `yaml` is rejected with at least one message containing `needle`.
fn assert_fails_with(schemas: &Schemas, yaml: &str, needle: &str) {
    let problems = schemas.validate_yaml(yaml);
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got {problems:#?}\n--- manifest ---\n{yaml}"
    );
}

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
  namespace: default
  labels:
    app.kubernetes.io/managed-by: tidegate
spec:
  gatewayClassName: istio
  listeners:
  - name: http
    hostname: httpbin.example.com
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Same
"#;

const HTTP_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: httpbin
  namespace: default
spec:
  parentRefs:
  - name: httpbin-gateway
  hostnames:
  - httpbin.example.com
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - group: ""
      kind: Service
      name: httpbin
      port: 8000
      weight: 1
"#;

const ISTIO: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - httpbin.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
  namespace: default
spec:
  hosts:
  - httpbin.example.com
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /status
    route:
    - destination:
        host: httpbin
        port:
          number: 8000
      weight: 100
    timeout: 5s
"#;

const ROUTE: &str = r#"
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: httpbin
  namespace: default
spec:
  host: httpbin.apps.example.com
  to:
    kind: Service
    name: x
    weight: 100
  port:
    targetPort: http2
  wildcardPolicy: None
"#;

#[test]
fn loads_every_expected_kind() {
    let Some(schemas) = schemas() else { return };
    eprintln!(
        "loaded {} CRD schemas from {} in {:?}",
        schemas.len(),
        schemas.dir().display(),
        schemas.load_time()
    );
    for (api_version, kind) in [
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("gateway.networking.k8s.io/v1", "GatewayClass"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.networking.k8s.io/v1", "GRPCRoute"),
        ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
        ("networking.istio.io/v1", "Gateway"),
        ("networking.istio.io/v1", "VirtualService"),
        ("networking.istio.io/v1beta1", "VirtualService"),
        ("networking.istio.io/v1alpha3", "DestinationRule"),
        ("security.istio.io/v1", "AuthorizationPolicy"),
        ("route.openshift.io/v1", "Route"),
    ] {
        assert!(
            schemas.has_schema(api_version, kind),
            "no schema for {api_version} {kind}"
        );
    }
}

#[test]
fn gateway_api_gateway_passes() {
    let Some(schemas) = schemas() else { return };
    assert_passes(schemas, GATEWAY);
}

#[test]
fn waypoint_gateway_passes() {
    let Some(schemas) = schemas() else { return };
    assert_passes(
        schemas,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: default
  labels:
    istio.io/waypoint-for: service
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
"#,
    );
}

#[test]
fn http_route_passes() {
    let Some(schemas) = schemas() else { return };
    assert_passes(schemas, HTTP_ROUTE);
}

#[test]
fn http_route_with_string_port_fails_at_the_port() {
    let Some(schemas) = schemas() else { return };
    let yaml = HTTP_ROUTE.replace("port: 8000", "port: \"8000\"");
    let problems = schemas.validate_yaml(&yaml);
    assert!(
        problems.iter().any(|p| p.starts_with(
            "HTTPRoute default/httpbin /spec/rules/0/backendRefs/0/port: \"8000\" is not of type"
        )),
        "{problems:#?}"
    );
}

#[test]
fn http_route_with_unknown_path_type_fails() {
    let Some(schemas) = schemas() else { return };
    let yaml = HTTP_ROUTE.replace("type: PathPrefix", "type: Prefix");
    assert_fails_with(schemas, &yaml, "/spec/rules/0/matches/0/path/type");
}

#[test]
fn http_route_with_unknown_field_fails() {
    let Some(schemas) = schemas() else { return };
    let yaml = HTTP_ROUTE.replace("  - matches:", "  - bogusField: 1\n    matches:");
    assert_fails_with(schemas, &yaml, "/spec/rules/0: Additional properties");
    assert_fails_with(schemas, &yaml, "bogusField");
}

#[test]
fn istio_gateway_and_virtual_service_pass() {
    let Some(schemas) = schemas() else { return };
    assert_passes(schemas, ISTIO);
}

#[test]
fn istio_unknown_field_fails() {
    let Some(schemas) = schemas() else { return };
    // Istio's root schema lacks apiVersion/kind/metadata (they are injected), yet strict mode
    // must still apply below it.
    let yaml = ISTIO.replace("  gateways:", "  gateway:");
    assert_fails_with(
        schemas,
        &yaml,
        "VirtualService default/httpbin /spec: Additional",
    );
}

#[test]
fn virtual_service_with_integer_timeout_fails() {
    let Some(schemas) = schemas() else { return };
    let yaml = ISTIO.replace("timeout: 5s", "timeout: 5");
    assert_fails_with(schemas, &yaml, "/spec/http/0/timeout: 5 is not of type");
}

#[test]
fn nullable_field_accepts_null() {
    let Some(schemas) = schemas() else { return };
    let yaml = ISTIO.replace(
        "    timeout: 5s",
        "    timeout: 5s\n    corsPolicy:\n      allowCredentials: null",
    );
    assert_passes(schemas, &yaml);
    let yaml = yaml.replace("allowCredentials: null", "allowCredentials: \"yes\"");
    assert_fails_with(schemas, &yaml, "/spec/http/0/corsPolicy/allowCredentials");
}

#[test]
fn openshift_route_passes() {
    let Some(schemas) = schemas() else { return };
    assert_passes(schemas, ROUTE);
    // targetPort is int-or-string (and carries the `anyOf: null` the converter drops).
    assert_passes(
        schemas,
        &ROUTE.replace("targetPort: http2", "targetPort: 8080"),
    );
}

#[test]
fn openshift_route_to_deployment_fails() {
    let Some(schemas) = schemas() else { return };
    let yaml = ROUTE.replace("kind: Service", "kind: Deployment");
    assert_fails_with(schemas, &yaml, "Route default/httpbin /spec/to/kind");
}

#[test]
fn openshift_route_targetport_must_be_int_or_string() {
    let Some(schemas) = schemas() else { return };
    let yaml = ROUTE.replace("targetPort: http2", "targetPort: [http2]");
    assert_fails_with(schemas, &yaml, "/spec/port/targetPort");
}

#[test]
fn namespace_with_boolean_label_fails() {
    let Some(schemas) = schemas() else { return };
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  labels:\n";
    assert_passes(
        schemas,
        &format!("{namespace}    istio-injection: enabled\n    tidegate.io/managed: \"true\"\n"),
    );
    assert_fails_with(
        schemas,
        &format!("{namespace}    tidegate.io/managed: true\n"),
        "Namespace apps /metadata/labels/tidegate.io~1managed: expected a string, got boolean",
    );
}

#[test]
fn unquoted_yaml_boolean_words_in_labels_fail() {
    let Some(schemas) = schemas() else { return };
    // serde-saphyr, like the YAML 1.1 parser kubectl uses, reads an unquoted `on` as a boolean.
    assert_fails_with(
        schemas,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  labels:\n    sync: on\n",
        "Namespace apps /metadata/labels/sync: expected a string, got boolean true",
    );
}

#[test]
fn namespace_name_must_be_a_dns_label() {
    let Some(schemas) = schemas() else { return };
    assert_fails_with(
        schemas,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps.example\n",
        "/metadata/name: \"apps.example\" is not an RFC 1123 DNS label",
    );
}

#[test]
fn annotations_on_custom_resources_must_be_strings() {
    let Some(schemas) = schemas() else { return };
    let yaml = GATEWAY.replace("  labels:", "  annotations:\n    retries: 3\n  labels:");
    assert_fails_with(
        schemas,
        &yaml,
        "Gateway default/httpbin-gateway /metadata/annotations/retries",
    );
}

#[test]
fn missing_name_fails() {
    let Some(schemas) = schemas() else { return };
    let yaml = GATEWAY.replace("  name: httpbin-gateway\n", "");
    assert_fails_with(schemas, &yaml, "/metadata/name: required");
}

#[test]
fn service_checks() {
    let Some(schemas) = schemas() else { return };
    let service = r#"
apiVersion: v1
kind: Service
metadata:
  name: httpbin
  namespace: default
spec:
  type: ClusterIP
  selector:
    app: httpbin
  ports:
  - name: http
    port: 8000
    targetPort: 8080
"#;
    assert_passes(schemas, service);
    for (from, to, needle) in [
        ("type: ClusterIP", "type: Cluster", "/spec/type"),
        ("port: 8000", "port: 70000", "/spec/ports/0/port"),
        ("port: 8000", "port: \"8000\"", "/spec/ports/0/port"),
        ("name: http\n", "name: 80\n", "/spec/ports/0/name"),
        ("app: httpbin", "app: 1", "/spec/selector/app"),
        ("name: httpbin", "name: 1httpbin", "/metadata/name"),
    ] {
        assert_fails_with(schemas, &service.replace(from, to), needle);
    }
}

#[test]
fn kustomization_checks() {
    let Some(schemas) = schemas() else { return };
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- gateway.yaml\n";
    assert_passes(schemas, kustomization);
    assert_fails_with(
        schemas,
        &format!("{kustomization}- 42\n"),
        "Kustomization <no name> /resources/1: expected a string",
    );
}

#[test]
fn unknown_kind_has_no_schema() {
    let Some(schemas) = schemas() else { return };
    assert_fails_with(
        schemas,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
        "Widget w /: no schema for example.com/v1 Widget",
    );
}

#[test]
fn every_document_of_a_stream_is_checked() {
    let Some(schemas) = schemas() else { return };
    let stream = format!(
        "{GATEWAY}---\n{}---\n{ROUTE}",
        HTTP_ROUTE.replace("type: PathPrefix", "type: Prefix")
    );
    let problems = schemas.validate_yaml(&stream);
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with("HTTPRoute default/httpbin ")),
        "{problems:#?}"
    );
}

#[test]
fn invalid_yaml_is_reported() {
    let Some(schemas) = schemas() else { return };
    assert_fails_with(schemas, "kind: [unclosed\n", "YAML parse error");
}

#[test]
fn assert_valid_yaml_accepts_valid_manifests() {
    schema::assert_valid_yaml("gateway + route", &format!("{GATEWAY}---\n{HTTP_ROUTE}"));
}

#[test]
#[should_panic(expected = "/spec/rules/0/matches/0/path/type")]
fn assert_valid_yaml_panics_with_the_problems() {
    if schemas().is_none() {
        // Keep the expected panic when skipping, so the test outcome does not depend on setup.
        panic!("skipped: /spec/rules/0/matches/0/path/type");
    }
    schema::assert_valid_yaml(
        "bad route",
        &HTTP_ROUTE.replace("type: PathPrefix", "type: Prefix"),
    );
}

#[test]
fn conversion_rules() {
    let open_api = json!({
        "type": "object",
        "description": "dropped",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": "self.a != ''"}],
                "anyOf": [{"properties": {"a": {"maxLength": 0}}}],
                "properties": {
                    "port": {"type": "string", "anyOf": null, "x-kubernetes-int-or-string": true},
                    "legacy": {"type": "string", "anyOf": null},
                    "flag": {"type": "boolean", "nullable": true},
                    "mode": {"type": "string", "nullable": true, "enum": ["A"]},
                    "opaque": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"x": {"type": "string"}}
                    },
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }
        }
    });
    let expected = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": false,
                // Value checks inside combinators stay open.
                "anyOf": [{"properties": {"a": {"maxLength": 0}}}],
                "properties": {
                    "port": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "legacy": {"type": "string"},
                    "flag": {"type": ["boolean", "null"]},
                    "mode": {"type": ["string", "null"], "enum": ["A", null]},
                    "opaque": {"type": "object", "properties": {"x": {"type": "string"}}},
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }
        }
    });
    let converted = schema::to_json_schema(open_api.as_object().unwrap());
    assert_eq!(
        converted,
        expected,
        "{}",
        serde_json::to_string_pretty(&converted).unwrap()
    );
}

#[test]
fn crds_dir_resolution() {
    let manifest = Path::new("/repo/main");
    assert_eq!(
        schema::resolve_crds_dir(None, manifest),
        manifest.join("../shared/crds")
    );
    assert_eq!(
        schema::resolve_crds_dir(Some(PathBuf::new()), manifest),
        manifest.join("../shared/crds")
    );
    assert_eq!(
        schema::resolve_crds_dir(Some(PathBuf::from("/elsewhere/crds")), manifest),
        PathBuf::from("/elsewhere/crds")
    );
}

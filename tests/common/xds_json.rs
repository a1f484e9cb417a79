//! Envoy resources as readable, stable JSON: proto3 JSON with the proto field names, as
//! Envoy's config dump prints them, every `Any` decoded to its type, map fields sorted.
//!
//! envoy-types has no serde, but its crate directory ships the `.proto` sources it was
//! generated from: they are compiled here (with protox, no protoc needed) into a descriptor
//! pool, and each encoded message is decoded against it as a `DynamicMessage`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde_json::Value;

/// Files compiled: the resource types, and every extension the emitter packs in an `Any`
/// (a type missing here fails [`to_json`] with its name, so a new extension is noticed).
const PROTOS: &[&str] = &[
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/udp/udp_proxy/v3/udp_proxy.proto",
    "envoy/extensions/filters/udp/udp_proxy/v3/route.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
];

/// Where the `.proto` files of the envoy-types crate this test is built with are: the
/// locked version's source in Cargo's registry, + `proto`.
///
/// Not `cargo metadata --offline`: that needs every package of Cargo.lock downloaded, also
/// those no build of this machine uses (`fiat-crypto`, a backend of ed25519's curve), and
/// fails on a fresh machine that built the tests without them.
fn envoy_types_protos() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(manifest_dir.join("Cargo.lock")).expect("read Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"envoy-types\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("envoy-types is locked in Cargo.lock");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registries = cargo_home.join("registry/src");
    std::fs::read_dir(&registries)
        .unwrap_or_else(|e| panic!("{}: {e}", registries.display()))
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .join(format!("envoy-types-{version}"))
                .join("proto")
        })
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "envoy-types {version} not found under {}",
                registries.display()
            )
        })
}

/// The descriptor pool, compiled once per test binary.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let root = envoy_types_protos();
        let includes = [
            "data-plane-api",
            "xds",
            "googleapis",
            "protoc-gen-validate",
            "cel-spec/proto",
            "opentelemetry-proto",
        ]
        .map(|d| root.join(d));
        let mut compiler = protox::Compiler::new(includes).expect("include paths");
        compiler.include_imports(true);
        for p in PROTOS {
            compiler
                .open_file(p)
                .unwrap_or_else(|e| panic!("compile {p}: {e}"));
        }
        compiler.descriptor_pool()
    })
}

/// `bytes`, an encoded `full_name` message, as JSON with map fields sorted by key.
pub fn to_json(full_name: &str, bytes: &[u8]) -> Value {
    let pool = pool();
    let desc = pool.get_message_by_name(full_name).unwrap_or_else(|| {
        panic!("{full_name} is not in the descriptor pool; add its .proto to PROTOS")
    });
    let msg = DynamicMessage::decode(desc.clone(), bytes)
        .unwrap_or_else(|e| panic!("decode {full_name}: {e}"));
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut value = msg
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or_else(|e| panic!("{full_name} to JSON: {e} (an Any of a type not in PROTOS?)"));
    sort_maps(&mut value, &desc, pool);
    value
}

/// Sorts the keys of every proto map field (prost-reflect keeps maps in a `HashMap`, so
/// they come out in any order), leaving message fields in field order, as Envoy prints them.
fn sort_maps(v: &mut Value, desc: &MessageDescriptor, pool: &DescriptorPool) {
    match desc.full_name() {
        "google.protobuf.Any" => {
            let Some(url) = v.get("@type").and_then(Value::as_str) else {
                return;
            };
            let name = url.rsplit('/').next().unwrap_or(url);
            let Some(inner) = pool.get_message_by_name(name) else {
                return;
            };
            // Types with a JSON form of their own sit under "value"; others inline.
            if inner.full_name().starts_with("google.protobuf.") {
                if let Some(val) = v.get_mut("value") {
                    sort_maps(val, &inner, pool);
                }
            } else {
                sort_maps(v, &inner, pool);
            }
        }
        "google.protobuf.Struct" | "google.protobuf.Value" | "google.protobuf.ListValue" => {
            sort_all(v)
        }
        // Durations, wrappers and the like are scalars in JSON.
        n if n.starts_with("google.protobuf.") => {}
        _ => {
            let Some(obj) = v.as_object_mut() else {
                return;
            };
            for field in desc.fields() {
                let Some(fv) = obj.get_mut(field.name()) else {
                    continue;
                };
                let Kind::Message(m) = field.kind() else {
                    continue;
                };
                if field.is_map() {
                    sort_keys(fv);
                    if let Kind::Message(value_desc) = m.map_entry_value_field().kind()
                        && let Some(entries) = fv.as_object_mut()
                    {
                        for e in entries.values_mut() {
                            sort_maps(e, &value_desc, pool);
                        }
                    }
                } else if let Some(items) = fv.as_array_mut() {
                    for i in items {
                        sort_maps(i, &m, pool);
                    }
                } else {
                    sort_maps(fv, &m, pool);
                }
            }
        }
    }
}

fn sort_keys(v: &mut Value) {
    if let Some(obj) = v.as_object_mut() {
        let mut entries: Vec<(String, Value)> = std::mem::take(obj).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        obj.extend(entries);
    }
}

fn sort_all(v: &mut Value) {
    sort_keys(v);
    match v {
        Value::Object(o) => o.values_mut().for_each(sort_all),
        Value::Array(a) => a.iter_mut().for_each(sort_all),
        _ => {}
    }
}

/// Replaces every inline data source (`inline_bytes`, `inline_string`) with `[redacted]`:
/// for secrets, whose keys must never be printed and whose certificates are generated
/// afresh by each run.
pub fn redact_inline(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                if k == "inline_bytes" || k == "inline_string" {
                    *val = Value::String("[redacted]".into());
                } else {
                    redact_inline(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_inline),
        _ => {}
    }
}

//! A second, proxyless xDS client: grpcio resolves `xds:///echo.example.com:<port>`
//! through tidegate (state-of-the-world ADS, a named `api_listener`) and calls a gRPC
//! backend. Needs python3 with grpcio (scripts/test.sh installs it); under `CI=true` a
//! missing grpcio fails the test.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use tidegate::test_helpers::{TempRepo, free_port};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn have_grpcio() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("python3 with grpcio is needed (pip install grpcio)");
    }
    ok
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_resolves_an_xds_target_through_tidegate() {
    if !have_grpcio() {
        eprintln!("grpcio not installed: skipping");
        return;
    }
    let dir = common::manifest_dir().join("tests/grpc");
    let mut backend = Command::new(python())
        .arg(dir.join("echo_server.py"))
        .arg("grpc-echo")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the gRPC backend");
    let mut line = String::new();
    BufReader::new(backend.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let backend_port: u16 = line
        .trim()
        .strip_prefix("port ")
        .expect("port line")
        .parse()
        .unwrap();
    let _backend = Kill(backend);

    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write(
        "intents/echo.yaml",
        format!(
            "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: echo, namespace: grpc}}\nspec:\n  mode: gateway-api\n  hostnames: [echo.example.com]\n  gateway: {{name: grpc-gateway, port: {port}}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /echo.Echo}}}}]\n    backendRefs: [{{name: grpc-echo, port: 50051}}]\n"
        ),
    );
    repo.commit("grpc echo");
    let tmp = tempfile::tempdir().unwrap();
    let endpoints = tmp.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!("grpc-echo.grpc:50051: [\"127.0.0.1:{backend_port}\"]\n"),
    )
    .unwrap();
    let server = common::start_server(repo.path(), Some(&endpoints)).await;

    let bootstrap = tmp.path().join("grpc-bootstrap.json");
    std::fs::write(
        &bootstrap,
        serde_json::json!({
            "xds_servers": [{"server_uri": server.xds.to_string(), "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
            "node": {"id": "grpc-client", "cluster": "grpc-gateway.grpc"},
        })
        .to_string(),
    )
    .unwrap();
    let target = format!("xds:///echo.example.com:{port}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(dir.join("xds_client.py"))
            .arg(&target)
            .arg("hello")
            .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
            .envs(
                std::env::var("TEST_GRPC_TRACE")
                    .ok()
                    .map(|t| [("GRPC_TRACE", t), ("GRPC_VERBOSITY", "debug".into())])
                    .into_iter()
                    .flatten(),
            )
            .output()
            .expect("run the gRPC client")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let st = common::status(server.admin).await;
        panic!(
            "client failed: {stdout}{}\nstatus: {st:#}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(stdout.trim(), "grpc-echo: hello");
}

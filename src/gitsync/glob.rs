//! Branch name patterns (`serve --preview-branches`), matched like Git's ref patterns with
//! path semantics: `*` is any run of characters within one `/`-separated part, `**` any run
//! across parts, `?` one character other than `/`. So `preview/*` takes `preview/login`
//! but not `preview/team/login`, which `preview/**` takes.

/// A pattern; a valid one is any string (no character is special beyond `*` and `?`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchGlob(String);

impl BranchGlob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        matches(self.0.as_bytes(), name.as_bytes())
    }
}

impl std::fmt::Display for BranchGlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Backtracking match; branch names and patterns are short, so the worst case (many stars)
/// stays small.
fn matches(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| matches(rest, &s[i..])),
        [b'*', rest @ ..] => {
            // Any run that stays within this part of the name.
            let part = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
            (0..=part).any(|i| matches(rest, &s[i..]))
        }
        [b'?', rest @ ..] => s.first().is_some_and(|&c| c != b'/') && matches(rest, &s[1..]),
        [c, rest @ ..] => s.first() == Some(c) && matches(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::BranchGlob;

    #[test]
    fn stars_stay_within_a_part_unless_doubled() {
        let cases = [
            ("preview/*", "preview/login", true),
            ("preview/*", "preview/team/login", false),
            ("preview/*", "preview/", true),
            ("preview/*", "main", false),
            ("preview/**", "preview/team/login", true),
            ("pr-*", "pr-12", true),
            ("pr-*", "pr-12/fix", false),
            ("pr-?", "pr-1", true),
            ("pr-?", "pr-12", false),
            ("*", "main", true),
            ("*", "preview/x", false),
            ("**", "preview/x", true),
            ("main", "main", true),
            ("main", "mainline", false),
            ("*-review", "login-review", true),
            ("*-review", "login-reviews", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                BranchGlob::new(pattern).matches(name),
                want,
                "{pattern} vs {name}"
            );
        }
    }
}

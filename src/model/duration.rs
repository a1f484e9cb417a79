//! Durations as Gateway API and Istio write them: one reader for both, so what intent
//! decoding accepts is what translation can turn into a timeout.
//!
//! Gateway API: `^([0-9]{1,5}(h|m|s|ms)){1,4}$` (`1h2m3s4ms`). Istio also allows decimals
//! (`1.5s`).

/// The unit of one part, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Hours,
    Minutes,
    Seconds,
    Millis,
}

impl Unit {
    fn ms(self) -> f64 {
        match self {
            Unit::Hours => 3_600_000.0,
            Unit::Minutes => 60_000.0,
            Unit::Seconds => 1000.0,
            Unit::Millis => 1.0,
        }
    }
}

/// Splits `s` into (number as written, unit) parts; `None` if it is not a sequence of
/// numbers (digits and `.`) each followed by a unit.
fn parts(s: &str) -> Option<Vec<(&str, Unit)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let number = &rest[..n];
        rest = &rest[n..];
        let (unit, len) = if rest.starts_with("ms") {
            (Unit::Millis, 2)
        } else if rest.starts_with('s') {
            (Unit::Seconds, 1)
        } else if rest.starts_with('m') {
            (Unit::Minutes, 1)
        } else if rest.starts_with('h') {
            (Unit::Hours, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        out.push((number, unit));
    }
    Some(out)
}

/// A Gateway API or Istio duration (`1h2m3s4ms`, `1.5s`) in milliseconds, rounded down;
/// `None` if it is not one. The empty string is zero.
pub fn parse_ms(s: &str) -> Option<u64> {
    let mut total = 0f64;
    for (number, unit) in parts(s)? {
        total += number.parse::<f64>().ok()? * unit.ms();
    }
    Some(total as u64)
}

/// Whether `s` is a Gateway API `Duration` (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`): integers
/// only, one to four parts.
pub fn is_gateway_api(s: &str) -> bool {
    parts(s).is_some_and(|p| {
        (1..=4).contains(&p.len())
            && p.iter()
                .all(|(n, _)| (1..=5).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds() {
        assert_eq!(parse_ms("5s"), Some(5000));
        assert_eq!(parse_ms("1m30s"), Some(90_000));
        assert_eq!(parse_ms("250ms"), Some(250));
        assert_eq!(parse_ms("1h2m3s4ms"), Some(3_723_004));
        assert_eq!(parse_ms("1.5s"), Some(1500));
        assert_eq!(parse_ms(""), Some(0));
        assert_eq!(parse_ms("x"), None);
        assert_eq!(parse_ms("10"), None);
        assert_eq!(parse_ms("1.2.3s"), None);
        assert_eq!(parse_ms("s"), None);
    }

    #[test]
    fn gateway_api_format() {
        assert!(is_gateway_api("10s"));
        assert!(is_gateway_api("1h30m"));
        assert!(is_gateway_api("500ms"));
        assert!(is_gateway_api("1h2m3s4ms"));
        assert!(!is_gateway_api("10"));
        assert!(!is_gateway_api("1.5s"));
        assert!(!is_gateway_api(""));
        assert!(!is_gateway_api("1s1s1s1s1s"));
        assert!(!is_gateway_api("123456s"));
    }
}

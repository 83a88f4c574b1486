//! What may be shown of a URL or an upstream text: URLs without their credentials, texts
//! cut to a bounded length.
//!
//! A subscriber URL or `kombo.base_url` can carry credentials in its userinfo
//! (`https://user:pass@host/`) or its query (`?token=…`): every place that prints or logs
//! a URL goes through [`url()`](fn@url). Upstream texts (error bodies, cursors, field paths) can be
//! arbitrarily long: a log line or a stored error goes through [`bounded`].

use std::borrow::Cow;

/// What stands where a credential was.
pub const REDACTED: &str = "[redacted]";

/// The longest text a log line or a stored error takes from one upstream value.
pub const MAX_TEXT: usize = 1024;

/// `raw` with its userinfo, query values and fragment replaced by `[redacted]`; scheme,
/// host, port, path and query keys stay so an operator can tell which URL it is.
///
/// A string that does not parse as a URL keeps only what precedes any `@`, `?` or `#`
/// after the scheme, and is cut to [`MAX_TEXT`].
pub fn url(raw: &str) -> String {
    let Ok(parsed) = url::Url::parse(raw) else {
        let before_query = raw.find(['?', '#']).map_or(raw, |i| &raw[..i]);
        let shown = match before_query.rsplit_once('@') {
            None => before_query.to_owned(),
            Some((before, after)) => match before.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://{REDACTED}@{after}"),
                None => format!("{REDACTED}@{after}"),
            },
        };
        return bounded(&shown, MAX_TEXT).into_owned();
    };
    let mut out = format!("{}:", parsed.scheme());
    if let Some(host) = parsed.host_str() {
        out.push_str("//");
        if !parsed.username().is_empty() || parsed.password().is_some() {
            out.push_str(REDACTED);
            out.push('@');
        }
        out.push_str(host);
        if let Some(port) = parsed.port() {
            out.push_str(&format!(":{port}"));
        }
    }
    out.push_str(parsed.path());
    if let Some(query) = parsed.query() {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if pair.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if parsed.fragment().is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    bounded(&out, MAX_TEXT).into_owned()
}

/// serde's `serialize_with` for a URL string: writes [`url()`](fn@url) of it.
pub fn serialize_url<S: serde::Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url(value))
}

/// `text` cut to at most `max` bytes (on a character boundary), saying how much was cut.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} more bytes not shown)",
        &text[..end],
        text.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_keep_where_they_point() {
        let cases = [
            ("https://example.com/hook", "https://example.com/hook"),
            (
                "http://user:pa55w0rd@host:8080/hook",
                "http://[redacted]@host:8080/hook",
            ),
            ("http://user@host/", "http://[redacted]@host/"),
            ("http://:secret@host/", "http://[redacted]@host/"),
            (
                "https://h/hook?token=abc&x=1",
                "https://h/hook?token=[redacted]&x=[redacted]",
            ),
            ("https://h/hook?abc123", "https://h/hook?[redacted]"),
            ("https://h/p#frag", "https://h/p#[redacted]"),
            (
                "https://u:p@[::1]:9/a?k=v",
                "https://[redacted]@[::1]:9/a?k=[redacted]",
            ),
            // Not a URL: what follows `@`, `?` or `#` of the credentials is not shown.
            ("not a url?token=x", "not a url"),
            ("//user:pw@host/x", "[redacted]@host/x"),
        ];
        for (raw, want) in cases {
            let got = url(raw);
            assert_eq!(got, want, "{raw}");
            for secret in ["pa55w0rd", "secret", "abc123", "abc", "=v", "pw", "user"] {
                assert!(!got.contains(secret), "{raw} -> {got}");
            }
        }
    }

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("abcdef", 3), "abc… (3 more bytes not shown)");
        // 'é' is two bytes: a cut inside it moves back.
        assert_eq!(bounded("aé", 2), "a… (2 more bytes not shown)");
        let long = "x".repeat(10 * 1024 * 1024);
        assert!(bounded(&long, MAX_TEXT).len() < MAX_TEXT + 64);
    }
}

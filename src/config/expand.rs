//! `${VAR}` expansion in string values, done on the parsed (still untyped, still spanned)
//! document before it is deserialized into typed structs.
//!
//! Syntax: `${NAME}` where `NAME` is `[A-Za-z_][A-Za-z0-9_]*` is replaced by the value of
//! the environment variable `NAME`; an unset variable is an error. `$${` is a literal `${`
//! (so `$${HOME}` stays `${HOME}`). A `$` not followed by `{` is kept as is. Expanded values
//! are not expanded again. Only string values are expanded, never keys.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a value sits in the document, e.g. `subscribers[0].secrets[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    fn push_key(&mut self, key: &str) {
        self.0.push(Segment::Key(key.to_owned()));
    }

    fn push_index(&mut self, index: usize) {
        self.0.push(Segment::Index(index));
    }

    fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why one `${…}` could not be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlaceholderError {
    /// The variable is not set.
    Unset(String),
    /// `${` without a closing `}`.
    Unterminated,
    /// `${…}` whose content is not a variable name.
    BadName(String),
}

impl fmt::Display for PlaceholderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unset(var) => write!(f, "environment variable {var} is not set"),
            Self::Unterminated => {
                f.write_str("`${` without a closing `}` (write `$${` for a literal `${`)")
            }
            Self::BadName(name) => write!(
                f,
                "`${{{name}}}` is not a variable reference: names are letters, digits and `_`, not starting with a digit (write `$${{` for a literal `${{`)"
            ),
        }
    }
}

/// A placeholder that failed, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpandError {
    /// The key path of the string value.
    pub key: String,
    /// Byte range of the string value in the source.
    pub span: Range<usize>,
    pub error: PlaceholderError,
}

/// Expands every string value of `table` in place. Returns the failures in document order
/// (empty when all went well).
pub(crate) fn expand_document(
    table: &mut DeTable<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<ExpandError> {
    let mut errors = Vec::new();
    let mut path = KeyPath::default();
    expand_table(table, &mut path, env, &mut errors);
    errors.sort_by_key(|e| e.span.start);
    errors
}

fn expand_table(
    table: &mut DeTable<'_>,
    path: &mut KeyPath,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ExpandError>,
) {
    for (key, value) in table.iter_mut() {
        path.push_key(key.get_ref());
        expand_value(value, path, env, errors);
        path.pop();
    }
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &mut KeyPath,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ExpandError>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match expand_str(s, env) {
            Ok(Some(expanded)) => *s = expanded.into(),
            Ok(None) => {}
            Err(error) => errors.push(ExpandError {
                key: path.to_string(),
                span,
                error,
            }),
        },
        DeValue::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push_index(index);
                expand_value(item, path, env, errors);
                path.pop();
            }
        }
        DeValue::Table(table) => expand_table(table, path, env, errors),
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

/// Expands `${VAR}` in `s`. `Ok(None)` when `s` holds no `$` (nothing to do).
pub(crate) fn expand_str(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, PlaceholderError> {
    if !s.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let close = after.find('}').ok_or(PlaceholderError::Unterminated)?;
            let name = &after[..close];
            if !is_var_name(name) {
                return Err(PlaceholderError::BadName(name.to_owned()));
            }
            let value = env(name).ok_or_else(|| PlaceholderError::Unset(name.to_owned()))?;
            out.push_str(&value);
            rest = &after[close + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${HOST}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_strings() {
        let cases: &[(&str, Result<Option<&str>, PlaceholderError>)] = &[
            ("plain", Ok(None)),
            ("${HOST}", Ok(Some("example.com"))),
            (
                "https://${HOST}/hooks?x=${HOST}",
                Ok(Some("https://example.com/hooks?x=example.com")),
            ),
            ("a${EMPTY}b", Ok(Some("ab"))),
            ("$${HOST}", Ok(Some("${HOST}"))),
            ("cost: $5 and $$", Ok(Some("cost: $5 and $$"))),
            ("trailing $", Ok(Some("trailing $"))),
            // An expanded value is not expanded again.
            ("${DOLLAR}", Ok(Some("${HOST}"))),
            ("${NOPE}", Err(PlaceholderError::Unset("NOPE".into()))),
            ("x ${HOST", Err(PlaceholderError::Unterminated)),
            ("${}", Err(PlaceholderError::BadName(String::new()))),
            ("${1A}", Err(PlaceholderError::BadName("1A".into()))),
            ("${A-B}", Err(PlaceholderError::BadName("A-B".into()))),
        ];
        for (input, want) in cases {
            let got = expand_str(input, &env);
            let got = got.as_ref().map(|o| o.as_deref());
            assert_eq!(got, want.as_ref().map(|o| *o), "input {input:?}");
        }
    }

    #[test]
    fn key_paths_render_like_toml() {
        let mut p = KeyPath::default();
        p.push_key("subscribers");
        p.push_index(0);
        p.push_key("secrets");
        p.push_index(1);
        assert_eq!(p.to_string(), "subscribers[0].secrets[1]");
        p.pop();
        p.pop();
        p.push_key("a.b");
        assert_eq!(p.to_string(), "subscribers[0].\"a.b\"");
    }
}

//! Configuration errors: each carries the byte span of the TOML it is about, so it can be shown
//! as `file:line:col`, and a pipeline's errors are collected and reported together.

use std::fmt;
use std::ops::Range;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Byte range in the pipeline source; `None` for problems with no place (e.g. an empty file).
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        ConfigError {
            span: Some(span),
            message: message.into(),
        }
    }

    pub(crate) fn nowhere(message: impl Into<String>) -> Self {
        ConfigError {
            span: None,
            message: message.into(),
        }
    }
}

/// Every problem found in a pipeline file, with the source needed to place them.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub origin: String,
    pub source_text: String,
    pub errors: Vec<ConfigError>,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

impl ConfigErrors {
    /// Each error as `origin:line:col: message`, in source order.
    pub fn lines(&self) -> Vec<String> {
        let mut errs = self.errors.clone();
        errs.sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
        errs.iter()
            .map(|e| match &e.span {
                Some(s) => {
                    let (l, c) = line_col(&self.source_text, s.start);
                    format!("{}:{l}:{c}: {}", self.origin, e.message)
                }
                None => format!("{}: {}", self.origin, e.message),
            })
            .collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{} has {n} error{}:",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for l in self.lines() {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 11), (2, 6));
    }
}

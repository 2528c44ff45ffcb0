//! A parser of the Prometheus text exposition format (version 0.0.4), as far as `sweep top` reads
//! it: each sample line becomes a [`Sample`] (name, labels, value); comments, `# HELP` and
//! `# TYPE` lines are skipped, since `top` knows its metrics by name.
//!
//! Written here rather than taken from `prometheus-parse` (0.2.5), whose label parser splits on
//! `,` and `=` without regard to quoting: a stage named `a,b=c` (a valid quoted TOML key) came
//! back as `component_id="a"` plus a label `b="c"`. Label values here follow the format's escapes
//! (`\\`, `\"`, `\n`).

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is not a valid sample, comment or blank line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// Every sample of an exposition text, in order.
pub(crate) fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = Line::new(line).sample().map_err(|reason| ParseError {
            line: i + 1,
            reason,
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// A cursor over one sample line.
struct Line<'a> {
    rest: &'a str,
}

impl<'a> Line<'a> {
    fn new(line: &'a str) -> Self {
        Line { rest: line }
    }

    fn sample(mut self) -> Result<Sample, String> {
        let name = self.name(true)?;
        let mut labels = Vec::new();
        self.skip_blanks();
        if self.eat('{') {
            labels = self.labels()?;
        }
        self.skip_blanks();
        let value = self.word();
        if value.is_empty() {
            return Err(format!("`{name}` has no value"));
        }
        let value = parse_value(value).ok_or_else(|| format!("`{value}` is not a number"))?;
        self.skip_blanks();
        // An optional timestamp (ms since the epoch); top times scrapes itself.
        let timestamp = self.word();
        if !timestamp.is_empty() && timestamp.parse::<i64>().is_err() {
            return Err(format!("`{timestamp}` is not a timestamp"));
        }
        self.skip_blanks();
        if !self.rest.is_empty() {
            return Err(format!("unexpected `{}` after the value", self.rest));
        }
        Ok(Sample {
            name,
            labels,
            value,
        })
    }

    /// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or, without `colons`, a label name.
    fn name(&mut self, colons: bool) -> Result<String, String> {
        let ok = |c: char, first: bool| {
            c.is_ascii_alphabetic()
                || c == '_'
                || (colons && c == ':')
                || (!first && c.is_ascii_digit())
        };
        let end = self
            .rest
            .char_indices()
            .find(|&(i, c)| !ok(c, i == 0))
            .map_or(self.rest.len(), |(i, _)| i);
        if end == 0 {
            return Err(format!("expected a name at `{}`", self.rest));
        }
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(name.to_string())
    }

    /// `label="value",...}` after the opening brace; a trailing comma is allowed.
    fn labels(&mut self) -> Result<Vec<(String, String)>, String> {
        let mut labels = Vec::new();
        loop {
            self.skip_blanks();
            if self.eat('}') {
                return Ok(labels);
            }
            let key = self.name(false)?;
            self.skip_blanks();
            if !self.eat('=') {
                return Err(format!("expected `=` after label `{key}`"));
            }
            self.skip_blanks();
            if !self.eat('"') {
                return Err(format!("label `{key}`'s value is not quoted"));
            }
            let value = self.quoted()?;
            labels.push((key, value));
            self.skip_blanks();
            if self.eat(',') {
                continue;
            }
            if self.eat('}') {
                return Ok(labels);
            }
            return Err(format!("expected `,` or `}}` at `{}`", self.rest));
        }
    }

    /// A label value after its opening quote, through the closing one.
    fn quoted(&mut self) -> Result<String, String> {
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, e @ ('\\' | '"'))) => value.push(e),
                    Some((_, e)) => return Err(format!("unknown escape `\\{e}` in a label value")),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err("a label value is not closed".to_string())
    }

    fn word(&mut self) -> &'a str {
        let end = self.rest.find([' ', '\t']).unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn skip_blanks(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }
}

/// A sample value: a Go-style float, `NaN`, `+Inf` or `-Inf`. Rust's parser takes all of these
/// (case-insensitively), and also `infinity`, which no exporter writes.
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    s.parse().ok()
}

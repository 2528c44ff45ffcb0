//! Configuration values that are one of a fixed set of names. Each choice enum owns its one list
//! of (name, value) pairs: parsing, the "expected one of …" messages and the README's option
//! tables (checked by a test below) all read it.

/// A value spelt in configuration as one of a fixed list of names.
pub(crate) trait Choice: Copy + PartialEq + 'static {
    /// Every value with its configuration name, in the order messages and docs list them.
    const ALL: &'static [(&'static str, Self)];

    /// The configuration name of this value.
    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(n, _)| n)
    }

    /// The value named `s`, ignoring surrounding spaces and ASCII letter case.
    fn from_name(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, v)| *v)
    }

    /// Every value, in list order.
    fn all() -> Vec<Self> {
        Self::ALL.iter().map(|(_, v)| *v).collect()
    }

    /// The names for a message: `"a", "b", "c"`.
    fn expected() -> String {
        let names: Vec<String> = Self::ALL.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregators::Grouping;
    use crate::config::*;
    use crate::sinks::format::{PartitionKey, RowFormat};

    fn names<T: Choice>() -> Vec<&'static str> {
        let mut names: Vec<&str> = T::ALL.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names
    }

    /// The quoted names in the README's row for `key` in the table under the heading that
    /// contains `section`.
    fn readme_names(readme: &str, section: &str, key: &str) -> Vec<String> {
        let body = readme
            .split("\n#")
            .find(|part| part.lines().next().is_some_and(|h| h.contains(section)))
            .unwrap_or_else(|| panic!("README has no heading with {section}"));
        let row = body
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("README's {section} table has no row for `{key}`"));
        let mut names: Vec<String> = row
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    #[test]
    fn every_name_maps_back_to_its_value() {
        fn check<T: Choice + std::fmt::Debug>() {
            for &(name, value) in T::ALL {
                assert_eq!(T::from_name(name), Some(value));
                assert_eq!(
                    T::from_name(&format!(" {} ", name.to_uppercase())),
                    Some(value)
                );
                assert_eq!(value.name(), name);
            }
            assert_eq!(T::from_name("no such name"), None);
        }
        check::<InputFormat>();
        check::<Compression>();
        check::<OnError>();
        check::<OrderTypeMatch>();
        check::<Grouping>();
        check::<TableFormat>();
        check::<RowFormat>();
        check::<PartitionKey>();
        check::<ProgressMode>();
        check::<Completion>();
        check::<WatchMode>();
        check::<ChangedFiles>();
        check::<BadFiles>();
    }

    #[test]
    fn the_readme_lists_exactly_each_choice() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let tables: [(&str, &str, Vec<&str>); 13] = [
            ("[readers.NAME]", "format", names::<InputFormat>()),
            ("[readers.NAME]", "compression", names::<Compression>()),
            ("[readers.NAME]", "on_error", names::<OnError>()),
            (
                "[filters.NAME]",
                "order_type_match",
                names::<OrderTypeMatch>(),
            ),
            ("[aggregators.NAME]", "group_by", names::<Grouping>()),
            ("[sinks.NAME]", "formats", names::<TableFormat>()),
            ("[sinks.NAME]", "format", names::<RowFormat>()),
            ("[sinks.NAME]", "partition_by", names::<PartitionKey>()),
            ("[monitor]", "progress", names::<ProgressMode>()),
            ("[daemon]", "complete", names::<Completion>()),
            ("[daemon]", "watch", names::<WatchMode>()),
            ("[daemon]", "changed_files", names::<ChangedFiles>()),
            ("[daemon]", "bad_files", names::<BadFiles>()),
        ];
        for (section, key, expected) in tables {
            assert_eq!(
                readme_names(&readme, section, key),
                expected,
                "README {section} `{key}`"
            );
        }
    }
}

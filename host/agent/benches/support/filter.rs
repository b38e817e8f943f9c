//! The one argument rule of every bench target here: the words after `--`
//! pick benchmarks by name (the target's own name picks all of them); a word
//! that names nothing fails with the list. `cargo bench` adds `--bench`,
//! which is not a word.

/// The benchmarks the command line asked for.
pub struct Filter {
    target: &'static str,
    words: Vec<String>,
}

impl Filter {
    /// Reads the command line of bench target `target`, whose benchmarks
    /// are `names`; panics on a word that is neither.
    pub fn from_args(target: &'static str, names: &[&str]) -> Self {
        let words: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        for w in &words {
            assert!(
                w == target || names.contains(&w.as_str()),
                "no {target} benchmark is named `{w}`: the names are {names:?} (or `{target}` for all)"
            );
        }
        Self { target, words }
    }

    /// Whether benchmark `name` runs: no word given, its name, or the target's.
    pub fn wants(&self, name: &str) -> bool {
        self.words.is_empty() || self.words.iter().any(|w| w == name || w == self.target)
    }
}

//! Golden output: what a command printed, as one transcript that reads the
//! same on every machine (the throwaway repo's path, the compile cache and
//! timings replaced by placeholders), for `insta::assert_snapshot!` to hold
//! against the files in `tests/snapshots/`.
//!
//! A change of wording then fails with a readable diff, and after review
//! `INSTA_UPDATE=always cargo test --release --test golden` (or
//! `cargo insta review`) writes the new text.

use crate::TempRepo;

/// `$ skewless ARGS`, its exit code, stdout and stderr, made stable.
pub fn transcript(repo: &TempRepo, args: &[&str]) -> String {
    let out = repo.run(args);
    let code = out.status.code().map_or("signal".to_string(), |c| c.to_string());
    let text = format!(
        "$ skewless {}\nexit: {code}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stable(repo, &text)
}

/// `text` with the repo's and the components' paths as `<repo>` and
/// `<components>`, and figures that vary from run to run (seconds, rates,
/// milliseconds) as `<t>` before their unit.
pub fn stable(repo: &TempRepo, text: &str) -> String {
    let repo_path = repo.path().to_string_lossy().into_owned();
    let components = crate::example_components().to_string_lossy().into_owned();
    let mut text = text.replace(&repo_path, "<repo>").replace(&components, "<components>");
    for (unit, with_space) in [("s", false), ("ms", true), ("ms", false), ("rows/s", true)] {
        text = replace_numbers_before(&text, unit, with_space);
    }
    text
}

/// Replaces every decimal number directly followed by `unit` (after one
/// space when `with_space`) and then a non-letter by `<t>`, keeping the unit.
fn replace_numbers_before(text: &str, unit: &str, with_space: bool) -> String {
    let suffix = if with_space {
        format!(" {unit}")
    } else {
        unit.to_string()
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric());
        if starts_number {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                j += 1;
            }
            let after = j + suffix.len();
            let unit_follows = text[j..].starts_with(&suffix)
                && bytes.get(after).is_none_or(|b| !b.is_ascii_alphabetic() && *b != b'/');
            if unit_follows {
                out.push_str("<t>");
                out.push_str(&suffix);
                i = after;
                continue;
            }
            out.push_str(&text[i..j]);
            i = j;
            continue;
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::replace_numbers_before;

    #[test]
    fn only_numbers_before_the_unit_are_replaced() {
        assert_eq!(
            replace_numbers_before("720000 rows in 1.25s (5 rows/s), 3 commits", "s", false),
            "720000 rows in <t>s (5 rows/s), 3 commits"
        );
        assert_eq!(
            replace_numbers_before("after 12 ms; 40 msgs", "ms", true),
            "after <t> ms; 40 msgs"
        );
    }
}

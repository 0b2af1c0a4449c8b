//! Glob matching with `*` (any run of characters, including none) and `?` (exactly one character).
//!
//! Patterns are compiled once into [`Tok`]s; matching uses the greedy two-pointer algorithm, which
//! runs in O(pattern × text) worst case and never backtracks exponentially. Text is walked by
//! byte offset so matching allocates nothing.

/// One compiled pattern element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A literal character (already folded to lower case for case-insensitive patterns).
    Lit(char),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
}

/// Folds one character for case-insensitive comparison (simple one-to-one lowercase mapping).
#[inline]
pub(crate) fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Compiles `pattern`, appending to `out`. With `ignore_case`, literals are folded.
pub(crate) fn compile_into(pattern: &str, ignore_case: bool, out: &mut Vec<Tok>) {
    for c in pattern.chars() {
        let tok = match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c if ignore_case => Tok::Lit(fold(c)),
            c => Tok::Lit(c),
        };
        push(out, tok);
    }
}

/// Appends `text` as literal characters (no wildcards), e.g. a substituted policy variable.
pub(crate) fn push_literal(text: &str, ignore_case: bool, out: &mut Vec<Tok>) {
    out.extend(text.chars().map(|c| Tok::Lit(if ignore_case { fold(c) } else { c })));
}

/// Pushes one token, collapsing runs of `*` (they are equivalent to one).
pub(crate) fn push(out: &mut Vec<Tok>, tok: Tok) {
    if tok == Tok::Star && out.last() == Some(&Tok::Star) {
        return;
    }
    out.push(tok);
}

/// Compiles `pattern` into tokens.
pub(crate) fn compile(pattern: &str, ignore_case: bool) -> Vec<Tok> {
    let mut out = Vec::with_capacity(pattern.len());
    compile_into(pattern, ignore_case, &mut out);
    out
}

/// Matches `text` against compiled `pat`. With `ignore_case`, text characters are folded before
/// comparison (the pattern must have been compiled with `ignore_case` too).
pub(crate) fn matches(pat: &[Tok], text: &str, ignore_case: bool) -> bool {
    let bytes = text.as_bytes();
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after a mismatch: the pattern index after the last `*`, and the text offset
    // that `*` has consumed up to.
    let mut resume: Option<(usize, usize)> = None;
    while t < bytes.len() {
        let (c, len) = char_at(text, t);
        match pat.get(p) {
            Some(Tok::Star) => {
                p += 1;
                resume = Some((p, t));
                continue;
            }
            Some(Tok::One) => {
                p += 1;
                t += len;
                continue;
            }
            Some(&Tok::Lit(l)) if l == c || (ignore_case && l == fold(c)) => {
                p += 1;
                t += len;
                continue;
            }
            _ => {}
        }
        match resume {
            Some((sp, st)) => {
                // Let the last `*` swallow one more character and retry from there.
                let (_, skip) = char_at(text, st);
                resume = Some((sp, st + skip));
                p = sp;
                t = st + skip;
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|tok| *tok == Tok::Star)
}

/// Decodes the character starting at byte offset `i` of `s`, returning it and its UTF-8 length.
#[inline]
fn char_at(s: &str, i: usize) -> (char, usize) {
    let b = s.as_bytes()[i];
    if b.is_ascii() {
        return (b as char, 1);
    }
    let c = s[i..].chars().next().expect("offset is on a char boundary");
    (c, c.len_utf8())
}

/// Returns whether `text` matches the glob `pattern` (`*` any run, `?` one character).
///
/// Case-sensitive when `ignore_case` is false; otherwise compares with a simple lowercase fold.
/// Runs in O(len(pattern) × len(text)) at worst.
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    matches(&compile(pattern, ignore_case), text, ignore_case)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match as m;

    #[test]
    fn literals_and_wildcards() {
        assert!(m("", "", false));
        assert!(!m("", "a", false));
        assert!(m("*", "", false));
        assert!(m("*", "anything", false));
        assert!(m("a*", "abc", false));
        assert!(!m("a*", "bac", false));
        assert!(m("*c", "abc", false));
        assert!(m("a*c", "abbbc", false));
        assert!(m("a*b*c", "aXbYbZc", false));
        assert!(!m("a*b*c", "aXbYbZ", false));
        assert!(m("a?c", "abc", false));
        assert!(!m("a?c", "ac", false));
        assert!(m("??", "ab", false));
        assert!(!m("??", "abc", false));
        assert!(m("*?", "a", false));
        assert!(!m("*?", "", false));
        assert!(m("**a**", "xxa", false));
    }

    #[test]
    fn case_folding() {
        assert!(m("ecr:batchget*", "ecr:BatchGetImage", true));
        assert!(m("ECR:BatchGet*", "ecr:batchgetimage", true));
        assert!(!m("ecr:batchget*", "ecr:BatchGetImage", false));
        assert!(m("Ünï*", "üNÏcode", true));
    }

    #[test]
    fn unicode_question_mark_matches_one_char() {
        assert!(m("a?c", "aé c".replace(' ', "").as_str(), false));
        assert!(m("?", "日", false));
        assert!(!m("??", "日", false));
    }

    #[test]
    fn no_exponential_blowup() {
        let text = "a".repeat(5000);
        let pat = format!("{}b", "a*".repeat(200));
        assert!(!m(&pat, &text, false));
    }
}

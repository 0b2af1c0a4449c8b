//! PEP 440 versions (PyPI), with the normalisations PEP 440 allows
//! (case, `v` prefix, `-`/`_`/`.` separators, `alpha`/`c`/`pre`/`preview`/`rev`/`r`
//! spellings, implicit numbers, `1.0-1` post releases).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalPart {
    Num(u128),
    Str(String),
}

impl Ord for LocalPart {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (LocalPart::Num(a), LocalPart::Num(b)) => a.cmp(b),
            (LocalPart::Num(_), LocalPart::Str(_)) => Ordering::Greater,
            (LocalPart::Str(_), LocalPart::Num(_)) => Ordering::Less,
            (LocalPart::Str(a), LocalPart::Str(b)) => a.cmp(b),
        }
    }
}
impl PartialOrd for LocalPart {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Version {
    epoch: u128,
    release: Vec<u128>,
    /// (0 = a, 1 = b, 2 = rc, number)
    pre: Option<(u8, u128)>,
    post: Option<u128>,
    dev: Option<u128>,
    local: Vec<LocalPart>,
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn number(&mut self) -> Option<u128> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }
    fn sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'-' | b'_' | b'.')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Consumes the longest of `words` found at the cursor.
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        let mut best: Option<(usize, usize)> = None;
        for (k, w) in words.iter().enumerate() {
            if rest.starts_with(w.as_bytes()) && best.is_none_or(|(_, l)| w.len() > l) {
                best = Some((k, w.len()));
            }
        }
        let (k, l) = best?;
        self.i += l;
        Some(k)
    }
    /// `[sep]word[sep][N]`, trying from the current position; restores it on failure.
    fn labelled(&mut self, words: &[&str]) -> Option<(usize, u128)> {
        let save = self.i;
        self.sep();
        let Some(k) = self.word(words) else {
            self.i = save;
            return None;
        };
        let before_num = self.i;
        let had_sep = self.sep();
        match self.number() {
            Some(n) => Some((k, n)),
            None => {
                if had_sep {
                    self.i = before_num;
                }
                Some((k, 0))
            }
        }
    }
}

const PRE_WORDS: [&str; 7] = ["a", "alpha", "b", "beta", "c", "rc", "pre"];
const PRE_KIND: [u8; 7] = [0, 0, 1, 1, 2, 2, 2];

impl Version {
    pub(super) fn parse(v: &str) -> Option<Self> {
        let lower = v.trim().to_ascii_lowercase();
        let mut c = Cursor { s: lower.as_bytes(), i: 0 };
        if c.peek() == Some(b'v') {
            c.i += 1;
        }
        let mut out = Version::default();
        let first = c.number()?;
        if c.peek() == Some(b'!') {
            c.i += 1;
            out.epoch = first;
            out.release.push(c.number()?);
        } else {
            out.release.push(first);
        }
        while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(|d| d.is_ascii_digit()) {
            c.i += 1;
            out.release.push(c.number()?);
        }
        // `word` takes the longest match, so "preview" wins over "pre".
        let mut pre_words: Vec<&str> = PRE_WORDS.to_vec();
        pre_words.push("preview");
        if let Some((k, n)) = c.labelled(&pre_words) {
            let kind = if k == 7 { 2 } else { PRE_KIND[k] };
            out.pre = Some((kind, n));
        }
        // post: "-N" or [sep](post|rev|r)[sep][N]
        let save = c.i;
        if c.peek() == Some(b'-') {
            c.i += 1;
            if let Some(n) = c.number() {
                out.post = Some(n);
            } else {
                c.i = save;
            }
        }
        if out.post.is_none()
            && let Some((_, n)) = c.labelled(&["post", "rev", "r"])
        {
            out.post = Some(n);
        }
        if let Some((_, n)) = c.labelled(&["dev"]) {
            out.dev = Some(n);
        }
        if c.peek() == Some(b'+') {
            c.i += 1;
            let rest = std::str::from_utf8(&c.s[c.i..]).ok()?;
            for part in rest.split(['.', '-', '_']) {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return None;
                }
                out.local.push(if part.bytes().all(|b| b.is_ascii_digit()) {
                    LocalPart::Num(part.parse().ok()?)
                } else {
                    LocalPart::Str(part.to_string())
                });
            }
            c.i = c.s.len();
        }
        if c.i != c.s.len() {
            return None;
        }
        while out.release.len() > 1 && out.release.last() == Some(&0) {
            out.release.pop();
        }
        Some(out)
    }

    /// The sort key of packaging's `_cmpkey`: `None` fields sort as -inf/+inf.
    #[allow(clippy::type_complexity)]
    fn key(&self) -> (u128, &[u128], (i8, u8, u128), (i8, u128), (i8, u128)) {
        let pre = match self.pre {
            Some((k, n)) => (0, k, n),
            // A dev release of the final version sorts before its pre-releases.
            None if self.post.is_none() && self.dev.is_some() => (-1, 0, 0),
            None => (1, 0, 0),
        };
        let post = match self.post {
            Some(n) => (0, n),
            None => (-1, 0),
        };
        let dev = match self.dev {
            Some(n) => (0, n),
            None => (1, 0),
        };
        (self.epoch, &self.release, pre, post, dev)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key()).then_with(|| self.local.cmp(&other.local))
    }
}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}

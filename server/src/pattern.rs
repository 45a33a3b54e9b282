//! `List` patterns: globs (`*` anything including `/`, `?` one character, `[abc]`, `[a-z]`,
//! `[^abc]` sets), bounded in size and matched in time proportional to the name's length
//! times the pattern's, never worse: a pattern is a client's input, and a costly one must not
//! stall the server.

use ft_protocol::{MAX_PATTERN_LEN, MAX_PATTERN_SET_LEN};

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PatternError {
    /// Longer than [`MAX_PATTERN_LEN`].
    #[error("a pattern has at most {MAX_PATTERN_LEN} bytes")]
    TooLong,
    /// A `[` set with more than [`MAX_PATTERN_SET_LEN`] characters.
    #[error("a [...] set has at most {MAX_PATTERN_SET_LEN} characters")]
    SetTooLarge,
    /// A `[` without its `]`.
    #[error("a [ without its ]")]
    UnclosedSet,
}

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    /// This character.
    Literal(char),
    /// A set: inclusive ranges (single characters are ranges of one), maybe negated.
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    /// Whether this single-character token accepts `c` (never called on `Star`).
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Literal(literal) => *literal == c,
            Token::Set { negated, ranges } => {
                ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated
            }
        }
    }
}

/// A checked pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses and bounds a pattern.
    pub(crate) fn parse(text: &str) -> Result<Self, PatternError> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                // Runs of stars match what one star matches.
                '*' if tokens.last() == Some(&Token::Star) => continue,
                '*' => Token::Star,
                '?' => Token::Any,
                '[' => {
                    let negated = chars.next_if_eq(&'^').is_some();
                    let mut ranges = Vec::new();
                    let mut count = 0;
                    let mut first = true;
                    loop {
                        let Some(c) = chars.next() else {
                            return Err(PatternError::UnclosedSet);
                        };
                        // A `]` first in the set is a member, as in SQLite's GLOB.
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        count += 1;
                        if count > MAX_PATTERN_SET_LEN {
                            return Err(PatternError::SetTooLarge);
                        }
                        let high = match chars.peek() {
                            Some('-') => {
                                let mut ahead = chars.clone();
                                ahead.next();
                                match ahead.next() {
                                    Some(high) if high != ']' => {
                                        chars.next();
                                        chars.next();
                                        high
                                    }
                                    _ => c,
                                }
                            }
                            _ => c,
                        };
                        ranges.push((c, high));
                    }
                    Token::Set { negated, ranges }
                }
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Self { tokens })
    }

    /// `text` (the client's pattern, bounded as sent) matched beneath the folder `scope`
    /// (a namespace's `user/`, or nothing).
    pub(crate) fn scoped(scope: &str, text: &str) -> Result<Self, PatternError> {
        let pattern = Self::parse(text)?;
        let tokens = scope
            .chars()
            .map(Token::Literal)
            .chain(pattern.tokens)
            .collect();
        Ok(Self { tokens })
    }

    /// The literal text every match starts with (up to the first wildcard), for narrowing
    /// the catalog's scan.
    pub(crate) fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|token| match token {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether `name` matches, in O(characters × tokens) at worst: the classic wildcard
    /// match that, on a mismatch, only ever backtracks to the latest star.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        let (mut t, mut p) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(token) if token.accepts(text[t]) => {
                    t += 1;
                    p += 1;
                }
                _ => match star {
                    // The latest star takes one more character; everything after it is
                    // tried again from there.
                    Some((star_p, star_t)) => {
                        star = Some((star_p, star_t + 1));
                        p = star_p + 1;
                        t = star_t + 1;
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|token| *token == Token::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn globs_match_like_before() {
        assert!(matches("*.jpg", "photos/2024/a.jpg"));
        assert!(matches("photos/*", "photos/a/b"));
        assert!(!matches("photos/*", "other/a"));
        assert!(matches("a?c", "abc") && !matches("a?c", "ac"));
        assert!(matches("[ab]x", "bx") && !matches("[ab]x", "cx"));
        assert!(matches("[a-c]x", "bx") && !matches("[a-c]x", "dx"));
        assert!(matches("[^a-c]x", "dx") && !matches("[^a-c]x", "ax"));
        assert!(matches("[]]", "]") && matches("[a-]", "-"));
        assert!(matches("*", "") && matches("**a**", "xa"));
        assert!(matches("é*", "été") && !matches("E*", "e"));
        assert!(matches("a*b*c", "a-b-b-c") && !matches("a*b*c", "a-c-b"));
        assert_eq!(
            Pattern::parse("photos/*.jpg").unwrap().literal_prefix(),
            "photos/"
        );
    }

    #[test]
    fn costly_patterns_are_refused_or_cheap() {
        assert_eq!(
            Pattern::parse(&"a".repeat(MAX_PATTERN_LEN + 1)),
            Err(PatternError::TooLong)
        );
        let big_set = format!("*[{}]", "ab".repeat(MAX_PATTERN_SET_LEN / 2 + 1));
        assert_eq!(Pattern::parse(&big_set), Err(PatternError::SetTooLarge));
        assert_eq!(Pattern::parse("[abc"), Err(PatternError::UnclosedSet));
        // The worst shape for backtracking, on the longest name: a match that only ever
        // backtracks to the latest star ends (an exponential one would not, here).
        let pattern = Pattern::parse(&"*a".repeat(MAX_PATTERN_LEN / 2 - 1)).unwrap();
        let name = "a".repeat(ft_protocol::MAX_NAME_LEN - 1) + "b";
        assert!(!pattern.matches(&name));
        assert!(pattern.matches(&("b".to_owned() + &name[1..] + "a")));
    }
}

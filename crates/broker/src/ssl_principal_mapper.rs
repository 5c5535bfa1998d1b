//! Kafka's `ssl.principal.mapping.rules`: the rules that turn a client certificate's
//! subject DN (RFC 2253, e.g. `CN=alice,OU=eng,O=Example`) into a principal name.
//!
//! The syntax is Kafka's: a comma-separated list of `RULE:pattern/replacement/` rules, each
//! optionally followed by `L` (lower-case the result) or `U` (upper-case it), and `DEFAULT`
//! (the DN as it is). A `/` or `\` inside the pattern or the replacement is escaped with
//! `\`; a pattern may contain commas. Rules are tried in order; the first whose pattern
//! matches the whole DN gives the name, with `$1`… replaced by the pattern's groups (a
//! `$N` past the last group stays literal, as Kafka escapes it). When no rule applies the
//! client is refused, as Kafka's `NoMatchingRule`.
//!
//! The patterns are the `regex` crate's dialect: the Java patterns Kafka's documentation
//! shows work unchanged; look-around and back-references inside a pattern do not (they are
//! a config error, never a silent mismatch).

use regex::Regex;

/// Kafka's default: the DN as it is.
pub const DEFAULT_RULES: &str = "DEFAULT";

/// A rule list that did not parse; the message is Kafka's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRules(pub String);

/// No rule applied to a DN (Kafka's `NoMatchingRule`): the client is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("No rules apply to {dn}, rules {rules}")]
pub struct NoMatchingRule {
    /// The client certificate's subject.
    pub dn: String,
    /// The rules, as configured.
    pub rules: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// One piece of a replacement: literal text or a group of the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Rule {
        /// The pattern, as written: `replace_all` runs it over the DN, as Java's `replaceAll`.
        pattern: Regex,
        /// `\A(?:pattern)\z`: the rule applies when the whole DN matches (Java's `matches`).
        whole: Regex,
        replacement: Vec<Piece>,
        case: Case,
    },
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct SslPrincipalMapper {
    rules: Vec<Rule>,
    text: String,
}

impl Default for SslPrincipalMapper {
    fn default() -> Self {
        SslPrincipalMapper {
            rules: vec![Rule::Default],
            text: DEFAULT_RULES.to_string(),
        }
    }
}

/// Java's `\s`.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn skip_ws(s: &str, mut p: usize) -> usize {
    while let Some(c) = s[p..].chars().next() {
        if !is_ws(c) {
            break;
        }
        p += c.len_utf8();
    }
    p
}

/// `\s*(,\s*|$)` at `p`: where the next rule starts, or `None`.
fn separator(s: &str, p: usize) -> Option<usize> {
    let q = skip_ws(s, p);
    if q == s.len() {
        Some(q)
    } else if s[q..].starts_with(',') {
        Some(skip_ws(s, q + 1))
    } else {
        None
    }
}

/// `((\\.|[^\\/])*)/` from `p`: the end of the part (before its `/`), or `None` when there
/// is no closing `/` (or a lone `\` ends the text).
fn slash_part(s: &str, mut p: usize) -> Option<usize> {
    let mut chars = s[p..].chars();
    while let Some(c) = chars.next() {
        match c {
            '/' => return Some(p),
            '\\' => {
                let e = chars.next()?;
                p += 1 + e.len_utf8();
            }
            c => p += c.len_utf8(),
        }
    }
    None
}

/// `RULE:pattern/replacement/[LU]?` at the start of `s`: (pattern, replacement, case, end).
fn rule_prefix(s: &str) -> Option<(&str, &str, Case, usize)> {
    let p = "RULE:".len();
    if !s.starts_with("RULE:") {
        return None;
    }
    let pattern_end = slash_part(s, p)?;
    let replacement_end = slash_part(s, pattern_end + 1)?;
    let mut end = replacement_end + 1;
    let case = match s[end..].chars().next() {
        Some('L') => Case::Lower,
        Some('U') => Case::Upper,
        _ => Case::Keep,
    };
    if case != Case::Keep {
        end += 1;
    }
    Some((
        &s[p..pattern_end],
        &s[pattern_end + 1..replacement_end],
        case,
        end,
    ))
}

/// The smallest `q >= p` where a separator follows: (q, start of the next rule).
fn lazy_to_separator(s: &str, p: usize) -> (usize, usize) {
    let mut q = p;
    loop {
        if let Some(next) = separator(s, q) {
            return (q, next);
        }
        // `separator` succeeds at the end, so `q` is inside the text here.
        q += s[q..].chars().next().map_or(1, char::len_utf8);
    }
}

/// Kafka's rule splitter: the rules in order (a `RULE:` may contain commas in its pattern
/// and replacement; anything else runs to the next comma).
fn split(s: &str) -> Vec<&str> {
    let s = s.trim_matches(|c: char| c <= ' ');
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let start = skip_ws(s, pos);
        let rest = &s[start..];
        let found = if rest.starts_with("DEFAULT") {
            separator(s, start + "DEFAULT".len()).map(|n| (start + "DEFAULT".len(), n))
        } else {
            None
        }
        .or_else(|| {
            let (_, _, _, end) = rule_prefix(rest)?;
            Some(lazy_to_separator(s, start + end))
        })
        .unwrap_or_else(|| lazy_to_separator(s, start));
        out.push(&s[start..found.0]);
        if found.1 >= s.len() {
            return out;
        }
        pos = found.1;
    }
}

/// Java's replacement syntax (`\x` is a literal `x`, `$N` and `${name}` are groups) after
/// Kafka's escaping of `$N` past the last group.
fn parse_replacement(text: &str, pattern: &Regex) -> Result<Vec<Piece>, String> {
    let groups = pattern.captures_len() - 1;
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => literal.push(e),
                None => return Err("character to be escaped is missing".into()),
            },
            '$' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let mut digits = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        digits.push(*d);
                        chars.next();
                    }
                    match digits.parse::<usize>() {
                        Ok(n) if n <= groups => {
                            pieces.push(Piece::Text(std::mem::take(&mut literal)));
                            pieces.push(Piece::Group(n));
                        }
                        _ => {
                            literal.push('$');
                            literal.push_str(&digits);
                        }
                    }
                }
                Some('{') => {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() => name.push(c),
                            _ => return Err("named capturing group is missing trailing '}'".into()),
                        }
                    }
                    if !pattern.capture_names().any(|n| n == Some(name.as_str())) {
                        return Err(format!("No group with name {{{name}}}"));
                    }
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    pieces.push(Piece::Named(name));
                }
                _ => return Err("Illegal group reference".into()),
            },
            c => literal.push(c),
        }
    }
    pieces.push(Piece::Text(literal));
    pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
    Ok(pieces)
}

impl SslPrincipalMapper {
    /// Parses a rule list with Kafka's syntax and messages (`Invalid rule: ...`).
    pub fn from_rules(text: &str) -> Result<SslPrincipalMapper, InvalidRules> {
        let mut rules = Vec::new();
        for rule in split(text) {
            if rule.is_empty() {
                continue; // Empty rules are ignored, as in Kafka.
            }
            if let Some(rest) = rule.strip_prefix("DEFAULT") {
                if rest.is_empty() {
                    rules.push(Rule::Default);
                    continue;
                }
                return Err(InvalidRules(format!(
                    "Invalid rule: `{rule}`, unmatched substring: `{rest}`"
                )));
            }
            let Some((pattern, replacement, case, end)) = rule_prefix(rule) else {
                return Err(InvalidRules(format!(
                    "Invalid rule: `{rule}`, unmatched substring: `{rule}`"
                )));
            };
            if end != rule.len() {
                return Err(InvalidRules(format!(
                    "Invalid rule: `{rule}`, unmatched substring: `{}`",
                    &rule[end..]
                )));
            }
            let compiled = Regex::new(pattern)
                .map_err(|e| InvalidRules(format!("Invalid rule: `{rule}`: {e}")))?;
            let whole = Regex::new(&format!(r"\A(?:{pattern})\z"))
                .map_err(|e| InvalidRules(format!("Invalid rule: `{rule}`: {e}")))?;
            let replacement = parse_replacement(replacement, &compiled)
                .map_err(|e| InvalidRules(format!("Invalid rule: `{rule}`: {e}")))?;
            rules.push(Rule::Rule {
                pattern: compiled,
                whole,
                replacement,
                case,
            });
        }
        Ok(SslPrincipalMapper {
            rules,
            text: text.to_string(),
        })
    }

    /// The principal name of `dn`: the first rule that applies.
    pub fn name(&self, dn: &str) -> Result<String, NoMatchingRule> {
        for rule in &self.rules {
            let Rule::Rule {
                pattern,
                whole,
                replacement,
                case,
            } = rule
            else {
                return Ok(dn.to_string());
            };
            if !whole.is_match(dn) {
                continue;
            }
            let name = pattern.replace_all(dn, |caps: &regex::Captures<'_>| {
                let mut out = String::new();
                for piece in replacement {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Group(n) => out.push_str(caps.get(*n).map_or("", |m| m.as_str())),
                        Piece::Named(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
                    }
                }
                out
            });
            return Ok(match case {
                Case::Keep => name.into_owned(),
                Case::Lower => name.to_lowercase(),
                Case::Upper => name.to_uppercase(),
            });
        }
        Err(NoMatchingRule {
            dn: dn.to_string(),
            rules: self.text.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rules: &str, dn: &str) -> String {
        SslPrincipalMapper::from_rules(rules)
            .unwrap()
            .name(dn)
            .unwrap()
    }

    fn invalid(rules: &str) -> String {
        SslPrincipalMapper::from_rules(rules).unwrap_err().0
    }

    /// The examples of Kafka's documentation (security, "Customizing SSL User Name").
    #[test]
    fn kafka_documented_examples() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\
                     DEFAULT";
        assert_eq!(
            map(
                rules,
                "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            ),
            "serviceuser"
        );
        assert_eq!(
            map(
                rules,
                "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            ),
            "adminuser@admin"
        );
        assert_eq!(map(rules, "OU=x,cn=Bob.Smith,O=y"), "bob.smith");
        assert_eq!(map(rules, "O=nothing-matches"), "O=nothing-matches");
        let upper = "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/U";
        assert_eq!(
            map(
                upper,
                "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            ),
            "ADMINUSER@ADMIN"
        );
    }

    /// Cases of Kafka's `SslPrincipalMapperTest`-style checks: whitespace, newlines between
    /// rules, escaped slashes, `$N` past the last group, and the default.
    #[test]
    fn syntax_details() {
        assert_eq!(map("DEFAULT", "CN=a,O=b"), "CN=a,O=b");
        assert_eq!(map("  DEFAULT  ", "CN=a"), "CN=a");
        assert_eq!(
            map("RULE:^CN=(.*?),O=.*$/$1/ ,\n  DEFAULT", "CN=Joe,O=x"),
            "Joe"
        );
        assert_eq!(map("RULE:^CN=(.*)$/a\\/b $1/", "CN=z"), "a/b z");
        assert_eq!(map("RULE:^CN=(.*)$/$1 costs $2/", "CN=z"), "z costs $2");
        assert_eq!(map("RULE:^CN=(.*)$/\\$1/", "CN=z"), "$1");
        assert_eq!(map("RULE:^CN=(?P<u>.*)$/${u}!/", "CN=z"), "z!");
        assert_eq!(
            map("RULE:^O=a\\/b,CN=(.*)$/$1/L,DEFAULT", "O=a/b,CN=ZED"),
            "zed"
        );
        // The first applicable rule wins; a later DEFAULT is not reached.
        assert_eq!(map("RULE:^CN=(.*)$/x/,RULE:^CN=(.*)$/y/", "CN=q"), "x");
        // No rule applies: refused.
        let m = SslPrincipalMapper::from_rules("RULE:^CN=(.*)$/$1/").unwrap();
        let e = m.name("O=other").unwrap_err();
        assert_eq!(
            e.to_string(),
            "No rules apply to O=other, rules RULE:^CN=(.*)$/$1/"
        );
        // Empty rules are ignored; an empty list applies to nothing.
        let empty = SslPrincipalMapper::from_rules("").unwrap();
        assert!(empty.name("CN=a").is_err());
        assert_eq!(map("DEFAULT,,", "CN=a"), "CN=a");
    }

    #[test]
    fn invalid_rules_with_kafka_messages() {
        assert_eq!(
            invalid("DEFAULTx"),
            "Invalid rule: `DEFAULTx`, unmatched substring: `x`"
        );
        assert_eq!(
            invalid("RULE:a/b/Lxyz"),
            "Invalid rule: `RULE:a/b/Lxyz`, unmatched substring: `xyz`"
        );
        assert_eq!(
            invalid("RULE:a/b/L,garbage"),
            "Invalid rule: `garbage`, unmatched substring: `garbage`"
        );
        assert_eq!(
            invalid("RULE:only-pattern/"),
            "Invalid rule: `RULE:only-pattern/`, unmatched substring: `RULE:only-pattern/`"
        );
        assert!(invalid("RULE:^CN=(.*$/$1/").starts_with("Invalid rule: `RULE:^CN=(.*$/$1/`: "));
        assert!(invalid("RULE:^CN=(.*)$/$x/").contains("Illegal group reference"));
        assert!(invalid("RULE:^CN=(.*)$/${nope}/").contains("No group with name"));
    }

    proptest::proptest! {
        /// Every well-formed rule list parses, and its rules apply in order.
        #[test]
        fn well_formed_lists_parse(
            rules in proptest::collection::vec(
                (
                    proptest::option::of((
                        "[a-zA-Z=, .]{0,8}",
                        "[a-zA-Z@ ,.]{0,8}",
                        proptest::sample::select(vec!["", "L", "U"]),
                    )),
                    " {0,2}",
                ),
                0..6,
            ),
            dn in "[a-zA-Z=,]{0,20}",
        ) {
            let text = rules
                .iter()
                .map(|(r, ws)| match r {
                    None => format!("{ws}DEFAULT{ws}"),
                    Some((p, rep, case)) => {
                        format!("{ws}RULE:^CN=({})$/{}$1/{case}{ws}", regex::escape(p), rep)
                    }
                })
                .collect::<Vec<_>>()
                .join(",");
            let mapper = SslPrincipalMapper::from_rules(&text);
            proptest::prop_assert!(mapper.is_ok(), "{text}: {:?}", mapper.err());
            let mapper = mapper.unwrap();
            proptest::prop_assert_eq!(mapper.rules.len(), rules.len());
            // The name is what the first applicable rule says.
            let expected = rules.iter().find_map(|(r, _)| match r {
                None => Some(dn.clone()),
                Some((p, rep, case)) => {
                    let v = dn.strip_prefix("CN=").filter(|v| v == p)?;
                    let out = format!("{rep}{v}");
                    Some(match *case {
                        "L" => out.to_lowercase(),
                        "U" => out.to_uppercase(),
                        _ => out,
                    })
                }
            });
            proptest::prop_assert_eq!(mapper.name(&dn).ok(), expected);
        }

        /// Any text: a parse error or a mapper, never a panic.
        #[test]
        fn any_text_never_panics(text in "\\PC{0,40}", dn in "\\PC{0,20}") {
            if let Ok(m) = SslPrincipalMapper::from_rules(&text) {
                let _ = m.name(&dn);
            }
        }
    }
}

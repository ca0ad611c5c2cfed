//! Brace patterns as WebDataset names shard lists: `shards-{000000..000099}.tar`, the rules
//! of the Python `braceexpand` package (0.1.7, the version webdataset 1.0.2 installs), a
//! form of bash's brace expansion.

use crate::{Error, Result};

/// Most names one pattern may expand to, so that a pattern such as `{0..99999999999}`
/// is refused rather than filling memory.
pub const MAX_EXPANSION: usize = 1_000_000;

/// Expands a brace pattern as `braceexpand` 0.1.7 does: `{0..99}`, `{-2..2}` and `{a..e}`
/// ranges (with an optional step, `{0..10..2}`, in either direction; a step of 0 is 1; when
/// an end other than `0` starts with `0` or `-0`, every number is padded to the wider end's
/// width), `{a,b,c}` lists, nested groups, and `\` escaping the next character. A group
/// without a comma or range keeps its braces (`{x}`), its inside expanded.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`]: unbalanced braces, a number that does not fit 64
/// bits, or more than [`MAX_EXPANSION`] names.
///
/// # Panics
/// Never.
///
/// ```
/// use shardpack::webdataset::expand_braces;
/// assert_eq!(expand_braces("s-{08..10}.tar")?, ["s-08.tar", "s-09.tar", "s-10.tar"]);
/// assert_eq!(expand_braces("{a,b}/{1..2}")?, ["a/1", "a/2", "b/1", "b/2"]);
/// # Ok::<(), shardpack::Error>(())
/// ```
pub fn expand_braces(pattern: &str) -> Result<Vec<String>> {
    let refuse = |reason: String| Error::invalid_input(format!("pattern {pattern:?}"), reason);
    let names = expand_pattern(pattern).map_err(refuse)?;
    Ok(names.iter().map(|n| unescape(n)).collect())
}

type Expansion = std::result::Result<Vec<String>, String>;

/// A pattern: literal runs and `{…}` groups, expanded to their product.
fn expand_pattern(pattern: &str) -> Expansion {
    let bytes = pattern.as_bytes();
    let mut items: Vec<Vec<String>> = Vec::new();
    let (mut start, mut pos, mut depth) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(pos) {
        match b {
            b'\\' => {
                pos += 2;
                continue;
            }
            b'{' => {
                if depth == 0 && pos > start {
                    items.push(vec![slice(pattern, start, pos)?.to_owned()]);
                    start = pos;
                }
                depth += 1;
            }
            b'}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "unbalanced braces".to_string())?;
                if depth == 0 {
                    let expr = slice(pattern, start + 1, pos)?;
                    match expand_expression(expr)? {
                        Some(item) => items.push(item),
                        None => {
                            items.push(vec!["{".to_owned()]);
                            items.push(expand_pattern(expr)?);
                            items.push(vec!["}".to_owned()]);
                        }
                    }
                    start = pos + 1;
                }
            }
            _ => {}
        }
        pos += 1;
    }
    if depth != 0 {
        return Err("unbalanced braces".into());
    }
    if start < bytes.len() {
        items.push(vec![slice(pattern, start, bytes.len())?.to_owned()]);
    }
    product(&items)
}

/// `text[a..b]`, at positions of ASCII bytes, so always on character boundaries.
fn slice(text: &str, a: usize, b: usize) -> std::result::Result<&str, String> {
    text.get(a..b)
        .ok_or_else(|| "a pattern split inside a character".to_string())
}

fn product(items: &[Vec<String>]) -> Expansion {
    let mut total = 1usize;
    for item in items {
        total = total
            .checked_mul(item.len())
            .filter(|&n| n <= MAX_EXPANSION)
            .ok_or_else(|| format!("expands to more than {MAX_EXPANSION} names"))?;
    }
    let mut out = vec![String::new()];
    for item in items {
        out = out
            .iter()
            .flat_map(|head| item.iter().map(move |tail| format!("{head}{tail}")))
            .collect();
    }
    Ok(out)
}

/// The inside of a `{…}` group: a range, else a comma list, else `None`.
fn expand_expression(expr: &str) -> std::result::Result<Option<Vec<String>>, String> {
    if let Some(range) = int_range(expr)? {
        return Ok(Some(range));
    }
    if let Some(range) = char_range(expr)? {
        return Ok(Some(range));
    }
    expand_sequence(expr)
}

/// `a..b` or `a..b..step` (the step's sign is ignored, as `braceexpand` ignores it).
fn range_parts(expr: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = expr.splitn(3, "..");
    let a = parts.next()?;
    let b = parts.next()?;
    let step = parts.next().map(|s| s.strip_prefix('-').unwrap_or(s));
    if step.is_some_and(|s| s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit())) {
        return None;
    }
    Some((a, b, step))
}

/// The step: 1 when absent or 0, as `braceexpand` takes it.
fn parse_step(step: Option<&str>) -> std::result::Result<u64, String> {
    match step {
        None => Ok(1),
        Some(s) => s
            .parse::<u64>()
            .map(|n| n.max(1))
            .map_err(|_| format!("the step {s} does not fit 64 bits")),
    }
}

/// The values from `a` to `b` by `step`, either way, `b` included when the steps reach it.
fn stepped(a: i64, b: i64, step: u64) -> std::result::Result<Vec<i64>, String> {
    let count = (a.abs_diff(b) / step).saturating_add(1);
    if count > MAX_EXPANSION as u64 {
        return Err(format!("expands to more than {MAX_EXPANSION} names"));
    }
    // Every value lies between `a` and `b`, so the arithmetic stays in range.
    let step = i128::from(step);
    Ok((0..i128::from(count))
        .filter_map(|i| {
            let v = if a <= b {
                i128::from(a) + i * step
            } else {
                i128::from(a) - i * step
            };
            i64::try_from(v).ok()
        })
        .collect())
}

fn int_range(expr: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let Some((a, b, step)) = range_parts(expr) else {
        return Ok(None);
    };
    let integer = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
    };
    if !integer(a) || !integer(b) {
        return Ok(None);
    }
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("{s} does not fit 64 bits"))
    };
    let padded = [a, b]
        .iter()
        .any(|s| !matches!(*s, "0" | "-0") && (s.starts_with('0') || s.starts_with("-0")));
    let width = if padded { a.len().max(b.len()) } else { 0 };
    let values = stepped(number(a)?, number(b)?, parse_step(step)?)?;
    Ok(Some(
        values.iter().map(|v| format!("{v:0width$}")).collect(),
    ))
}

/// Letters in `braceexpand`'s alphabet order, `A`–`Z` then `a`–`z`.
fn char_range(expr: &str) -> std::result::Result<Option<Vec<String>>, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let Some((a, b, step)) = range_parts(expr) else {
        return Ok(None);
    };
    let index = |s: &str| match s.as_bytes() {
        [c] => ALPHABET
            .iter()
            .position(|x| x == c)
            .and_then(|i| i64::try_from(i).ok()),
        _ => None,
    };
    let (Some(a), Some(b)) = (index(a), index(b)) else {
        return Ok(None);
    };
    let values = stepped(a, b, parse_step(step)?)?;
    Ok(Some(
        values
            .iter()
            .filter_map(|&i| {
                let i = usize::try_from(i).ok()?;
                ALPHABET.get(i).map(|&c| char::from(c).to_string())
            })
            .collect(),
    ))
}

/// `a,b,{c,d}`: the expansions of the comma-separated parts, one after another; `None`
/// without a comma at the top level.
fn expand_sequence(seq: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let bytes = seq.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut pos, mut depth) = (0usize, 0usize, 0i64);
    while let Some(&b) = bytes.get(pos) {
        match b {
            b'\\' => {
                pos += 2;
                continue;
            }
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(slice(seq, start, pos)?);
                start = pos + 1;
            }
            _ => {}
        }
        pos += 1;
    }
    if depth != 0 || parts.is_empty() {
        return Ok(None);
    }
    parts.push(seq.get(start..).unwrap_or_default());
    let mut out = Vec::new();
    for part in parts {
        out.extend(expand_pattern(part)?);
        if out.len() > MAX_EXPANSION {
            return Err(format!("expands to more than {MAX_EXPANSION} names"));
        }
    }
    Ok(Some(out))
}

/// Removes the `\` before each escaped character (a line break cannot be escaped, as in
/// `braceexpand`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next)) if next != '\n' => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> Vec<String> {
        expand_braces(p).unwrap()
    }

    #[test]
    fn braceexpand_examples() {
        // The examples of braceexpand's own documentation.
        assert_eq!(ok("item{1..3}"), ["item1", "item2", "item3"]);
        assert_eq!(ok("{a..c}"), ["a", "b", "c"]);
        assert_eq!(
            ok("index.html{,.backup}"),
            ["index.html", "index.html.backup"]
        );
        assert_eq!(
            ok("python{2.{5..7},3.{2,3}}"),
            [
                "python2.5",
                "python2.6",
                "python2.7",
                "python3.2",
                "python3.3"
            ]
        );
        assert_eq!(ok("{07..10}"), ["07", "08", "09", "10"]);
        assert_eq!(ok("{a..g..2}"), ["a", "c", "e", "g"]);
        assert_eq!(ok("{4..1}"), ["4", "3", "2", "1"]);
        assert_eq!(ok(r"{1\{2,3}"), ["1{2", "3"]);
        assert!(expand_braces("{1{2,3}").is_err());
    }

    #[test]
    fn webdataset_shard_lists() {
        let names = ok("shards-{000000..000099}.tar");
        assert_eq!(names.len(), 100);
        assert_eq!(names[0], "shards-000000.tar");
        assert_eq!(names[99], "shards-000099.tar");
        // Checked against braceexpand 0.1.7.
        assert_eq!(ok("{0..10..5}"), ["0", "5", "10"]);
        assert_eq!(ok("{1..10..3}"), ["1", "4", "7", "10"]);
        assert_eq!(ok("{00..3}"), ["00", "01", "02", "03"]);
        assert_eq!(ok("{-3..2}"), ["-3", "-2", "-1", "0", "1", "2"]);
        assert_eq!(ok("{-03..1}"), ["-03", "-02", "-01", "000", "001"]);
        assert_eq!(ok("{a..c..0}"), ["a", "b", "c"]);
        assert_eq!(ok("{c..a}"), ["c", "b", "a"]);
        assert_eq!(ok("plain.tar"), ["plain.tar"]);
        assert_eq!(ok("{x}.tar"), ["{x}.tar"]);
        assert_eq!(ok("{{a,b}}"), ["{a}", "{b}"]);
        assert_eq!(ok("{Y..b}"), ["Y", "Z", "a", "b"]);
    }

    #[test]
    fn hostile_patterns_are_refused() {
        for p in [
            "{0..99999999999}",
            "{0..99999999999999999999999}",
            "{-9223372036854775808..9223372036854775807}",
            "}{",
            "{{a,b}",
            "{0..999}{0..999}{0..9}",
        ] {
            let e = expand_braces(p).unwrap_err();
            assert!(
                matches!(e.kind(), crate::ErrorKind::InvalidInput { .. }),
                "{p}: {e}"
            );
        }
        assert_eq!(ok("{0..999}{0..999}").len(), 1_000_000);
    }
}

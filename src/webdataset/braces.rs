//! Brace patterns as WebDataset names shard lists: `shards-{000000..000099}.tar`, the rules
//! of the Python `braceexpand` package that webdataset uses (bash's brace expansion).

use crate::{Error, Result};

/// Most names one pattern may expand to, so that a pattern such as `{0..99999999999}`
/// is refused rather than filling memory.
pub const MAX_EXPANSION: usize = 1_000_000;

/// Expands a brace pattern as `braceexpand` does: `{0..99}` and `{a..e}` ranges (with an
/// optional step, `{0..10..2}`, in either direction; a range whose either end starts with
/// `0` pads every number to the wider end's width), `{a,b,c}` lists, nested groups, and `\`
/// escaping the next character. A group without a comma or range is kept as it is (`{x}`).
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`]: unbalanced braces, a step of 0, a number that does
/// not fit 64 bits, or more than [`MAX_EXPANSION`] names.
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
                    items.push(expand_expression(slice(pattern, start + 1, pos)?)?);
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

/// The inside of a `{…}` group: a range, else a comma list.
fn expand_expression(expr: &str) -> Expansion {
    if let Some(range) = int_range(expr)? {
        return Ok(range);
    }
    if let Some(range) = char_range(expr)? {
        return Ok(range);
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

fn parse_step(step: Option<&str>) -> std::result::Result<u64, String> {
    let step = match step {
        None => 1,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| format!("the step {s} does not fit 64 bits"))?,
    };
    if step == 0 {
        return Err("a range step must not be 0".into());
    }
    Ok(step)
}

/// The values from `a` to `b` by `step`, either way, `b` included when the steps reach it.
fn stepped(a: u64, b: u64, step: u64) -> std::result::Result<Vec<u64>, String> {
    let count = a.abs_diff(b) / step + 1;
    if count > MAX_EXPANSION as u64 {
        return Err(format!("expands to more than {MAX_EXPANSION} names"));
    }
    Ok((0..count)
        .map(|i| if a <= b { a + i * step } else { a - i * step })
        .collect())
}

fn int_range(expr: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let Some((a, b, step)) = range_parts(expr) else {
        return Ok(None);
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Ok(None);
    }
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{s} does not fit 64 bits"))
    };
    let width = if a.starts_with('0') || b.starts_with('0') {
        a.len().max(b.len())
    } else {
        0
    };
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
        [c] => ALPHABET.iter().position(|x| x == c).map(|i| i as u64),
        _ => None,
    };
    let (Some(a), Some(b)) = (index(a), index(b)) else {
        return Ok(None);
    };
    let values = stepped(a, b, parse_step(step)?)?;
    Ok(Some(
        values
            .iter()
            .filter_map(|&i| ALPHABET.get(i as usize).map(|&c| char::from(c).to_string()))
            .collect(),
    ))
}

/// `a,b,{c,d}`: the expansions of the comma-separated parts, one after another; without a
/// comma at the top level the group is literal text.
fn expand_sequence(seq: &str) -> Expansion {
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
        return Ok(vec![format!("{{{seq}}}")]);
    }
    parts.push(seq.get(start..).unwrap_or_default());
    let mut out = Vec::new();
    for part in parts {
        out.extend(expand_pattern(part)?);
        if out.len() > MAX_EXPANSION {
            return Err(format!("expands to more than {MAX_EXPANSION} names"));
        }
    }
    Ok(out)
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
        assert_eq!(ok("{0..10..5}"), ["0", "5", "10"]);
        assert_eq!(ok("{0..10}").len(), 11);
        assert_eq!(
            ok("{0..10}")[0],
            "00",
            "a leading zero pads to the wider end"
        );
        assert_eq!(ok("plain.tar"), ["plain.tar"]);
        assert_eq!(ok("{x}.tar"), ["{x}.tar"]);
        assert_eq!(ok("{Y..b}"), ["Y", "Z", "a", "b"]);
    }

    #[test]
    fn hostile_patterns_are_refused() {
        for p in [
            "{0..99999999999}",
            "{0..1..0}",
            "{0..99999999999999999999999}",
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

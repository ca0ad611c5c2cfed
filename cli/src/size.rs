//! Numbers on the command line: byte sizes (`4096`, `64K`, `256MiB`, `1G`, `1GB`) and
//! parity percentages (`10`, `10%`, `14.3%`).

/// Parses a size: a number with an optional unit. `K`, `Ki`, `KiB` (and M, G, T alike) are
/// powers of 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 4096, 64K, 256MiB, 1G)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KI" | "KIB" => 1 << 10,
        "M" | "MI" | "MIB" => 1 << 20,
        "G" | "GI" | "GIB" => 1 << 30,
        "T" | "TI" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use K, M, G, T or KB, MB, GB, TB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// Parses a parity percentage, with or without a percent sign (`10`, `10%`, as par2
/// users type it): a finite number from 0 to [`shardpack::MAX_PARITY_PERCENT`].
pub fn parse_parity(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim_end();
    let max = shardpack::MAX_PARITY_PERCENT;
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && (0.0..=max).contains(&p) => Ok(p),
        _ => Err(format!(
            "{text:?} is not a parity percentage: use a number from 0 to {max}, such as 10 or 10%"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_percentages() {
        assert_eq!(parse_parity("10"), Ok(10.0));
        assert_eq!(parse_parity("10%"), Ok(10.0));
        assert_eq!(parse_parity(" 14.3 % "), Ok(14.3));
        assert_eq!(parse_parity("0"), Ok(0.0));
        assert_eq!(parse_parity("1000%"), Ok(1000.0));
        for bad in ["-5", "NaN", "inf", "-inf", "1000.1", "10%%", "%", "", "ten"] {
            assert!(parse_parity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
    }
}

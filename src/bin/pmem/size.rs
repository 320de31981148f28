//! Parsing of `--size` values: plain bytes or a binary suffix.

/// Parses `4096`, `64K`, `64KiB`, `8M`, `8MiB`, `1G`, `1GiB`, `1T`, `1TiB`
/// (suffixes case-insensitive, all powers of 1024, an optional trailing `B`
/// after a bare letter, e.g. `64KB` = `64K`). Returns a message for the user
/// on anything else, including overflow.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{s}' is not a size: expected a number of bytes, optionally followed by K, M, G, T, KiB, MiB, GiB or TiB"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is too large for a size"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size suffix '{other}' in '{s}': use K, M, G, T, KiB, MiB, GiB or TiB (powers of 1024)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large for a size (more than 2^64 bytes)"))
}

/// `2097152` -> `2 MiB`, `1536` -> `1.5 KiB`, `100` -> `100 B`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_and_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("8mib"), Ok(8 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size(" 16 MiB "), Ok(16 << 20));
        assert_eq!(parse_size("100B"), Ok(100));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for bad in ["", "M", "-1", "1.5G", "12X", "10 megabytes", "0x100"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains(bad.trim()) || bad.is_empty(), "{bad}: {e}");
        }
        assert!(parse_size("12X").unwrap_err().contains("suffix"));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("16777216T").is_err());
        assert_eq!(parse_size("16777215T"), Ok(16777215u64 << 40));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(100), "100 B");
        assert_eq!(human_size(2 << 20), "2 MiB");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}

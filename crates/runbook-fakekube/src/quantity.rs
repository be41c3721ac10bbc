//! Kubernetes resource quantities (`512Mi`, `250m`, `1.5Gi`): parsing into
//! plain numbers and formatting for metrics, `df` and validation messages.
//!
//! The fake only needs to compare and display quantities, so it works with
//! `f64` rather than the apiserver's exact decimal representation.

/// Parses a quantity such as `16Gi`, `500m`, `2`, `1e3` or `100G` into base
/// units (bytes for memory, cores for CPU). Returns `None` when the text is not
/// a quantity the apiserver would accept.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let power: i32 = exp[1..].parse().ok()?;
            10f64.powi(power)
        }
        _ => return None,
    };
    Some(value * multiplier)
}

/// Reads a quantity that may be stored as a JSON string or number.
pub(crate) fn quantity_of(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::String(s) => parse_quantity(s),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Formats bytes the way `df -h` does: powers of 1024 with a one-letter unit,
/// one decimal below 10.
pub(crate) fn df_human(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut value = bytes.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{}", value.round() as u64)
    } else if value < 10.0 {
        format!("{:.1}{}", (value * 10.0).ceil() / 10.0, UNITS[unit])
    } else {
        format!("{}{}", value.ceil() as u64, UNITS[unit])
    }
}

/// Formats bytes as a whole number of `Ki`, as metrics-server reports memory.
pub(crate) fn format_memory_ki(bytes: f64) -> String {
    format!("{}Ki", (bytes / 1024.0).round() as u64)
}

/// Formats cores as nanocores, as metrics-server reports CPU.
pub(crate) fn format_cpu_nanos(cores: f64) -> String {
    format!("{}n", (cores * 1e9).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_suffixes() {
        assert_eq!(
            parse_quantity("16Gi"),
            Some(16.0 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(parse_quantity("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("100G"), Some(1e11));
        assert_eq!(
            parse_quantity("1.5Gi"),
            Some(1.5 * 1024.0 * 1024.0 * 1024.0)
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("12Qi"), None);
        assert_eq!(parse_quantity("Gi"), None);
    }

    #[test]
    fn formats_like_df() {
        assert_eq!(df_human(100.0 * 1024f64.powi(3)), "100G");
        assert_eq!(df_human(1.5 * 1024f64.powi(3)), "1.5G");
        assert_eq!(df_human(0.0), "0");
        assert_eq!(format_memory_ki(2048.0), "2Ki");
        assert_eq!(format_cpu_nanos(0.25), "250000000n");
    }
}

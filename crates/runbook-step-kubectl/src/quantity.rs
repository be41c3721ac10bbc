//! Kubernetes resource quantities (`250m`, `1.5Gi`, `100n`, `1e3`), as
//! metrics.k8s.io reports CPU and memory usage.
//!
//! `kubectl top` prints `MilliValue()` for CPU and `Value()` for memory; both
//! round *up* to the next integer of the target unit, so `100n` of CPU is
//! 1 millicore, not 0. The arithmetic here is exact (integers, no floats) so
//! that large byte counts do not drift.

/// Why a quantity could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a Kubernetes quantity: {why}")]
pub struct QuantityError {
    text: String,
    why: &'static str,
}

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

fn parse(text: &str) -> Result<Parsed, QuantityError> {
    let fail = |why| QuantityError {
        text: text.to_string(),
        why,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(fail("it is empty"));
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // The number: digits with at most one decimal point.
    let number_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_len);
    if number.is_empty() || number == "." {
        return Err(fail("it does not start with a number"));
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') {
        return Err(fail("it has two decimal points"));
    }
    let mut mantissa: u128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(c - b'0')))
            .ok_or_else(|| fail("it has too many digits"))?;
    }
    let mut exp10 = -(frac_part.len() as i32);
    let mut exp2 = 0u32;
    // `e`/`E` followed by a (signed) number is a decimal exponent; a bare `E`
    // is the exa suffix.
    let exponent = suffix.strip_prefix(['e', 'E']).filter(|rest| {
        let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
    });
    if let Some(rest) = exponent {
        let value: i32 = rest
            .parse()
            .map_err(|_| fail("its exponent is out of range"))?;
        exp10 = exp10
            .checked_add(value)
            .ok_or_else(|| fail("its exponent is out of range"))?;
    } else {
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            _ => return Err(fail("its unit suffix is unknown")),
        }
    }
    Ok(Parsed {
        negative,
        mantissa,
        exp10,
        exp2,
    })
}

/// `ceil(quantity × 10^scale)` as an integer, like Go's `ScaledValue`.
fn scaled_ceil(text: &str, scale: i32) -> Result<i64, QuantityError> {
    let p = parse(text)?;
    let overflow = || QuantityError {
        text: text.to_string(),
        why: "it is too large",
    };
    let exp10 = p.exp10 + scale;
    let mut value = p
        .mantissa
        .checked_mul(1u128.checked_shl(p.exp2).ok_or_else(overflow)?)
        .ok_or_else(overflow)?;
    if exp10 >= 0 {
        for _ in 0..exp10 {
            value = value.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        // Dividing by 10^k: once the divisor exceeds the value, the result
        // is 0 remainder value, so cap the loop instead of overflowing.
        let mut divisor: u128 = 1;
        for _ in 0..(-exp10) {
            match divisor.checked_mul(10) {
                Some(d) => divisor = d,
                None => {
                    divisor = u128::MAX;
                    break;
                }
            }
        }
        let quotient = value / divisor;
        let remainder = value % divisor;
        // Round away from zero for positives (ceil); toward zero for
        // negatives (which is also ceil).
        value = if remainder != 0 && !p.negative {
            quotient + 1
        } else {
            quotient
        };
    }
    let value = i64::try_from(value).map_err(|_| overflow())?;
    Ok(if p.negative { -value } else { value })
}

/// CPU in millicores (`kubectl top`'s `MilliValue()`): `250m` → 250,
/// `1` → 1000, `1500000n` → 2 (rounded up).
pub fn millicores(text: &str) -> Result<i64, QuantityError> {
    scaled_ceil(text, 3)
}

/// A quantity in base units (bytes for memory), rounded up: `1Ki` → 1024,
/// `1k` → 1000, `1.5Gi` → 1610612736.
pub fn base_units(text: &str) -> Result<i64, QuantityError> {
    scaled_ceil(text, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        let cases = [
            ("250m", 250),
            ("1", 1000),
            ("2.5", 2500),
            ("100n", 1),
            ("1500000n", 2),
            ("1000000n", 1),
            ("0", 0),
            ("3u", 1),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("1.5k", 1_500_000),
            ("0.1", 100),
            (".5", 500),
        ];
        for (text, want) in cases {
            assert_eq!(millicores(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn memory_in_bytes() {
        let cases = [
            ("1Ki", 1024),
            ("1k", 1000),
            ("128Mi", 134_217_728),
            ("1.5Gi", 1_610_612_736),
            ("16Gi", 17_179_869_184),
            ("1G", 1_000_000_000),
            ("1M", 1_000_000),
            ("12345", 12345),
            ("1e6", 1_000_000),
            ("2E", 2_000_000_000_000_000_000),
            ("1Ti", 1_099_511_627_776),
            ("100m", 1),
            ("-1Ki", -1024),
        ];
        for (text, want) in cases {
            assert_eq!(base_units(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "abc", "1.2.3", "5Q", "1Kb", ".", "--1", "Mi"] {
            assert!(base_units(text).is_err(), "{text}");
        }
        assert!(base_units("10E").is_err(), "exceeds i64");
    }
}

//! Value format checks per Value Representation (PS3.5 6.2) and VM checks (PS3.5 6.4).

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn num_in(s: &str, lo: u32, hi: u32) -> bool {
    all_digits(s)
        && s.parse::<u32>()
            .map(|v| v >= lo && v <= hi)
            .unwrap_or(false)
}

/// Strips the padding of a value of the given VR (trailing NUL for UI, trailing spaces otherwise;
/// leading spaces too where PS3.5 says they are insignificant).
pub fn trim_value<'a>(vr: &str, v: &'a str) -> &'a str {
    match vr {
        "UI" => v.trim_end_matches('\0'),
        "AE" | "CS" | "DS" | "IS" | "LO" | "SH" | "UC" | "UR" => {
            v.trim_matches(|c| c == ' ' || c == '\0')
        }
        _ => v.trim_end_matches([' ', '\0']),
    }
}

fn check_da(v: &str) -> bool {
    v.len() == 8 && all_digits(v) && num_in(&v[4..6], 1, 12) && num_in(&v[6..8], 1, 31)
}

fn check_tm(v: &str) -> bool {
    let (main, frac) = match v.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (v, None),
    };
    if let Some(f) = frac {
        if !(1..=6).contains(&f.len()) || !all_digits(f) || main.len() != 6 {
            return false;
        }
    }
    match main.len() {
        2 => num_in(main, 0, 23),
        4 => num_in(&main[..2], 0, 23) && num_in(&main[2..], 0, 59),
        6 => num_in(&main[..2], 0, 23) && num_in(&main[2..4], 0, 59) && num_in(&main[4..], 0, 60),
        _ => false,
    }
}

fn check_dt(v: &str) -> bool {
    let (body, tz) = match v.find(['+', '-']) {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    if let Some(tz) = tz {
        if tz.len() != 4 || !num_in(&tz[..2], 0, 14) || !num_in(&tz[2..], 0, 59) {
            return false;
        }
    }
    let (main, frac) = match body.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    if let Some(f) = frac {
        if !(1..=6).contains(&f.len()) || !all_digits(f) || main.len() != 14 {
            return false;
        }
    }
    if !all_digits(main) || ![4, 6, 8, 10, 12, 14].contains(&main.len()) {
        return false;
    }
    (main.len() < 6 || num_in(&main[4..6], 1, 12))
        && (main.len() < 8 || num_in(&main[6..8], 1, 31))
        && (main.len() < 10 || num_in(&main[8..10], 0, 23))
        && (main.len() < 12 || num_in(&main[10..12], 0, 59))
        && (main.len() < 14 || num_in(&main[12..14], 0, 60))
}

fn check_ds(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - fs;
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == es {
            return false;
        }
    }
    i == b.len()
}

fn has_control(v: &str, allow_text: bool) -> bool {
    v.chars().any(|c| {
        c.is_control()
            && c != '\u{1b}'
            && !(allow_text && matches!(c, '\r' | '\n' | '\t' | '\u{0c}'))
    })
}

/// Checks one (already trimmed) value of a string VR. Returns a description of the problem.
pub fn check_value(vr: &str, v: &str) -> Option<String> {
    let n = v.chars().count();
    let too_long = |max: usize| -> Option<String> {
        (n > max)
            .then(|| format!("is {n} characters long, more than the {max} allowed for VR {vr}"))
    };
    match vr {
        "DA" => (!check_da(v)).then(|| "is not a valid date of the form YYYYMMDD".to_string()),
        "TM" => too_long(16).or_else(|| {
            (!check_tm(v)).then(|| "is not a valid time of the form HHMMSS.FFFFFF".to_string())
        }),
        "DT" => too_long(26).or_else(|| {
            (!check_dt(v)).then(|| {
                "is not a valid date-time of the form YYYYMMDDHHMMSS.FFFFFF&ZZXX".to_string()
            })
        }),
        "UI" => too_long(64).or_else(|| {
            if v.split('.').any(|c| !all_digits(c)) {
                Some(
                    "is not a valid UID (only digits separated by single dots are allowed)"
                        .to_string(),
                )
            } else if v.split('.').any(|c| c.len() > 1 && c.starts_with('0')) {
                Some("is not a valid UID (a component has a leading zero)".to_string())
            } else {
                None
            }
        }),
        "CS" => too_long(16).or_else(|| {
            (!v.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_'))
            .then(|| {
                "contains characters other than upper-case letters, digits, space and underscore"
                    .to_string()
            })
        }),
        "AS" => {
            let ok =
                v.len() == 4 && all_digits(&v[..3]) && matches!(&v[3..], "D" | "W" | "M" | "Y");
            (!ok).then(|| {
                "is not a valid age string of the form nnnD, nnnW, nnnM or nnnY".to_string()
            })
        }
        "IS" => too_long(12).or_else(|| {
            let ok = v
                .parse::<i64>()
                .map(|x| (-(1i64 << 31)..(1i64 << 31)).contains(&x))
                .unwrap_or(false);
            (!ok).then(|| "is not a valid integer string".to_string())
        }),
        "DS" => too_long(16)
            .or_else(|| (!check_ds(v)).then(|| "is not a valid decimal string".to_string())),
        "PN" => {
            let groups: Vec<&str> = v.split('=').collect();
            if groups.len() > 3 {
                Some(format!(
                    "has {} component groups, at most 3 are allowed",
                    groups.len()
                ))
            } else if let Some(g) = groups.iter().find(|g| g.split('^').count() > 5) {
                Some(format!(
                    "has a component group with {} components, at most 5 are allowed",
                    g.split('^').count()
                ))
            } else if let Some(g) = groups.iter().find(|g| g.chars().count() > 64) {
                Some(format!(
                    "has a component group {} characters long, at most 64 are allowed",
                    g.chars().count()
                ))
            } else if has_control(v, false) {
                Some("contains control characters".to_string())
            } else {
                None
            }
        }
        "AE" => too_long(16)
            .or_else(|| has_control(v, false).then(|| "contains control characters".to_string())),
        "SH" => too_long(16)
            .or_else(|| has_control(v, false).then(|| "contains control characters".to_string())),
        "LO" => too_long(64)
            .or_else(|| has_control(v, false).then(|| "contains control characters".to_string())),
        "ST" => too_long(1024),
        "LT" => too_long(10240),
        _ => None,
    }
}

/// Whether `n` values satisfy a PS3.6 VM such as "1", "1-3", "1-n", "2-2n", "1-n or 1".
pub fn vm_ok(vm: &str, n: usize) -> bool {
    let vm = vm.trim();
    if vm.is_empty() || n == 0 {
        return true;
    }
    vm.split(" or ").any(|alt| {
        let alt = alt.trim();
        match alt.split_once('-') {
            None => alt.parse::<usize>().map(|v| v == n).unwrap_or(true),
            Some((lo, hi)) => {
                let Ok(lo) = lo.trim().parse::<usize>() else {
                    return true;
                };
                let hi = hi.trim();
                if n < lo {
                    return false;
                }
                if hi == "n" {
                    true
                } else if let Some(k) = hi.strip_suffix('n') {
                    let k = k.parse::<usize>().unwrap_or(1).max(1);
                    n % k == 0
                } else {
                    hi.parse::<usize>().map(|h| n <= h).unwrap_or(true)
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(check_value("DA", "20240102").is_none());
        assert!(check_value("DA", "2024-01-02").is_some());
        assert!(check_value("DA", "20241302").is_some());
        assert!(check_value("TM", "101010.123").is_none());
        assert!(check_value("TM", "1010").is_none());
        assert!(check_value("TM", "25").is_some());
        assert!(check_value("DT", "20240102101010.5+0100").is_none());
        assert!(check_value("DT", "2024").is_none());
        assert!(check_value("DT", "2024-01").is_some());
        assert!(check_value("UI", "1.2.840.10008.1.2").is_none());
        assert!(check_value("UI", "1.02.3").is_some());
        assert!(check_value("UI", "1..3").is_some());
        assert!(check_value("UI", "1.0.3").is_none());
        assert!(check_value("CS", "ORIGINAL").is_none());
        assert!(check_value("CS", "original").is_some());
        assert!(check_value("CS", "ABCDEFGHIJKLMNOPQ").is_some());
        assert!(check_value("AS", "045Y").is_none());
        assert!(check_value("AS", "45Y").is_some());
        assert!(check_value("IS", "-12").is_none());
        assert!(check_value("IS", "1.5").is_some());
        assert!(check_value("DS", "-1.5e-3").is_none());
        assert!(check_value("DS", ".5").is_none());
        assert!(check_value("DS", "1,5").is_some());
        assert!(check_value("PN", "Doe^John^^^").is_none());
        assert!(check_value("PN", "a^b^c^d^e^f").is_some());
        assert!(check_value("PN", "a=b=c=d").is_some());
    }

    #[test]
    fn vm() {
        assert!(vm_ok("1", 1));
        assert!(!vm_ok("1", 2));
        assert!(vm_ok("1-n", 5));
        assert!(vm_ok("2-2n", 4));
        assert!(!vm_ok("2-2n", 3));
        assert!(vm_ok("3-3n", 6));
        assert!(!vm_ok("1-3", 4));
        assert!(vm_ok("1-n or 1", 3));
        assert!(vm_ok("6", 6));
    }
}

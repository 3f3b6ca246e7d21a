//! Chinese resident identity card numbers (GB 11643): 18 digits with an ISO 7064 MOD 11-2
//! check character, or the old 15-digit form; both carry a birth date that must be valid.

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

/// The check character for the first 17 digits (None if they are not 17 ASCII digits).
pub fn check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    Some(CHECK[(sum % 11) as usize])
}

fn valid_date(year: u32, month: u32, day: u32) -> bool {
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
}

/// True for a valid 18-digit number (checksum and birth date) or 15-digit number (birth date).
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    match b.len() {
        18 => {
            let Some(check) = check_char(&b[..17]) else { return false };
            let year = number(&b[6..10]);
            check == b[17].to_ascii_uppercase()
                && (1900..=2100).contains(&year)
                && valid_date(year, number(&b[10..12]), number(&b[12..14]))
                && b[0] != b'0'
        }
        15 => {
            b.iter().all(u8::is_ascii_digit)
                && b[0] != b'0'
                && valid_date(1900 + number(&b[6..8]), number(&b[8..10]), number(&b[10..12]))
        }
        _ => false,
    }
}

/// An 18-digit number with a valid check character, from a 6-digit region, a date and a sequence.
pub fn make18(region: u32, year: u32, month: u32, day: u32, sequence: u32) -> String {
    let first = format!("{region:06}{year:04}{month:02}{day:02}{sequence:03}");
    let check = check_char(first.as_bytes()).map(char::from).unwrap_or('0');
    format!("{first}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_the_standard_example() {
        // The example number of GB 11643-1999.
        assert!(is_valid("11010519491231002X"));
        assert!(is_valid("11010519491231002x"));
        assert!(!is_valid("110105194912310021"));
        assert!(!is_valid("11010519491331002X"), "month 13");
        assert!(is_valid("110105491231002"));
        assert!(!is_valid("110105491331002"));
        assert_eq!(make18(110105, 1949, 12, 31, 2), "11010519491231002X");
    }
}

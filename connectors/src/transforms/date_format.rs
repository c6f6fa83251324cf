//! Java's `SimpleDateFormat` patterns in UTC, as `TimestampConverter`, `TimestampRouter` and
//! Connect's `Values` use them.
//!
//! Why not chrono's `strftime`: a translation to it cannot keep Java's meaning. Java's `S` is a
//! count of milliseconds, not a fraction (`S` prints `5` for 5 ms, `SSSS` prints `0005`);
//! `yy` parses into the century window around today; parsing is lenient (February 30th is
//! March 1st), skips blanks before each field, reads abutting numeric fields (`yyyyMMdd`) by
//! width, and stops at the end of the pattern, ignoring what follows. So the pattern is compiled
//! here into fields, and formatting and parsing follow Java's rules; the calendar is the
//! proleptic Gregorian one (Java switches to the Julian calendar before 1582).
//!
//! Supported letters: `G y M L d D E u a H k K h m s S z Z X`. Java's week-based `Y`, `w`, `W`
//! and `F` are refused as not supported; other letters are refused as Java refuses them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds in a day.
pub(crate) const MILLIS_PER_DAY: i64 = 86_400_000;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// A pattern letter Freshet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Letter {
    /// `G`: AD or BC.
    Era,
    /// `y`: year of the era.
    Year,
    /// `M` or `L`: month, as a number (one or two letters) or a name.
    Month,
    /// `D`: day of the year.
    DayOfYear,
    /// `d`: day of the month.
    Day,
    /// `E`: name of the day of the week.
    DayName,
    /// `u`: number of the day of the week, Monday 1.
    DayNumber,
    /// `a`: AM or PM.
    AmPm,
    /// `H`: hour 0-23.
    Hour0To23,
    /// `k`: hour 1-24.
    Hour1To24,
    /// `K`: hour 0-11.
    Hour0To11,
    /// `h`: hour 1-12.
    Hour1To12,
    /// `m`: minute.
    Minute,
    /// `s`: second.
    Second,
    /// `S`: millisecond.
    Milli,
    /// `z`: zone name.
    ZoneName,
    /// `Z`: RFC 822 offset.
    ZoneRfc822,
    /// `X`: ISO 8601 offset.
    ZoneIso8601,
}

impl Letter {
    fn of(c: char) -> Result<Letter, String> {
        Ok(match c {
            'G' => Letter::Era,
            'y' => Letter::Year,
            'M' | 'L' => Letter::Month,
            'D' => Letter::DayOfYear,
            'd' => Letter::Day,
            'E' => Letter::DayName,
            'u' => Letter::DayNumber,
            'a' => Letter::AmPm,
            'H' => Letter::Hour0To23,
            'k' => Letter::Hour1To24,
            'K' => Letter::Hour0To11,
            'h' => Letter::Hour1To12,
            'm' => Letter::Minute,
            's' => Letter::Second,
            'S' => Letter::Milli,
            'z' => Letter::ZoneName,
            'Z' => Letter::ZoneRfc822,
            'X' => Letter::ZoneIso8601,
            'Y' | 'w' | 'W' | 'F' => return Err(format!("Pattern letter '{c}' is not supported by Freshet")),
            _ => return Err(format!("Illegal pattern character '{c}'")),
        })
    }

    /// Whether the field is read as a number (Java's `shouldObeyCount` fields).
    fn is_numeric(self, count: usize) -> bool {
        match self {
            Letter::Month => count <= 2,
            Letter::Year
            | Letter::DayOfYear
            | Letter::Day
            | Letter::DayNumber
            | Letter::Hour0To23
            | Letter::Hour1To24
            | Letter::Hour0To11
            | Letter::Hour1To12
            | Letter::Minute
            | Letter::Second
            | Letter::Milli => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Field(Letter, usize),
}

/// A compiled `SimpleDateFormat` pattern, in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JavaDateFormat {
    pattern: String,
    tokens: Vec<Token>,
}

impl JavaDateFormat {
    /// Compiles `pattern`; the reason in Java's words when it is not one.
    pub(crate) fn new(pattern: &str) -> Result<JavaDateFormat, String> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                if chars.get(i + 1) == Some(&'\'') {
                    literal.push('\'');
                    i += 2;
                    continue;
                }
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("Unterminated quote".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            literal.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            literal.push(other);
                            i += 1;
                        }
                    }
                }
            } else if c.is_ascii_alphabetic() {
                let letter = Letter::of(c)?;
                let count = chars[i..].iter().take_while(|&&other| other == c).count();
                if letter == Letter::ZoneIso8601 && count > 3 {
                    return Err(format!("invalid ISO 8601 format: length={count}"));
                }
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                tokens.push(Token::Field(letter, count));
                i += count;
            } else {
                literal.push(c);
                i += 1;
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(JavaDateFormat { pattern: pattern.to_string(), tokens })
    }

    /// The pattern as given.
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Formats an instant (milliseconds since the epoch) in UTC.
    pub(crate) fn format(&self, epoch_ms: i64) -> String {
        let days = epoch_ms.div_euclid(MILLIS_PER_DAY);
        let ms_of_day = epoch_ms.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let hour = ms_of_day / 3_600_000;
        let minute = ms_of_day / 60_000 % 60;
        let second = ms_of_day / 1000 % 60;
        let milli = ms_of_day % 1000;
        // 1970-01-01 was a Thursday: Monday is 0.
        let weekday = (days + 3).rem_euclid(7);
        let mut out = String::new();
        for token in &self.tokens {
            let (letter, count) = match token {
                Token::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Token::Field(letter, count) => (*letter, *count),
            };
            let number = |out: &mut String, value: i64| out.push_str(&format!("{value:0count$}"));
            match letter {
                Letter::Era => out.push_str(if year > 0 { "AD" } else { "BC" }),
                Letter::Year => {
                    let of_era = if year > 0 { year } else { 1 - year };
                    if count == 2 {
                        out.push_str(&format!("{:02}", of_era % 100));
                    } else {
                        number(&mut out, of_era);
                    }
                }
                Letter::Month if count >= 4 => out.push_str(MONTHS[month as usize - 1]),
                Letter::Month if count == 3 => out.push_str(&MONTHS[month as usize - 1][..3]),
                Letter::Month => number(&mut out, month),
                Letter::DayOfYear => number(&mut out, days - days_from_civil(year, 1, 1) + 1),
                Letter::Day => number(&mut out, day),
                Letter::DayName if count >= 4 => out.push_str(DAYS[weekday as usize]),
                Letter::DayName => out.push_str(&DAYS[weekday as usize][..3]),
                Letter::DayNumber => number(&mut out, weekday + 1),
                Letter::AmPm => out.push_str(if hour < 12 { "AM" } else { "PM" }),
                Letter::Hour0To23 => number(&mut out, hour),
                Letter::Hour1To24 => number(&mut out, if hour == 0 { 24 } else { hour }),
                Letter::Hour0To11 => number(&mut out, hour % 12),
                Letter::Hour1To12 => number(&mut out, if hour % 12 == 0 { 12 } else { hour % 12 }),
                Letter::Minute => number(&mut out, minute),
                Letter::Second => number(&mut out, second),
                Letter::Milli => number(&mut out, milli),
                Letter::ZoneName if count >= 4 => out.push_str("Coordinated Universal Time"),
                Letter::ZoneName => out.push_str("UTC"),
                Letter::ZoneRfc822 => out.push_str("+0000"),
                Letter::ZoneIso8601 => out.push('Z'),
            }
        }
        out
    }

    /// Parses `text` as Java's `DateFormat.parse(String)` does: the pattern must match from the
    /// start, and whatever follows it is ignored. The instant in milliseconds since the epoch.
    pub(crate) fn parse(&self, text: &str) -> Option<i64> {
        self.parse_prefix(text).map(|(epoch_ms, _)| epoch_ms)
    }

    /// Parses the start of `text`: the instant and the bytes read.
    pub(crate) fn parse_prefix(&self, text: &str) -> Option<(i64, usize)> {
        let mut fields = Parsed::default();
        let mut pos = 0;
        for (i, token) in self.tokens.iter().enumerate() {
            let (letter, count) = match token {
                Token::Literal(literal) => {
                    pos += text[pos..].starts_with(literal.as_str()).then_some(literal.len())?;
                    continue;
                }
                Token::Field(letter, count) => (*letter, *count),
            };
            pos += text[pos..].bytes().take_while(|b| *b == b' ' || *b == b'\t').count();
            let rest = &text[pos..];
            if rest.is_empty() {
                return None;
            }
            if letter.is_numeric(count) {
                // Abutting numeric fields (`yyyyMMdd`) are read by their width.
                let abutting = matches!(self.tokens.get(i + 1), Some(Token::Field(next, n)) if next.is_numeric(*n));
                let limit = if abutting { count } else { usize::MAX };
                let n_digits = rest.bytes().take(limit).take_while(u8::is_ascii_digit).count();
                if n_digits == 0 || n_digits > 18 {
                    return None;
                }
                let value: i64 = rest[..n_digits].parse().ok()?;
                pos += n_digits;
                fields.set_number(letter, count, value, n_digits);
                continue;
            }
            let read = match letter {
                Letter::Era => match_name(rest, &["AD", "BC"]).map(|(i, n)| {
                    fields.bc = i == 1;
                    n
                }),
                Letter::Month => {
                    match_name(rest, &MONTHS).or_else(|| match_name(rest, &MONTHS.map(|m| &m[..3]))).map(|(i, n)| {
                        fields.month = Some(i as i64 + 1);
                        n
                    })
                }
                Letter::DayName => {
                    match_name(rest, &DAYS).or_else(|| match_name(rest, &DAYS.map(|d| &d[..3]))).map(|(_, n)| n)
                }
                Letter::AmPm => match_name(rest, &["AM", "PM"]).map(|(i, n)| {
                    fields.pm = Some(i == 1);
                    n
                }),
                Letter::ZoneName | Letter::ZoneRfc822 => parse_general_zone(rest).map(|(offset, n)| {
                    fields.offset_minutes = Some(offset);
                    n
                }),
                Letter::ZoneIso8601 => parse_iso_zone(rest, count).map(|(offset, n)| {
                    fields.offset_minutes = Some(offset);
                    n
                }),
                _ => unreachable!("numeric fields are read above"),
            };
            pos += read?;
        }
        Some((fields.epoch_ms()?, pos))
    }
}

/// The fields a parse found.
#[derive(Debug, Default)]
struct Parsed {
    year: Option<i64>,
    bc: bool,
    month: Option<i64>,
    day: Option<i64>,
    day_of_year: Option<i64>,
    hour_of_day: Option<i64>,
    hour: Option<i64>,
    pm: Option<bool>,
    minute: i64,
    second: i64,
    milli: i64,
    offset_minutes: Option<i64>,
}

impl Parsed {
    fn set_number(&mut self, letter: Letter, count: usize, value: i64, n_digits: usize) {
        match letter {
            Letter::Year if count <= 2 && n_digits == 2 => self.year = Some(two_digit_year(value)),
            Letter::Year => self.year = Some(value),
            Letter::Month => self.month = Some(value),
            Letter::DayOfYear => self.day_of_year = Some(value),
            Letter::Day => self.day = Some(value),
            Letter::Hour0To23 => self.hour_of_day = Some(value),
            Letter::Hour1To24 => self.hour_of_day = Some(if value == 24 { 0 } else { value }),
            Letter::Hour0To11 => self.hour = Some(value),
            Letter::Hour1To12 => self.hour = Some(if value == 12 { 0 } else { value }),
            Letter::Minute => self.minute = value,
            Letter::Second => self.second = value,
            Letter::Milli => self.milli = value,
            // The day of the week does not decide the date when the day of the month does.
            _ => {}
        }
    }

    /// The instant, computed leniently as Java's default `Calendar` does: a field past its range
    /// carries into the next (month 13 is January of the next year).
    fn epoch_ms(&self) -> Option<i64> {
        // Far past any instant a millisecond count holds, and far from overflowing the calendar.
        const YEAR_LIMIT: i64 = 1_000_000_000;
        let year = self.year.unwrap_or(1970);
        let year = if self.bc { 1 - year } else { year };
        let days = match (self.day_of_year, self.month, self.day) {
            (Some(day_of_year), None, None) if year.abs() <= YEAR_LIMIT => {
                days_from_civil(year, 1, 1).checked_add(day_of_year - 1)?
            }
            (Some(_), None, None) => return None,
            (_, month, day) => {
                let months = year.checked_mul(12)?.checked_add(month.unwrap_or(1) - 1)?;
                let year = months.div_euclid(12);
                if year.abs() > YEAR_LIMIT {
                    return None;
                }
                let first = days_from_civil(year, months.rem_euclid(12) + 1, 1);
                first.checked_add(day.unwrap_or(1) - 1)?
            }
        };
        let hour = match (self.hour_of_day, self.hour) {
            (Some(h), _) => h,
            (None, Some(h)) => h + if self.pm == Some(true) { 12 } else { 0 },
            (None, None) => 0,
        };
        let ms = days
            .checked_mul(MILLIS_PER_DAY)?
            .checked_add(hour.checked_mul(3_600_000)?)?
            .checked_add(self.minute.checked_mul(60_000)?)?
            .checked_add(self.second.checked_mul(1000)?)?
            .checked_add(self.milli)?;
        ms.checked_sub(self.offset_minutes.unwrap_or(0).checked_mul(60_000)?)
    }
}

/// A two-digit year in the century that starts 80 years before now (Java's
/// `SimpleDateFormat` default century).
fn two_digit_year(value: i64) -> i64 {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let (this_year, _, _) = civil_from_days(now_ms.div_euclid(MILLIS_PER_DAY));
    let start = this_year - 80;
    let year = start / 100 * 100 + value;
    if year < start {
        year + 100
    } else {
        year
    }
}

/// The longest of `names` that `text` starts with, ignoring case: its index and length.
fn match_name(text: &str, names: &[&str]) -> Option<(usize, usize)> {
    names
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            text.len() >= name.len()
                && text.is_char_boundary(name.len())
                && text[..name.len()].eq_ignore_ascii_case(name)
        })
        .max_by_key(|(_, name)| name.len())
        .map(|(i, name)| (i, name.len()))
}

/// Zones a `z` or `Z` field reads: `GMT` or `UTC` with an optional `+hh:mm`, an RFC 822
/// `+hhmm`, and a few names (offset in minutes, bytes read).
fn parse_general_zone(text: &str) -> Option<(i64, usize)> {
    const NAMES: [(&str, i64); 13] = [
        ("Coordinated Universal Time", 0),
        ("UTC", 0),
        ("UT", 0),
        ("EST", -300),
        ("EDT", -240),
        ("CST", -360),
        ("CDT", -300),
        ("MST", -420),
        ("MDT", -360),
        ("PST", -480),
        ("PDT", -420),
        ("CET", 60),
        ("CEST", 120),
    ];
    let sign = |c: Option<u8>| match c {
        Some(b'+') => Some(1),
        Some(b'-') => Some(-1),
        _ => None,
    };
    if let Some(s) = sign(text.bytes().next()) {
        let (offset, n) = numeric_zone(&text[1..], s, 0, false)?;
        return Some((offset, n + 1));
    }
    if text.len() >= 3 && text.as_bytes()[..3].eq_ignore_ascii_case(b"GMT") {
        return match sign(text.as_bytes().get(3).copied()) {
            None => Some((0, 3)),
            Some(s) => numeric_zone(&text[4..], s, 0, true).map(|(offset, n)| (offset, n + 4)),
        };
    }
    let names: Vec<&str> = NAMES.iter().map(|(name, _)| *name).collect();
    match_name(text, &names).map(|(i, n)| (NAMES[i].1, n))
}

/// An ISO 8601 zone of an `X` field: `Z`, or `+hh`, `+hhmm`, `+hh:mm` by the count.
fn parse_iso_zone(text: &str, count: usize) -> Option<(i64, usize)> {
    let sign = match text.bytes().next()? {
        b'Z' => return Some((0, 1)),
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    numeric_zone(&text[1..], sign, count, count == 3).map(|(offset, n)| (offset, n + 1))
}

/// Java's `subParseNumericZone`: hours, then minutes unless `count` is 1, with a colon between
/// when `colon`.
fn numeric_zone(text: &str, sign: i64, count: usize, colon: bool) -> Option<(i64, usize)> {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).filter(|c| c.is_ascii_digit()).map(|c| i64::from(c - b'0'));
    let mut i = 0;
    let mut hours = digit(i)?;
    i += 1;
    match digit(i) {
        Some(d) => {
            hours = hours * 10 + d;
            i += 1;
        }
        None if count > 0 || !colon => return None,
        None => {}
    }
    if hours > 23 {
        return None;
    }
    let mut minutes = 0;
    if count != 1 {
        if colon {
            (b.get(i) == Some(&b':')).then_some(())?;
            i += 1;
        }
        minutes = digit(i)? * 10 + digit(i + 1)?;
        i += 2;
        if minutes > 59 {
            return None;
        }
    }
    Some((sign * (hours * 60 + minutes), i))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date (year, month, day) of days since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-29T13:05:09.007Z, a Thursday.
    const LEAP_DAY: i64 = 1_709_211_909_007;

    fn format(pattern: &str, epoch_ms: i64) -> String {
        JavaDateFormat::new(pattern).unwrap().format(epoch_ms)
    }

    fn parse(pattern: &str, text: &str) -> Option<i64> {
        JavaDateFormat::new(pattern).unwrap().parse(text)
    }

    #[test]
    fn the_calendar_round_trips() {
        for days in [-800_000, -719_468, -1, 0, 59, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn formats_as_java_does() {
        assert_eq!(format("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", LEAP_DAY), "2024-02-29T13:05:09.007Z");
        assert_eq!(format("yyyyMMdd", LEAP_DAY), "20240229");
        assert_eq!(format("yy/M/d h:m a", LEAP_DAY), "24/2/29 1:5 PM");
        assert_eq!(format("EEE, d MMM yyyy HH:mm:ss Z", LEAP_DAY), "Thu, 29 Feb 2024 13:05:09 +0000");
        assert_eq!(format("EEEE MMMM DDD u", LEAP_DAY), "Thursday February 060 4");
        assert_eq!(format("S SSSS z zzzz X XXX G", LEAP_DAY), "7 0007 UTC Coordinated Universal Time Z Z AD");
        assert_eq!(format("'o''clock' ''", LEAP_DAY), "o'clock '");
        assert_eq!(format("kk KK", 0), "24 00");
        assert_eq!(format("yyyy-MM-dd HH:mm", -1), "1969-12-31 23:59");
    }

    #[test]
    fn bad_patterns_are_refused_in_javas_words() {
        assert_eq!(JavaDateFormat::new("yyyy-MM-dd'T").unwrap_err(), "Unterminated quote");
        assert_eq!(JavaDateFormat::new("yyyy-bb").unwrap_err(), "Illegal pattern character 'b'");
        assert_eq!(JavaDateFormat::new("XXXX").unwrap_err(), "invalid ISO 8601 format: length=4");
        assert!(JavaDateFormat::new("YYYY").unwrap_err().contains("not supported"));
    }

    #[test]
    fn parses_as_java_does() {
        let iso = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'";
        assert_eq!(parse(iso, "2024-02-29T13:05:09.007Z"), Some(LEAP_DAY));
        assert_eq!(parse("yyyyMMddHHmmssSSS", "20240229130509007"), Some(LEAP_DAY));
        assert_eq!(parse("yyyy-MM-dd", "2024-2-29 and more"), Some(LEAP_DAY - 47_109_007));
        assert_eq!(parse("yyyy-MM-dd", "2023-02-29"), parse("yyyy-MM-dd", "2023-03-01"), "lenient");
        assert_eq!(parse("dd MMM yyyy hh:mm a", "29 feb 2024 01:05 pm"), Some(LEAP_DAY - 9_007));
        assert_eq!(parse("d MMMM yyyy", "29 February 2024"), parse("yyyy-MM-dd", "2024-02-29"));
        assert_eq!(parse("HH:mm Z", "13:05 +0100"), Some(12 * 3_600_000 + 5 * 60_000));
        assert_eq!(parse("HH:mm XXX", "13:05 -01:30"), Some(14 * 3_600_000 + 35 * 60_000));
        assert_eq!(parse("HH:mm X", "13:05 Z"), Some(13 * 3_600_000 + 5 * 60_000));
        assert_eq!(parse("HH:mm z", "13:05 GMT+01:00"), Some(12 * 3_600_000 + 5 * 60_000));
        assert_eq!(parse("HH:mm z", "13:05 PST"), Some(21 * 3_600_000 + 5 * 60_000));
        assert_eq!(parse("EEE yyyy-MM-dd", "Thu 2024-02-29"), parse("yyyy-MM-dd", "2024-02-29"));
        assert_eq!(parse("yyyy-MM-dd", "29/02/2024"), None);
        assert_eq!(parse("yyyy-MM-dd", "2024-02"), None);
        let (this_year, _, _) = civil_from_days(
            (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64).div_euclid(MILLIS_PER_DAY),
        );
        let parsed = parse("yy", "05").unwrap();
        let (year, _, _) = civil_from_days(parsed.div_euclid(MILLIS_PER_DAY));
        assert!(year % 100 == 5 && year >= this_year - 80 && year < this_year + 20, "{year}");
        assert_eq!(parse("yyyy", "0005").map(|ms| civil_from_days(ms.div_euclid(MILLIS_PER_DAY)).0), Some(5));
    }
}

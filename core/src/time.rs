//! Calendar arithmetic on the milliseconds RocketMQ stamps everything with: the index file's
//! names and mqadmin's printed times. UTC only; no clock is read here.

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01: the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// mqadmin's `yyyy-MM-dd#HH:mm:ss:SSS` (resetOffsetByTime's `-s`) as milliseconds since the
/// epoch, read in UTC (mqadmin reads it in the JVM's zone); `None` if it is not that form or
/// names no real time.
pub fn parse_admin_time(text: &str) -> Option<i64> {
    let (date, time) = text.split_once('#')?;
    let numbers = |part: &str, sep: char, count: usize| -> Option<Vec<i64>> {
        let fields: Vec<i64> =
            part.split(sep).map(|f| f.parse().ok()).collect::<Option<Vec<i64>>>()?;
        (fields.len() == count).then_some(fields)
    };
    let (d, t) = (numbers(date, '-', 3)?, numbers(time, ':', 4)?);
    let in_range = (1..=9999).contains(&d[0])
        && (1..=12).contains(&d[1])
        && (1..=31).contains(&d[2])
        && (0..24).contains(&t[0])
        && (0..60).contains(&t[1])
        && (0..60).contains(&t[2])
        && (0..1000).contains(&t[3]);
    let days = days_from_civil(d[0], d[1], d[2]);
    // A day past the month's end (2026-02-30) comes back as another date.
    if !in_range || civil_from_days(days) != (d[0], d[1], d[2]) {
        return None;
    }
    Some(days * 86_400_000 + t[0] * 3_600_000 + t[1] * 60_000 + t[2] * 1000 + t[3])
}

/// Milliseconds since the epoch as `yyyy-MM-dd HH:mm:ss,SSS` in UTC (RocketMQ's
/// `UtilAll.timeMillisToHumanString2`, which uses the JVM's zone).
pub fn human_time(millis: i64) -> String {
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, ms) =
        (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02},{ms:03}")
}

/// Milliseconds since the epoch as `yyyyMMddHHmmssSSS` in UTC (RocketMQ's
/// `UtilAll.timeMillisToHumanString`, which uses the JVM's zone).
pub fn compact_time(millis: i64) -> String {
    let text = human_time(millis);
    text.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rocketmq_prints_them_in_utc() {
        assert_eq!(human_time(0), "1970-01-01 00:00:00,000");
        assert_eq!(human_time(951_782_400_123), "2000-02-29 00:00:00,123");
        assert_eq!(human_time(1_796_515_199_999), "2026-12-05 23:59:59,999");
        assert_eq!(human_time(-1), "1969-12-31 23:59:59,999");
        assert_eq!(compact_time(951_782_400_123), "20000229000000123");
        assert_eq!(compact_time(0), "19700101000000000");
        // A client's garbage (the C++ client sends an unset lock time) still prints.
        assert_eq!(compact_time(i64::MAX).len(), 22);
        assert!(!compact_time(i64::MIN).is_empty());
    }

    #[test]
    fn admin_times_read_back_what_human_time_prints() {
        for millis in [0, 951_782_400_123, 1_796_515_199_999, -1] {
            let printed = human_time(millis).replacen(' ', "#", 1).replace(',', ":");
            assert_eq!(parse_admin_time(&printed), Some(millis), "{printed}");
        }
        let huge = "99999999999999-01-01#00:00:00:000";
        for bad in ["2026-12-05", "2026-02-30#00:00:00:000", "2026-12-05#24:00:00:000", "x#y", huge]
        {
            assert_eq!(parse_admin_time(bad), None, "{bad}");
        }
    }
}

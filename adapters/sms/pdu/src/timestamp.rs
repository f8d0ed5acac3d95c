//! TP-SCTS / TP-DT / absolute TP-VP: seven swapped-nibble BCD octets
//! YY MM DD hh mm ss TZ (TS 23.040 9.2.3.11).
//!
//! The time zone is in quarters of an hour; bit 3 of the TZ octet (the high
//! bit of the first, i.e. tens, digit) is the sign.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::error::PduError;

/// A service-centre time stamp: local time of the SC plus its UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Full year. The PDU carries two digits; 90..=99 are read as 1990s,
    /// everything else as 20xx (GSM SMS did not exist before 1990).
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in quarter hours (e.g. +22 = +05:30).
    pub offset_quarters: i8,
}

impl Timestamp {
    /// Builds a timestamp after checking the ranges the PDU can carry.
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        offset_quarters: i8,
    ) -> Result<Timestamp, PduError> {
        let ts = Timestamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
            offset_quarters,
        };
        ts.validate().map_err(|reason| PduError::InvalidArgument {
            what: "timestamp",
            reason,
        })?;
        Ok(ts)
    }

    fn validate(&self) -> Result<(), String> {
        if !(1990..=2089).contains(&self.year) {
            return Err(format!("year {} outside 1990..=2089", self.year));
        }
        if !(1..=12).contains(&self.month) {
            return Err(format!("month {}", self.month));
        }
        if self.day < 1 || self.day > days_in_month(self.year, self.month) {
            return Err(format!("day {}", self.day));
        }
        if self.hour > 23 || self.minute > 59 || self.second > 59 {
            return Err(format!(
                "time {:02}:{:02}:{:02}",
                self.hour, self.minute, self.second
            ));
        }
        // Two BCD digits with the sign taking one bit: at most 79 quarters.
        if !(-79..=79).contains(&self.offset_quarters) {
            return Err(format!("offset {} quarter hours", self.offset_quarters));
        }
        Ok(())
    }

    /// Offset from UTC in minutes.
    pub fn utc_offset_minutes(&self) -> i32 {
        i32::from(self.offset_quarters) * 15
    }

    /// RFC 3339 rendering, e.g. `2011-02-28T11:50:50-05:00`.
    pub fn to_rfc3339(&self) -> String {
        let off = self.utc_offset_minutes();
        let sign = if off < 0 { '-' } else { '+' };
        let abs = off.unsigned_abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            sign,
            abs / 60,
            abs % 60
        )
    }

    /// Seconds since the Unix epoch (UTC) of this instant.
    pub fn to_unix_seconds(&self) -> i64 {
        let days = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        let local = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        local - i64::from(self.utc_offset_minutes()) * 60
    }

    /// The instant `unix_seconds` seen from a clock `offset_quarters` quarter
    /// hours ahead of UTC. Time is an argument: this crate never reads a clock.
    pub fn from_unix_seconds(
        unix_seconds: i64,
        offset_quarters: i8,
    ) -> Result<Timestamp, PduError> {
        let local = unix_seconds
            .checked_add(i64::from(offset_quarters) * 900)
            .ok_or_else(|| PduError::InvalidArgument {
                what: "timestamp",
                reason: "out of range".into(),
            })?;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let conv = |v: i64| u8::try_from(v).unwrap_or(u8::MAX);
        Timestamp::new(
            u16::try_from(y).unwrap_or(0),
            conv(m),
            conv(d),
            conv(secs / 3600),
            conv(secs % 3600 / 60),
            conv(secs % 60),
            offset_quarters,
        )
    }

    /// Decodes the seven octets. Any nibble that is not a decimal digit, or a
    /// date/time out of range, is an error: a conforming SC never sends one,
    /// and guessing would put a wrong time on a message. The decoders take
    /// that error as "time unknown", not as a reason to drop the message.
    pub(crate) fn from_octets(
        octets: [u8; 7],
        field: &'static str,
        offset: usize,
    ) -> Result<Timestamp, PduError> {
        let bad = |reason: String| PduError::InvalidField {
            field,
            offset,
            reason,
        };
        let mut v = [0u8; 6];
        for (i, (out, b)) in v.iter_mut().zip(octets.iter()).enumerate() {
            let (tens, units) = (b & 0x0F, b >> 4);
            if tens > 9 || units > 9 {
                return Err(bad(format!("octet {i} ({b:#04x}) is not BCD")));
            }
            *out = tens * 10 + units;
        }
        let [yy, month, day, hour, minute, second] = v;
        let tz = octets[6];
        let (tens, units) = (tz & 0x07, tz >> 4);
        if units > 9 {
            return Err(bad(format!("time zone octet {tz:#04x} is not BCD")));
        }
        let quarters = i8::try_from(tens * 10 + units).unwrap_or(0);
        let offset_quarters = if tz & 0x08 != 0 { -quarters } else { quarters };
        let year = if yy >= 90 { 1900 } else { 2000 } + u16::from(yy);
        let ts = Timestamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
            offset_quarters,
        };
        ts.validate().map_err(bad)?;
        Ok(ts)
    }

    pub(crate) fn to_octets(self) -> Result<[u8; 7], PduError> {
        self.validate()
            .map_err(|reason| PduError::InvalidArgument {
                what: "timestamp",
                reason,
            })?;
        let bcd = |v: u8| (v % 10) << 4 | (v / 10);
        let yy = u8::try_from(self.year % 100).unwrap_or(0);
        let q = self.offset_quarters.unsigned_abs();
        let mut tz = bcd(q);
        if self.offset_quarters < 0 {
            tz |= 0x08;
        }
        Ok([
            bcd(yy),
            bcd(self.month),
            bcd(self.day),
            bcd(self.hour),
            bcd(self.minute),
            bcd(self.second),
            tz,
        ])
    }
}

/// Serialised as the structured fields plus the RFC 3339 string, so JSON
/// consumers can use whichever suits them.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Timestamp", 9)?;
        st.serialize_field("year", &self.year)?;
        st.serialize_field("month", &self.month)?;
        st.serialize_field("day", &self.day)?;
        st.serialize_field("hour", &self.hour)?;
        st.serialize_field("minute", &self.minute)?;
        st.serialize_field("second", &self.second)?;
        st.serialize_field("utc_offset_minutes", &self.utc_offset_minutes())?;
        st.serialize_field("rfc3339", &self.to_rfc3339())?;
        st.serialize_field("unix_seconds", &self.to_unix_seconds())?;
        st.end()
    }
}

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// well-known algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::decode_hex;

    fn dec(hex: &str) -> Result<Timestamp, PduError> {
        let b = decode_hex(hex).unwrap();
        let arr: [u8; 7] = b.try_into().unwrap();
        Timestamp::from_octets(arr, "t", 0)
    }

    // Vectors derived from python-gsmmodem's timestamp tests.
    #[test]
    fn decodes_offsets() {
        assert_eq!(
            dec("51117200000000").unwrap().to_rfc3339(),
            "2015-11-27T00:00:00+00:00"
        );
        assert_eq!(
            dec("51117200000080").unwrap().to_rfc3339(),
            "2015-11-27T00:00:00+02:00"
        );
        assert_eq!(
            dec("70402132522423").unwrap().to_rfc3339(),
            "2007-04-12T23:25:42+08:00"
        );
        assert_eq!(
            dec("7040213252242B").unwrap().to_rfc3339(),
            "2007-04-12T23:25:42-08:00"
        );
        // +05:30 (22 quarters), as sent by Indian / Sri Lankan SCs.
        assert_eq!(
            dec("91805080905322").unwrap().to_rfc3339(),
            "2019-08-05T08:09:35+05:30"
        );
    }

    #[test]
    fn encodes_back() {
        for hex in [
            "51117200000080",
            "70402132522423",
            "7040213252242B",
            "99309251619580",
        ] {
            let ts = dec(hex).unwrap();
            assert_eq!(crate::hex::encode_hex(&ts.to_octets().unwrap()), hex);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(dec("FF117200000000").is_err());
        assert!(dec("51317200000000").is_err()); // month 13
        assert!(dec("00000000000000").is_err()); // month 0
        assert!(dec("511172000000A0").is_err()); // TZ units not BCD
        // 0x0F: sign bit + tens 7, units 0 -> -70 quarter hours: valid.
        assert_eq!(dec("5111720000000F").unwrap().offset_quarters, -70);
    }

    #[test]
    fn unix_conversion() {
        let ts = dec("70402132522423").unwrap();
        assert_eq!(ts.to_unix_seconds(), 1_176_391_542);
        let back = Timestamp::from_unix_seconds(1_176_391_542, 32).unwrap();
        assert_eq!(back, ts);
        let utc = Timestamp::from_unix_seconds(0, 0);
        assert!(utc.is_err()); // 1970 is outside the representable years
    }
}

//! JSON written the way Python's `json.dumps` writes it (RouteMQ's producer), so that envelopes we
//! write are byte-for-byte what RouteMQ would write: `", "` and `": "` separators, non-ASCII escaped
//! as `\uXXXX` (`ensure_ascii=True`), and floats in Python's `repr` form (`1e+16`, `1e-05`, `3.0`).

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::Formatter;

/// A `serde_json` formatter that writes Python's default `json.dumps` layout.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Printable ASCII goes out as it is, in runs; a byte outside it starts a character
        // (every byte before it was ASCII, so `index` is on a character boundary) that is
        // escaped as UTF-16 units, as Python's `ensure_ascii` does.
        let bytes = fragment.as_bytes();
        let (mut start, mut index) = (0, 0);
        while index < bytes.len() {
            if (b' '..=b'~').contains(&bytes[index]) {
                index += 1;
                continue;
            }
            let Some(ch) = fragment[index..].chars().next() else {
                break;
            };
            writer.write_all(&bytes[start..index])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            index += ch.len_utf8();
            start = index;
        }
        writer.write_all(&bytes[start..])
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
}

/// Serializes `value` in Python's layout, appending to `out`.
pub(crate) fn write_python<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(out, PythonFormatter);
    value.serialize(&mut serializer)
}

/// Appends `text` as a JSON string literal, quotes included, in Python's layout: the bytes
/// [`write_python`] writes for a `&str`, written in one pass without a serializer (the Redis
/// driver quotes every envelope it stores this way, so this is on the dispatch path).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn push_str_literal(out: &mut String, text: &str) {
    // Envelopes are JSON: about one byte in ten is a quote that gains a backslash.
    out.reserve(text.len() + text.len() / 8 + 2);
    out.push('"');
    let bytes = text.as_bytes();
    let (mut start, mut index) = (0, 0);
    while index < bytes.len() {
        let escape = match bytes[index] {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b' '..=b'~' => {
                index += 1;
                continue;
            }
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        // Every byte before `index` was ASCII or a whole character: `index` is a boundary.
        out.push_str(&text[start..index]);
        if escape.is_empty() {
            let Some(ch) = text[index..].chars().next() else {
                break;
            };
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
            index += ch.len_utf8();
        } else {
            out.push_str(escape);
            index += 1;
        }
        start = index;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-trip digits, fixed notation for exponents -4..16,
/// scientific (`1e+16`, `1.5e-07`) outside it, and always a `.0` on whole numbers.
pub(crate) fn python_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa
        .strip_prefix('-')
        .map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let body = if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let int_len = usize::try_from(exponent).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            let zeros = usize::try_from(-exponent - 1).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{fraction}e{exp_sign}{:02}", exponent.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (3.5, "3.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1_234_567_890_123_456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e300, "1e+300"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_float(value), expected, "{value:?}");
            assert_eq!(python_float(value).parse::<f64>().ok(), Some(value));
        }
    }

    #[test]
    fn strings_are_ascii_with_python_escapes() {
        let mut out = Vec::new();
        write_python(
            &mut out,
            &serde_json::json!({"t": "ünï \"q\" \u{7f} 😀\n", "l": [1, 2.0]}),
        )
        .expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            r#"{"l": [1, 2.0], "t": "\u00fcn\u00ef \"q\" \u007f \ud83d\ude00\n"}"#
        );
    }

    #[test]
    fn string_literals_match_the_serializer() {
        let cases = [
            "",
            "plain",
            r#"{"class": "a.B", "data": {"s": "x\\y"}}"#,
            "ünï \"q\" \u{7f} 😀\n\r\t\u{8}\u{c}\u{1}\u{1f} end",
            "\\\\\"\"",
            "€€€",
            "\u{10ffff}a\u{0}",
        ];
        for text in cases {
            let mut expected = Vec::new();
            write_python(&mut expected, text).expect("writes");
            let mut out = String::from("x");
            push_str_literal(&mut out, text);
            assert_eq!(&out.as_bytes()[1..], expected.as_slice(), "{text:?}");
        }
    }
}

//! Bounded AMF0 validation, run before `rml_amf0` (which recurses without a limit: a few
//! kilobytes of nested object markers would overflow a task's stack and abort the process).
//!
//! The checker follows `rml_amf0`'s grammar exactly, iteratively bounded by [`MAX_DEPTH`], and
//! rejects anything `rml_amf0` would reject, so a payload that passes here parses there without
//! surprises.

/// Deepest nesting of objects/arrays accepted. Real commands and metadata use 2 or 3.
pub const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    #[error("AMF0 values nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("AMF0 data ends inside a value")]
    Truncated,
    #[error("unsupported AMF0 marker {0:#04x}")]
    UnknownMarker(u8),
    #[error("AMF0 object has an empty property name not followed by the end marker")]
    BadObjectEnd,
    #[error("AMF0 string is not UTF-8")]
    NotUtf8,
    #[error("more than {0} AMF0 values in one command")]
    TooManyValues(usize),
}

const NUMBER: u8 = 0;
const BOOLEAN: u8 = 1;
const STRING: u8 = 2;
const OBJECT: u8 = 3;
const NULL: u8 = 5;
const UNDEFINED: u8 = 6;
const ECMA_ARRAY: u8 = 8;
const OBJECT_END: u8 = 9;
const STRICT_ARRAY: u8 = 10;

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    /// Values seen so far (nested ones and object properties included) and the most allowed.
    values: usize,
    max_values: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, Amf0Error> {
        let s = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([s[0], s[1]])))
    }

    fn utf8(&mut self, n: usize) -> Result<(), Amf0Error> {
        std::str::from_utf8(self.take(n)?).map(|_| ()).map_err(|_| Amf0Error::NotUtf8)
    }
}

/// Checks a sequence of AMF0 values (a whole command or data message body).
pub fn check(payload: &[u8]) -> Result<(), Amf0Error> {
    check_at_most(payload, usize::MAX)
}

/// Like [`check`], and refuses more than `max_values` values in all (nested values and object
/// properties count): a parser that builds a tree allocates per value (tens of bytes each), so
/// a command of one-byte `null`s would cost far more memory than its size.
pub fn check_at_most(payload: &[u8], max_values: usize) -> Result<(), Amf0Error> {
    let mut c = Cursor { b: payload, pos: 0, values: 0, max_values };
    while c.pos < payload.len() {
        if !value(&mut c, 0)? {
            break;
        }
    }
    Ok(())
}

/// One value; `Ok(false)` for the object-end marker (which ends a sequence in `rml_amf0`).
fn value(c: &mut Cursor<'_>, depth: usize) -> Result<bool, Amf0Error> {
    let marker = match c.u8() {
        Ok(m) => m,
        // rml_amf0 treats end of input where a value would start as the end of the sequence.
        Err(_) => return Ok(false),
    };
    if marker != OBJECT_END {
        c.values += 1;
        if c.values > c.max_values {
            return Err(Amf0Error::TooManyValues(c.max_values));
        }
    }
    match marker {
        NUMBER => {
            c.take(8)?;
        }
        BOOLEAN => {
            c.u8()?;
        }
        STRING => {
            let n = c.u16()?;
            c.utf8(n)?;
        }
        NULL | UNDEFINED => {}
        OBJECT => object(c, depth + 1)?,
        ECMA_ARRAY => {
            c.take(4)?;
            object(c, depth + 1)?;
        }
        STRICT_ARRAY => {
            if depth + 1 > MAX_DEPTH {
                return Err(Amf0Error::TooDeep);
            }
            let s = c.take(4)?;
            let count = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
            for _ in 0..count {
                if !value(c, depth + 1)? {
                    break;
                }
            }
        }
        OBJECT_END => return Ok(false),
        other => return Err(Amf0Error::UnknownMarker(other)),
    }
    Ok(true)
}

fn object(c: &mut Cursor<'_>, depth: usize) -> Result<(), Amf0Error> {
    if depth > MAX_DEPTH {
        return Err(Amf0Error::TooDeep);
    }
    loop {
        let label = c.u16()?;
        if label == 0 {
            return if c.u8()? == OBJECT_END { Ok(()) } else { Err(Amf0Error::BadObjectEnd) };
        }
        c.utf8(label)?;
        if !value(c, depth)? {
            return Err(Amf0Error::Truncated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_amf0::Amf0Value;
    use std::collections::HashMap;

    #[test]
    fn accepts_what_rml_amf0_writes() {
        let mut inner = HashMap::new();
        inner.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        inner.insert("n".to_string(), Amf0Value::Number(1.5));
        inner.insert("arr".to_string(), Amf0Value::StrictArray(vec![Amf0Value::Boolean(true), Amf0Value::Null]));
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(inner),
            Amf0Value::Undefined,
        ];
        let bytes = rml_amf0::serialize(&values).unwrap();
        check(&bytes).unwrap();
        let parsed = rml_amf0::deserialize(&mut std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(parsed, values);
    }

    #[test]
    fn rejects_deep_nesting_that_would_overflow_the_stack() {
        // 100k nested objects: rml_amf0 alone would recurse 100k frames deep.
        let mut bytes = vec![OBJECT];
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[0, 1, b'a', OBJECT]);
        }
        assert_eq!(check(&bytes), Err(Amf0Error::TooDeep));
        let mut arrays = Vec::new();
        for _ in 0..100_000 {
            arrays.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        assert_eq!(check(&arrays), Err(Amf0Error::TooDeep));
    }

    #[test]
    fn counts_values_nested_ones_included() {
        // "connect", 1, {app: "live"}, then nulls: 4 values before the nulls.
        let mut bytes = vec![STRING, 0, 7];
        bytes.extend_from_slice(b"connect");
        bytes.extend_from_slice(&[NUMBER, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, OBJECT, 0, 3, b'a', b'p', b'p', STRING, 0, 4]);
        bytes.extend_from_slice(b"live");
        bytes.extend_from_slice(&[0, 0, OBJECT_END]);
        assert_eq!(check_at_most(&bytes, 4), Ok(()));
        bytes.push(NULL);
        assert_eq!(check_at_most(&bytes, 4), Err(Amf0Error::TooManyValues(4)));
        assert_eq!(check_at_most(&bytes, 5), Ok(()));
        bytes.extend(std::iter::repeat_n(NULL, 1_000_000));
        assert_eq!(check_at_most(&bytes, 128), Err(Amf0Error::TooManyValues(128)));
        assert_eq!(check(&bytes), Ok(()));
    }

    #[test]
    fn rejects_truncated_and_unknown() {
        assert_eq!(check(&[NUMBER, 1, 2]), Err(Amf0Error::Truncated));
        assert_eq!(check(&[STRING, 0, 5, b'a']), Err(Amf0Error::Truncated));
        assert_eq!(check(&[0x11]), Err(Amf0Error::UnknownMarker(0x11)));
        assert_eq!(check(&[OBJECT, 0, 0, 7]), Err(Amf0Error::BadObjectEnd));
        assert_eq!(check(&[STRING, 0, 1, 0xff]), Err(Amf0Error::NotUtf8));
    }
}

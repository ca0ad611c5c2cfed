//! A record: one sample's key and named fields, as laid out in a block's decoded payload (§6.3).
//!
//! ```text
//! 0   2  key_len      u16, 1..=4096
//! 2   2  field_count  u16, at least 1
//! 4   4  reserved     zero
//! 8   10 x field_count descriptors: data_len u64, name_len u16
//! ..  key bytes, then every name, then every field's data, with no gaps
//! ```

use super::{le, DecodeError, MAX_FIELD_NAME_BYTES, MAX_KEY_BYTES};
use crate::{Defect, Structure};

/// Length of the fixed record prefix.
pub const RECORD_PREFIX_LEN: usize = 8;
/// Length of one field descriptor.
pub const FIELD_DESCRIPTOR_LEN: usize = 10;

/// A filler: bytes between or after records that belong to no record (§6.4). It starts
/// with a marker that no record can start with (a zero key length and a zero field count),
/// then the number of zero bytes that follow; so a block's decoded payload parses from start
/// to end, record by record, without the index.
pub const FILLER_MARKER_LEN: usize = 8;

/// Appends a filler of exactly `len` bytes (at least [`FILLER_MARKER_LEN`]).
pub fn encode_filler(out: &mut Vec<u8>, len: usize) {
    debug_assert!(len >= FILLER_MARKER_LEN);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&((len - FILLER_MARKER_LEN) as u32).to_le_bytes());
    out.resize(out.len() + len - FILLER_MARKER_LEN, 0);
}

/// One item of a decoded payload, found by parsing from its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadItem {
    /// A record of this many bytes.
    Record(u64),
    /// A filler of this many bytes.
    Filler(u64),
}

/// The item starting at `at` in a decoded payload: a record's length from its prefix and
/// descriptors, or a filler's from its marker. Checks that it fits in the payload and, for a
/// filler, that its bytes are zero.
pub fn item_at(payload: &[u8], at: usize) -> Result<PayloadItem, DecodeError> {
    let rest = payload.get(at..).unwrap_or_default();
    if rest.len() < RECORD_PREFIX_LEN {
        return Err(DecodeError::new(
            at,
            Defect::truncated(
                Structure::Record { record: None },
                RECORD_PREFIX_LEN as u64,
                Some(rest.len() as u64),
            ),
        ));
    }
    let key_len = le::u16_at(rest, 0);
    let field_count = usize::from(le::u16_at(rest, 2));
    if key_len == 0 && field_count == 0 {
        if !le::all_zero(rest, 2, 4) {
            return Err(DecodeError::new(at, Defect::not_zero(Structure::Filler)));
        }
        let len = FILLER_MARKER_LEN as u64 + u64::from(le::u32_at(rest, 4));
        if len > rest.len() as u64 {
            return Err(DecodeError::invalid(
                at,
                Structure::Filler,
                "length",
                format!("at most {}", rest.len()),
                len,
            ));
        }
        if !le::all_zero(rest, FILLER_MARKER_LEN, len as usize) {
            return Err(DecodeError::new(at, Defect::not_zero(Structure::Filler)));
        }
        return Ok(PayloadItem::Filler(len));
    }
    let mut len =
        (RECORD_PREFIX_LEN + field_count * FIELD_DESCRIPTOR_LEN) as u64 + u64::from(key_len);
    for i in 0..field_count {
        let d = RECORD_PREFIX_LEN + i * FIELD_DESCRIPTOR_LEN;
        if d + FIELD_DESCRIPTOR_LEN > rest.len() {
            return Err(DecodeError::invalid(
                at,
                Structure::Record { record: None },
                "field descriptor",
                "within the payload",
                "past its end",
            ));
        }
        len = len
            .saturating_add(u64::from(le::u16_at(rest, d + 8)))
            .saturating_add(le::u64_at(rest, d));
    }
    if len > rest.len() as u64 {
        return Err(DecodeError::invalid(
            at,
            Structure::Record { record: None },
            "length",
            format!("at most {}", rest.len()),
            len,
        ));
    }
    Ok(PayloadItem::Record(len))
}

/// Number of bytes [`encode`] appends for `key` and `fields`, or `None` on overflow.
pub fn encoded_len(key: &str, fields: &[(&str, &[u8])]) -> Option<u64> {
    let mut len = (RECORD_PREFIX_LEN + key.len()) as u64;
    for (name, data) in fields {
        len = len
            .checked_add((FIELD_DESCRIPTOR_LEN + name.len()) as u64)?
            .checked_add(data.len() as u64)?;
    }
    Some(len)
}

/// Appends the record to `out`. The caller has validated key, names and counts.
pub fn encode(out: &mut Vec<u8>, key: &str, fields: &[(&str, &[u8])]) {
    let lens: Vec<(&str, u64)> = fields.iter().map(|(n, d)| (*n, d.len() as u64)).collect();
    encode_head(out, key, &lens);
    for (_, data) in fields {
        out.extend_from_slice(data);
    }
}

/// Appends everything of the record before its fields' data (prefix, descriptors, key and
/// names) for fields of the given names and lengths; the data follows it, in field order.
/// The caller has validated key, names and counts.
pub fn encode_head(out: &mut Vec<u8>, key: &str, fields: &[(&str, u64)]) {
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(fields.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for (name, len) in fields {
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(key.as_bytes());
    for (name, _) in fields {
        out.extend_from_slice(name.as_bytes());
    }
}

/// [`encoded_len`] from the fields' names and lengths, or `None` on overflow.
pub fn encoded_len_of(key: &str, fields: &[(&str, u64)]) -> Option<u64> {
    let mut len = (RECORD_PREFIX_LEN + key.len()) as u64;
    for (name, data_len) in fields {
        len = len
            .checked_add((FIELD_DESCRIPTOR_LEN + name.len()) as u64)?
            .checked_add(*data_len)?;
    }
    Some(len)
}

/// A record whose layout has been checked: every range below is within the record.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    bytes: &'a [u8],
    field_count: usize,
    key_len: usize,
}

impl<'a> RecordView<'a> {
    /// Checks the layout of `bytes` as one record.
    pub fn parse(bytes: &'a [u8]) -> Result<RecordView<'a>, DecodeError> {
        if bytes.len() < RECORD_PREFIX_LEN {
            return Err(DecodeError::new(
                0,
                Defect::truncated(
                    Structure::Record { record: None },
                    RECORD_PREFIX_LEN as u64,
                    Some(bytes.len() as u64),
                ),
            ));
        }
        let key_len = usize::from(le::u16_at(bytes, 0));
        let field_count = usize::from(le::u16_at(bytes, 2));
        if key_len == 0 || key_len > MAX_KEY_BYTES {
            return Err(DecodeError::invalid(
                0,
                Structure::Record { record: None },
                "key length",
                format!("1 to {MAX_KEY_BYTES}"),
                key_len,
            ));
        }
        if field_count == 0 {
            return Err(DecodeError::invalid(
                2,
                Structure::Record { record: None },
                "field count",
                "at least 1",
                0,
            ));
        }
        if !le::all_zero(bytes, 4, RECORD_PREFIX_LEN) {
            return Err(DecodeError::new(
                4,
                Defect::not_zero(Structure::Record { record: None }),
            ));
        }
        let table_end = RECORD_PREFIX_LEN + field_count * FIELD_DESCRIPTOR_LEN;
        let mut total = table_end as u64 + key_len as u64;
        for i in 0..field_count {
            let at = RECORD_PREFIX_LEN + i * FIELD_DESCRIPTOR_LEN;
            if at + FIELD_DESCRIPTOR_LEN > bytes.len() {
                return Err(DecodeError::invalid(
                    at,
                    Structure::Record { record: None },
                    "field descriptor",
                    "within the record",
                    "past its end",
                ));
            }
            let name_len = usize::from(le::u16_at(bytes, at + 8));
            if name_len > MAX_FIELD_NAME_BYTES {
                return Err(DecodeError::invalid(
                    at + 8,
                    Structure::Record { record: None },
                    "field name length",
                    format!("at most {MAX_FIELD_NAME_BYTES}"),
                    name_len,
                ));
            }
            total = total
                .saturating_add(name_len as u64)
                .saturating_add(le::u64_at(bytes, at));
        }
        if total != bytes.len() as u64 {
            return Err(DecodeError::invalid(
                0,
                Structure::Record { record: None },
                "length",
                bytes.len(),
                total,
            ));
        }
        let view = RecordView {
            bytes,
            field_count,
            key_len,
        };
        if std::str::from_utf8(view.key_bytes()).is_err() {
            return Err(DecodeError::invalid(
                table_end,
                Structure::Record { record: None },
                "key",
                "UTF-8",
                "invalid UTF-8",
            ));
        }
        let mut names_at = table_end + key_len;
        for i in 0..field_count {
            let (name, _) = view.raw_field(i);
            if std::str::from_utf8(name).is_err() {
                return Err(DecodeError::invalid(
                    names_at,
                    Structure::Record { record: None },
                    "field name",
                    "UTF-8",
                    "invalid UTF-8",
                ));
            }
            names_at += name.len();
        }
        Ok(view)
    }

    /// A view of bytes that `parse` accepted before, with the counts it found.
    pub(crate) fn from_checked(
        bytes: &'a [u8],
        field_count: usize,
        key_len: usize,
    ) -> RecordView<'a> {
        RecordView {
            bytes,
            field_count,
            key_len,
        }
    }

    /// The key's length in bytes.
    pub(crate) fn key_len(&self) -> usize {
        self.key_len
    }

    /// The key's bytes (valid UTF-8, checked by `parse`).
    pub fn key_bytes(&self) -> &'a [u8] {
        let start = RECORD_PREFIX_LEN + self.field_count * FIELD_DESCRIPTOR_LEN;
        self.bytes
            .get(start..start + self.key_len)
            .unwrap_or_default()
    }

    /// The key.
    pub fn key(&self) -> &'a str {
        std::str::from_utf8(self.key_bytes()).unwrap_or_default()
    }

    /// Number of fields.
    pub fn field_count(&self) -> usize {
        self.field_count
    }

    fn raw_field(&self, index: usize) -> (&'a [u8], &'a [u8]) {
        let table_end = RECORD_PREFIX_LEN + self.field_count * FIELD_DESCRIPTOR_LEN;
        let mut name_at = table_end + self.key_len;
        let mut data_at = name_at;
        for i in 0..self.field_count {
            data_at += usize::from(le::u16_at(
                self.bytes,
                RECORD_PREFIX_LEN + i * FIELD_DESCRIPTOR_LEN + 8,
            ));
        }
        for i in 0..self.field_count {
            let at = RECORD_PREFIX_LEN + i * FIELD_DESCRIPTOR_LEN;
            // parse() proved that every length sums to the record length, so these fit.
            let data_len = le::u64_at(self.bytes, at) as usize;
            let name_len = usize::from(le::u16_at(self.bytes, at + 8));
            if i == index {
                let name = self
                    .bytes
                    .get(name_at..name_at + name_len)
                    .unwrap_or_default();
                let data = self
                    .bytes
                    .get(data_at..data_at + data_len)
                    .unwrap_or_default();
                return (name, data);
            }
            name_at += name_len;
            data_at += data_len;
        }
        (&[], &[])
    }

    /// Field `index`: its name and its data.
    pub fn field(&self, index: usize) -> (&'a str, &'a [u8]) {
        let (name, data) = self.raw_field(index);
        (std::str::from_utf8(name).unwrap_or_default(), data)
    }

    /// Iterates over (name, data) pairs in stored order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let view = *self;
        let table_end = RECORD_PREFIX_LEN + view.field_count * FIELD_DESCRIPTOR_LEN;
        let names_len: usize = (0..view.field_count)
            .map(|i| {
                usize::from(le::u16_at(
                    view.bytes,
                    RECORD_PREFIX_LEN + i * FIELD_DESCRIPTOR_LEN + 8,
                ))
            })
            .sum();
        let mut name_at = table_end + view.key_len;
        let mut data_at = name_at + names_len;
        (0..view.field_count).map(move |i| {
            let at = RECORD_PREFIX_LEN + i * FIELD_DESCRIPTOR_LEN;
            let data_len = le::u64_at(view.bytes, at) as usize;
            let name_len = usize::from(le::u16_at(view.bytes, at + 8));
            let name = view
                .bytes
                .get(name_at..name_at + name_len)
                .unwrap_or_default();
            let data = view
                .bytes
                .get(data_at..data_at + data_len)
                .unwrap_or_default();
            name_at += name_len;
            data_at += data_len;
            (std::str::from_utf8(name).unwrap_or_default(), data)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let fields: &[(&str, &[u8])] = &[("jpg", b"\xff\xd8data"), ("json", b"{}"), ("", b"")];
        let mut out = vec![];
        encode(&mut out, "train/0001", fields);
        assert_eq!(out.len() as u64, encoded_len("train/0001", fields).unwrap());
        let view = RecordView::parse(&out).unwrap();
        assert_eq!(view.key(), "train/0001");
        let got: Vec<_> = view.fields().collect();
        assert_eq!(got, fields.to_vec());
        assert_eq!(view.field(1), ("json", &b"{}"[..]));
    }

    #[test]
    fn every_prefix_is_rejected() {
        let mut out = vec![];
        encode(&mut out, "k", &[("a", b"xyz"), ("bb", b"")]);
        for n in 0..out.len() {
            assert!(RecordView::parse(&out[..n]).is_err(), "prefix {n} accepted");
        }
    }
}

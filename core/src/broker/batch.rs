//! The body of SEND_BATCH_MESSAGE (`MessageDecoder.encodeMessages`): messages back to back,
//! each
//!
//! ```text
//! int32 totalSize | int32 magic (0) | int32 bodyCRC (0) | int32 flag | int32 bodyLen | body
//! | int16 propertiesLen | properties
//! ```
//!
//! `totalSize` counts the whole entry, itself included. Every length is checked against what
//! is left before anything is sliced.

/// One message of a batch, borrowing the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem<'a> {
    pub flag: i32,
    pub body: &'a [u8],
    pub properties: &'a [u8],
}

/// Why a batch body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch entry at byte {at} is cut short: it needs {needs} bytes, {left} are left")]
    Truncated { at: usize, needs: usize, left: usize },
    #[error("batch entry at byte {at} says it is {total} bytes but its fields take {fields}")]
    Length { at: usize, total: i64, fields: usize },
    #[error("the batch holds no message")]
    Empty,
    #[error("the batch holds more than {0} messages")]
    TooMany(usize),
}

const FIXED_BYTES: usize = 4 * 5 + 2;

fn int(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Splits a batch body into its messages, at most `items_max` of them.
pub fn decode_batch(body: &[u8], items_max: usize) -> Result<Vec<BatchItem<'_>>, BatchError> {
    let mut items = Vec::new();
    let mut at = 0;
    while at < body.len() {
        if items.len() == items_max {
            return Err(BatchError::TooMany(items_max));
        }
        let left = body.len() - at;
        if left < FIXED_BYTES {
            return Err(BatchError::Truncated { at, needs: FIXED_BYTES, left });
        }
        let entry = &body[at..];
        let total = int(entry, 0);
        let flag = int(entry, 12);
        let body_len = usize::try_from(int(entry, 16)).unwrap_or(usize::MAX);
        let needs = 20usize.saturating_add(body_len).saturating_add(2);
        if needs > left {
            return Err(BatchError::Truncated { at, needs, left });
        }
        let props_at = 20 + body_len;
        let props_len = usize::from(u16::from_be_bytes([entry[props_at], entry[props_at + 1]]));
        let fields = props_at + 2 + props_len;
        if fields > left {
            return Err(BatchError::Truncated { at, needs: fields, left });
        }
        if i64::from(total) != fields as i64 {
            return Err(BatchError::Length { at, total: i64::from(total), fields });
        }
        items.push(BatchItem {
            flag,
            body: &entry[20..props_at],
            properties: &entry[props_at + 2..fields],
        });
        at += fields;
    }
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(items)
}

/// Encodes messages as a batch body (the client side, and tests).
pub fn encode_batch(items: &[BatchItem<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let total = FIXED_BYTES + item.body.len() + item.properties.len();
        out.extend_from_slice(&(total as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&item.flag.to_be_bytes());
        out.extend_from_slice(&(item.body.len() as i32).to_be_bytes());
        out.extend_from_slice(item.body);
        out.extend_from_slice(&(item.properties.len() as u16).to_be_bytes());
        out.extend_from_slice(item.properties);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips() {
        let items = [
            BatchItem { flag: 0, body: b"hello", properties: b"KEYS\x01k1\x02" },
            BatchItem { flag: 7, body: b"", properties: b"" },
        ];
        let bytes = encode_batch(&items);
        // First entry: 22 fixed bytes + 5 body + 8 properties = 35.
        assert_eq!(&bytes[..4], &35i32.to_be_bytes());
        assert_eq!(decode_batch(&bytes, 10).unwrap(), items.to_vec());
        assert_eq!(decode_batch(&bytes, 1).unwrap_err(), BatchError::TooMany(1));
    }

    #[test]
    fn lies_about_lengths_are_caught_before_slicing() {
        let bytes = encode_batch(&[BatchItem { flag: 0, body: b"abc", properties: b"" }]);
        for cut in 0..bytes.len() {
            assert!(decode_batch(&bytes[..cut], 10).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[16..20].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_batch(&huge, 10), Err(BatchError::Truncated { .. })));
        let mut negative = bytes.clone();
        negative[16..20].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(decode_batch(&negative, 10).is_err());
        let mut wrong_total = bytes;
        wrong_total[3] ^= 1;
        assert!(matches!(decode_batch(&wrong_total, 10), Err(BatchError::Length { .. })));
    }
}

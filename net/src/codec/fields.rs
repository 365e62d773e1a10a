//! [`ExtFields`]: a command's header fields, every name and value kept in one buffer.
//!
//! A SEND_MESSAGE_V2 request carries fourteen fields; kept as a map of owned strings they cost
//! a send about twenty allocations to decode and as many to answer. Here a header's fields cost
//! two (the text and the index) to decode, whatever their count, and writing a typed header
//! into fields none beyond the buffer's growth. Fields iterate in name order, the order both encodings write them in.

use std::fmt::{self, Write as _};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Header fields that travel as strings, by Java field name, in name order.
#[derive(Clone, Default)]
pub struct ExtFields {
    /// Every field's name followed by its value, back to back; a replaced field's old text
    /// stays until the fields are dropped.
    text: String,
    /// One per field, sorted by name, no name twice.
    entries: Vec<Entry>,
}

/// Where one field lies in the text: its name from `start` to `value`, its value from there
/// to `end`.
#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    value: usize,
    end: usize,
}

impl ExtFields {
    pub fn new() -> ExtFields {
        ExtFields::default()
    }

    /// Room for `fields` fields of `text` bytes in all.
    pub fn with_capacity(fields: usize, text: usize) -> ExtFields {
        ExtFields { text: String::with_capacity(text), entries: Vec::with_capacity(fields) }
    }

    /// Makes room for `fields` more fields of `text` more bytes.
    pub fn reserve(&mut self, fields: usize, text: usize) {
        self.entries.reserve(fields);
        self.text.reserve(text);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name_of(&self, entry: &Entry) -> &str {
        &self.text[entry.start..entry.value]
    }

    fn value_of(&self, entry: &Entry) -> &str {
        &self.text[entry.value..entry.end]
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|entry| self.name_of(entry).cmp(name))
    }

    /// The value of the field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.value_of(&self.entries[i]))
    }

    /// Sets the field `name` to `value`, replacing any value it had.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.insert_with(name, |text| text.push_str(value));
    }

    /// Sets the field `name` to what `write` appends to the text: a number is written in
    /// place, without a string of its own.
    pub fn insert_with(&mut self, name: &str, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        self.text.push_str(name);
        let value = self.text.len();
        write(&mut self.text);
        let entry = Entry { start, value, end: self.text.len() };
        match self.find(name) {
            Ok(i) => self.entries[i] = entry,
            Err(i) => self.entries.insert(i, entry),
        }
    }

    /// Fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|entry| (self.name_of(entry), self.value_of(entry)))
    }

    /// Starts a field whose name and value a decoder appends to [`Unsorted::text`]; the fields
    /// are put in order once, by [`Unsorted::finish`], so a header of many fields costs
    /// `n log n`, not `n²`.
    pub(crate) fn unsorted(fields: usize, text: usize) -> Unsorted {
        Unsorted { fields: ExtFields::with_capacity(fields, text) }
    }
}

/// Fields being decoded, appended in wire order.
pub(crate) struct Unsorted {
    fields: ExtFields,
}

impl Unsorted {
    /// The text to append a field's name, then its value, to.
    pub(crate) fn text(&mut self) -> &mut String {
        &mut self.fields.text
    }

    /// Records the field whose name was appended from `start` to `value` and whose value
    /// runs from there to the end of the text.
    pub(crate) fn push(&mut self, start: usize, value: usize) {
        let end = self.fields.text.len();
        self.fields.entries.push(Entry { start, value, end });
    }

    /// The fields in name order; of a name sent twice, the last value stays (as a map's
    /// insert leaves it).
    pub(crate) fn finish(self) -> ExtFields {
        let mut fields = self.fields;
        let text = &fields.text;
        fields.entries.sort_by(|a, b| text[a.start..a.value].cmp(&text[b.start..b.value]));
        // The sort is stable, so of equal names the last sent comes last: each later one
        // overwrites the one kept.
        fields.entries.dedup_by(|later, kept| {
            let same = text[later.start..later.value] == text[kept.start..kept.value];
            if same {
                *kept = *later;
            }
            same
        });
        fields
    }
}

impl PartialEq for ExtFields {
    fn eq(&self, other: &ExtFields) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> ExtFields {
        let mut fields = ExtFields::new();
        for (name, value) in pairs {
            fields.insert(name.as_ref(), value.as_ref());
        }
        fields
    }
}

impl Serialize for ExtFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Appends `value` as its decimal text.
pub(crate) fn write_display(text: &mut String, value: impl fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(text, "{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_name_order_and_the_last_value() {
        let mut fields = ExtFields::new();
        fields.insert("topic", "A");
        fields.insert("queueId", "3");
        fields.insert("b", "x");
        fields.insert("topic", "B");
        fields.insert_with("offset", |text| write_display(text, -42i64));
        let pairs: Vec<(&str, &str)> = fields.iter().collect();
        assert_eq!(pairs, [("b", "x"), ("offset", "-42"), ("queueId", "3"), ("topic", "B")]);
        assert_eq!(fields.get("topic"), Some("B"));
        assert_eq!(fields.get("absent"), None);
        assert_eq!(fields.get("b"), Some("x"));
        assert_eq!(fields.len(), 4);
    }

    #[test]
    fn decoded_fields_are_sorted_and_a_name_sent_twice_keeps_its_last_value() {
        let mut unsorted = ExtFields::unsorted(4, 64);
        for (name, value) in [("z", "1"), ("a", "2"), ("z", "3"), ("m", "")] {
            let start = unsorted.text().len();
            unsorted.text().push_str(name);
            let at = unsorted.text().len();
            unsorted.text().push_str(value);
            unsorted.push(start, at);
        }
        let fields = unsorted.finish();
        let pairs: Vec<(&str, &str)> = fields.iter().collect();
        assert_eq!(pairs, [("a", "2"), ("m", ""), ("z", "3")]);
        let built: ExtFields = [("m", ""), ("z", "3"), ("a", "2")].into_iter().collect();
        assert_eq!(fields, built);
    }

    #[test]
    fn equality_ignores_replaced_text() {
        let mut replaced = ExtFields::new();
        replaced.insert("a", "old");
        replaced.insert("a", "new");
        let fresh: ExtFields = [("a", "new")].into_iter().collect();
        assert_eq!(replaced, fresh);
        assert_eq!(format!("{fresh:?}"), r#"{"a": "new"}"#);
    }
}

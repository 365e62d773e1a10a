//! Typed command headers: each RocketMQ `CommandCustomHeader` as a Rust struct whose fields
//! travel in `extFields` under their Java names.
//!
//! [`command_header!`] writes the struct and both directions. A `required` field missing from a
//! request is a [`HeaderError::Missing`] (RocketMQ's `@CFNotNull`); an `optional` one is `None`.
//! Values travel as strings: integers in decimal, booleans as `true`/`false`.

use super::command::ExtFields;

/// A header field that does not parse. The server answers it with a remark naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A required field is absent.
    #[error("the header field `{field}` is required but missing")]
    Missing { field: &'static str },
    /// A field's text is not a value of its type.
    #[error("the header field `{field}` has the value `{value}`, which is not {expected}")]
    Invalid { field: &'static str, value: String, expected: &'static str },
}

/// A header that reads itself from and writes itself to `extFields`.
pub trait CommandHeader: Sized {
    fn write_fields(&self, fields: &mut ExtFields);
    fn read_fields(fields: &ExtFields) -> Result<Self, HeaderError>;
}

/// A value that travels as one `extFields` string.
pub trait FieldValue: Sized {
    /// What a valid value looks like, for error messages.
    const EXPECTED: &'static str;
    /// Appends the value's text.
    fn write_field(&self, text: &mut String);
    fn from_field(text: &str) -> Option<Self>;
}

impl FieldValue for String {
    const EXPECTED: &'static str = "a string";
    fn write_field(&self, text: &mut String) {
        text.push_str(self);
    }
    fn from_field(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

macro_rules! integer_field {
    ($($ty:ty),*) => {$(
        impl FieldValue for $ty {
            const EXPECTED: &'static str = concat!("an integer (", stringify!($ty), ")");
            fn write_field(&self, text: &mut String) {
                super::fields::write_display(text, self);
            }
            fn from_field(text: &str) -> Option<Self> {
                text.trim().parse().ok()
            }
        }
    )*};
}
integer_field!(i32, i64);

impl FieldValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn write_field(&self, text: &mut String) {
        text.push_str(if *self { "true" } else { "false" });
    }
    fn from_field(text: &str) -> Option<Self> {
        // Java's Boolean.parseBoolean: anything but "true" (any case) is false.
        Some(text.trim().eq_ignore_ascii_case("true"))
    }
}

/// Reads one field; `None` when absent.
pub fn read_field<T: FieldValue>(
    fields: &ExtFields,
    name: &'static str,
) -> Result<Option<T>, HeaderError> {
    match fields.get(name) {
        None => Ok(None),
        Some(text) => T::from_field(text).map(Some).ok_or_else(|| HeaderError::Invalid {
            field: name,
            value: text.chars().take(64).collect(),
            expected: T::EXPECTED,
        }),
    }
}

/// Reads a required field.
pub fn require_field<T: FieldValue>(
    fields: &ExtFields,
    name: &'static str,
) -> Result<T, HeaderError> {
    read_field(fields, name)?.ok_or(HeaderError::Missing { field: name })
}

/// Defines a header struct. Each field is `required` or `optional`, with its Java name.
#[macro_export]
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $kind:ident $field:ident : $ty:ty = $java:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $crate::command_header!(@type $kind $ty), )*
        }

        impl $crate::codec::header::CommandHeader for $name {
            fn write_fields(&self, fields: &mut $crate::codec::command::ExtFields) {
                $( $crate::command_header!(@write $kind self.$field, fields, $java); )*
            }

            fn read_fields(
                fields: &$crate::codec::command::ExtFields,
            ) -> Result<Self, $crate::codec::header::HeaderError> {
                Ok($name {
                    $( $field: $crate::command_header!(@read $kind fields, $java), )*
                })
            }
        }
    };
    (@type required $ty:ty) => { $ty };
    (@type optional $ty:ty) => { Option<$ty> };
    (@write required $value:expr, $fields:ident, $java:literal) => {
        $fields.insert_with($java, |text| $crate::codec::header::FieldValue::write_field(&$value, text));
    };
    (@write optional $value:expr, $fields:ident, $java:literal) => {
        if let Some(value) = &$value {
            $fields.insert_with($java, |text| $crate::codec::header::FieldValue::write_field(value, text));
        }
    };
    (@read required $fields:ident, $java:literal) => {
        $crate::codec::header::require_field($fields, $java)?
    };
    (@read optional $fields:ident, $java:literal) => {
        $crate::codec::header::read_field($fields, $java)?
    };
}

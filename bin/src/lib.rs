//! Petrel services.

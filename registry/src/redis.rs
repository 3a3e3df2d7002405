//! Redis backend (to be implemented): see docs/registry.md for the key schema.

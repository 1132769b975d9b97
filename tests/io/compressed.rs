//! compressed

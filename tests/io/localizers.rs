//! localizers

//! rsna

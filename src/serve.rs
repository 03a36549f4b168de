//! `serve` (being written).

//! LDIF file backend (being written).

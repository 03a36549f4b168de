//! OpenLDAP backend (being written).

//! zmesh node (being written).

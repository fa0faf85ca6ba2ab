//! ZMTP 3.1 transport (being written).

//! ZRE wire codec and engine (being written).

//! COMET coupled approach (CURLING).

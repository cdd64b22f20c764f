//! COMET Routing Awareness Entity.

//! RADIUS server/proxy engine.

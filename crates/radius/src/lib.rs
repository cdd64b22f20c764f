//! Sans-IO RADIUS codec (RFC 2865/2866/5176/3579/6929) with FreeRADIUS dictionaries.

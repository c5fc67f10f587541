//! Unit tests: plans from facts shaped like the host's answers, manifests, mapping text and checksum, options
//! and every error.

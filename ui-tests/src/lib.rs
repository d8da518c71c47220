//! Holds only tests; see tests/ui.rs.

//! Integration tests of `lsbaws smoke`.

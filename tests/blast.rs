//! Integration tests of `lsbaws blast`.

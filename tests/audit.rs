//! Integration tests of `lsbaws audit`.

//! The one integration test binary: real `lsbaws` processes, real sockets on
//! loopback, real /proc.

mod audit;
mod blast;
mod blast_rate;
mod blast_reach;
mod blast_tls;
mod cgi;
mod common;
mod faults;
mod serve;
mod smoke;
mod verdicts;
mod verdicts_audit;
mod verdicts_smoke;

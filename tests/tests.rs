//! The one integration test binary: real `lsbaws` processes, real sockets on
//! loopback, real /proc.

mod attack;
mod attack3;
mod attack4_exec;
mod attack5_exec;
mod attack_serve;
mod attack_serve2;
mod attack_smoke;
mod audit;
mod audit_exec;
mod audit_exec_leftovers;
mod audit_exec_output;
mod audit_exec_stress;
mod audit_exec_tty;
mod blast;
mod blast_rate;
mod blast_reach;
mod blast_tls;
mod cgi;
mod common;
mod completions;
mod deploy;
mod faults;
mod help;
mod man;
mod merge;
mod merge_attack;
mod merge_attack4;
mod merge_attack5;
mod serve;
mod serve_faults;
mod serve_limits;
mod smoke;
mod verdicts;
mod verdicts_audit;
mod verdicts_smoke;

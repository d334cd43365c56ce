//! udsim: an executable specification of Linux Unix-domain stream sockets, judged by the live kernel.
pub mod bench_report;
pub mod check;
pub mod cli;
pub mod echo;
pub mod explore;
pub mod fuzzing;
pub mod gen;
pub mod kernel;
pub mod model;
pub mod scenarios;
pub mod script;
pub mod shrink;

//! udsim: an executable specification of Linux Unix-domain sockets, judged by the live kernel.
//!
//! The pieces a Rust user drives directly:
//! - [`model`]: the pure model. [`model::Model::step`] predicts what one call returns (the outcomes Linux may
//!   give and the rule that decided); no system calls. It needs the host's parameters: measured live by
//!   [`kernel::calibrate::params`], or one of the recorded presets ([`model::Params::preset`]).
//! - [`script`]: the script language (parse, print) in which calls and results are written.
//! - [`check`]: [`check::Checker`] runs a script on the model and the kernel in lock-step and reports the first
//!   divergence; [`check::model_only`] steps the model alone.
//! - [`kernel`]: the executor that runs the same calls on real sockets in a private directory.
//!
//! The model alone, from a recorded host, on a script (its results as Linux gave them):
//! ```
//! use udsim::check::model_only;
//! use udsim::model::Params;
//! use udsim::script::parse;
//!
//! let params = Params::preset("linux-6.18-host").expect("bundled");
//! let script = parse(
//!     "socket(STREAM) -> l\nbind(l, \"srv\") -> 0\nlisten(l, 0) -> 0\nsocket(STREAM) -> c\nread(c, 1) -> EINVAL\n",
//! )
//! .expect("a valid script");
//! let predictions = model_only(&params, &script).expect("known names");
//! for (line, p) in script.lines.iter().zip(&predictions) {
//!     let written = line.expect.as_ref().expect("written in");
//!     assert!(p.allowed.iter().all(|o| written.admits(o)), "{}", p.rule);
//! }
//! assert_eq!(predictions[4].rule, "read_unconnected_is_einval");
//! ```
//! Checking a script against the kernel as well (Linux only; the first use calibrates):
//! ```no_run
//! let mut checker = udsim::check::Checker::new().expect("an executor");
//! let script = udsim::script::parse("socketpair(STREAM) -> a, b\nwrite(a, \"hi\") -> 2\nread(b, 10) -> \"hi\"\n").unwrap();
//! let run = checker.run(&script, udsim::check::Options::default()).expect("runs");
//! assert!(run.agrees(), "{}", udsim::check::describe(&run));
//! ```
//! `cli`, `bench_report` and `fuzzing` are the binary's, the benchmarks' and the fuzz targets' internals, not an
//! API.
#[doc(hidden)]
pub mod bench_report;
pub mod check;
#[doc(hidden)]
pub mod cli;
pub mod coverage;
pub mod diagram;
pub mod echo;
pub mod enumerate;
pub mod explore;
#[doc(hidden)]
pub mod fuzzing;
pub mod gen;
pub mod kernel;
pub mod model;
pub mod net;
pub mod report;
pub mod scenarios;
pub mod script;
pub mod shrink;
pub mod sim;

//! The harness of test targets that need a peer (Perl's MR::IProto, Go): on `libtest-mimic`, so
//! that a missing peer shows as skipped, with its reason, instead of as passed. Such targets set
//! `harness = false` and end `main` with [`run`].
//!
//! - peer found: the trials run as usual (filters and flags from the command line);
//! - peer missing, `CI` set: every trial fails with the reason;
//! - peer missing locally: it prints `skipped N tests: reason` and reports every trial as
//!   ignored with the reason, so `test result:` counts them as ignored.
//!
//! From `iproto/tests`: `#[path = "../../tests/support/harness.rs"] mod harness;`.
#![allow(dead_code)] // shared by several test binaries; each uses part of it

use std::future::Future;
use std::process::Command;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The environment variable naming the perl binary (default `perl`). Pointing it at a missing
/// path shows what a machine without Perl sees: `IPROTO_PERL=/nonexistent cargo test`.
pub const PERL_VAR: &str = "IPROTO_PERL";

/// The perl binary the tests run: `$IPROTO_PERL`, or `perl` from `PATH`.
pub fn perl_binary() -> String {
    std::env::var(PERL_VAR).unwrap_or_else(|_| "perl".to_owned())
}

/// A `Command` for [`perl_binary`].
pub fn perl_command() -> Command {
    Command::new(perl_binary())
}

/// `Ok` if `perl -M<module> -e1` works, else `Err` with the reason (perl's own message).
pub fn perl_module(module: &str) -> Result<(), String> {
    let perl = perl_binary();
    match Command::new(&perl).arg(format!("-M{module}")).arg("-e1").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            Err(format!("`{perl} -M{module}` failed: {first}"))
        }
        Err(e) => Err(format!("cannot run `{perl}`: {e}")),
    }
}

/// Runs `trials` (see the module doc for what a missing peer does) and exits with the result.
pub fn run(peer: Result<(), String>, trials: Vec<Trial>) -> ! {
    let args = Arguments::from_args();
    let trials = match peer {
        Ok(()) => trials,
        Err(reason) => {
            let ci = std::env::var_os("CI").is_some();
            if ci {
                eprintln!("CI is set and the peer is missing: {} tests fail: {reason}", trials.len());
            } else {
                println!("skipped {} tests: {reason}", trials.len());
            }
            trials
                .into_iter()
                .map(|trial| {
                    let reason = reason.clone();
                    let kind = trial.kind().to_owned();
                    let name = trial.name().to_owned();
                    if ci {
                        Trial::test(name, move || Err(format!("the peer is missing under CI: {reason}").into()))
                    } else {
                        Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
                    }
                    .with_kind(kind)
                })
                .collect()
        }
    };
    libtest_mimic::run(&args, trials).exit()
}

/// What an async trial may return: `()`, or a `Result` whose `Err` fails the trial.
pub trait Outcome {
    /// `Err` with the message when the trial failed.
    fn into_result(self) -> Result<(), Failed>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), Failed> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), Failed> {
        self.map_err(|e| format!("{e:?}").into())
    }
}

/// A trial that runs `f`'s future on a fresh multi-thread tokio runtime; a panic (caught by
/// libtest-mimic) or an `Err` fails it.
pub fn async_trial<F, Fut>(name: &str, f: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Outcome,
{
    Trial::test(name, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("cannot build a tokio runtime: {e}")))?;
        runtime.block_on(f()).into_result()
    })
}

/// A trial of a plain (blocking) test function; a panic fails it.
pub fn trial(name: &str, f: fn()) -> Trial {
    Trial::test(name, move || {
        f();
        Ok(())
    })
}

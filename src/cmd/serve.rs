//! `lsbaws serve`: turns `ServeArgs` into `lsbaws_server::Config`, binds,
//! prints the ready line, runs the server and prints its summary.
//!
//! Owns serve's flags and its two lines of output (the request log is the
//! server crate's, written by its children). Must never start a thread or an
//! async runtime: the server forks.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use lsbaws_server::{Cgi, Config, OnEintr, Reaper};

use crate::cli::{OnEintrArg, ReaperArg, ServeArgs};
use crate::outcome::Outcome;

impl From<ReaperArg> for Reaper {
    fn from(arg: ReaperArg) -> Self {
        match arg {
            ReaperArg::Loop => Reaper::Loop,
            ReaperArg::Once => Reaper::Once,
            ReaperArg::None => Reaper::None,
            ReaperArg::Ignore => Reaper::Ignore,
            ReaperArg::Signalfd => Reaper::Signalfd,
        }
    }
}

/// Validates the flags that clap cannot.
pub fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    if args.max_children == Some(0) {
        anyhow::bail!("--max-children must be at least 1");
    }
    if args.read_timeout.is_zero() {
        anyhow::bail!("--read-timeout must be more than 0 (a child must not wait forever)");
    }
    if args.backlog == 0 {
        anyhow::bail!("--backlog must be at least 1");
    }
    let on_eintr = match args.on_eintr {
        OnEintrArg::Retry => OnEintr::Retry,
        OnEintrArg::Fail => OnEintr::Fail,
    };
    let reaper = Reaper::from(args.reaper);
    if on_eintr == OnEintr::Fail && !matches!(reaper, Reaper::Loop | Reaper::Once) {
        anyhow::bail!(
            "--on-eintr fail needs a SIGCHLD handler to interrupt accept: use it with --reaper loop or once"
        );
    }
    if args.cgi.is_some() && args.cgi_timeout.is_zero() {
        anyhow::bail!("--cgi-timeout must be more than 0");
    }
    Ok(Config {
        reaper,
        on_eintr,
        delay: args.delay,
        max_children: args.max_children,
        read_timeout: args.read_timeout,
        grace: args.grace,
        quiet: args.quiet,
        cgi: args.cgi.as_ref().map(|program| cgi(program, args)),
        subreaper: args.subreaper,
    })
}

fn cgi(program: &Path, args: &ServeArgs) -> Cgi {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    // A bare name that exists here means this file (as `--cgi app.py` reads),
    // not a lookup in PATH; a relative path is made absolute, so it keeps
    // working after a `cd`. Symlinks are not resolved: the program's argv[0]
    // stays the name it was given (a busybox applet link needs that), and a
    // link switched later (`current -> release-2`) is followed per request.
    let bare = program.components().count() == 1 && !program.is_absolute();
    let program = if bare && !program.is_file() {
        program.to_path_buf() // looked up in PATH when spawned
    } else {
        std::path::absolute(program).unwrap_or_else(|_| program.to_path_buf())
    };
    // Not fatal: each request gets 502, which is what a user testing a broken
    // deployment wants to see; but say why once, up front.
    let found = if program.is_absolute() {
        Some(program.clone())
    } else {
        std::env::split_paths(&path)
            .map(|dir| dir.join(&program))
            .find(|p| p.is_file())
    };
    let problem = match found.as_deref().map(std::fs::metadata) {
        None if !program.is_absolute() => Some("not found here or in PATH"),
        None | Some(Err(_)) => Some("not found"),
        Some(Ok(m)) if m.is_dir() => Some("is a directory"),
        Some(Ok(m)) if std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 == 0 => {
            Some("is not executable (chmod +x)")
        }
        Some(Ok(_)) => None,
    };
    if let Some(problem) = problem {
        super::diag(&format!(
            "warning: CGI program {} {problem}; requests will get 502",
            program.display()
        ));
    }
    let mut env = vec![(OsString::from("PATH"), path)];
    for name in &args.cgi_env {
        if let Some(value) = std::env::var_os(name) {
            env.push((name.into(), value));
        }
    }
    Cgi {
        program,
        args: args.cgi_arg.clone(),
        timeout: args.cgi_timeout,
        env,
        max_body: args.cgi_max_body,
    }
}

/// How long the ready line may wait for a reader of stdout that makes no room
/// (a full pipe): then the server serves unannounced rather than sit on a
/// listening socket, and says so on stderr.
const READY_PATIENCE: Duration = Duration::from_secs(5);

/// How long the summary may wait for a slow reader of stdout: long enough for
/// a pipe reader that is merely busy, bounded so that one that stopped reading
/// cannot hold the exit up.
const SUMMARY_PATIENCE: Duration = Duration::from_secs(3);

pub fn run(args: &ServeArgs) -> anyhow::Result<Outcome> {
    let config = config(args)?;
    let listener = lsbaws_server::bind(&args.bind, args.backlog)?;
    let served = lsbaws_server::run(listener, &config, |addr| {
        // One unbuffered write (no copy for the children to inherit), never
        // blocking for long: a stop signal meanwhile shuts down at once, a
        // closed stdout (EPIPE) only loses the line, as any output.
        let line = format!("{}\n", lsbaws_server::ready_line(addr, config.reaper));
        if lsbaws_server::log::announce(line.as_bytes(), READY_PATIENCE)
            == lsbaws_server::log::Written::TimedOut
        {
            super::diag(&format!(
                "stdout took no ready line within {READY_PATIENCE:?} (nobody reads it): serving on {addr} unannounced"
            ));
        }
        Ok(())
    });
    let (summary, failure) = match served {
        Ok(summary) => (summary, None),
        // Serving stopped on an error after a full shutdown: the summary still
        // says what happened to the children, then the error is reported.
        Err(lsbaws_server::Error::Stopped { cause, summary }) => (*summary, Some(*cause)),
        Err(e) => return Err(e.into()),
    };
    // Through the server's non-blocking writer: a stdout nobody reads must not
    // hang the exit. A summary that cannot be written is lost, like any output
    // to a closed pipe; it does not change the exit code.
    let _ = lsbaws_server::log::write_stdout_within(
        format!("{}\n", crate::render::serve::summary_line(&summary)).as_bytes(),
        SUMMARY_PATIENCE,
    );
    match failure {
        None => Ok(Outcome::Pass),
        Some(cause) => Err(cause.into()),
    }
}

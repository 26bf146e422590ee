//! The help beyond the flags: each command's exit status, examples and notes,
//! written once as data, so that `--help` (plain text, [`text`]) and
//! `lsbaws man` (roff, `cli::man`) say the same thing.
//!
//! Owns that text and its plain-text layout. Must never describe a flag (the
//! flag's own doc comment does, in cli.rs) nor run anything.

/// One titled block: an optional paragraph, then rows (a term and what it
/// means: an exit code, a mode) or examples, then an optional paragraph.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub title: &'static str,
    pub intro: &'static str,
    /// (term, meaning): set as a two-column list.
    pub rows: &'static [(&'static str, &'static str)],
    /// (what it does, the command lines): the description above the command.
    pub examples: &'static [(&'static str, &'static str)],
    pub outro: &'static str,
}

impl Section {
    const EMPTY: Section = Section {
        title: "",
        intro: "",
        rows: &[],
        examples: &[],
        outro: "",
    };
}

/// Width the plain text is wrapped to: a common terminal's, within clap's
/// 100-column cap (clap wraps what is longer again, without our indent).
const WIDTH: usize = 80;

/// The `Exit status` rows every command with a verdict shares.
const STOP_SIGNAL: (&str, &str) = (
    "128+N",
    "a stop signal N (SIGINT 130, SIGTERM 143, SIGHUP 129) ended it before a verdict: what \
     was measured is printed, marked interrupted, and everything it started is stopped",
);

const JSON_ERROR: &str = "Errors print one line on stderr, `lsbaws: <what is wrong>`; with \
     --json also one object on stdout, {\"error\": \"...\"}. A closed output pipe \
     stops the output and never changes the exit code.";

const ROOT: &[Section] = &[
    Section {
        title: "Exit status",
        rows: &[
            ("0", "nothing over the limits (PASS)"),
            (
                "1",
                "a finding over the limits: failed requests, zombies, processes left behind (FAIL)",
            ),
            (
                "2",
                "an error, so no verdict: bad usage, a server that could not start, a /proc \
                 that could not be read, a run that could not do what was asked",
            ),
            STOP_SIGNAL,
        ],
        outro: "serve exits 0 after a stop signal (its normal end); `audit -- COMMAND` exits \
                with COMMAND's own status when COMMAND failed. Each command's --help has its \
                own table. Errors print one line on stderr, `lsbaws: <what is wrong>`; with \
                --json also one object on stdout, {\"error\": \"...\"}. A closed output pipe \
                stops the output and never changes the exit code.",
        ..Section::EMPTY
    },
    Section {
        title: "Examples",
        examples: &[
            (
                "The article's zombies, in three terminals (serve prints its pid)",
                "lsbaws serve --reaper none --quiet\n\
                 lsbaws blast --max-clients 128\n\
                 lsbaws audit --pid <pid>",
            ),
            (
                "The CI job: your server on a free port, blasted, audited, stopped",
                "lsbaws smoke --max-clients 256 --junit smoke.xml -- ./my-server --port {port}",
            ),
            (
                "Fail a job that leaves processes behind",
                "lsbaws audit -- cargo test",
            ),
            (
                "Completion for bash, and a command's manual page",
                "lsbaws completions bash > ~/.local/share/bash-completion/completions/lsbaws\n\
                 lsbaws man blast | man -l -",
            ),
        ],
        ..Section::EMPTY
    },
];

const SERVE: &[Section] = &[
    Section {
        title: "Reaper modes",
        rows: &[
            (
                "loop",
                "correct: the article's waitpid(-1, WNOHANG) loop in the SIGCHLD handler",
            ),
            (
                "signalfd",
                "correct: reaping in the main loop, exit statuses logged",
            ),
            ("ignore", "correct: SIGCHLD = SIG_IGN, the kernel reaps"),
            (
                "once",
                "BROKEN ON PURPOSE: one wait per SIGCHLD leaks zombies under a burst",
            ),
            (
                "none",
                "BROKEN ON PURPOSE: never reaps, one zombie per connection",
            ),
        ],
        ..Section::EMPTY
    },
    Section {
        title: "Exit status",
        rows: &[
            (
                "0",
                "stopped by SIGINT, SIGTERM or SIGHUP: children waited for (--grace), the rest \
                 killed, all reaped, the summary line printed",
            ),
            (
                "2",
                "bad flags; cannot bind; accept interrupted with --on-eintr fail, or an accept \
                 error that broke the listener (after the same shutdown and summary)",
            ),
        ],
        ..Section::EMPTY
    },
    Section {
        title: "Examples",
        examples: &[
            (
                "Zombies under a burst, in two terminals (note the pid serve prints)",
                "lsbaws serve --reaper once\n\
                 lsbaws blast --max-clients 128 && lsbaws audit --pid <pid>",
            ),
            (
                "webserver3e's crash: accept interrupted by SIGCHLD, exit 2",
                "lsbaws serve --on-eintr fail",
            ),
            (
                "A WSGI app, one CGI run per request",
                "lsbaws serve --cgi ./app.py --cgi-timeout 5s",
            ),
        ],
        ..Section::EMPTY
    },
];

const BLAST: &[Section] = &[
    Section {
        title: "Exit status",
        rows: &[
            ("0", "failed requests at most --max-errors"),
            (
                "1",
                "more than that (requests that never ran, a --duration client that never \
                 started one, count as failed)",
            ),
            (
                "2",
                "bad usage, or an error before the run: a URL that does not resolve, a \
                 --source this host does not own, a --start-at not within the next 24 h, an \
                 unreadable --cacert",
            ),
            STOP_SIGNAL,
        ],
        outro: JSON_ERROR,
        ..Section::EMPTY
    },
    Section {
        title: "Examples",
        examples: &[
            (
                "The article's burst: 128 clients released at once",
                "lsbaws blast --max-clients 128",
            ),
            (
                "TLS, a full handshake per connection",
                "lsbaws blast https://localhost:8443/ --cacert ca.pem",
            ),
            (
                "An open model: 500 requests a second, at most 64 in flight",
                "lsbaws blast --rate 500 --max-clients 64 --duration 30s URL",
            ),
            (
                "Past one address's ephemeral ports",
                "lsbaws blast --source 127.0.0.2-127.0.0.4 --max-clients 60000 --keep-alive URL",
            ),
            (
                "Many machines at once, added up by lsbaws merge",
                "lsbaws blast --start-at 2026-11-30T12:00:00Z --json URL > $(hostname).json",
            ),
        ],
        ..Section::EMPTY
    },
];

const AUDIT: &[Section] = &[
    Section {
        title: "Exit status with --pid or --all",
        rows: &[
            (
                "0",
                "zombies at most --max-zombies (with --watch: in the last sample)",
            ),
            ("1", "more zombies than that"),
            (
                "2",
                "the pid does not exist (with --watch: it was reused), /proc cannot be read, \
                 bad usage",
            ),
            STOP_SIGNAL,
        ],
        ..Section::EMPTY
    },
    Section {
        title: "Exit status with -- COMMAND",
        rows: &[
            (
                "N",
                "COMMAND's own status when it failed (128 + S when signal S killed it)",
            ),
            (
                "1",
                "else: more than --max-orphans processes left running, or more than \
                 --max-zombies zombies held longer than --min-age",
            ),
            ("0", "else"),
            (
                "2",
                "COMMAND cannot start, /proc could not be read during the run, an output \
                 file cannot be written (unless COMMAND failed), two outputs are one file \
                 or one FIFO, or one is the file or pipe stdout writes to, bad usage",
            ),
            (
                "128+N",
                "a stop signal N: sent on to COMMAND's process group (SIGKILL 2 s later), \
                 then what was seen is reported, marked interrupted; also one during the \
                 settle or the clean-up (which still stops the leftovers), one while an \
                 output FIFO waits for its reader (nothing ran), and Ctrl-C that killed \
                 COMMAND while it held the terminal",
            ),
        ],
        outro: "Errors print one line on stderr; with --json also one object on stdout, \
                {\"error\": \"...\"} (with --report FILE: in FILE, or on stdout when FILE is \
                what failed). A closed output pipe (stdout, or a FIFO whose reader left) \
                never changes the exit code: that output stops, the others are written.",
        ..Section::EMPTY
    },
    Section {
        title: "Examples",
        examples: &[
            (
                "The zombies among a process's children",
                "lsbaws audit --pid 1234",
            ),
            (
                "CI: all descendants, transient zombies given 2 s to be reaped",
                "lsbaws audit --pid 1234 --tree --settle 2s",
            ),
            (
                "Watch zombies pile up during a blast",
                "lsbaws audit --pid 1234 --watch 500ms --count 20",
            ),
            (
                "Every zombie on the machine, by parent",
                "lsbaws audit --all",
            ),
            (
                "Fail the job on leaked processes, with a JUnit report",
                "lsbaws audit --junit leaks.xml -- cargo test",
            ),
        ],
        ..Section::EMPTY
    },
];

const SMOKE: &[Section] = &[
    Section {
        title: "Exit status",
        rows: &[
            ("0", "PASS"),
            (
                "1",
                "FAIL: failed requests, zombies or leftover processes over --max-errors, \
                 --max-zombies, --max-orphans, or the server died during the run",
            ),
            (
                "2",
                "the server could not be started or reached; --junit cannot be written or \
                 is the file or pipe stdout writes to; bad usage; or INCONCLUSIVE: the \
                 load generator could not make every request (out of file descriptors or \
                 ephemeral ports, or --duration too short to start every client)",
            ),
            STOP_SIGNAL,
        ],
        outro: JSON_ERROR,
        ..Section::EMPTY
    },
    Section {
        title: "Examples",
        examples: &[
            ("The built-in server, 128 clients", "lsbaws smoke"),
            (
                "The article's bug, end to end: FAIL",
                "lsbaws smoke --reaper once --max-clients 256",
            ),
            (
                "Your server, on a free port",
                "lsbaws smoke -- ./my-server --port {port}",
            ),
            (
                "A JUnit report for the CI job",
                "lsbaws smoke --junit smoke.xml -- python3 app.py {port}",
            ),
        ],
        ..Section::EMPTY
    },
];

const MERGE: &[Section] = &[
    Section {
        title: "Input",
        intro: "Files, or - for standard input: JSON objects (or arrays of them) one after \
                another, each at the start of a line or after a BOM, a kubectl logs --prefix \
                tag and a --timestamps time. Other lines (blast's warnings on stderr, \
                kubectl's noise) are skipped and counted on stderr; a report that does not \
                parse, one behind text of another kind, and a FILE with no report are errors. \
                Reports are added as they are read, an array's item by item: memory does not \
                grow with their number.",
        ..Section::EMPTY
    },
    Section {
        title: "Exit status",
        rows: &[
            ("0", "the total's failed requests at most --max-errors"),
            ("1", "more than that"),
            (
                "2",
                "an input unreadable or not added up exactly (another URL, another schema, a \
                 truncated report, counts that do not add up, a run given twice, a blast's own \
                 error), naming the file or stdin line; not --shards reports",
            ),
            (
                "128+N",
                "a report was interrupted by signal N (then so is the total), or a stop \
                 signal came: the sum of what arrived is printed, marked interrupted (with \
                 --json and no report yet: {\"error\", \"interrupted\": true, \"signal\"}); \
                 output stuck on a full pipe ends 2 s after it",
            ),
        ],
        outro: JSON_ERROR,
        ..Section::EMPTY
    },
    Section {
        title: "Examples",
        examples: &[
            (
                "A row per report, then the total",
                "lsbaws merge a.json b.json",
            ),
            (
                "Blast's own shape, so merges merge again",
                "lsbaws merge --json a.json b.json > ab.json",
            ),
            (
                "The pods of a Kubernetes Job",
                "kubectl logs -l job-name=lsbaws-blast --tail=-1 | lsbaws merge --shards 3 -",
            ),
        ],
        ..Section::EMPTY
    },
];

const COMPLETIONS: &[Section] = &[Section {
    title: "Examples",
    examples: &[
        (
            "bash (with the bash-completion package)",
            "lsbaws completions bash > ~/.local/share/bash-completion/completions/lsbaws",
        ),
        (
            "zsh, into a directory of $fpath (then compinit)",
            "lsbaws completions zsh > ~/.zfunc/_lsbaws",
        ),
        (
            "fish",
            "lsbaws completions fish > ~/.config/fish/completions/lsbaws.fish",
        ),
        (
            "Any of them for this shell session only (bash, zsh)",
            "source <(lsbaws completions bash)",
        ),
    ],
    ..Section::EMPTY
}];

const MAN: &[Section] = &[Section {
    title: "Examples",
    examples: &[
        (
            "Read a command's page without installing it",
            "lsbaws man blast | man -l -",
        ),
        (
            "Install the pages where man-db looks for ~/.cargo/bin's programs",
            "mkdir -p ~/.cargo/share/man/man1\n\
             for c in '' serve blast audit smoke merge completions man; do\n\
             \x20 lsbaws man $c > ~/.cargo/share/man/man1/lsbaws${c:+-$c}.1\n\
             done",
        ),
    ],
    ..Section::EMPTY
}];

/// The sections of `command` ("" for lsbaws itself); none for an unknown name.
pub fn sections(command: &str) -> &'static [Section] {
    match command {
        "" => ROOT,
        "serve" => SERVE,
        "blast" => BLAST,
        "audit" => AUDIT,
        "smoke" => SMOKE,
        "merge" => MERGE,
        "completions" => COMPLETIONS,
        "man" => MAN,
        _ => &[],
    }
}

/// `command`'s sections as plain text, for clap's `after_help`.
pub fn after_help(command: &str) -> String {
    text(sections(command))
}

/// Sections as plain text: a title line, then each block indented by two,
/// wrapped to `WIDTH`.
pub fn text(sections: &[Section]) -> String {
    let mut out = String::new();
    for (i, s) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(s.title);
        out.push_str(":\n");
        wrap(&mut out, s.intro, "  ", "  ");
        // Terms in a column as wide as the longest, at least 6 (`128+N`).
        let column = s
            .rows
            .iter()
            .map(|(t, _)| t.len() + 2)
            .max()
            .unwrap_or(0)
            .max(7);
        for (term, meaning) in s.rows {
            wrap(
                &mut out,
                meaning,
                &format!("  {term:column$}"),
                &" ".repeat(2 + column),
            );
        }
        for (what, lines) in s.examples {
            wrap(&mut out, what, "  # ", "  # ");
            for line in lines.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        if !s.outro.is_empty() {
            out.push('\n');
            wrap(&mut out, s.outro, "  ", "  ");
        }
    }
    // clap adds the newline after the last line itself.
    out.truncate(out.trim_end().len());
    out
}

/// Appends `text`, reflowed to [`WIDTH`]: `first` before its first line,
/// `rest` before the others. Nothing for an empty text.
fn wrap(out: &mut String, text: &str, first: &str, rest: &str) {
    let mut prefix = first;
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && prefix.len() + line.len() + 1 + word.len() > WIDTH {
            out.push_str(prefix);
            out.push_str(&line);
            out.push('\n');
            line.clear();
            prefix = rest;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(prefix);
        out.push_str(&line);
        out.push('\n');
    }
}

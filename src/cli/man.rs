//! Manual pages: a command's clap definition and its help sections
//! (`cli::help`, the same text `--help` shows) into roff for man(1). Here, with
//! the definitions it documents, so that `render` reads report types only.
//!
//! Reads the clap `Command` and the sections as data only. clap_mangen draws
//! the standard parts (NAME, SYNOPSIS, DESCRIPTION, OPTIONS, COMMANDS); the
//! sections (exit status, examples) are drawn here because clap_mangen would
//! fill their lines into one paragraph. Must never choose where the page goes.

use std::io::{self, Write};

use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::help::Section;

/// What every roff document from the `roff` crate opens with (defines the
/// straight apostrophe); written once per page, not once per part.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// Writes the page of `cmd`, a command of a built `lsbaws` definition (so that
/// a subcommand's name is `lsbaws-blast` and its synopsis `lsbaws blast`).
pub fn page(cmd: &clap::Command, sections: &[Section], out: &mut impl Write) -> io::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let version = cmd.get_version().unwrap_or_default();
    // Written by hand: clap_mangen's title drops an empty date, which shifts
    // the source and manual into the wrong fields.
    write!(out, "{PREAMBLE}")?;
    writeln!(
        out,
        ".TH \"{}\" 1 \"\" \"lsbaws {version}\" \"lsbaws manual\"",
        name.to_uppercase()
    )?;
    let cmd = cmd.clone().subcommand_help_heading("COMMANDS");
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_commands = cmd.get_subcommands().any(|c| !c.is_hide_set());
    let man = Man::new(cmd);
    part(out, |w| man.render_name_section(w))?;
    part(out, |w| man.render_synopsis_section(w))?;
    part(out, |w| man.render_description_section(w))?;
    if has_options {
        part(out, |w| man.render_options_section(w))?;
    }
    if has_commands {
        part(out, |w| man.render_subcommands_section(w))?;
    }
    let mut roff = Roff::new();
    for section in sections {
        draw(section, &mut roff);
    }
    see_also(name, &mut roff);
    part(out, |w| roff.to_writer(w))?;
    part(out, |w| man.render_version_section(w))
}

/// Writes one part of the page without its [`PREAMBLE`].
fn part(
    out: &mut impl Write,
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut roff = Vec::new();
    render(&mut roff)?;
    out.write_all(roff.strip_prefix(PREAMBLE.as_bytes()).unwrap_or(&roff))
}

/// One section: `.SH TITLE`, its paragraphs, its rows as a tagged list, its
/// examples as a description and the command lines unfilled.
fn draw(section: &Section, roff: &mut Roff) {
    roff.control("SH", [section.title.to_uppercase().as_str()]);
    if !section.intro.is_empty() {
        roff.text([roman(section.intro)]);
    }
    for (term, meaning) in section.rows {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*meaning)]);
    }
    for (what, lines) in section.examples {
        roff.control("PP", []);
        roff.text([roman(format!("{what}:"))]);
        roff.control("RS", ["4"]);
        roff.control("nf", []);
        for line in lines.lines() {
            roff.text([bold(line)]);
        }
        roff.control("fi", []);
        roff.control("RE", []);
    }
    if !section.outro.is_empty() {
        roff.control("PP", []);
        roff.text([roman(section.outro)]);
    }
}

/// SEE ALSO: a command's page (`lsbaws-blast`) points to lsbaws(1), which
/// lists the commands already.
fn see_also(name: &str, roff: &mut Roff) {
    let Some((root, _)) = name.split_once('-') else {
        return;
    };
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold(root), roman("(1)")]);
}
